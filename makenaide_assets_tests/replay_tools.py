"""Helpers that derive replay directories from the real recordings (truncated or corrupted copies)."""

import shutil
from collections.abc import Callable
from pathlib import Path

import pandas as pd

from makenaide_assets.strategy.calendar import partition_close
from makenaide_assets.strategy.candles import candle_close_time


def copy_replay(src: Path, dst: Path, edit: Callable[[str, str, pd.DataFrame], pd.DataFrame] | None = None) -> Path:
    """Copy a replay directory, passing each candle file through `edit(interval, market, frame)`."""
    dst.mkdir(parents=True, exist_ok=True)
    shutil.copy(src / "markets.json", dst / "markets.json")
    for path in sorted((src / "candles").glob("*/*.csv*")):
        interval, market = path.parent.name, path.name.split(".")[0]
        frame = pd.read_csv(path)
        if edit is not None:
            frame = edit(interval, market, frame)
        out = dst / "candles" / interval / f"{market}.csv.gz"
        out.parent.mkdir(parents=True, exist_ok=True)
        frame.to_csv(out, index=False)
    return dst


def truncate_after(src: Path, dst: Path, partition_key: str) -> Path:
    """The recording as it stood when partition D closed: every later candle deleted."""
    close = partition_close(partition_key)

    def keep_closed(interval: str, _market: str, frame: pd.DataFrame) -> pd.DataFrame:
        starts = pd.to_datetime(frame["candle_date_time_utc"])
        return frame[candle_close_time(starts, interval) <= close]  # type: ignore[arg-type]

    return copy_replay(src, dst, keep_closed)

"""The pipeline's own fills replayed through vectorbt's `Portfolio.from_signals` (same fees, same cash).

Entries are the days a buy or add filled, exits the days a sell filled, at the fill's own price
(slippage included) and volume; vectorbt marks the book at the recorded daily closes. Shared by
test_vectorbt.py and benchmarks/vectorbt_compare.py.
"""

import json
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from makenaide_assets.backtest.evaluate import daily_closes
from makenaide_assets.resources.market_data import ReplayMarketData
from makenaide_assets.settings import SAMPLE_REPLAY_DIR

FIXTURES = Path(__file__).resolve().parent / "fixtures"
SHARED_DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data"


@dataclass(frozen=True)
class Recorded:
    """A backtest the real pipeline ran: its fills, its equity curve, and the recording's closes."""

    meta: dict
    fills: pd.DataFrame
    curve: pd.DataFrame
    closes: pd.DataFrame


def replay_dir(recording: str) -> Path:
    return SAMPLE_REPLAY_DIR if recording == "upbit_sample" else SHARED_DATA / recording


def load(name: str) -> Recorded:
    folder = FIXTURES / name
    meta = json.loads((folder / "meta.json").read_text())
    fills = pd.read_csv(folder / "fills.csv", dtype={"partition_key": str})
    curve = pd.read_csv(folder / "curve.csv", dtype={"date": str})
    market_data = ReplayMarketData(replay_dir=str(replay_dir(meta["recording"])))
    closes = daily_closes(market_data, sorted(set(fills["market"])), meta["start"], meta["end"])
    return Recorded(meta, fills, curve, closes)


def signal_frames(recorded: Recorded) -> dict[str, pd.DataFrame]:
    """Boolean entries/exits and the fill price and volume on those days, shaped like the closes."""
    fills, closes = recorded.fills, recorded.closes
    shape = {"index": closes.index, "columns": closes.columns}
    entries = pd.DataFrame(False, **shape)
    exits = pd.DataFrame(False, **shape)
    price = pd.DataFrame(float("nan"), **shape)
    size = pd.DataFrame(float("nan"), **shape)
    for fill in fills.itertuples(index=False):
        day, market = fill.partition_key, fill.market
        (exits if fill.side == "sell" else entries).at[day, market] = True
        price.at[day, market], size.at[day, market] = fill.price, fill.volume
    return {"entries": entries, "exits": exits, "price": price, "size": size}


def portfolio(recorded: Recorded):  # -> vbt.Portfolio; vectorbt is imported only where it is used
    import vectorbt as vbt

    frames = {k: v.set_axis(pd.to_datetime(v.index)) for k, v in signal_frames(recorded).items()}
    # A day without a close (none in these recordings) is valued at the last one, as ours is.
    close = recorded.closes.ffill().set_axis(pd.to_datetime(recorded.closes.index))
    return vbt.Portfolio.from_signals(
        close=close,
        entries=frames["entries"],
        exits=frames["exits"],
        price=frames["price"],
        size=frames["size"],
        size_type="amount",
        accumulate=True,  # pyramiding adds buy into the open position
        direction="longonly",
        fees=recorded.meta["fee_rate"],
        init_cash=recorded.meta["initial_cash_krw"],
        cash_sharing=True,
        group_by=True,
        call_seq="auto",  # sells before buys within a day, as the broker executes them
        freq="1D",
    )

"""Walk-forward evaluation, the pure part: the windows, the parameter grid, and the choice on a train window.

A window trains on `train_days` days and tests on the `test_days` that follow; the next window's
test starts where this one's ended, so the test windows tile the range and chained together they
are the out-of-sample record. The choice sees the train window's results only.
"""

import itertools
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import pandas as pd


@dataclass(frozen=True)
class Window:
    train_start: str
    train_end: str
    test_start: str
    test_end: str

    @property
    def key(self) -> str:
        """The window's name: its test window's first day (also its Dagster partition)."""
        return self.test_start


def _day(timestamp: pd.Timestamp) -> str:
    return timestamp.strftime("%Y-%m-%d")


def window_at(test_start: str, end: str, train_days: int, test_days: int) -> Window:
    """The window whose test starts on `test_start`: the `train_days` before it, `test_days` from it (to `end`)."""
    if train_days < 1 or test_days < 1:
        raise ValueError(f"train and test windows need at least a day each, got {train_days} / {test_days}")
    first = pd.Timestamp(test_start)
    last = min(first + pd.Timedelta(days=test_days - 1), pd.Timestamp(end))
    if last < first:
        raise ValueError(f"test window from {test_start} ends before it starts ({end})")
    return Window(
        train_start=_day(first - pd.Timedelta(days=train_days)),
        train_end=_day(first - pd.Timedelta(days=1)),
        test_start=_day(first),
        test_end=_day(last),
    )


def windows(start: str, end: str, train_days: int, test_days: int) -> list[Window]:
    """Rolling windows over start..end: the first trains on the first `train_days`, each steps by `test_days`;
    the last test window is cut at `end`."""
    first, last = pd.Timestamp(start) + pd.Timedelta(days=train_days), pd.Timestamp(end)
    out = []
    while first <= last:
        out.append(window_at(_day(first), end, train_days, test_days))
        first += pd.Timedelta(days=test_days)
    if not out:
        raise ValueError(f"{start} → {end} is too short for a {train_days}-day train window and a test day")
    return out


def grid_cells(grid: Mapping[str, Sequence[Any]]) -> list[dict[str, Any]]:
    """Every combination of the grid's values, in order: the first values of each list make cell 0."""
    names = list(grid)
    return [dict(zip(names, values, strict=True)) for values in itertools.product(*(grid[n] for n in names))]


def choose(train: pd.DataFrame, min_trades: int) -> int:
    """The cell to test: the highest train-window `total_return_pct` among cells with at least `min_trades`
    closed trades, ties broken by the shallower `max_drawdown_pct` (a negative number), then by grid order.
    Without any cell that traded enough, cell 0: no evidence to move off the first values.

    `train` has one row per cell with `cell`, `trades`, `total_return_pct`, `max_drawdown_pct`.
    """
    enough = train[train["trades"] >= min_trades]
    if enough.empty:
        return int(train["cell"].min())
    ranked = enough.assign(_dd=enough["max_drawdown_pct"].fillna(-math.inf)).sort_values(
        ["total_return_pct", "_dd", "cell"], ascending=[False, False, True], kind="stable"
    )
    return int(ranked["cell"].iloc[0])

"""Data-quality rules for market data, pure so tests can feed them corrupted frames directly.

Each returns the offending markets and details naming what is wrong with each, so the check
report shows what was found, not just that something was.
"""

from collections.abc import Iterable, Sequence

import pandas as pd

Found = tuple[list[str], dict[str, str]]
# Details list at most this many rows; the market names and their count are complete.
_ROWS_SHOWN = 50


def _join(items: Iterable[str], sep: str = ", ") -> str:
    items = list(items)
    more = f"{sep}… (+{len(items) - _ROWS_SHOWN})" if len(items) > _ROWS_SHOWN else ""
    return sep.join(items[:_ROWS_SHOWN]) + more or "none"


def duplicated_keys(frame: pd.DataFrame, keys: Sequence[str]) -> Found:
    dupes = frame[frame.duplicated(list(keys), keep=False)]
    rows = sorted({" ".join(str(v) for v in row) for row in dupes[list(keys)].itertuples(index=False)})
    return sorted(set(dupes["market"])), {"duplicates": _join(rows)}


def ohlc_violations(frame: pd.DataFrame, *, open_: str, high: str, low: str, close: str, date: str) -> Found:
    """high >= max(open, close) >= min(open, close) >= low > 0, and nothing missing; each bad bar is
    named by market and date with what is wrong with it."""
    o, h, lo, c = (frame[column] for column in (open_, high, low, close))
    problems = {
        "a price is missing": frame[[open_, high, low, close]].isna().any(axis=1),
        "high < low": h < lo,
        "high < open/close": h < pd.concat([o, c], axis=1).max(axis=1),
        "low > open/close": lo > pd.concat([o, c], axis=1).min(axis=1),
        "low <= 0": lo <= 0,
    }
    bad = pd.concat(problems, axis=1)
    rows = [
        f"{frame.at[i, 'market']} {pd.Timestamp(frame.at[i, date]):%Y-%m-%d}: "
        f"{', '.join(bad.columns[bad.loc[i]])} (O {o[i]:g} H {h[i]:g} L {lo[i]:g} C {c[i]:g})"
        for i in bad.index[bad.any(axis=1)]
    ]
    return sorted(set(frame.loc[bad.any(axis=1), "market"])), {"violations": _join(rows, "; ")}


def stale_markets(candles: pd.DataFrame, expected: Iterable[str], partition_key: str) -> Found:
    """Markets of `expected` whose last daily candle is not dated D, or that have none: their data
    stopped updating, and an indicator snapshot of them would be an older day's."""
    day = pd.Timestamp(partition_key)
    expected = set(expected)
    last = candles[candles["market"].isin(expected)].groupby("market")["candle_date_time_utc"].max()
    stale = last[pd.to_datetime(last).dt.normalize() != day]
    missing = sorted(expected - set(last.index))
    return sorted([*stale.index, *missing]), {
        "expected_date": partition_key,
        "stale": _join(f"{m} (last {pd.Timestamp(d):%Y-%m-%d})" for m, d in stale.items()),
        "without_candles": _join(missing),
    }


def volume_collapses(
    candles: pd.DataFrame, partition_key: str, *, floor: float = 0.01, lookback: int = 20, min_history: int = 5
) -> Found:
    """Markets whose KRW traded on D is zero or under `floor` of their median over the `lookback`
    days before: a truncated or mis-scaled candle, or a halt, rather than a quiet day (in both
    recordings no market's day ever fell below 4.7 % of that median)."""
    day = pd.Timestamp(partition_key)
    frame = candles.sort_values(["market", "candle_date_time_utc"])
    tail = frame.groupby("market", sort=False).tail(lookback + 1)
    is_last = ~tail["market"].duplicated(keep="last")
    today = tail[is_last].set_index("market")
    today = today[pd.to_datetime(today["candle_date_time_utc"]).dt.normalize() == day]
    before = tail[~is_last].groupby("market")["candle_acc_trade_price"]
    median = before.median().reindex(today.index)
    known = before.size().reindex(today.index).fillna(0) >= min_history
    value = today["candle_acc_trade_price"]
    bad = (value <= 0) | (known & ~(value >= floor * median))
    rows = [f"{m}: {value[m]:,.0f} KRW against a median of {median[m]:,.0f}" for m in today.index[bad]]
    return sorted(today.index[bad]), {
        "collapsed": _join(rows, "; "),
        "floor": f"{floor:.0%} of the {lookback}-day median",
    }


def unexplained_nans(frame: pd.DataFrame, required: Sequence[str]) -> Found:
    """A NaN in a required column is allowed only where `insufficient_history` names that column."""
    problems, short, markets = [], [], []
    for row in frame.itertuples(index=False):
        allowed = {c for c in str(getattr(row, "insufficient_history", "") or "").split(",") if c}
        missing = [c for c in required if pd.isna(getattr(row, c))]
        unexplained = [c for c in missing if c not in allowed]
        if unexplained:
            markets.append(row.market)
            problems.append(f"{row.market}: {'/'.join(unexplained)}")
        elif allowed:
            short.append(f"{row.market}: {'/'.join(sorted(allowed))}")
    return sorted(set(markets)), {
        "unexplained_nan": _join(problems, "; "),
        "short_history": _join(short, "; "),
        "short_history_count": str(len(short)),
    }

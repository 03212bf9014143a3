"""Data-quality rules for market data, pure so tests can feed them corrupted frames directly.

Each returns (passed, details): details name the offending markets so the check report shows
what was found, not just that something was.
"""

from collections.abc import Iterable, Sequence

import pandas as pd


def duplicated_keys(frame: pd.DataFrame, keys: Sequence[str]) -> tuple[bool, dict[str, str]]:
    dupes = frame[frame.duplicated(list(keys), keep=False)]
    found = sorted({" ".join(str(v) for v in row) for row in dupes[list(keys)].itertuples(index=False)})
    return not found, {"duplicates": ", ".join(found[:50]) or "none", "duplicate_count": str(len(found))}


def ohlc_violations(
    frame: pd.DataFrame, *, open_: str, high: str, low: str, close: str, label: Iterable[str]
) -> tuple[bool, dict[str, str]]:
    """high >= max(open, close) >= min(open, close) >= low > 0, and nothing missing."""
    values = frame[[open_, high, low, close]]
    bad = (
        values.isna().any(axis=1)
        | (frame[high] < frame[[open_, close]].max(axis=1))
        | (frame[low] > frame[[open_, close]].min(axis=1))
        | (frame[low] <= 0)
    )
    rows = [" ".join(str(v) for v in row) for row in frame.loc[bad, list(label)].itertuples(index=False)]
    return not rows, {"violations": ", ".join(rows[:50]) or "none", "violation_count": str(len(rows))}


def stale_rows(frame: pd.DataFrame, partition_key: str) -> tuple[bool, dict[str, str]]:
    """Every row's last candle must be dated D: an older one means the data stopped updating."""
    expected = pd.Timestamp(partition_key)
    dates = pd.to_datetime(frame["date"])
    stale = frame.loc[dates != expected, ["market"]].assign(date=dates[dates != expected].dt.strftime("%Y-%m-%d"))
    found = [f"{m} ({d})" for m, d in stale.itertuples(index=False)]
    return not found, {"expected_date": partition_key, "stale": ", ".join(found) or "none"}


def unexplained_nans(frame: pd.DataFrame, required: Sequence[str]) -> tuple[bool, dict[str, str]]:
    """A NaN in a required column is allowed only where `insufficient_history` names that column."""
    problems, short = [], []
    for row in frame.itertuples(index=False):
        allowed = {c for c in str(getattr(row, "insufficient_history", "") or "").split(",") if c}
        missing = [c for c in required if pd.isna(getattr(row, c))]
        unexplained = [c for c in missing if c not in allowed]
        if unexplained:
            problems.append(f"{row.market}: {'/'.join(unexplained)}")
        elif allowed:
            short.append(f"{row.market}: {'/'.join(sorted(allowed))}")
    return not problems, {
        "unexplained_nan": "; ".join(problems[:50]) or "none",
        "short_history": "; ".join(short) or "none",
        "short_history_count": str(len(short)),
    }


def missing_markets(expected: Iterable[str], present: Iterable[str]) -> tuple[bool, dict[str, str]]:
    lost = sorted(set(expected) - set(present))
    return not lost, {"missing": ", ".join(lost) or "none"}

"""Partition time, without Dagster: when partition D's daily candle closes, and "now" in UTC."""

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime

import pandas as pd

# None: the wall clock. A rehearsal runs live mode against the local exchange's simulated time
# (makenaide_assets.rehearsal), so "now" (the live broker's same-day guard, the ledger's stamps)
# must be that time, in the one process that runs the whole rehearsal.
_clock: Callable[[], datetime] | None = None


def partition_close(partition_key: str) -> pd.Timestamp:
    """The instant partition D's daily candle closes (D+1 00:00 UTC), as a naive UTC timestamp.

    Everything an asset of partition D reads must have closed at or before this instant.
    """
    return pd.Timestamp(partition_key) + pd.Timedelta(days=1)


def utc_now_naive() -> datetime:
    if _clock is not None:
        return _clock()
    return datetime.now(UTC).replace(tzinfo=None)


@contextmanager
def simulated_clock(now: Callable[[], datetime]) -> Iterator[None]:
    """`utc_now_naive()` answers `now()` inside the block (a rehearsal's simulated time)."""
    global _clock
    previous, _clock = _clock, now
    try:
        yield
    finally:
        _clock = previous

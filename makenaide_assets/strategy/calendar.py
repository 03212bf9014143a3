"""Partition time, without Dagster: when partition D's daily candle closes, and "now" in UTC."""

from datetime import UTC, datetime

import pandas as pd


def partition_close(partition_key: str) -> pd.Timestamp:
    """The instant partition D's daily candle closes (D+1 00:00 UTC), as a naive UTC timestamp.

    Everything an asset of partition D reads must have closed at or before this instant.
    """
    return pd.Timestamp(partition_key) + pd.Timedelta(days=1)


def utc_now_naive() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)

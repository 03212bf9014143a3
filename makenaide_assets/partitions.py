"""The one partitions definition shared by every partitioned asset, job and schedule."""

from datetime import UTC, datetime, timedelta

import dagster as dg
import pandas as pd

# Partition D is Upbit's daily candle dated D (00:00 UTC = 09:00 KST). 2022-01-01 lets both
# recordings be replayed; earlier candles are history an asset may read, not partitions.
PARTITIONS_START = "2022-01-01"

daily = dg.DailyPartitionsDefinition(start_date=PARTITIONS_START, timezone="UTC", end_offset=0)


def partition_close(partition_key: str) -> pd.Timestamp:
    """The instant partition D's daily candle closes (D+1 00:00 UTC), as a naive UTC timestamp.

    Everything an asset of partition D reads must have closed at or before this instant.
    """
    return pd.Timestamp(partition_key) + pd.Timedelta(days=1)


def partition_date(partition_key: str) -> pd.Timestamp:
    return pd.Timestamp(partition_key)


def utc_now_naive() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


def previous_partition_key(partition_key: str) -> str:
    return (pd.Timestamp(partition_key) - timedelta(days=1)).strftime("%Y-%m-%d")

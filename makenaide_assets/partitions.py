"""The one partitions definition shared by every partitioned asset, job and schedule.

Partition D is Upbit's daily candle dated D (00:00 UTC = 09:00 KST). Paper and live: 2022-01-01 →
today, so both recordings can be replayed and backtested; earlier candles are history an asset
may read, not partitions. Demo: the days of the replay it serves (MAKENAIDE_REPLAY_DIR, default
the packaged sample), so the UI lists days that hold data, not two years of empty ones.

Read once, when the code location imports its definitions: Dagster fixes a partitions definition
when the definitions load, and every partitioned check must carry its asset's definition.
"""

import csv
import gzip
import io
import warnings
from collections.abc import Iterator
from pathlib import Path

import dagster as dg
import pandas as pd

from makenaide_assets import settings

PARTITIONS_START = "2022-01-01"
_DATE_COLUMN = "candle_date_time_utc"


def recording_days(replay_dir: Path) -> tuple[str, str] | None:
    """The first and last daily candle dates in a replay directory (DESIGN §5), or None if it has none.

    Only the date column is kept, from lines split at commas (the csv module, 4x slower, only for a
    file with quoted fields): this runs at every definitions import. The first and last of the full
    timestamps are the first and last dates, since a string's first ten characters order as it does.
    """
    first = last = None
    for path in sorted((replay_dir / "candles" / "day").glob("*.csv*")):
        data = path.read_bytes()
        stamps = _stamps((gzip.decompress(data) if path.suffix == ".gz" else data).decode("utf-8"))
        if stamps:
            first = min(first or stamps[0][:10], min(stamps)[:10])
            last = max(last or stamps[0][:10], max(stamps)[:10])
    return (first, last) if first and last else None


def _stamps(text: str) -> list[str]:
    """The date column's values of a CSV's rows after its header (blank lines skipped, as DictReader does)."""
    quoted = '"' in text
    rows: Iterator[list[str]] = (
        csv.reader(io.StringIO(text, newline="")) if quoted else (line.split(",") for line in text.splitlines() if line)
    )
    header = next(rows, [])
    records = [row for row in rows if row]
    if records and _DATE_COLUMN not in header:
        raise KeyError(_DATE_COLUMN)
    column = header.index(_DATE_COLUMN) if records else 0
    return [row[column] for row in records]


def daily_partitions(mode: settings.Mode, replay_dir: Path) -> dg.DailyPartitionsDefinition:
    days = recording_days(replay_dir) if mode == "demo" else None
    if days is None:
        return dg.DailyPartitionsDefinition(start_date=PARTITIONS_START, timezone="UTC", end_offset=0)
    first, last = days
    end = (pd.Timestamp(last) + pd.Timedelta(days=1)).strftime("%Y-%m-%d")  # exclusive
    return dg.DailyPartitionsDefinition(start_date=max(first, PARTITIONS_START), end_date=end, timezone="UTC")


daily = daily_partitions(settings.mode(), Path(settings.replay_dir()))

# Every check here is partitioned on purpose (a check must read only the partition it guards,
# not every partition of its asset); Dagster marks that as a preview and would warn per check.
warnings.filterwarnings("ignore", category=dg.PreviewWarning, message=".*partitions_def.*")

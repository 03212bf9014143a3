"""The one partitions definition shared by every partitioned asset, job and schedule."""

import warnings

import dagster as dg

# Partition D is Upbit's daily candle dated D (00:00 UTC = 09:00 KST). 2022-01-01 lets both
# recordings be replayed; earlier candles are history an asset may read, not partitions.
PARTITIONS_START = "2022-01-01"

daily = dg.DailyPartitionsDefinition(start_date=PARTITIONS_START, timezone="UTC", end_offset=0)

# Every check here is partitioned on purpose (a check must read only the partition it guards,
# not every partition of its asset); Dagster marks that as a preview and would warn per check.
warnings.filterwarnings("ignore", category=dg.PreviewWarning, message=".*partitions_def.*")

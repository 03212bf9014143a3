"""Makenaide: an Upbit KRW trading pipeline as a Dagster asset graph."""

import warnings

import dagster as dg

# Every check here is partitioned on purpose (a check must read only the partition it guards,
# not every partition of its asset); Dagster marks that as a preview and would warn per check.
warnings.filterwarnings("ignore", category=dg.PreviewWarning, message=".*partitions_def.*")

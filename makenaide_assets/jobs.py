"""Jobs and the daily schedule."""

from datetime import timedelta

import dagster as dg

from makenaide_assets.partitions import daily

ANALYSIS_ASSETS = [
    "tickers",
    "universe",
    "daily_candles",
    "daily_indicators",
    "market_breadth",
    "candidates",
    "gpt_verdicts",
    "timing_4h",
    "strategy_stats",
    "signals",
]
TRADING_ASSETS = ["fills", "portfolio", "stop_levels", "daily_report"]
REPORT_ASSETS = ["portfolio", "stop_levels", "daily_report"]

# Partitioning comes from the selected assets; the executor from Definitions (in-process: see
# definitions.py).
analysis_job = dg.define_asset_job(
    name="analysis_job",
    selection=dg.AssetSelection.assets(*ANALYSIS_ASSETS),
    # Run monitoring (dagster.yaml) fails a run still going after 30 minutes; run_failure_notifier says so.
    tags={"dagster/max_runtime": str(30 * 60)},
    description="tickers → … → signals for one daily partition; checks that guard money are blocking.",
)

# The tag lets a QueuedRunCoordinator allow only one trading run at a time (dagster.yaml).
trading_job = dg.define_asset_job(
    name="trading_job",
    selection=dg.AssetSelection.assets(*TRADING_ASSETS),
    # A hung trading run would also hold the one trading slot: failed after 30 minutes, and notified.
    tags={"makenaide/trading": "true", "dagster/max_runtime": str(30 * 60)},
    description="fills → portfolio → stop_levels, daily_report for one partition; started only by signals_sensor.",
)

# Every day is valued and reported, signals or not: on a day without orders (or whose signals may
# not be traded) the sensor starts this instead. Same tag: it records the day's equity in the ledger.
report_job = dg.define_asset_job(
    name="report_job",
    selection=dg.AssetSelection.assets(*REPORT_ASSETS),
    tags={"makenaide/trading": "true", "dagster/max_runtime": str(30 * 60)},
    description="portfolio → stop_levels, daily_report for a day nothing is traded; started only by signals_sensor.",
)

# A stop or take-profit crossed between two daily runs (trading/stop_watch.py). The trading tag
# shares the one trading slot of a QueuedRunCoordinator; its own tag keeps it apart from the day's
# trading run in the run records `signals_sensor` reads.
stop_exit_job = dg.define_asset_job(
    name="stop_exit_job",
    selection=dg.AssetSelection.assets("stop_exits"),
    tags={"makenaide/trading": "true", "makenaide/stop_watch": "true", "dagster/max_runtime": str(10 * 60)},
    description="stop_exits for the partition whose book is watched; started only by stop_watch_sensor.",
)


# Written out rather than `build_schedule_from_partitioned_job`, which calls Dagster's deprecated
# `run_request_for_partition` on every tick.
@dg.schedule(
    job=analysis_job,
    cron_schedule="5 0 * * *",
    execution_timezone="UTC",
    name="analysis_schedule",
    description="Daily analysis at 09:05 KST for the Upbit day that just closed.",
)
def analysis_schedule(context: dg.ScheduleEvaluationContext) -> dg.RunRequest | dg.SkipReason:
    # 00:05 UTC = 09:05 KST, five minutes after Upbit's daily candle closes: the partition that
    # just closed is the previous UTC day. The partition as run key: one analysis per day per tick.
    closed = (context.scheduled_execution_time - timedelta(days=1)).strftime("%Y-%m-%d")
    if not daily.has_partition_key(closed):
        # Demo mode's partitions are the replay's days: a tick today has nothing to analyse, and
        # says so on the schedule's tick history instead of failing a run.
        first, last = daily.get_first_partition_key(), daily.get_last_partition_key()
        return dg.SkipReason(f"{closed} is not a partition ({first} → {last}): nothing recorded for it")
    # The job named explicitly: a request without one reaches the UI's "Launch all" as jobName null.
    return dg.RunRequest(run_key=closed, partition_key=closed, job_name=analysis_job.name)

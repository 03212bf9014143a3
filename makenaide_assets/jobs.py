"""Jobs and the daily schedule."""

import dagster as dg

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
TRADING_ASSETS = ["fills", "portfolio", "daily_report"]

# Partitioning comes from the selected assets; the executor from Definitions (in-process: see
# definitions.py).
analysis_job = dg.define_asset_job(
    name="analysis_job",
    selection=dg.AssetSelection.assets(*ANALYSIS_ASSETS),
    description="tickers → … → signals for one daily partition; checks that guard money are blocking.",
)

# The tag lets a QueuedRunCoordinator allow only one trading run at a time (dagster.yaml).
trading_job = dg.define_asset_job(
    name="trading_job",
    selection=dg.AssetSelection.assets(*TRADING_ASSETS),
    tags={"makenaide/trading": "true"},
    description="fills → portfolio → daily_report for one partition; started only by signals_sensor.",
)

# 00:05 UTC = 09:05 KST, five minutes after Upbit's daily candle closes; the partition that
# just closed (D-1) is the one requested.
analysis_schedule = dg.build_schedule_from_partitioned_job(
    analysis_job,
    name="analysis_schedule",
    hour_of_day=0,
    minute_of_hour=5,
    description="Daily analysis at 09:05 KST for the Upbit day that just closed.",
)

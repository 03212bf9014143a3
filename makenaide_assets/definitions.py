"""The one Definitions object: `dagster dev` and `dagster asset materialize -m makenaide_assets.definitions`."""

import os

import dagster as dg

from makenaide_assets import settings
from makenaide_assets.analysis import breadth, candidates, signals, strategy_stats, timing, verdicts
from makenaide_assets.backtest import asset as backtest
from makenaide_assets.jobs import analysis_job, analysis_schedule, trading_job
from makenaide_assets.market import indicators, tickers, universe
from makenaide_assets.resources.modes import resources_for
from makenaide_assets.trading import fills, portfolio, report
from makenaide_assets.trading.sensors import run_failure_notifier, signals_sensor

_MODULES = [
    tickers, universe, indicators, breadth, candidates, verdicts, timing, strategy_stats, signals,
    fills, portfolio, report, backtest,
]  # fmt: skip


def build_defs() -> dg.Definitions:
    """The project's definitions with resources for the current environment (tests call it
    after setting theirs; the code location loads `defs` once)."""
    return dg.Definitions(
        assets=dg.load_assets_from_modules(_MODULES),
        asset_checks=dg.load_asset_checks_from_modules(_MODULES),
        jobs=[analysis_job, trading_job],
        schedules=[analysis_schedule],
        sensors=[signals_sensor, run_failure_notifier],
        # Also for ad-hoc `dagster asset materialize` runs: multiprocess pays a Python start and a
        # Dagster import per step, about 5 s each here (benchmarks/executor.py measures it).
        executor=dg.in_process_executor,
        resources=resources_for(settings.mode(), has_openai_key=bool(os.environ.get("OPENAI_API_KEY"))),
    )


defs = build_defs()

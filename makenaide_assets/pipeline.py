"""The trading pipeline's definitions (assets, checks, jobs, schedule, sensors), given resources.

`definitions.py` adds the backtest asset and the resources of the current mode; the backtest's
day runner uses this module with sandbox resources. Keeping the pipeline here, below both, is what
lets the backtest run the real jobs without importing `definitions` from inside a run.
"""

from collections.abc import Mapping, Sequence
from typing import Any

import dagster as dg

from makenaide_assets.analysis import breadth_candidates, freshness, signals, strategy_stats, verdicts_and_timing
from makenaide_assets.jobs import analysis_job, analysis_schedule, report_job, stop_exit_job, trading_job
from makenaide_assets.market import step as market_step
from makenaide_assets.market.metadata import OWNERS
from makenaide_assets.resources.check_catalog import CheckCatalog
from makenaide_assets.resources.kelly_evidence import KellyEvidence
from makenaide_assets.trading import fills, monthly, portfolio, report, stop_watch
from makenaide_assets.trading.sensors import run_failure_notifier, signals_sensor
from makenaide_assets.trading.stop_watch import stop_watch_sensor

# `market_step` holds tickers → daily_indicators, `breadth_candidates` market_breadth and
# candidates, `verdicts_and_timing` gpt_verdicts and timing_4h: steps producing several assets (market/step.py).
PIPELINE_MODULES = [
    market_step, breadth_candidates, verdicts_and_timing, strategy_stats, signals, freshness,
    fills, portfolio, report, stop_watch,
]  # fmt: skip
# Monthly partitions: loaded beside the pipeline, kept out of `check_catalog`, which lists the checks
# of one daily partition D for its daily report.
MONTHLY_MODULES = [monthly]
CODE_VERSION = "1"


def check_catalog(
    assets: Sequence[dg.AssetsDefinition | Any], checks: Sequence[dg.AssetChecksDefinition | Any]
) -> CheckCatalog:
    keys = {key for a in assets if isinstance(a, dg.AssetsDefinition) for key in a.check_keys}
    keys |= {key for c in checks for key in c.check_keys}
    return CheckCatalog(checks=sorted(f"{k.asset_key.to_user_string()}:{k.name}" for k in keys))


def with_owner_and_version(spec: dg.AssetSpec) -> dg.AssetSpec:
    """Every asset answers to the team and carries a code version (the UI's Owners and Code
    version; staleness follows the version). An asset that declares its own keeps it: bump the
    asset's, or CODE_VERSION for all the others, when its logic changes."""
    return spec.replace_attributes(owners=spec.owners or OWNERS, code_version=spec.code_version or CODE_VERSION)


def pipeline_definitions(resources: Mapping[str, Any], extra_modules: Sequence[Any] = ()) -> dg.Definitions:
    """The pipeline (plus `extra_modules`' assets and checks) bound to `resources`."""
    modules = [*PIPELINE_MODULES, *extra_modules]
    assets = list(dg.map_asset_specs(with_owner_and_version, dg.load_assets_from_modules(modules)))
    checks = list(dg.load_asset_checks_from_modules(modules))
    monthly_assets = dg.map_asset_specs(with_owner_and_version, dg.load_assets_from_modules(MONTHLY_MODULES))
    return dg.Definitions(
        assets=[*assets, *monthly_assets],
        asset_checks=checks,
        jobs=[analysis_job, trading_job, report_job, stop_exit_job, monthly.monthly_report_job],
        schedules=[analysis_schedule, monthly.monthly_report_schedule],
        # Nothing fails silently: a failed run, and a day not analysed by its deadline (freshness.py).
        sensors=[signals_sensor, stop_watch_sensor, run_failure_notifier, *freshness.SENSORS],
        # Also for ad-hoc `dagster asset materialize` runs: one partition's analysis is a chain of
        # small pandas steps, and the multiprocess executor pays a Python start-up and a Dagster
        # import per step (benchmarks/executor.py: 8.7 s in-process against 117 s).
        executor=dg.in_process_executor,
        # No walk-forward evidence unless the caller's resources bring some (resources/modes.py does).
        resources={"check_catalog": check_catalog(assets, checks), "kelly_evidence": KellyEvidence(), **resources},
    )

"""signals_sensor after a backfill: a trading run for each partition with checked signals, a report
run for every other one (each day is valued and reported), none twice."""

from dataclasses import replace
from pathlib import Path
from typing import Any

import dagster as dg
import pandas as pd
import pytest

from makenaide_assets.analysis import signals as signals_module
from makenaide_assets.definitions import build_defs
from makenaide_assets.resources.ledger import TradingLedger
from makenaide_assets.trading.sensors import signals_sensor

# From the recorded sample with the rules analyst and paper broker: 12-06 and 12-07 each buy,
# 12-05 and 12-08 have no signals.
BACKFILL = ["2023-12-05", "2023-12-06", "2023-12-07", "2023-12-08"]
WITH_SIGNALS = ["2023-12-06", "2023-12-07"]


@pytest.fixture(scope="module")
def backfilled(tmp_path_factory: pytest.TempPathFactory) -> tuple[dg.Definitions, dg.DagsterInstance, Path]:
    var = tmp_path_factory.mktemp("var")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MAKENAIDE_VAR", str(var))
        patch.delenv("MAKENAIDE_MODE", raising=False)
        patch.delenv("OPENAI_API_KEY", raising=False)
        defs = build_defs()
    instance = dg.DagsterInstance.ephemeral()
    analysis = defs.resolve_job_def("analysis_job")
    # A backfill: every partition's analysis before any sensor tick.
    for partition in BACKFILL:
        assert analysis.execute_in_process(partition_key=partition, instance=instance).success
    return defs, instance, var


def tick(defs: dg.Definitions, instance: dg.DagsterInstance, cursor: str | None) -> dg.SensorResult:
    return signals_sensor.evaluate_tick(dg.build_sensor_context(instance=instance, cursor=cursor, definitions=defs))


def test_one_trading_run_per_partition_with_signals_and_never_twice(backfilled) -> None:
    defs, instance, var = backfilled
    first = tick(defs, instance, None)
    jobs = {r.partition_key: r.job_name for r in first.run_requests}
    assert jobs == {p: "trading_job" if p in WITH_SIGNALS else "report_job" for p in BACKFILL}
    assert len({r.run_key for r in first.run_requests}) == len(BACKFILL)
    assert {r.tags.get("makenaide/not_traded") for r in first.run_requests if r.job_name == "report_job"} == {
        "no signals"
    }
    again = tick(defs, instance, first.cursor)
    assert not again.run_requests
    assert "no new signals materialisations" in again.skip_message

    # Each requested run, then a trading re-run of one day, orders exactly once per signal; every
    # day, traded or not, has its equity recorded and a report.
    for request in first.run_requests:
        job = defs.resolve_job_def(request.job_name)
        assert job.execute_in_process(partition_key=request.partition_key, instance=instance).success
    trading = defs.resolve_job_def("trading_job")
    ledger = TradingLedger(url=f"sqlite:///{var / 'ledger.sqlite'}")
    orders_before = pd.concat([ledger.fills_for_partition(p) for p in WITH_SIGNALS])
    cash_before = ledger.cash_krw(None)
    assert trading.execute_in_process(partition_key=WITH_SIGNALS[0], instance=instance).success
    orders_after = pd.concat([ledger.fills_for_partition(p) for p in WITH_SIGNALS])
    assert len(orders_after) == len(orders_before) == 2 and ledger.cash_krw(None) == cash_before
    assert ledger.equity_history(None)["partition_key"].tolist() == BACKFILL
    reports = instance.fetch_materializations(dg.AssetKey("daily_report"), limit=10).records
    assert {r.partition_key for r in reports} == set(BACKFILL)
    assert reports[0].asset_materialization.metadata["can_i_trust_today"].value.startswith("YES")
    # The daemon finds every day handled: a tick from an empty cursor requests nothing again.
    assert not tick(defs, instance, None).run_requests


def test_a_day_without_signals_is_reported_not_traded(tmp_path: Path, backfilled) -> None:
    defs, _, _ = backfilled
    instance = dg.DagsterInstance.ephemeral()
    quiet = "2023-12-08"
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MAKENAIDE_VAR", str(tmp_path))
        assert defs.resolve_job_def("analysis_job").execute_in_process(partition_key=quiet, instance=instance).success
    [request] = tick(defs, instance, None).run_requests
    assert (request.partition_key, request.job_name) == (quiet, "report_job")
    assert request.tags["makenaide/not_traded"] == "no signals"


def test_signals_whose_blocking_checks_failed_are_not_traded(backfilled, monkeypatch: pytest.MonkeyPatch) -> None:
    """The day's analysis with a planner that overspends: the in-asset check fails, the value is
    stored anyway, and the sensor reads the failed evaluation from the run and does not trade it."""
    defs, instance, var = backfilled
    cursor = str(instance.fetch_materializations(dg.AssetKey("signals"), limit=1).records[0].storage_id)
    a_real_buy = pd.read_parquet(var / "storage" / "signals" / f"{WITH_SIGNALS[-1]}.parquet")
    planner = signals_module.plan_signals

    def overspending_planner(**kwargs: Any) -> Any:
        return replace(planner(**kwargs), orders=a_real_buy.assign(krw_amount=a_real_buy["krw_amount"] * 1e4))

    monkeypatch.setattr(signals_module, "plan_signals", overspending_planner)
    monkeypatch.setenv("MAKENAIDE_VAR", str(var))
    result = defs.resolve_job_def("analysis_job").execute_in_process(
        partition_key="2023-12-09", instance=instance, raise_on_error=False
    )
    assert not result.success and result.get_failed_step_keys() == {"signals"}
    failed = [e for e in result.get_asset_check_evaluations() if not e.passed]
    assert [(e.check_name, e.blocking) for e in failed] == [("signals_within_cash", True)]
    [materialization] = result.asset_materializations_for_node("signals")
    assert materialization.metadata["signal_count"].value == 1

    [decision] = tick(defs, instance, cursor).run_requests
    # Not traded; still valued and reported, and the report says why.
    assert (decision.partition_key, decision.job_name) == ("2023-12-09", "report_job")
    assert decision.tags["makenaide/not_traded"] == "blocking signals checks failed (signals_within_cash)"

"""The check report read back from a real instance's event log: latest outcome per check, in words."""

import dagster as dg
import pandas as pd
import pytest

from makenaide_assets.market.metadata import check_result, check_spec
from makenaide_assets.partitions import daily
from makenaide_assets.trading.check_report import (
    CHECK_REPORT_COLUMNS,
    NEVER_PLANNED,
    STEP_SKIPPED,
    check_outcomes,
    verdict,
)

DAY, OTHER_DAY = "2023-12-07", "2023-12-08"
PRICES_SANE = check_spec("prices", "prices_sane", "no high below low", blocking=True)
PRICES_STABLE = check_spec("prices", "prices_stable", "no market gone since the day before")
ORDERS_SANE = check_spec("orders", "orders_sane", "within cash", blocking=True)


def pipeline(bad_markets: list[str], gone: list[str]) -> list:
    @dg.asset(name="prices", partitions_def=daily, check_specs=[PRICES_SANE, PRICES_STABLE], dagster_type=pd.DataFrame)
    def prices() -> dg.MaterializeResult:
        return dg.MaterializeResult(
            value=pd.DataFrame({"market": ["KRW-BTC"]}),
            check_results=[check_result(PRICES_SANE, bad_markets), check_result(PRICES_STABLE, gone)],
        )

    @dg.asset(name="orders", partitions_def=daily, check_specs=[ORDERS_SANE], dagster_type=pd.DataFrame)
    def orders(prices: pd.DataFrame) -> dg.MaterializeResult:
        return dg.MaterializeResult(value=prices, check_results=[check_result(ORDERS_SANE)])

    @dg.asset_check(asset="orders", partitions_def=daily)
    def orders_audited() -> dg.AssetCheckResult:
        return dg.AssetCheckResult(passed=True)

    return [prices, orders, orders_audited]


CATALOG = {
    dg.AssetCheckKey(dg.AssetKey("prices"), "prices_sane"),
    dg.AssetCheckKey(dg.AssetKey("prices"), "prices_stable"),
    dg.AssetCheckKey(dg.AssetKey("orders"), "orders_sane"),
    dg.AssetCheckKey(dg.AssetKey("orders"), "orders_audited"),
}


def run(instance: dg.DagsterInstance, partition: str, bad: list[str], gone: list[str], selection: str = "*") -> str:
    result = dg.materialize(
        pipeline(bad, gone), partition_key=partition, instance=instance, selection=selection, raise_on_error=False
    )
    return result.run_id[:8]


def outcomes(instance: dg.DagsterInstance, partition: str = DAY) -> dict[str, tuple[str, ...]]:
    report = check_outcomes(instance, CATALOG, partition)
    assert list(report.columns) == CHECK_REPORT_COLUMNS
    # A person reads phrases, never a bare severity: no "ERROR" or "WARN" anywhere in the report.
    assert not report.map(lambda cell: cell in ("ERROR", "WARN")).any().any()
    return {row.check: (row.outcome, row.blocks_trading, row.found, row.run_id) for row in report.itertuples()}


@pytest.fixture
def instance() -> dg.DagsterInstance:
    return dg.DagsterInstance.ephemeral()


def test_a_blocking_failure_names_its_markets_and_the_skipped_check_says_so(instance: dg.DagsterInstance) -> None:
    run_id = run(instance, DAY, bad=["KRW-XRP", "KRW-ADA"], gone=["KRW-DOT"], selection="prices*")
    report = outcomes(instance)
    assert report["prices_sane"] == (
        "failed (blocks trading)", "yes", "markets=KRW-ADA, KRW-XRP; count=2", run_id)  # fmt: skip
    assert report["prices_stable"] == ("failed (warning)", "no", "markets=KRW-DOT; count=1", run_id)
    assert report["orders_sane"] == ("did not run", "", STEP_SKIPPED, run_id)
    assert report["orders_audited"][:3] == ("did not run", "", STEP_SKIPPED)
    assert verdict(check_outcomes(instance, CATALOG, DAY)) == "NO: 1 error-severity check(s) failed: prices_sane"


def test_the_latest_evaluation_stands_and_other_days_do_not_count(instance: dg.DagsterInstance) -> None:
    run(instance, DAY, bad=["KRW-XRP"], gone=[])
    run(instance, OTHER_DAY, bad=[], gone=[])
    assert outcomes(instance)["prices_sane"][0] == "failed (blocks trading)"  # D's own run, not D+1's
    fixed = run(instance, DAY, bad=[], gone=[])
    report = outcomes(instance)
    # Blocking checks that passed read "passed" (their ERROR severity is no part of the report).
    assert {check: (row[0], row[2]) for check, row in report.items()} == dict.fromkeys(report, ("passed", ""))
    assert (report["prices_sane"][1], report["prices_stable"][1]) == ("yes", "no")
    assert report["prices_sane"][3] == fixed
    assert verdict(check_outcomes(instance, CATALOG, DAY)) == "YES: all 4 checks passed"


def test_checks_never_planned_for_the_day_are_not_evaluated(instance: dg.DagsterInstance) -> None:
    run(instance, OTHER_DAY, bad=[], gone=[])
    run(instance, DAY, bad=[], gone=["KRW-DOT"], selection="prices")
    report = outcomes(instance)
    assert report["orders_sane"] == ("did not run", "", NEVER_PLANNED, "")
    assert report["prices_stable"][:2] == ("failed (warning)", "no")
    assert verdict(check_outcomes(instance, CATALOG, DAY)) == (
        "CAUTION: 2 check(s) did not run for this day: orders_audited, orders_sane")  # fmt: skip


@pytest.mark.parametrize(
    ("outcomes", "expected"),
    [
        (["passed", "passed"], "YES: all 2 checks passed"),
        (["passed", "failed (warning)"], "YES, with 1 warning(s): c1"),
        (["did not run", "failed (warning)"], "CAUTION: 1 check(s) did not run for this day: c0"),
        (["did not run", "failed (blocks trading)"], "NO: 1 error-severity check(s) failed: c1"),
        (["failed (error)", "passed"], "NO: 1 error-severity check(s) failed: c0"),
    ],
)
def test_verdict(outcomes: list[str], expected: str) -> None:
    report = pd.DataFrame({"check": [f"c{i}" for i in range(len(outcomes))], "outcome": outcomes})
    assert verdict(report) == expected

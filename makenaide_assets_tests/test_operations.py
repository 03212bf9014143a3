"""The operator's day: a missing day is found and told, network steps retry, hung runs end, the
catalog reads.

One analysis run of the recorded sample (module fixture) serves the checks that read a real day;
the rest build only what they look at.
"""

import json
import math
import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import dagster as dg
import pandas as pd
import pytest
import yaml

from makenaide_assets.analysis import freshness
from makenaide_assets.definitions import build_defs
from makenaide_assets.jobs import ANALYSIS_ASSETS
from makenaide_assets.market.retry import NETWORK_RETRY, permanent, retried_unless_permanent
from makenaide_assets.market.step import market
from makenaide_assets.partitions import daily
from makenaide_assets.resources.blacklist import Blacklist
from makenaide_assets.resources.io_manager import ParquetIOManager
from makenaide_assets.resources.market_data import ReplayMarketData, ReplayOutOfRange
from makenaide_assets.resources.notifier import Notifier
from makenaide_assets.resources.thresholds import UniverseThresholds
from makenaide_assets.resources.upbit_http import UpbitBanned, UpbitRequestError
from makenaide_assets.strategy.candles import MalformedMarketData

REPO = Path(__file__).resolve().parents[1]
DAY = "2023-12-06"  # analysed by the fixture
NEXT = "2023-12-07"  # never analysed
ON_TIME = [f"{asset}_on_time" for asset in freshness.FRESH_ASSETS]


@pytest.fixture(scope="module")
def analysed(
    tmp_path_factory: pytest.TempPathFactory,
) -> tuple[dg.Definitions, dg.DagsterInstance, dg.ExecuteInProcessResult, Path]:
    """DAY's analysis_job run, with the on-time checks at its end."""
    var = tmp_path_factory.mktemp("var")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MAKENAIDE_VAR", str(var))
        patch.delenv("MAKENAIDE_MODE", raising=False)
        patch.delenv("OPENAI_API_KEY", raising=False)
        defs = build_defs()
        instance = dg.DagsterInstance.ephemeral()
        result = defs.resolve_job_def("analysis_job").execute_in_process(partition_key=DAY, instance=instance)
    assert result.success
    return defs, instance, result, var


def at(monkeypatch: pytest.MonkeyPatch, moment: datetime) -> None:
    """Freezes the clock the deadline sensor reads."""
    monkeypatch.setattr(freshness, "now", lambda: moment)


def materialised(instance: dg.DagsterInstance, partition: str) -> None:
    """The four assets of `partition` recorded, as a run would have."""
    for asset in freshness.FRESH_ASSETS:
        instance.report_runless_asset_event(dg.AssetMaterialization(asset, partition=partition))


def deadline_tick(instance: dg.DagsterInstance, cursor: str | None = None) -> dg.SensorResult:
    return freshness.analysis_deadline_sensor.evaluate_tick(dg.build_sensor_context(instance=instance, cursor=cursor))


def as_the_daemon_does(instance: dg.DagsterInstance, tick: Any) -> None:
    """The sensor daemon stores a tick's asset events as runless events."""
    for event in tick.asset_events:
        instance.report_runless_asset_event(event)


@dg.asset(partitions_def=daily)
def other_asset_of_the_day() -> None:
    """A stand-in for the part of a day's run that is not one of the four watched assets."""


def run_on_time_checks(instance: dg.DagsterInstance, partition: str) -> dg.ExecuteInProcessResult:
    """A run holding the on-time checks for `partition` (Dagster types a run's partition from a
    selected asset, so the run materialises a stand-in of the day besides the checks)."""
    watched = [dg.AssetSpec(asset, partitions_def=daily) for asset in freshness.FRESH_ASSETS]
    return dg.materialize(
        [*watched, other_asset_of_the_day, freshness.analysis_on_time],
        selection=dg.AssetSelection.assets(other_asset_of_the_day)
        | dg.AssetSelection.checks(freshness.analysis_on_time),
        partition_key=partition,
        instance=instance,
    )


# ---- freshness ------------------------------------------------------------------------------


def test_the_day_due_is_the_one_whose_0935_kst_deadline_last_passed() -> None:
    assert freshness.due_at(datetime(2023, 12, 7, 0, 34, tzinfo=UTC)) == "2023-12-05"
    assert freshness.due_at(datetime(2023, 12, 7, 0, 35, tzinfo=UTC)) == "2023-12-06"
    assert freshness.due_at(datetime(2023, 12, 7, 23, 59, tzinfo=UTC)) == "2023-12-06"
    assert freshness.deadline_of("2023-12-06") == datetime(2023, 12, 7, 0, 35, tzinfo=UTC)


def test_on_time_checks_run_at_the_end_of_the_analysis_and_pass_for_the_day(analysed) -> None:
    defs, _, result, _ = analysed
    job = defs.resolve_job_def("analysis_job")
    assert "analysis_on_time" in {node.name for node in job.nodes}
    evaluations = {e.check_name: e for e in result.get_asset_check_evaluations() if e.check_name in ON_TIME}
    assert set(evaluations) == set(ON_TIME)
    assert all(e.passed and e.partition == DAY for e in evaluations.values())
    # In the catalog the daily report reads, so a day whose checks did not run says so.
    catalog = set(defs.resources["check_catalog"].checks)
    assert {f"{asset}:{asset}_on_time" for asset in freshness.FRESH_ASSETS} <= catalog


def test_on_time_checks_fail_for_a_missing_partition_and_pass_for_a_present_one(analysed) -> None:
    _, instance, _, _ = analysed
    present = run_on_time_checks(instance, DAY)
    assert {e.check_name: e.passed for e in present.get_asset_check_evaluations()} == dict.fromkeys(ON_TIME, True)
    missing = run_on_time_checks(instance, NEXT)
    assert missing.success  # the checks warn the operator; they stop nothing
    evaluations = missing.get_asset_check_evaluations()
    assert {e.check_name: e.passed for e in evaluations} == dict.fromkeys(ON_TIME, False)
    assert {e.severity for e in evaluations} == {dg.AssetCheckSeverity.ERROR}
    assert all(e.description and f"analysis for {NEXT} missing at 09:35 KST" in e.description for e in evaluations)


def test_the_deadline_sensor_evaluates_each_day_once_after_0935_kst(monkeypatch: pytest.MonkeyPatch) -> None:
    instance = dg.DagsterInstance.ephemeral()
    materialised(instance, DAY)
    at(monkeypatch, datetime(2023, 12, 7, 0, 34, tzinfo=UTC))  # a minute before DAY's deadline
    early = deadline_tick(instance, cursor="2023-12-05")
    assert not early.asset_events and "2023-12-05 already evaluated" in (early.skip_message or "")

    at(monkeypatch, datetime(2023, 12, 7, 0, 36, tzinfo=UTC))
    arrived = deadline_tick(instance, cursor=early.cursor)
    assert arrived.cursor == DAY and not arrived.run_requests  # evaluated by the daemon, no run
    assert {(e.check_name, e.partition, e.passed) for e in arrived.asset_events} == {(c, DAY, True) for c in ON_TIME}
    assert not deadline_tick(instance, cursor=arrived.cursor).asset_events  # once per deadline

    at(monkeypatch, datetime(2023, 12, 8, 0, 36, tzinfo=UTC))  # NEXT was never analysed
    late = deadline_tick(instance, cursor=arrived.cursor)
    assert {(e.check_name, e.partition, e.passed) for e in late.asset_events} == {(c, NEXT, False) for c in ON_TIME}
    assert late.cursor == NEXT and "missing daily_candles, daily_indicators, candidates, signals" in late.skip_message


def test_no_day_is_due_after_a_demo_replay_ends(monkeypatch: pytest.MonkeyPatch) -> None:
    at(monkeypatch, datetime(2031, 1, 2, 1, 0, tzinfo=UTC))
    tick = deadline_tick(dg.DagsterInstance.ephemeral())
    assert not tick.asset_events and "2031-01-01 is not a partition" in (tick.skip_message or "")


@pytest.fixture
def webhook(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    """A loopback Slack webhook; the texts it received."""
    received: list[str] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            received.append(json.loads(self.rfile.read(int(self.headers["Content-Length"])))["text"])
            self.send_response(200)
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    monkeypatch.setenv("MAKENAIDE_SLACK_WEBHOOK_URL", f"http://127.0.0.1:{server.server_port}/hooks/token")
    yield received
    server.shutdown()


def notifier_tick(instance: dg.DagsterInstance, cursor: str | None) -> dg.SensorResult:
    context = dg.build_sensor_context(instance=instance, cursor=cursor, resources={"notifier": Notifier(timeout_s=5)})
    return freshness.freshness_notifier.evaluate_tick(context)


def test_every_failed_on_time_evaluation_is_told_once(monkeypatch: pytest.MonkeyPatch, webhook: list[str]) -> None:
    instance = dg.DagsterInstance.ephemeral()
    materialised(instance, DAY)
    at(monkeypatch, datetime(2023, 12, 7, 0, 40, tzinfo=UTC))
    on_time = deadline_tick(instance)
    as_the_daemon_does(instance, on_time)
    at(monkeypatch, datetime(2023, 12, 8, 0, 40, tzinfo=UTC))
    as_the_daemon_does(instance, deadline_tick(instance, cursor=on_time.cursor))

    first = notifier_tick(instance, None)
    # Four failed evaluations (NEXT's), four messages; DAY's passes say nothing.
    assert sorted(webhook) == sorted(
        f"Makenaide: analysis for {NEXT} missing at 09:35 KST: {asset} has no materialisation for {NEXT} "
        f"({asset}_on_time)"
        for asset in freshness.FRESH_ASSETS
    )
    assert "4 failed on-time check(s) notified" in (first.skip_message or "")
    again = notifier_tick(instance, first.cursor)
    assert len(webhook) == 4 and again.cursor == first.cursor  # told once

    # A failure found anywhere else — here a run of the checks — is told too; other checks are not.
    run_on_time_checks(instance, "2023-12-08")
    instance.report_runless_asset_event(
        dg.AssetCheckEvaluation(asset_key=dg.AssetKey("signals"), check_name="signals_within_cash", passed=False)
    )
    notifier_tick(instance, again.cursor)
    assert len(webhook) == 8 and all("analysis for 2023-12-08 missing" in text for text in webhook[4:])


def test_the_freshness_sensors_are_in_the_definitions_and_run_by_default() -> None:
    defs = build_defs()
    for name in ("analysis_deadline_sensor", "freshness_notifier"):
        assert defs.resolve_sensor_def(name).default_status == dg.DefaultSensorStatus.RUNNING


# ---- retries --------------------------------------------------------------------------------


def test_network_steps_retry_twice_with_exponential_backoff_and_money_steps_never() -> None:
    defs = build_defs()
    assert (NETWORK_RETRY.max_retries, NETWORK_RETRY.backoff) == (2, dg.Backoff.EXPONENTIAL)
    policies = {}
    for name in ("analysis_job", "trading_job", "report_job"):
        job = defs.resolve_job_def(name)
        assert job.op_retry_policy is None
        policies |= {node.name: node.definition.retry_policy for node in job.nodes}
    assert {step for step, policy in policies.items() if policy is not None} == {"market", "verdicts_and_timing"}
    assert {policies[step] for step in ("market", "verdicts_and_timing")} == {NETWORK_RETRY}
    assert policies["signals"] is None and policies["fills"] is None


@pytest.mark.parametrize(
    ("error", "is_permanent"),
    [
        (ConnectionError("reset by peer"), False),
        (TimeoutError("read timed out"), False),
        (UpbitRequestError("5xx", path="/v1/candles/days", subject="KRW-BTC", status=503, attempts=5), False),
        (UpbitRequestError("429", path="/v1/ticker", subject="KRW-BTC", status=429, attempts=5), False),
        (UpbitRequestError("no answer", path="/v1/ticker", subject="KRW-BTC", status=None, attempts=5), False),
        (UpbitRequestError("400", path="/v1/ticker", subject="KRW-XYZ", status=400, attempts=1), True),
        (UpbitBanned("418", path="/v1/ticker", subject="KRW-BTC", status=418, attempts=1), True),
        (MalformedMarketData("trade_price is missing"), True),
        (ReplayOutOfRange("2031-01-01 is after the recording"), True),
    ],
)
def test_what_a_retry_cannot_heal_fails_at_once(error: Exception, is_permanent: bool) -> None:
    assert permanent(error) is is_permanent
    with pytest.raises(dg.Failure if is_permanent else type(error)) as raised, retried_unless_permanent():
        raise error
    if is_permanent:
        assert raised.value.allow_retries is False and str(error) in (raised.value.description or "")


class FlakyMarkets(ReplayMarketData):
    """The market list fails `failures` times with `error`, then answers (counted across attempts)."""

    error: str = "connection"
    failures: int = 1

    def markets(self, as_of: pd.Timestamp) -> pd.DataFrame:
        calls = _CALLS.setdefault(self.error, [])
        calls.append(1)
        if len(calls) <= self.failures:
            raise ConnectionError("connection reset") if self.error == "connection" else MalformedMarketData("no JSON")
        return super().markets(as_of)


_CALLS: dict[str, list[int]] = {}


def run_market_step(sample_dir: Path, tmp_path: Path, market_data: ReplayMarketData) -> dg.ExecuteInProcessResult:
    return dg.materialize(
        [market],
        selection=["tickers"],
        partition_key=DAY,
        resources={
            "market_data": market_data,
            "universe_thresholds": UniverseThresholds(min_months=6),
            "io_manager": ParquetIOManager(base_path=str(tmp_path)),
            "blacklist": Blacklist(),
        },
        raise_on_error=False,
    )


def test_a_dropped_connection_is_retried_and_a_malformed_answer_is_not(
    sample_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The waits are Dagster's (30 s, 90 s): skipped here, the attempts are what is tested.
    monkeypatch.setattr(dg.RetryPolicy, "calculate_delay", lambda self, attempt: 0)
    _CALLS.clear()
    flaky = run_market_step(sample_dir, tmp_path / "a", FlakyMarkets(replay_dir=str(sample_dir)))
    assert flaky.success
    assert [e.event_type_value for e in flaky.all_events].count("STEP_RESTARTED") == 1

    broken = run_market_step(sample_dir, tmp_path / "b", FlakyMarkets(replay_dir=str(sample_dir), error="malformed"))
    assert not broken.success
    types = [e.event_type_value for e in broken.all_events]
    assert "STEP_UP_FOR_RETRY" not in types and types.count("STEP_FAILURE") == 1
    assert len(_CALLS["malformed"]) == 1


# ---- hung runs ------------------------------------------------------------------------------


def test_analysis_and_trading_runs_end_after_30_minutes() -> None:
    defs = build_defs()
    for name in ("analysis_job", "trading_job", "report_job"):
        assert defs.resolve_job_def(name).tags["dagster/max_runtime"] == "1800"


@pytest.mark.parametrize("path", ["dagster.yaml", "deploy/production/dagster.yaml"])
def test_both_instances_monitor_runs(path: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Each file, loaded by Dagster itself (its storage swapped for a local one), runs the monitoring
    daemon that enforces `dagster/max_runtime`."""
    config = yaml.safe_load((REPO / path).read_text())
    assert config["run_monitoring"]["enabled"] is True
    if "storage" in config:  # production's PostgreSQL; the local file's SQLite paths are relative to tmp_path
        config["storage"] = {"sqlite": {"base_dir": str(tmp_path / "storage")}}
    config["compute_logs"] = {
        "module": "dagster._core.storage.local_compute_log_manager",
        "class": "LocalComputeLogManager",
        "config": {"base_dir": str(tmp_path / "logs")},
    }
    config.pop("local_artifact_storage", None)
    home = tmp_path / "home"
    home.mkdir()
    (home / "dagster.yaml").write_text(yaml.safe_dump(config))
    monkeypatch.chdir(tmp_path)
    with dg.DagsterInstance.from_config(str(home)) as instance:
        assert instance.run_monitoring_enabled
        assert "MONITORING" in instance.get_required_daemon_types()


# ---- the catalog ----------------------------------------------------------------------------


def _floats(value: Any) -> Iterator[float]:
    if isinstance(value, float):
        yield value
    elif isinstance(value, dict):
        for item in value.values():
            yield from _floats(item)
    elif isinstance(value, list):
        for item in value:
            yield from _floats(item)


@pytest.mark.parametrize("asset", ANALYSIS_ASSETS)
def test_every_analysis_asset_has_a_row_count_and_a_column_schema(analysed, asset: str) -> None:
    defs, instance, _, var = analysed
    key = dg.AssetKey(asset)
    [record] = instance.fetch_materializations(key, limit=1).records
    metadata = record.asset_materialization.metadata
    stored = pd.read_parquet(var / "storage" / asset / f"{DAY}.parquet")
    assert metadata["dagster/row_count"] == dg.MetadataValue.int(len(stored))
    schema = metadata["dagster/column_schema"].value
    assert isinstance(schema, dg.TableSchema) and schema.columns
    # Each declared column is in the value, typed and described; the definition shows the same.
    assert {c.name for c in schema.columns} <= set(stored.columns)
    assert all(c.type != "" and c.description for c in schema.columns)
    definition = defs.resolve_assets_def(key).metadata_by_key[key]
    declared = definition["dagster/column_schema"]
    assert getattr(declared, "value", declared) == schema
    assert "row_count" not in metadata and "contract" not in definition
    # Numbers a person reads, not float noise: KRW and ratios to 2 (Kelly's fractions 4) decimals,
    # GPT's dollars to 8 (a day costs a fraction of a cent).
    noisy = [
        (name, number)
        for name, value in metadata.items()
        if isinstance(value, (dg.FloatMetadataValue, dg.JsonMetadataValue))
        for number in _floats(value.value)
        if not math.isnan(number) and round(number, 8 if name.endswith("_usd") else 4) != number
    ]
    assert not noisy

"""Production, end to end: dagster-daemon + dagster-webserver on PostgreSQL, assets in S3, the ledger in
PostgreSQL (servers from scripts/services; see servers.py for the stack and the scenario it runs).

The scenario: analysis_schedule's evaluation for the ticks of 2023-12-05 and 2023-12-06 is queued
through the webserver and run by the daemon; signals_sensor then trades the day with signals and
only values and reports the one without. Results are read back from the webserver's GraphQL API, from the instance
(DagsterInstance on the same dagster.yaml), from S3 and from the ledger.
"""

import dagster as dg
import pandas as pd
import pytest

from makenaide_assets.jobs import ANALYSIS_ASSETS, TRADING_ASSETS
from makenaide_assets.resources.ledger import TradingLedger

pytest_plugins = ["makenaide_assets_tests.e2e.servers"]
pytestmark = pytest.mark.e2e

SENSOR = """
query($selector: SensorSelector!) { sensorOrError(sensorSelector: $selector) { __typename ... on Sensor {
  sensorState { status ticks(limit: 100) { status skipReason runIds logEvents { events { message } } } } } } }"""
SIGNAL_COUNTS = """
query($partitions: [String!]) { assetOrError(assetKey: {path: ["signals"]}) { ... on Asset {
  assetMaterializations(partitions: $partitions) { partition runId
    metadataEntries { label ... on IntMetadataEntry { intValue } } } } } }"""
RUN_EVENTS = """
query($id: ID!) { runOrError(runId: $id) { ... on Run { eventConnection(afterCursor: null) {
  events { __typename } } } } }"""
CHECKS = """
query($key: AssetKeyInput!) { assetNodes(assetKeys: [$key]) { assetChecksOrError { ... on AssetChecks {
  checks { name blocking executionForLatestMaterialization { status runId } } } } } }"""


def _tags(run: dict) -> dict[str, str]:
    return {t["key"]: t["value"] for t in run["tags"]}


def _signal_counts(stack, partitions: list[str]) -> dict[str, int]:
    records = stack.query(SIGNAL_COUNTS, {"partitions": partitions})["assetOrError"]["assetMaterializations"]
    return {
        r["partition"]: next(e["intValue"] for e in r["metadataEntries"] if e["label"] == "signal_count")
        for r in records
    }


def test_schedule_tick_runs_analysis_through_the_daemon_queue(production_stack, demo_scenario) -> None:
    for partition, request in demo_scenario.schedule_requests.items():
        # The schedule's own code chose job and partition for the tick at D+1 00:05 UTC.
        assert request["jobName"] == "analysis_job"
        assert _tags(request)["dagster/partition"] == partition
        run = demo_scenario.analysis_runs[partition]
        assert run["status"] == "SUCCESS"
        assert _tags(run)["dagster/partition"] == partition
        # QueuedRunCoordinator: the webserver only enqueued it; dagster-daemon dequeued it (STARTING)
        # and launched it.
        events = production_stack.query(RUN_EVENTS, {"id": run["runId"]})["runOrError"]["eventConnection"]["events"]
        kinds = [e["__typename"] for e in events]
        assert kinds.index("RunEnqueuedEvent") < kinds.index("RunStartingEvent") < kinds.index("RunStartEvent")
        assert "RunSuccessEvent" in kinds


def test_signals_sensor_trades_the_day_with_signals_and_reports_the_other(production_stack, demo_scenario) -> None:
    quiet, signal = demo_scenario.quiet_partition, demo_scenario.signal_partition
    counts = _signal_counts(production_stack, [quiet, signal])
    assert counts[quiet] == 0, counts
    assert counts[signal] > 0, counts

    trading = demo_scenario.trading_run
    assert trading["status"] == "SUCCESS"
    assert _tags(trading)["dagster/sensor_name"] == "signals_sensor"
    assert _tags(trading)["dagster/partition"] == signal
    assert _tags(trading)["makenaide/signal_count"] == str(counts[signal])
    assert _tags(trading)["makenaide/trading"] == "true"  # the tag the run queue limits to one at a time
    partitions = [_tags(r).get("dagster/partition") for r in production_stack.runs_of("trading_job")]
    assert quiet not in partitions
    # The quiet day is valued and reported, never traded.
    reported = [_tags(r) for r in production_stack.runs_of("report_job")]
    assert [(t.get("dagster/partition"), t.get("makenaide/not_traded")) for t in reported] == [(quiet, "no signals")]

    selector = {
        "repositoryLocationName": "makenaide_assets.definitions",
        "repositoryName": "__repository__",
        "sensorName": "signals_sensor",
    }
    state = production_stack.query(SENSOR, {"selector": selector})["sensorOrError"]["sensorState"]
    assert state["status"] == "RUNNING"
    said = [t["skipReason"] or "" for t in state["ticks"]]
    said += [e["message"] for t in state["ticks"] for e in t["logEvents"]["events"]]
    assert any(f"{quiet}: 0 signals → report_job (no signals)" in line for line in said), said
    assert [t for t in state["ticks"] if trading["runId"] in t["runIds"]], "no sensor tick names the trading run"


def test_results_read_back_from_instance_s3_and_ledger(production_stack, demo_scenario, monkeypatch) -> None:
    stack, signal = production_stack, demo_scenario.signal_partition
    for name, value in stack.env.items():
        monkeypatch.setenv(name, value)

    # The instance the daemon and webserver share, opened from the same dagster.yaml.
    instance = dg.DagsterInstance.from_config(str(stack.home))
    try:
        assert type(instance.run_storage).__name__ == "PostgresRunStorage"
        assert type(instance.run_coordinator).__name__ == "QueuedRunCoordinator"
        for key in ["tickers", "daily_indicators", "signals", "fills", "portfolio", "daily_report"]:
            records = instance.fetch_materializations(
                dg.AssetRecordsFilter(asset_key=dg.AssetKey(key), asset_partitions=[signal]), limit=5
            ).records
            assert records, f"no materialisation of {key} for {signal} in the instance"
    finally:
        instance.dispose()

    # Blocking checks on signals ran and passed in the analysis run of that day.
    checks = stack.query(CHECKS, {"key": {"path": ["signals"]}})["assetNodes"][0]["assetChecksOrError"]["checks"]
    assert checks and all(c["executionForLatestMaterialization"]["status"] == "SUCCEEDED" for c in checks), checks

    # Asset values at <storage>/<asset_key>/<partition_key>.parquet in the bucket.
    from makenaide_assets_tests.e2e.servers import S3Server

    s3 = S3Server(stack.env["AWS_ENDPOINT_URL"])
    keys = set(s3.keys(stack.bucket, "makenaide/"))
    for asset in ANALYSIS_ASSETS + TRADING_ASSETS:
        assert f"makenaide/{asset}/{signal}.parquet" in keys, sorted(keys)
    options = {"key": "testing", "secret": "testing", "client_kwargs": {"endpoint_url": s3.endpoint}}
    fills = pd.read_parquet(f"s3://{stack.bucket}/makenaide/fills/{signal}.parquet", storage_options=options)

    # ... and they agree with the trading ledger in PostgreSQL.
    ledger = TradingLedger(url=stack.ledger_url.render_as_string(hide_password=False))
    booked = ledger.fills_for_partition(signal)
    assert len(booked) > 0 and (booked["status"] == "done").any(), booked
    assert sorted(fills["identifier"]) == sorted(booked["identifier"])
    ledger.engine().dispose()


def test_queue_never_runs_two_trading_runs_at_once(production_stack, demo_scenario) -> None:
    """Two trading runs submitted together (an operator re-running both days) run one after the other,
    and re-running the traded day books no second order."""
    stack, signal = production_stack, demo_scenario.signal_partition
    ledger = TradingLedger(url=stack.ledger_url.render_as_string(hide_password=False))
    orders_before = ledger.fills_for_partition(signal)["identifier"].tolist()

    run_ids = [
        stack.launch("trading_job", {"dagster/partition": partition, "makenaide/trading": "true"})
        for partition in (demo_scenario.quiet_partition, signal)
    ]
    first, second = sorted((stack.wait_finished(r, timeout=240) for r in run_ids), key=lambda r: r["startTime"])
    assert first["endTime"] <= second["startTime"], (first, second)

    assert ledger.fills_for_partition(signal)["identifier"].tolist() == orders_before
    ledger.engine().dispose()

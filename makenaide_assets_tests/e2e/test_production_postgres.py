"""deploy/production/dagster.yaml as a DagsterInstance on the real PostgreSQL server (no daemon needed).

The daemon + webserver test (test_production_e2e.py) drives the same file end to end; this one
pins what the file configures and that runs and events outlive the process that wrote them.
"""

import importlib
import shutil
from pathlib import Path

import dagster as dg
import pytest
import sqlalchemy as sa
import yaml
from dagster._core.storage.event_log.sqlite.sqlite_event_log import SqliteEventLogStorage

from makenaide_assets.jobs import trading_job

pytest_plugins = ["makenaide_assets_tests.e2e.servers"]
pytestmark = pytest.mark.e2e

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def production_home(pg_database: sa.URL, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    home = tmp_path / "dagster_home"
    home.mkdir()
    shutil.copy(REPO / "deploy" / "production" / "dagster.yaml", home / "dagster.yaml")
    env = {
        "DAGSTER_HOME": str(home),
        "DAGSTER_PG_HOST": str(pg_database.host),
        "DAGSTER_PG_PORT": str(pg_database.port),
        "DAGSTER_PG_USER": str(pg_database.username),
        "DAGSTER_PG_PASSWORD": str(pg_database.password),
        "DAGSTER_PG_DB": str(pg_database.database),
        "DAGSTER_COMPUTE_LOGS_DIR": str(tmp_path / "compute_logs"),
    }
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return home


def test_production_instance_uses_postgres_and_the_run_queue(production_home: Path) -> None:
    instance = dg.DagsterInstance.get()  # DAGSTER_HOME → the copied production dagster.yaml
    try:
        assert [type(s).__name__ for s in (instance.run_storage, instance.event_log_storage)] == [
            "PostgresRunStorage",
            "PostgresEventLogStorage",
        ]
        assert type(instance.schedule_storage).__name__ == "PostgresScheduleStorage"
        coordinator = instance.run_coordinator
        assert type(coordinator).__name__ == "QueuedRunCoordinator"
        limits = coordinator.inst_data.config_dict["tag_concurrency_limits"]  # type: ignore[union-attr]
        # trading_job carries the tag the queue allows once at a time.
        assert {"key": "makenaide/trading", "limit": 1} in limits
        assert trading_job.tags["makenaide/trading"] == "true"
        assert instance.run_monitoring_enabled
        assert type(instance.compute_log_manager).__name__ == "LocalComputeLogManager"
    finally:
        instance.dispose()


def test_runs_and_events_persist_in_postgres(production_home: Path) -> None:
    @dg.asset(partitions_def=dg.DailyPartitionsDefinition(start_date="2023-12-01"))
    def probe(context: dg.AssetExecutionContext) -> dg.MaterializeResult:
        return dg.MaterializeResult(metadata={"partition": context.partition_key})

    writer = dg.DagsterInstance.get()
    result = dg.materialize([probe], instance=writer, partition_key="2023-12-06")
    writer.dispose()
    assert result.success

    reader = dg.DagsterInstance.from_config(str(production_home))  # a new process would see the same
    try:
        run = reader.get_run_by_id(result.run_id)
        assert run is not None and run.is_success
        records = reader.fetch_materializations(dg.AssetKey("probe"), limit=1).records
        assert records[0].partition_key == "2023-12-06"
    finally:
        reader.dispose()
    # Step output was captured where DAGSTER_COMPUTE_LOGS_DIR points.
    assert list((production_home.parent / "compute_logs").rglob("*")), "no compute logs captured"


def test_the_embedded_default_stays_sqlite() -> None:
    local = yaml.safe_load((REPO / "dagster.yaml").read_text())
    # Dagster's SQLite run and schedule storage, and its SQLite event log (makenaide_assets/instance.py).
    assert local["run_storage"]["class"] == "SqliteRunStorage"
    assert local["schedule_storage"]["class"] == "SqliteScheduleStorage"
    storage = local["event_log_storage"]
    module = importlib.import_module(storage["module"])
    assert issubclass(getattr(module, storage["class"]), SqliteEventLogStorage)

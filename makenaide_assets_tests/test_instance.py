"""The local instance (dagster.yaml) stores and reads what Dagster's own SQLite storage does."""

import shutil
from pathlib import Path

import dagster as dg
import pytest

from makenaide_assets.instance import LocalEventLogStorage

REPO = Path(__file__).resolve().parents[1]
days = dg.DailyPartitionsDefinition(start_date="2023-12-01", end_date="2023-12-04")


@dg.asset(partitions_def=days, check_specs=[dg.AssetCheckSpec("positive", asset="prices")])
def prices(context: dg.AssetExecutionContext) -> dg.MaterializeResult:
    value = int(context.partition_key[-2:])
    return dg.MaterializeResult(
        metadata={"value": value}, check_results=[dg.AssetCheckResult(passed=value > 0, metadata={"value": value})]
    )


@dg.asset(partitions_def=days, deps=[prices])
def report(context: dg.AssetExecutionContext) -> None:
    context.log.info(f"report {context.partition_key}")


job = dg.define_asset_job("prices_job", selection=[prices, report])
defs = dg.Definitions(assets=[prices, report], jobs=[job])


def home_with(tmp_path: Path, config: str | None) -> Path:
    home = tmp_path / "home"
    home.mkdir()
    if config is not None:
        shutil.copy(REPO / config, home / "dagster.yaml")
    return home


def run_two_days(home: Path) -> list[tuple[str, str | None, str]]:
    """Two partitions, then everything a person sees of them, in a form both storages can be compared by."""
    seen: list[tuple[str, str | None, str]] = []
    with dg.DagsterInstance.from_config(str(home)) as instance:
        for day in ("2023-12-01", "2023-12-02"):
            result = defs.resolve_job_def("prices_job").execute_in_process(instance=instance, partition_key=day)
            assert result.success
            seen += [
                (str(e.dagster_event_type), e.step_key, e.message.split(" in ")[0])
                for e in instance.all_logs(result.run_id)
                if e.dagster_event_type is not None and "ENGINE" not in str(e.dagster_event_type)
            ]
        records = instance.fetch_materializations(dg.AssetKey("prices"), limit=10).records
        seen += [
            ("materialization", r.partition_key, str(r.asset_materialization.metadata["value"].value)) for r in records
        ]
        check = instance.event_log_storage.get_latest_asset_check_execution_by_key(
            [dg.AssetCheckKey(dg.AssetKey("prices"), "positive")]
        )
        seen += [("check", str(k.name), str(v.status)) for k, v in check.items()]
        status = instance.get_status_by_partition(dg.AssetKey("report"), days.get_partition_keys(), days)
        seen += [("report", key, str(value)) for key, value in sorted((status or {}).items())]
    return seen


def test_the_local_instance_uses_the_engine_keeping_event_log(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)  # dagster.yaml's paths are relative to where commands run
    with dg.DagsterInstance.from_config(str(home_with(tmp_path, "dagster.yaml"))) as instance:
        assert isinstance(instance.event_log_storage, LocalEventLogStorage)
        result = defs.resolve_job_def("prices_job").execute_in_process(instance=instance, partition_key="2023-12-03")
        assert result.success
        storage = instance.event_log_storage
        # One engine per file used (the run's shard and the cross-run index), not one per event.
        assert sorted(storage._engines) == sorted(["index", result.run_id])
        assert len(instance.all_logs(result.run_id)) > 10
    assert (tmp_path / "var" / "dagster" / "storage" / "history" / "runs" / f"{result.run_id}.db").is_file()


def test_it_stores_and_reads_what_dagsters_sqlite_storage_does(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "ours").mkdir()
    (tmp_path / "dagsters").mkdir()
    monkeypatch.chdir(tmp_path / "ours")
    ours = run_two_days(home_with(tmp_path / "ours", "dagster.yaml"))
    monkeypatch.chdir(tmp_path / "dagsters")
    dagsters = run_two_days(home_with(tmp_path / "dagsters", None))  # Dagster's default: `storage: sqlite`
    assert ours == dagsters
    assert ("check", "positive", "AssetCheckExecutionRecordStatus.SUCCEEDED") in ours
    assert [s for s in ours if s[0] == "materialization"] == [
        ("materialization", "2023-12-02", "2"),
        ("materialization", "2023-12-01", "1"),
    ]

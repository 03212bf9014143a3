"""The local instance (dagster.yaml) stores and reads what Dagster's own SQLite storage does."""

import os
import shutil
import sqlite3
import threading
from pathlib import Path

import dagster as dg
import pytest

from makenaide_assets.instance import OPEN_SHARDS, LocalEventLogStorage

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


def _report(instance: dg.DagsterInstance, run_id: str, message: str, errors: list[BaseException]) -> None:
    try:
        instance.report_engine_event(message, instance.get_run_by_id(run_id))
    except BaseException as error:  # a thread's exception would otherwise vanish
        errors.append(error)


def test_a_run_opens_a_handful_of_sqlite_connections_not_one_per_event(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)  # dagster.yaml's paths are relative to where commands run
    opened: list[str] = []
    connect = sqlite3.connect

    def counting_connect(database: str, *args: object, **kwargs: object) -> sqlite3.Connection:
        opened.append(Path(database).name)
        return connect(database, *args, **kwargs)

    with dg.DagsterInstance.from_config(str(home_with(tmp_path, "dagster.yaml"))) as instance:
        assert isinstance(instance.event_log_storage, LocalEventLogStorage)
        job = defs.resolve_job_def("prices_job")
        first = job.execute_in_process(instance=instance, partition_key="2023-12-01").run_id
        monkeypatch.setattr(sqlite3.dbapi2, "connect", counting_connect)  # what SQLAlchemy's pysqlite calls
        result = job.execute_in_process(instance=instance, partition_key="2023-12-03")
        monkeypatch.undo()
        assert result.success
        events = instance.all_logs(result.run_id)
        storage = instance.event_log_storage
        # One engine per file used (the runs' shards and the cross-run index), not one per event.
        assert sorted(storage._engines) == sorted(["index", first, result.run_id])
    # Dagster's SqliteEventLogStorage opens one to three per event (52 for this run); here the new
    # run shard's first-use migration opens four and the kept connection is the fifth, and the index
    # stays open from the first run. (The run storage, runs.db, is Dagster's own.)
    event_log = [name for name in opened if name != "runs.db"]
    assert len(events) > 20
    assert 0 < len(event_log) <= 6, (len(event_log), sorted(set(event_log)))
    assert (tmp_path / "var" / "dagster" / "storage" / "history" / "runs" / f"{result.run_id}.db").is_file()


def test_an_idle_kept_connection_holds_no_lock_and_others_see_each_event(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The webserver, the daemon and run workers share the files: what one stores the others read at
    once, and a connection kept open between writes blocks no writer."""
    monkeypatch.chdir(tmp_path)
    home = str(home_with(tmp_path, "dagster.yaml"))
    with dg.DagsterInstance.from_config(home) as writer, dg.DagsterInstance.from_config(home) as reader:
        job = defs.resolve_job_def("prices_job")
        run_id = job.execute_in_process(instance=writer, partition_key="2023-12-01").run_id
        seen = len(reader.all_logs(run_id))
        assert seen == len(writer.all_logs(run_id))
        for n in range(1, 4):
            writer.report_engine_event(f"note {n}", writer.get_run_by_id(run_id))
            assert len(reader.all_logs(run_id)) == seen + n  # committed when the write ended
        # The daemon's threads share one storage: a kept connection serves whichever holds the lock.
        errors: list[BaseException] = []
        thread = threading.Thread(target=lambda: _report(writer, run_id, "from a thread", errors))
        thread.start()
        thread.join()
        assert not errors and "from a thread" in [e.message for e in reader.all_logs(run_id)]
        shard = Path(writer.event_log_storage.path_for_shard(run_id))
        assert run_id in writer.event_log_storage._open  # kept open, idle
        for path in (shard, shard.with_name("index.db")):
            other = sqlite3.connect(path, timeout=0)  # a lock held would fail at once, not wait
            other.execute("BEGIN IMMEDIATE")
            other.rollback()
            other.close()


def test_kept_connections_are_bounded_closed_on_wipe_and_not_shared_with_a_fork(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    with dg.DagsterInstance.from_config(str(home_with(tmp_path, "dagster.yaml"))) as instance:
        storage = instance.event_log_storage
        assert isinstance(storage, LocalEventLogStorage)
        job = defs.resolve_job_def("prices_job")
        keys = days.get_partition_keys()
        runs = [job.execute_in_process(instance=instance, partition_key=day).run_id for day in keys]
        runs += [job.execute_in_process(instance=instance, partition_key="2023-12-01").run_id for _ in range(2)]
        assert len(storage._open) == OPEN_SHARDS  # a webserver reading many runs keeps no more open
        assert set(storage._engines) <= {*storage._open, "index"}  # nor more engines
        assert list(storage._open)[-1] == "index"
        assert all(len(instance.all_logs(run_id)) > 10 for run_id in runs)  # evicted ones reopen to read
        assert len(storage._open) == OPEN_SHARDS and set(storage._engines) <= {*storage._open, "index"}

        child = os.fork()
        if child == 0:  # the child writes through connections of its own, then exits at once
            try:
                instance.report_engine_event("from a fork", instance.get_run_by_id(runs[-1]))
                os._exit(0 if storage._pid == os.getpid() else 1)
            except BaseException:
                os._exit(2)
        assert os.waitpid(child, 0)[1] == 0
        messages = [e.message for e in instance.all_logs(runs[-1])]
        assert "from a fork" in messages
        # The parent's own connection still works after the child's writes.
        instance.report_engine_event("after the fork", instance.get_run_by_id(runs[-1]))
        assert "after the fork" in [e.message for e in instance.all_logs(runs[-1])]

        instance.wipe()
        assert list(storage._open) == ["index"]  # the runs' shards closed before deletion; the index emptied
        assert not [p for p in Path(storage._base_dir).glob("*.db") if p.name != "index.db"]
        again = job.execute_in_process(instance=instance, partition_key="2023-12-02")
        assert again.success and len(instance.all_logs(again.run_id)) > 10


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

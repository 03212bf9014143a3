"""No secret in what Dagster shows or stores: resource config, run config, snapshots, event log.

The UI reads the repository snapshot the code server serves (the same `RepositorySnap` serialised
here) and, for each run, the run, its job and plan snapshots and its events from the instance. The
ledger's PostgreSQL password, the OpenAI key and the Upbit keys must be in none of them, in any
mode: resources name the variables they read (or read them at run time), never their values.
"""

import warnings
from collections.abc import Iterator

import dagster as dg
import pytest
import sqlalchemy as sa
from dagster._core.remote_representation.external_data import RepositorySnap
from dagster._serdes import serialize_value

from makenaide_assets.definitions import build_defs
from makenaide_assets_tests.fixtures.openai.replay import OpenAIReplay, recorded

pytest_plugins = ["makenaide_assets_tests.e2e.servers"]

KEYS = {
    "OPENAI_API_KEY": "sk-proj-marker-openai-5b7e1d9c3a",
    "UPBIT_ACCESS_KEY": "marker-upbit-access-0c4f8a2e61",
    "UPBIT_SECRET_KEY": "marker-upbit-secret-9d3b7f5a14",
}
MADE_UP_PASSWORD = "marker-ledger-password-3e8a6c0f"
DAY = "2023-12-06"


def set_keys(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in KEYS.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("MAKENAIDE_LIVE_CONFIRM", "yes")


def repository_snapshot(repository: dg.RepositoryDefinition) -> str:
    """What the code server hands the webserver for this repository, serialised."""
    with warnings.catch_warnings():
        # Dagster's own snapshot code reads the property it deprecated; nothing of ours sets it.
        warnings.filterwarnings("ignore", "Property `ScheduleDefinition.environment_vars`", DeprecationWarning)
        return serialize_value(RepositorySnap.from_def(repository))


def leaked(text: str, secrets: list[str]) -> list[str]:
    return [secret for secret in secrets if secret in text]


@pytest.mark.parametrize("mode", ["demo", "paper", "live"])
def test_the_repository_snapshot_the_ui_serves_holds_no_secret(mode: str, monkeypatch: pytest.MonkeyPatch) -> None:
    url = f"postgresql://makenaide_owner:{MADE_UP_PASSWORD}@db.example.invalid:5432/makenaide"
    monkeypatch.setenv("MAKENAIDE_LEDGER_URL", url)
    monkeypatch.setenv("MAKENAIDE_MODE", mode)
    set_keys(monkeypatch)
    defs = build_defs()  # nothing connects: the ledger and the analyst open their clients when used
    repository = defs.get_repository_def()
    snapshot = repository_snapshot(repository)
    assert '"ledger"' in snapshot and "TradingLedger" in snapshot  # the resources are in it, config and all
    assert leaked(snapshot, [MADE_UP_PASSWORD, *KEYS.values()]) == []
    # Each job's snapshot as a run stores it (the run's "Config" and "Resources" in the UI).
    for job in repository.get_all_jobs():
        assert leaked(serialize_value(job.get_job_snapshot()), [MADE_UP_PASSWORD, *KEYS.values()]) == []


@pytest.fixture
def openai_replay(monkeypatch: pytest.MonkeyPatch) -> Iterator[OpenAIReplay]:
    """OpenAI's address for the SDK's own OPENAI_BASE_URL: the run's analyst is the one modes builds."""
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")
    with OpenAIReplay() as server:
        monkeypatch.setenv("OPENAI_BASE_URL", server.base_url)
        yield server


def test_a_demo_run_on_a_postgres_ledger_leaves_no_secret_in_the_instance(
    pg_database: sa.URL,
    openai_replay: OpenAIReplay,
    monkeypatch: pytest.MonkeyPatch,
    capfd: pytest.CaptureFixture[str],
) -> None:
    url = pg_database.render_as_string(hide_password=False)
    assert pg_database.password
    monkeypatch.setenv("MAKENAIDE_LEDGER_URL", url)
    set_keys(monkeypatch)  # demo with OPENAI_API_KEY: the OpenAI analyst, whose key OpenAI refuses
    openai_replay.queue(recorded("invalid_api_key_401.json"))  # its body echoes part of the key
    defs = build_defs()
    with dg.instance_for_test() as instance:
        result = defs.resolve_job_def("analysis_job").execute_in_process(
            partition_key=DAY, instance=instance, raise_on_error=False
        )
        assert result.success
        run = instance.get_run_by_id(result.run_id)
        assert run is not None
        stored = [
            serialize_value(run),
            serialize_value(instance.get_job_snapshot(run.job_snapshot_id)),
            serialize_value(instance.get_execution_plan_snapshot(run.execution_plan_snapshot_id)),
            *(serialize_value(entry) for entry in instance.all_logs(result.run_id)),
        ]
    # The secrets were used: the key went to OpenAI, the ledger and the answer cache live in PostgreSQL.
    assert openai_replay.received[0].headers["authorization"] == f"Bearer {KEYS['OPENAI_API_KEY']}"
    assert set(result.asset_value("gpt_verdicts")["source"]) == {"error"}
    engine = sa.create_engine(pg_database)
    try:
        assert {"orders", "cash_events", "gpt_verdict_cache"} <= set(sa.inspect(engine).get_table_names())
    finally:
        engine.dispose()

    # The test server's password may be a common word; the URL with it, or ":password@", may not appear.
    secrets = [*KEYS.values(), url, f":{pg_database.password}@", url.split("://", 1)[1]]
    assert len(stored) > 50
    for text in stored:
        assert leaked(text, secrets) == []
    captured = capfd.readouterr()
    assert leaked(captured.out + captured.err, secrets) == []

"""The servers `scripts/services` starts on loopback, as pytest fixtures (test modules load this
file with `pytest_plugins`, so the session fixtures exist once for the whole run).

Where the servers listen comes from the environment `scripts/test` exports, or from the file
`scripts/services` writes (var/services/services.env), so plain `pytest` works once they run. A
server that cannot be reached FAILS the test with the reason: these tests prove the production
set-up, and a silent skip would prove nothing.

Also here: dagster-daemon + dagster-webserver on the production dagster.yaml (`production_stack`)
and the demo scenario run through them (`demo_scenario`), shared by the e2e and browser tests.
"""

import contextlib
import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import requests
import sqlalchemy as sa
import yaml

REPO = Path(__file__).resolve().parents[2]
SERVICES_ENV = REPO / "var" / "services" / "services.env"
HINT = "start the test servers with scripts/services (scripts/test does it before pytest)"
S3_CREDENTIALS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1"}
# SQLAlchemy 2.1 maps a bare postgresql:// to psycopg 3; the installed driver is psycopg2.
PG_DRIVER = "postgresql+psycopg2"


def setting(name: str) -> str:
    """A MAKENAIDE_TEST_* value from the environment, else from var/services/services.env."""
    value = os.environ.get(name)
    if not value and SERVICES_ENV.is_file():
        match = re.search(rf"^export {name}=(.*)$", SERVICES_ENV.read_text(), re.MULTILINE)
        value = shlex.split(match.group(1))[0] if match else None
    if not value:
        pytest.fail(f"{name} is not set and not in {SERVICES_ENV}: {HINT}")
    return value


def wait_for(what: str, probe: Callable[[], Any], timeout: float, interval: float = 1.0) -> Any:
    """Poll `probe` until it returns something truthy; fail with `what` and the last error after `timeout`."""
    deadline, last = time.monotonic() + timeout, None
    while time.monotonic() < deadline:
        try:
            result = probe()
            if result:
                return result
        except pytest.fail.Exception:
            raise
        except Exception as error:  # kept for the failure message
            last = error
        time.sleep(interval)
    pytest.fail(f"timed out after {timeout:.0f}s waiting for {what}" + (f" (last error: {last!r})" if last else ""))


# ---- PostgreSQL -----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class PostgresServer:
    url: sa.URL  # the test role on its own database; it may CREATE DATABASE

    def create_database(self, prefix: str) -> sa.URL:
        name = f"{prefix}_{uuid.uuid4().hex[:10]}"
        self._admin(f'CREATE DATABASE "{name}"')
        return self.url.set(database=name)

    def drop_database(self, url: sa.URL) -> None:
        self._admin(f'DROP DATABASE IF EXISTS "{url.database}" WITH (FORCE)')

    def _admin(self, statement: str) -> None:
        engine = sa.create_engine(self.url, isolation_level="AUTOCOMMIT")
        try:
            with engine.connect() as conn:
                conn.execute(sa.text(statement))
        finally:
            engine.dispose()


@pytest.fixture(scope="session")
def postgres() -> PostgresServer:
    url = sa.make_url(setting("MAKENAIDE_TEST_PG_URL")).set(drivername=PG_DRIVER)
    engine = sa.create_engine(url, connect_args={"connect_timeout": 5})
    try:
        with engine.connect() as conn:
            conn.execute(sa.text("select 1"))
    except sa.exc.OperationalError as error:
        pytest.fail(f"PostgreSQL at {url.render_as_string(hide_password=True)} is not reachable: {error.orig}; {HINT}")
    finally:
        engine.dispose()
    return PostgresServer(url)


@pytest.fixture
def pg_database(postgres: PostgresServer) -> Iterator[sa.URL]:
    """A new, empty database for one test, dropped afterwards."""
    url = postgres.create_database("mkn_test")
    yield url
    postgres.drop_database(url)


# ---- S3 (moto in server mode) ---------------------------------------------------------------------------
@dataclass(frozen=True)
class S3Server:
    endpoint: str

    @property
    def env(self) -> dict[str, str]:
        """What a process needs to reach this server through the ordinary AWS settings."""
        return {**S3_CREDENTIALS, "AWS_ENDPOINT_URL": self.endpoint}

    def client(self) -> Any:
        import boto3

        return boto3.client(
            "s3",
            endpoint_url=self.endpoint,
            aws_access_key_id=S3_CREDENTIALS["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=S3_CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
            region_name=S3_CREDENTIALS["AWS_DEFAULT_REGION"],
        )

    def create_bucket(self, prefix: str = "mkn-test") -> str:
        name = f"{prefix}-{uuid.uuid4().hex[:10]}"
        self.client().create_bucket(Bucket=name)
        return name

    def keys(self, bucket: str, prefix: str = "") -> list[str]:
        pages = self.client().get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
        return sorted(item["Key"] for page in pages for item in page.get("Contents", []))


@pytest.fixture(scope="session")
def s3() -> S3Server:
    server = S3Server(setting("MAKENAIDE_TEST_S3_ENDPOINT"))
    try:
        server.client().list_buckets()
    except Exception as error:
        pytest.fail(f"the S3 server at {server.endpoint} is not reachable: {error}; {HINT}")
    return server


@pytest.fixture
def s3_env(s3: S3Server, monkeypatch: pytest.MonkeyPatch) -> S3Server:
    """This process's AWS settings point at the test server, for one test."""
    for name, value in s3.env.items():
        monkeypatch.setenv(name, value)
    for name in ("AWS_ENDPOINT_URL_S3", "AWS_PROFILE", "AWS_SESSION_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    return s3


# ---- processes ------------------------------------------------------------------------------------------
class Service:
    """A long-running command in its own process group, output to a log file; stopped with its children."""

    def __init__(self, name: str, argv: list[str], env: dict[str, str], log_dir: Path) -> None:
        self.name, self.log = name, log_dir / f"{name}.log"
        self._handle = self.log.open("wb")
        self.process = subprocess.Popen(
            argv, cwd=REPO, env=env, stdout=self._handle, stderr=subprocess.STDOUT, start_new_session=True
        )

    def tail(self, lines: int = 40) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])

    def require_alive(self) -> None:
        if self.process.poll() is not None:
            pytest.fail(f"{self.name} exited with {self.process.returncode}; last lines of {self.log}:\n{self.tail()}")

    def stop(self, timeout: float = 20.0) -> None:
        # The group holds the code servers and run workers it started: ask all to stop, then make sure.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(timeout)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(5)
        self._handle.close()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# ---- dagster-daemon + dagster-webserver on PostgreSQL (deploy/production/dagster.yaml) -------------------
LOCATION = "makenaide_assets.definitions"
REPOSITORY = "__repository__"
FINISHED = {"SUCCESS", "FAILURE", "CANCELED"}
_DROPPED_ENV = ("MAKENAIDE_", "DAGSTER_", "AWS_", "OPENAI_", "UPBIT_")

_WORKSPACE = """{ workspaceOrError { ... on Workspace { locationEntries { name
  locationOrLoadError { __typename ... on PythonError { message } } } } } }"""
_DAEMON_HEALTH = "{ instance { daemonHealth { allDaemonStatuses { daemonType healthy } } } }"
_SCHEDULE_DRY_RUN = """
mutation($selector: ScheduleSelector!, $timestamp: Float!) {
  scheduleDryRun(selectorData: $selector, timestamp: $timestamp) {
    __typename
    ... on DryRunInstigationTick { evaluationResult {
      skipReason error { message } runRequests { runKey jobName runConfigYaml tags { key value } } } }
    ... on Error { message }
  }
}"""
_LAUNCH_RUN = """
mutation($params: ExecutionParams!) {
  launchRun(executionParams: $params) {
    __typename
    ... on LaunchRunSuccess { run { runId } }
    ... on RunConfigValidationInvalid { errors { message } }
    ... on Error { message }
  }
}"""
_RUN_FIELDS = "runId jobName status startTime endTime tags { key value }"
_RUN = f"query($id: ID!) {{ runOrError(runId: $id) {{ __typename ... on Run {{ {_RUN_FIELDS} }} }} }}"
_RUNS = f"""query($job: String!) {{ runsOrError(filter: {{pipelineName: $job}}) {{
  ... on Runs {{ results {{ {_RUN_FIELDS} }} }} }} }}"""
_RUN_ERRORS = """
query($id: ID!) { runOrError(runId: $id) { ... on Run { eventConnection { events {
  __typename ... on ExecutionStepFailureEvent { stepKey error { message } }
  ... on RunFailureEvent { message } } } } } }"""


def tags(run: dict[str, Any]) -> dict[str, str]:
    return {t["key"]: t["value"] for t in run["tags"]}


@dataclass
class ProductionStack:
    url: str  # the webserver
    home: Path  # DAGSTER_HOME, holding a copy of deploy/production/dagster.yaml
    env: dict[str, str]  # the environment both processes run with
    bucket: str
    ledger_url: sa.URL
    daemon: Service
    webserver: Service

    def query(self, query: str, variables: dict[str, Any] | None = None) -> dict[str, Any]:
        """POST to the webserver's GraphQL API; fail on transport or GraphQL errors."""
        self.daemon.require_alive()
        self.webserver.require_alive()
        response = requests.post(f"{self.url}/graphql", json={"query": query, "variables": variables or {}}, timeout=60)
        response.raise_for_status()
        body = response.json()
        if body.get("errors"):
            pytest.fail(f"GraphQL errors: {body['errors']}")
        return body["data"]

    def logs(self) -> str:
        return "\n\n".join(f"--- {s.name} ({s.log}):\n{s.tail()}" for s in (self.daemon, self.webserver))

    def evaluate_schedule(self, name: str, tick_time: datetime) -> dict[str, Any]:
        """The schedule's own evaluation for one tick time (the UI's "Preview tick result")."""
        selector = {"repositoryLocationName": LOCATION, "repositoryName": REPOSITORY, "scheduleName": name}
        tick = self.query(_SCHEDULE_DRY_RUN, {"selector": selector, "timestamp": tick_time.timestamp()})
        tick = tick["scheduleDryRun"]
        assert tick["__typename"] == "DryRunInstigationTick", tick
        assert tick["evaluationResult"]["error"] is None, tick["evaluationResult"]["error"]
        return tick["evaluationResult"]

    def launch(self, job: str, run_tags: dict[str, str], run_config: dict[str, Any] | None = None) -> str:
        """Submit a run through the webserver, as its Launch buttons do; the daemon's queue starts it."""
        params = {
            "selector": {"repositoryLocationName": LOCATION, "repositoryName": REPOSITORY, "jobName": job},
            "runConfigData": run_config or {},
            "mode": "default",
            "executionMetadata": {"tags": [{"key": k, "value": v} for k, v in run_tags.items()]},
        }
        result = self.query(_LAUNCH_RUN, {"params": params})["launchRun"]
        assert result["__typename"] == "LaunchRunSuccess", result
        return result["run"]["runId"]

    def run(self, run_id: str) -> dict[str, Any]:
        return self.query(_RUN, {"id": run_id})["runOrError"]

    def runs_of(self, job: str) -> list[dict[str, Any]]:
        return self.query(_RUNS, {"job": job})["runsOrError"]["results"]

    def wait_finished(self, run_id: str, timeout: float) -> dict[str, Any]:
        """The run once it ended; fails with its step errors and the servers' logs unless it succeeded."""

        def finished() -> dict[str, Any] | None:
            run = self.run(run_id)
            return run if run["status"] in FINISHED else None

        run = wait_for(f"run {run_id} to finish", finished, timeout, interval=2)
        if run["status"] != "SUCCESS":
            events = self.query(_RUN_ERRORS, {"id": run_id})["runOrError"]["eventConnection"]["events"]
            errors = [
                f"{e.get('stepKey') or 'run'}: {(e.get('error') or {}).get('message') or e.get('message')}"
                for e in events
                if e["__typename"] in ("ExecutionStepFailureEvent", "RunFailureEvent")
            ]
            pytest.fail(f"{run['jobName']} run {run_id} ended {run['status']}:\n" + "\n".join(errors) + self.logs())
        return run


def _code_location_loaded(stack: ProductionStack) -> bool:
    entries = stack.query(_WORKSPACE)["workspaceOrError"]["locationEntries"]
    state = {e["name"]: e["locationOrLoadError"] for e in entries}.get(LOCATION)
    if state and state["__typename"] == "PythonError":
        pytest.fail(f"the code location {LOCATION} failed to load in dagster-webserver: {state['message']}")
    return bool(state and state["__typename"] == "RepositoryLocation")


def _daemons_healthy(stack: ProductionStack) -> bool:
    statuses = stack.query(_DAEMON_HEALTH)["instance"]["daemonHealth"]["allDaemonStatuses"]
    return {"SCHEDULER", "SENSOR", "QUEUED_RUN_COORDINATOR"} <= {s["daemonType"] for s in statuses if s["healthy"]}


@pytest.fixture(scope="session")
def production_stack(
    postgres: PostgresServer, s3: S3Server, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ProductionStack]:
    """dagster-daemon and dagster-webserver as subprocesses on the production dagster.yaml.

    Instance storage in a fresh PostgreSQL database, asset values in a fresh bucket of the S3
    server, the trading ledger in a second fresh database; demo mode (recorded real Upbit data,
    rules analyst, paper broker). Both processes are stopped and the databases dropped afterwards.
    """
    home = tmp_path_factory.mktemp("dagster_home")
    shutil.copy(REPO / "deploy" / "production" / "dagster.yaml", home / "dagster.yaml")
    instance_db = postgres.create_database("mkn_e2e_dagster")
    ledger_db = postgres.create_database("mkn_e2e_ledger")
    bucket = s3.create_bucket("mkn-e2e")
    env = {k: v for k, v in os.environ.items() if not k.startswith(_DROPPED_ENV)}
    env.update(
        s3.env,
        DAGSTER_HOME=str(home),
        DAGSTER_PG_HOST=str(instance_db.host),
        DAGSTER_PG_PORT=str(instance_db.port),
        DAGSTER_PG_USER=str(instance_db.username),
        DAGSTER_PG_PASSWORD=str(instance_db.password),
        DAGSTER_PG_DB=str(instance_db.database),
        DAGSTER_COMPUTE_LOGS_DIR=str(home / "compute_logs"),
        MAKENAIDE_MODE="demo",
        MAKENAIDE_VAR=str(home / "var"),
        MAKENAIDE_STORAGE=f"s3://{bucket}/makenaide",
        MAKENAIDE_LEDGER_URL=ledger_db.render_as_string(hide_password=False),
    )
    bin_dir, port = Path(sys.executable).parent, _free_port()
    workspace = ["-w", str(REPO / "workspace.yaml")]
    daemon = Service("dagster-daemon", [str(bin_dir / "dagster-daemon"), "run", *workspace], env, home)
    webserver = Service(
        "dagster-webserver",
        [str(bin_dir / "dagster-webserver"), "-h", "127.0.0.1", "-p", str(port), *workspace],
        env,
        home,
    )
    stack = ProductionStack(f"http://127.0.0.1:{port}", home, env, bucket, ledger_db, daemon, webserver)
    try:
        wait_for("dagster-webserver to load the code location", lambda: _code_location_loaded(stack), timeout=120)
        wait_for("the scheduler, sensor and run-queue daemons", lambda: _daemons_healthy(stack), timeout=120)
        yield stack
    finally:
        webserver.stop()
        daemon.stop()
        postgres.drop_database(instance_db)
        postgres.drop_database(ledger_db)


# ---- the demo scenario, run once through the stack ----------------------------------------------------------
@dataclass
class DemoScenario:
    # Two recorded days, found by running analysis_job for every day of 2023-12 on a fresh ledger
    # (rules analyst, paper broker): on 2023-12-05 nothing passes, on 2023-12-06 one market is bought.
    quiet_partition: str = "2023-12-05"
    signal_partition: str = "2023-12-06"
    schedule_requests: dict[str, dict[str, Any]] = field(default_factory=dict)  # partition -> run request
    analysis_runs: dict[str, dict[str, Any]] = field(default_factory=dict)  # partition -> finished run
    trading_run: dict[str, Any] = field(default_factory=dict)  # started by signals_sensor


def tick_time(partition: str) -> datetime:
    """When analysis_schedule fires for the Upbit day `partition`: 00:05 UTC the next day."""
    return datetime.strptime(partition, "%Y-%m-%d").replace(tzinfo=UTC) + timedelta(days=1, minutes=5)


@pytest.fixture(scope="session")
def demo_scenario(production_stack: ProductionStack) -> DemoScenario:
    """Two scheduled analysis runs through the daemon's queue, then the sensor's trading run.

    A real-time tick would target yesterday, outside the recording. So each run is exactly what the
    schedule itself requests for a chosen tick time (D+1 00:05 UTC), submitted as the UI's
    "Preview tick result → Launch all" does: the schedule's code picks job, partition and tags,
    the webserver queues the run, the daemon dequeues and launches it. Nothing is relabelled.
    """
    stack, scenario = production_stack, DemoScenario()
    run_ids = {}
    for partition in (scenario.quiet_partition, scenario.signal_partition):
        (request,) = stack.evaluate_schedule("analysis_schedule", tick_time(partition))["runRequests"]
        scenario.schedule_requests[partition] = request
        run_config = yaml.safe_load(request["runConfigYaml"]) or {}
        run_ids[partition] = stack.launch(request["jobName"], tags(request), run_config)
    for partition, run_id in run_ids.items():
        scenario.analysis_runs[partition] = stack.wait_finished(run_id, timeout=240)

    def trading_run() -> dict[str, Any] | None:
        runs = stack.runs_of("trading_job")
        return next((r for r in runs if tags(r).get("dagster/partition") == scenario.signal_partition), None)

    # signals_sensor ticks every 30 s: a few ticks, then the run itself.
    started = wait_for(f"signals_sensor to start trading_job for {scenario.signal_partition}", trading_run, 180, 3)
    scenario.trading_run = stack.wait_finished(started["runId"], timeout=180)
    return scenario

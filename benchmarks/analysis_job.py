"""analysis_job for one partition through the real CLI, against what it cannot avoid costing.

    .venv/bin/python -m benchmarks.analysis_job [--partition 2023-12-06] [--markets 63] [--repeat 3]
        [--instance sqlite|dagster-sqlite|postgres|both] [--pg-url URL] [--profile]

Target: analysis_job ≤ 1.5 × (the cheapest partitioned Dagster job through the same CLI + the bare
computation), all measured in this run. The cheapest job is benchmarks/one_asset_defs.py: one
asset returning a number, so it costs Dagster's start-up, CLI, instance and one step. The bare
computation is benchmarks/analysis_floor.py: the same pure functions over the same candles in a
plain Python process (its imports of pandas and the strategy included, Dagster never imported).
The ratio against the floor's analysis time alone (imports excluded) is printed too, and the ratio
against the one-asset job given the same `gc.freeze()` the project's definitions make after loading
(stock Dagster does not; the freeze takes ~1 s of garbage collection off any such process, most of
it at exit), so a reader sees how much of the lead is that tuning.

By default the replay is the sample's 63 real markets; `--markets 230` replicates them to
Upbit's full KRW list under new codes (replicated_replay).
Each CLI run (`dagster job execute -m makenaide_assets.definitions -j analysis_job`) gets a fresh
DAGSTER_HOME and state folder; wall time includes Python start-up and imports. The demo ledger in
that folder is created before the timed run (migrated, seeded), as every daily run but an
installation's first finds it.

Instance storage (`--instance`, default both): `sqlite` is the local instance a user runs on: the
storage sections of the tree's dagster.yaml (Dagster's SQLite run and schedule storage, and
makenaide_assets/instance.py's event log, which builds one engine per file instead of one per
event), its folders in each fresh DAGSTER_HOME; `dagster-sqlite` is Dagster's own default (no
dagster.yaml), for comparison; `postgres` is the production configuration
(deploy/production/dagster.yaml): a dagster.yaml whose only setting is `dagster_postgres` run,
event-log and schedule storage on the PostgreSQL of `scripts/services` (`--pg-url`, default
MAKENAIDE_TEST_PG_URL from the environment or var/services/services.env). Each benchmark run
creates a new database per CLI job (analysis_job, one-asset job), creates Dagster's schema in it
before the first timed run (a production instance exists before its daily run), and drops both
databases at the end. With `both` each round runs the three measurements for each storage (the
order alternating between rounds), each storage's ratio against its own floor run of that round.
When PostgreSQL cannot be reached, `both` measures SQLite only and says why.
The floor (analysis_floor) computes the same candidates, verdicts, timing and signals with the
same pure functions and no Dagster; its outputs are checked equal to the job's. Runs alternate
(job, floor, job, floor, ...) so load from other work on the machine falls on both alike.
`--profile` adds one CLI run under pyinstrument and writes its report beside the results.
"""

import argparse
import os
import re
import shlex
import shutil
import statistics
import subprocess
import sys
import uuid
from pathlib import Path
from typing import NamedTuple

import pandas as pd
import sqlalchemy as sa

from benchmarks import machine
from benchmarks.replicated_replay import build
from makenaide_assets.settings import SAMPLE_REPLAY_DIR

TARGET_RATIO = 1.5
SAMPLE_MARKETS = 63
OUT = machine.BENCH_VAR / "analysis-job"
COMPARED = {
    "candidates": ["market", "score", "passed"],
    "gpt_verdicts": ["market", "verdict", "confidence", "source", "payload_hash"],
    "timing_4h": ["market", "entry_ok", "suggested_entry", "suggested_stop"],
    "signals": ["market", "side", "price", "krw_amount", "volume"],
}
SERVICES_ENV = machine.REPO / "var" / "services" / "services.env"
PG_URL_ENV = "MAKENAIDE_TEST_PG_URL"
# SQLAlchemy 2.1 maps a bare postgresql:// to psycopg 3; the driver installed with dagster-postgres is psycopg2.
PG_DRIVER = "postgresql+psycopg2"
# What the dagster.yaml of a PostgreSQL DAGSTER_HOME reads its database from (as in production, the
# address and password come from the environment, never from the file).
INSTANCE_URL_ENV = "MAKENAIDE_BENCH_DAGSTER_PG_URL"
POSTGRES_YAML = f"""# benchmarks/analysis_job.py: Dagster's run, event-log and schedule storage in PostgreSQL, as
# deploy/production/dagster.yaml; every other setting left at Dagster's default, as the SQLite runs.
storage:
  postgres:
    postgres_url:
      env: {INSTANCE_URL_ENV}
"""
JOBS = ("analysis_job", "one_asset_job")
# The storage sections of the project's dagster.yaml (the local instance a user runs on).
LOCAL_STORAGES = ("run_storage", "event_log_storage", "schedule_storage")


def local_yaml(tree: Path, state: Path) -> str:
    """The tree's dagster.yaml storage, its relative folders under `state` (as if run from there)."""
    import yaml

    config = yaml.safe_load((tree / "dagster.yaml").read_text(encoding="utf-8"))
    storages = {key: config[key] for key in LOCAL_STORAGES if key in config}
    if not storages:  # an older tree: `storage: sqlite:`, Dagster's own event log
        return yaml.safe_dump(
            {"storage": {"sqlite": {"base_dir": str(state / config["storage"]["sqlite"]["base_dir"])}}}
        )
    for storage in storages.values():
        storage["config"]["base_dir"] = str(state / storage["config"]["base_dir"])
    return yaml.safe_dump(storages)


class Instance:
    """Where the CLI runs of one storage configuration keep Dagster's instance."""

    def __init__(self, name: str, databases: dict[str, sa.URL] | None = None, tree: Path = machine.REPO) -> None:
        self.name = name
        self.databases = databases or {}  # job -> its database (postgres only)
        self.tree = tree

    def home(self, state: Path, job: str) -> dict[str, str]:
        """A fresh DAGSTER_HOME at `state` for `job`; the environment the CLI needs for it.

        sqlite: the project's dagster.yaml storage (the local instance a user runs on); dagster-sqlite:
        Dagster's default SQLite storage (no dagster.yaml); postgres: dagster_postgres."""
        shutil.rmtree(state, ignore_errors=True)
        state.mkdir(parents=True)
        if self.name == "postgres":
            (state / "dagster.yaml").write_text(POSTGRES_YAML)
        elif self.name == "sqlite":
            (state / "dagster.yaml").write_text(local_yaml(self.tree, state))
        return {"DAGSTER_HOME": str(state), **self.env(job)}

    def env(self, job: str) -> dict[str, str]:
        """What the dagster.yaml of `job`'s home reads from the environment (nothing for SQLite)."""
        url = self.databases.get(job)
        return {INSTANCE_URL_ENV: url.render_as_string(hide_password=False)} if url else {}


def postgres_url(given: str | None) -> tuple[sa.URL | None, str]:
    """scripts/services' PostgreSQL (or `given`) if it answers, else None and why not."""
    value = given or os.environ.get(PG_URL_ENV)
    if not value and SERVICES_ENV.is_file():
        match = re.search(rf"^export {PG_URL_ENV}=(.*)$", SERVICES_ENV.read_text(), re.MULTILINE)
        value = shlex.split(match.group(1))[0] if match else None
    if not value:
        return None, f"no --pg-url, {PG_URL_ENV} unset and not in {SERVICES_ENV} (start it with scripts/services start)"
    url = sa.make_url(value).set(drivername=PG_DRIVER)
    engine = sa.create_engine(url, connect_args={"connect_timeout": 5})
    try:
        with engine.connect() as conn:
            version = conn.execute(sa.text("show server_version")).scalar()
    except sa.exc.OperationalError as error:
        where, why = url.render_as_string(hide_password=True), " ".join(str(error.orig).split())
        return None, f"PostgreSQL at {where} is not reachable ({why}; scripts/services start)"
    finally:
        engine.dispose()
    return url, f"PostgreSQL {version} at {url.host}:{url.port}"


def _admin(server: sa.URL, statement: str) -> None:
    engine = sa.create_engine(server, isolation_level="AUTOCOMMIT", connect_args={"connect_timeout": 5})
    try:
        with engine.connect() as conn:
            conn.execute(sa.text(statement))
    finally:
        engine.dispose()


def create_instances(server: sa.URL, instance: Instance, state: Path) -> None:
    """A new database per CLI job, with Dagster's schema created in it (not timed)."""
    import dagster as dg

    run = uuid.uuid4().hex[:10]
    for job in JOBS:
        name = f"mkn_bench_{job}_{run}"
        _admin(server, f'CREATE DATABASE "{name}"')
        instance.databases[job] = server.set(database=name)
        os.environ |= instance.home(state / job, job)
        dg.DagsterInstance.from_config(str(state / job)).dispose()  # creates and stamps the tables


def drop_instances(server: sa.URL, instance: Instance) -> None:
    for url in instance.databases.values():
        _admin(server, f'DROP DATABASE IF EXISTS "{url.database}" WITH (FORCE)')


class Timing(NamedTuple):
    wall: float
    cpu: float  # user + system seconds of the process


def _run(cmd: list[str], env: dict[str, str], cwd: Path) -> Timing:
    with machine.Stopwatch() as watch:
        done = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(cmd[:4])} failed:\n{done.stdout[-1500:]}\n{done.stderr[-3000:]}")
    return Timing(watch.seconds, watch.child_cpu)


# The demo ledger, created (migrated to head, seeded with the paper cash) as its first run ever would.
_CREATE_LEDGER = "from makenaide_assets.resources.modes import resources_for as r; r('demo', has_openai_key=False)"
_CREATE_LEDGER += "['ledger'].engine()"


def existing_ledger(env: dict[str, str], tree: Path) -> None:
    """The ledger a daily run finds, made before the timed run (untimed): every run but the first
    of an installation opens an existing ledger, as a production instance exists before its run."""
    done = subprocess.run([sys.executable, "-c", _CREATE_LEDGER], cwd=tree, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"creating the demo ledger failed:\n{done.stderr[-3000:]}")


def run_job(
    tree: Path, replay: Path, partition: str, state: Path, instance: Instance, profile: Path | None = None
) -> Timing:
    env = {**os.environ, **instance.home(state, "analysis_job")}
    env |= {"MAKENAIDE_VAR": str(state / "var"), "MAKENAIDE_MODE": "demo"}
    env |= {"MAKENAIDE_REPLAY_DIR": str(replay), "PYTHONPATH": str(tree)}
    env.pop("OPENAI_API_KEY", None)  # the offline rules analyst, as the floor
    existing_ledger(env, tree)
    cli = [str(Path(sys.executable).with_name("dagster")), "job", "execute", "-m", "makenaide_assets.definitions"]
    cli += ["-j", "analysis_job", "--tags", f'{{"dagster/partition": "{partition}"}}']
    if profile is not None:
        cli = [sys.executable, "-m", "pyinstrument", "-r", "text", "-o", str(profile), *cli]
    return _run(cli, env, tree)


def run_one_asset(tree: Path, partition: str, state: Path, instance: Instance, frozen: bool = False) -> Timing:
    """The same CLI, the cheapest partitioned job: Dagster's fixed cost of one run (`frozen`: with the
    project's `gc.freeze()` after its definitions load, as makenaide_assets/definitions.py does)."""
    env = {**os.environ, **instance.home(state, "one_asset_job"), "PYTHONPATH": str(tree)}
    env["MAKENAIDE_BENCH_GC_FREEZE"] = "1" if frozen else "0"
    cli = [str(Path(sys.executable).with_name("dagster")), "job", "execute", "-m", "benchmarks.one_asset_defs"]
    cli += ["-j", "one_asset_job", "--tags", f'{{"dagster/partition": "{partition}"}}']
    return _run(cli, env, tree)


def run_floor(tree: Path, replay: Path, partition: str, out: Path) -> tuple[Timing, float]:
    """Wall and CPU time of the bare-Python process, and its analysis alone (after its imports)."""
    cmd = [sys.executable, "-m", "benchmarks.analysis_floor", "--replay-dir", str(replay), "--partition", partition]
    env = {**os.environ, "PYTHONPATH": str(tree)}
    with machine.Stopwatch() as watch:
        done = subprocess.run([*cmd, "--out", str(out)], cwd=tree, env=env, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"analysis_floor failed:\n{done.stderr[-3000:]}")
    # "imports 0.91 s, analysis 0.62 s (after interpreter start)"
    analysis = float(done.stdout.rsplit("analysis ", 1)[1].split(" s", 1)[0])
    return Timing(watch.seconds, watch.child_cpu), analysis


def run_breakdown(state: Path, instance_env: dict[str, str]) -> str:
    """Where the last analysis_job run's time went, from its own instance: the run, its asset and
    check steps, and how many events it stored (each one a commit to the event log)."""
    import dagster as dg

    os.environ |= instance_env
    instance = dg.DagsterInstance.from_config(str(state))
    run = instance.get_runs(filters=dg.RunsFilter(job_name="analysis_job"), limit=1)[0]
    stats = instance.get_run_stats(run.run_id)
    steps = instance.get_run_step_stats(run.run_id)
    events = len(instance.all_logs(run.run_id))
    # An asset step materialises one asset or several (market/step.py); a check step none.
    checks = [s for s in steps if not s.materialization_events]
    assets = [s for s in steps if s.materialization_events]
    materialized = sum(len(s.materialization_events) for s in assets)
    total = sum(s.end_time - s.start_time for s in steps)
    in_checks = sum(s.end_time - s.start_time for s in checks)
    instance.dispose()
    return (
        f"run {stats.end_time - stats.start_time:.1f} s in Dagster, {events} events ({len(steps)} steps: "
        f"{len(assets)} asset steps ({materialized} assets) {total - in_checks:.1f} s, "
        f"{len(checks)} check steps {in_checks:.1f} s)"
    )


def same_outputs(job_storage: Path, floor_out: Path, partition: str) -> list[str]:
    """Assets whose compared columns differ between the job's Parquet values and the floor's."""
    differ = []
    for asset, columns in COMPARED.items():
        job = pd.read_parquet(job_storage / asset / f"{partition}.parquet")[columns].reset_index(drop=True)
        floor = pd.read_pickle(floor_out / f"{asset}.pkl").reindex(columns=columns).reset_index(drop=True)
        try:
            pd.testing.assert_frame_equal(job, floor, check_dtype=False)
        except AssertionError as exc:
            differ.append(f"{asset}: {str(exc).splitlines()[0]}")
    return differ


def report(instance: Instance, rounds: list[dict[str, float]], partition: str) -> bool:
    """One storage configuration's figures; True when its median paired ratio is within target."""
    state = OUT / instance.name
    jobs, ones = [r["job"] for r in rounds], [r["one"] for r in rounds]
    floors, computes = [r["floor"] for r in rounds], [r["compute"] for r in rounds]
    job, one = statistics.median(jobs), statistics.median(ones)
    floor = statistics.median(floors)
    print(f"{instance.name}:")
    print(f"  last analysis_job run: {run_breakdown(state / 'job', instance.env('analysis_job'))}")
    differ = same_outputs(state / "job" / "var" / "storage", state / "floor", partition)
    print(f"  outputs (candidates, gpt_verdicts, timing_4h, signals): {differ or 'equal to the bare computation'}")
    # Each round's three runs ran back to back, so their ratio is what a slower or faster moment
    # of this shared machine cannot bend; the verdict is the median of those paired ratios.
    paired = [j / (o + f) for j, o, f in zip(jobs, ones, floors, strict=True)]
    ratio, strict = (
        statistics.median(paired),
        statistics.median(j / (o + c) for j, o, c in zip(jobs, ones, computes, strict=True)),
    )
    ok = ratio <= TARGET_RATIO and not differ
    print(
        f"  medians: analysis_job {job:.2f} s; one-asset job {one:.2f} s + bare computation {floor:.2f} s "
        f"= {one + floor:.2f} s (ratio of medians {job / (one + floor):.2f})"
    )
    print(
        f"  ratio per round: {', '.join(f'{r:.2f}' for r in paired)}; median {ratio:.2f} "
        f"(target <= {TARGET_RATIO:g}): {'met' if ok else 'MISSED'}"
    )
    loads = ", ".join(f"{r['load']:.2f}" for r in rounds)
    print(f"  load (1 min) per round: {loads}")
    cpu = [r["job_cpu"] / (r["one_cpu"] + r["floor_cpu"]) for r in rounds]
    print(
        f"  CPU time (user + system of each process; other work on the machine bends it far less than wall "
        f"time): ratio per round {', '.join(f'{r:.2f}' for r in cpu)}; median {statistics.median(cpu):.2f}"
    )
    print(f"  against the analysis alone (the floor's imports excluded): median ratio {strict:.2f}")
    tuned = [r["job"] / (r["tuned"] + r["floor"]) for r in rounds]
    print(
        f"  against a one-asset job given the same gc.freeze (makenaide_assets/definitions.py; stock Dagster "
        f"does not do it): ratio per round {', '.join(f'{r:.2f}' for r in tuned)}; "
        f"median {statistics.median(tuned):.2f}"
    )
    return ok


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0], formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__
    )
    parser.add_argument("--partition", default="2023-12-06")
    parser.add_argument("--markets", type=int, default=SAMPLE_MARKETS, help="63: the sample as recorded")
    parser.add_argument("--repeat", type=int, default=3, help="rounds (each: job, one-asset job, floor per storage)")
    parser.add_argument(
        "--instance",
        choices=("sqlite", "dagster-sqlite", "postgres", "both"),
        default="both",
        help="Dagster instance storage of the CLI runs: the project's dagster.yaml (SQLite), Dagster's "
        "default SQLite, the production PostgreSQL (a new database per job, dropped at the end), or "
        "sqlite and postgres in the same rounds (default; SQLite only, saying why, when PostgreSQL "
        "cannot be reached)",
    )
    parser.add_argument(
        "--pg-url",
        help=f"PostgreSQL server for --instance postgres/both (a role that may CREATE DATABASE); "
        f"default {PG_URL_ENV} from the environment or {SERVICES_ENV.relative_to(machine.REPO)}",
    )
    parser.add_argument("--profile", action="store_true", help="one more CLI run under pyinstrument (first storage)")
    parser.add_argument("--tree", type=Path, default=machine.REPO, help="the source tree to run (e.g. a patched copy)")
    args = parser.parse_args()
    replay = SAMPLE_REPLAY_DIR if args.markets == SAMPLE_MARKETS else build(args.markets)
    print(machine.describe())
    print(f"replay: {replay} ({args.markets} KRW markets)")
    print(f"partition {args.partition}, tree {args.tree}; wall times include Python start-up and imports")
    names = ["sqlite", "postgres"] if args.instance == "both" else [args.instance]
    server = None
    if "postgres" in names:
        server, about = postgres_url(args.pg_url)
        if server is None and args.instance == "postgres":
            raise SystemExit(f"--instance postgres: {about}")
        if server is None:
            print(f"instance storage: SQLite only: {about}")
            names = ["sqlite"]
        else:
            print(
                f"instance storage: SQLite (the project's dagster.yaml) and {about} (dagster_postgres, new databases)"
            )
    instances = {name: Instance(name, tree=args.tree) for name in ("sqlite", "dagster-sqlite", "postgres")}
    try:
        if server is not None:
            create_instances(server, instances["postgres"], OUT / "postgres")
        return measure(args, replay, [instances[n] for n in names])
    finally:
        if server is not None:
            drop_instances(server, instances["postgres"])


def measure(args: argparse.Namespace, replay: Path, instances: list[Instance]) -> int:
    rounds: dict[str, list[dict[str, float]]] = {i.name: [] for i in instances}
    for i in range(args.repeat):
        # Interleaved, so load from other work on the machine falls on all three alike; with both
        # storages, which one goes first alternates between rounds.
        for instance in instances if i % 2 == 0 else instances[::-1]:
            state = OUT / instance.name
            job = run_job(args.tree, replay, args.partition, state / "job", instance)
            one = run_one_asset(args.tree, args.partition, state / "one-asset", instance)
            floor, compute = run_floor(args.tree, replay, args.partition, state / "floor")
            tuned = run_one_asset(args.tree, args.partition, state / "one-asset-frozen", instance, frozen=True)
            load = os.getloadavg()[0]
            rounds[instance.name].append(
                dict(
                    job=job.wall, one=one.wall, floor=floor.wall, compute=compute, load=load,
                    job_cpu=job.cpu, one_cpu=one.cpu, floor_cpu=floor.cpu, tuned=tuned.wall,
                )
            )  # fmt: skip
            print(
                f"  round {i + 1} {instance.name:>8}: analysis_job {job.wall:5.2f} s, one-asset job {one.wall:5.2f} s, "
                f"bare computation {floor.wall:5.2f} s (analysis {compute:.2f} s): ratio "
                f"{job.wall / (one.wall + floor.wall):.2f}; CPU {job.cpu:.2f} / ({one.cpu:.2f} + {floor.cpu:.2f}) s "
                f"= {job.cpu / (one.cpu + floor.cpu):.2f}; one-asset job with gc.freeze {tuned.wall:5.2f} s: ratio "
                f"{job.wall / (tuned.wall + floor.wall):.2f} (load {machine.load()})",
                flush=True,
            )
    ok = True
    for instance in instances:
        ok &= report(instance, rounds[instance.name], args.partition)
    if args.profile:
        first = instances[0]
        out = OUT / first.name / "profile.txt"
        seconds = run_job(args.tree, replay, args.partition, OUT / first.name / "job-profiled", first, out).wall
        print(f"  profiled CLI run ({first.name}): {seconds:.1f} s under pyinstrument; report {out}")
    if machine.busy():
        print(f"  machine busy (load {machine.load()}): re-run for clean figures")
    print(f"Output: job state and Parquet values {OUT}/<storage>/job, floor outputs {OUT}/<storage>/floor")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())

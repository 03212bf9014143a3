"""analysis_job for one partition of ~230 markets through the real CLI, against a bare-Python floor.

    .venv/bin/python -m benchmarks.analysis_job [--partition 2023-12-06] [--repeat 3] [--profile]

The replay is the sample's 63 real markets replicated to 230 under new codes (replicated_replay).
Each CLI run (`dagster job execute -m makenaide_assets.definitions -j analysis_job`) gets a fresh
DAGSTER_HOME (SQLite instance) and state folder; wall time includes Python start-up and imports.
The floor (analysis_floor) computes the same candidates, verdicts, timing and signals with the
same pure functions and no Dagster; its outputs are checked equal to the job's. Runs alternate
(job, floor, job, floor, ...) so load from other work on the machine falls on both alike.
`--profile` adds one CLI run under pyinstrument and writes its report beside the results.
"""

import argparse
import os
import shutil
import statistics
import subprocess
import sys
from pathlib import Path

import pandas as pd

from benchmarks import machine
from benchmarks.replicated_replay import DEFAULT_MARKETS, build

TARGET_S, TARGET_RATIO = 8.0, 2.0
OUT = machine.BENCH_VAR / "analysis-job"
COMPARED = {
    "candidates": ["market", "score", "passed"],
    "gpt_verdicts": ["market", "verdict", "confidence", "source", "payload_hash"],
    "timing_4h": ["market", "entry_ok", "suggested_entry", "suggested_stop"],
    "signals": ["market", "side", "price", "krw_amount", "volume"],
}


def _run(cmd: list[str], env: dict[str, str], cwd: Path) -> float:
    with machine.Stopwatch() as watch:
        done = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(cmd[:4])} failed:\n{done.stdout[-1500:]}\n{done.stderr[-3000:]}")
    return watch.seconds


def run_job(tree: Path, replay: Path, partition: str, state: Path, profile: Path | None = None) -> float:
    shutil.rmtree(state, ignore_errors=True)
    state.mkdir(parents=True)
    env = {**os.environ, "DAGSTER_HOME": str(state), "MAKENAIDE_VAR": str(state / "var"), "MAKENAIDE_MODE": "demo"}
    env |= {"MAKENAIDE_REPLAY_DIR": str(replay), "PYTHONPATH": str(tree)}
    env.pop("OPENAI_API_KEY", None)  # the offline rules analyst, as the floor
    cli = [str(Path(sys.executable).with_name("dagster")), "job", "execute", "-m", "makenaide_assets.definitions"]
    cli += ["-j", "analysis_job", "--tags", f'{{"dagster/partition": "{partition}"}}']
    if profile is not None:
        cli = [sys.executable, "-m", "pyinstrument", "-r", "text", "-o", str(profile), *cli]
    return _run(cli, env, tree)


def run_floor(tree: Path, replay: Path, partition: str, out: Path) -> float:
    cmd = [sys.executable, "-m", "benchmarks.analysis_floor", "--replay-dir", str(replay), "--partition", partition]
    return _run([*cmd, "--out", str(out)], {**os.environ, "PYTHONPATH": str(tree)}, tree)


def run_breakdown(state: Path) -> str:
    """Where the last CLI run's time went, from its own instance: the run, its asset and check steps."""
    import dagster as dg

    from makenaide_assets.jobs import ANALYSIS_ASSETS

    instance = dg.DagsterInstance.from_config(str(state))
    run = instance.get_runs(limit=1)[0]
    stats = instance.get_run_stats(run.run_id)
    steps = instance.get_run_step_stats(run.run_id)
    checks = [s for s in steps if s.step_key not in ANALYSIS_ASSETS]  # check steps: <asset>_<check>
    assets = [s for s in steps if s.step_key in ANALYSIS_ASSETS]
    total = sum(s.end_time - s.start_time for s in steps)
    in_checks = sum(s.end_time - s.start_time for s in checks)
    return (
        f"run {stats.end_time - stats.start_time:.1f} s in Dagster ({len(steps)} steps: {len(assets)} assets "
        f"{total - in_checks:.1f} s, {len(checks)} checks {in_checks:.1f} s)"
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


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--partition", default="2023-12-06")
    parser.add_argument("--markets", type=int, default=DEFAULT_MARKETS)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--profile", action="store_true", help="one more CLI run under pyinstrument")
    parser.add_argument("--tree", type=Path, default=machine.REPO, help="the source tree to run (e.g. a patched copy)")
    args = parser.parse_args()
    replay = build(args.markets)
    print(machine.describe())
    print(f"replay: {replay} — {args.markets} KRW markets: the sample's 63 real ones and byte copies under new codes")
    print(f"analysis_job, partition {args.partition}, tree {args.tree}; wall time incl. Python start-up and imports")
    jobs, floors = [], []
    for i in range(args.repeat):
        jobs.append(run_job(args.tree, replay, args.partition, OUT / "job"))
        floors.append(run_floor(args.tree, replay, args.partition, OUT / "floor"))
        print(f"  run {i + 1}: CLI {jobs[-1]:5.1f} s, floor {floors[-1]:5.1f} s (load {machine.load()})", flush=True)
    job, floor = statistics.median(jobs), statistics.median(floors)
    print(f"  last CLI run: {run_breakdown(OUT / 'job')}; the rest is Python start-up, imports, CLI, instance")
    differ = same_outputs(OUT / "job" / "var" / "storage", OUT / "floor", args.partition)
    print(f"  outputs (candidates, gpt_verdicts, timing_4h, signals): {differ or 'equal'}")
    ok = job <= TARGET_S and job <= TARGET_RATIO * floor and not differ
    print(
        f"  median: CLI {job:.1f} s (target <= {TARGET_S:g} s), floor {floor:.1f} s, "
        f"ratio {job / floor:.2f}x (target <= {TARGET_RATIO:g}x): {'met' if ok else 'MISSED'}"
    )
    if args.profile:
        report = OUT / "profile.txt"
        seconds = run_job(args.tree, replay, args.partition, OUT / "job-profiled", profile=report)
        print(f"  profiled CLI run: {seconds:.1f} s under pyinstrument; report {report}")
    if machine.busy():
        print(f"  machine busy (load {machine.load()}): re-run for clean figures")
    print(f"Output: job state and Parquet values {OUT / 'job'}, floor outputs {OUT / 'floor'}")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())

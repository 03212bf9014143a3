"""analysis_job for one partition through the real CLI, against what it cannot avoid costing.

    .venv/bin/python -m benchmarks.analysis_job [--partition 2023-12-06] [--markets 63] [--repeat 3] [--profile]

Target: analysis_job ≤ 1.5 × (the cheapest partitioned Dagster job through the same CLI + the bare
computation), all measured in this run. The cheapest job is benchmarks/one_asset_defs.py: one
asset returning a number, so it costs Dagster's start-up, CLI, instance and one step. The bare
computation is benchmarks/analysis_floor.py: the same pure functions over the same candles in a
plain Python process (its imports of pandas and the strategy included, Dagster never imported).
The ratio against the floor's analysis time alone (imports excluded) is printed too.

By default the replay is the sample's 63 real markets; `--markets 230` replicates them to
Upbit's full KRW list under new codes (replicated_replay).
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


def run_one_asset(tree: Path, partition: str, state: Path) -> float:
    """The same CLI, the cheapest partitioned job: Dagster's fixed cost of one run."""
    shutil.rmtree(state, ignore_errors=True)
    state.mkdir(parents=True)
    env = {**os.environ, "DAGSTER_HOME": str(state), "PYTHONPATH": str(tree)}
    cli = [str(Path(sys.executable).with_name("dagster")), "job", "execute", "-m", "benchmarks.one_asset_defs"]
    cli += ["-j", "one_asset_job", "--tags", f'{{"dagster/partition": "{partition}"}}']
    return _run(cli, env, tree)


def run_floor(tree: Path, replay: Path, partition: str, out: Path) -> tuple[float, float]:
    """Wall time of the bare-Python process, and its analysis alone (after its imports)."""
    cmd = [sys.executable, "-m", "benchmarks.analysis_floor", "--replay-dir", str(replay), "--partition", partition]
    env = {**os.environ, "PYTHONPATH": str(tree)}
    with machine.Stopwatch() as watch:
        done = subprocess.run([*cmd, "--out", str(out)], cwd=tree, env=env, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"analysis_floor failed:\n{done.stderr[-3000:]}")
    # "imports 0.91 s, analysis 0.62 s (after interpreter start)"
    analysis = float(done.stdout.rsplit("analysis ", 1)[1].split(" s", 1)[0])
    return watch.seconds, analysis


def run_breakdown(state: Path) -> str:
    """Where the last CLI run's time went, from its own instance: the run, its asset and check steps,
    and how many events it stored (each one a commit to the SQLite event log)."""
    import dagster as dg

    instance = dg.DagsterInstance.from_config(str(state))
    run = instance.get_runs(limit=1)[0]
    stats = instance.get_run_stats(run.run_id)
    steps = instance.get_run_step_stats(run.run_id)
    events = len(instance.all_logs(run.run_id))
    # An asset step materialises one asset or several (market/step.py); a check step none.
    checks = [s for s in steps if not s.materialization_events]
    assets = [s for s in steps if s.materialization_events]
    materialized = sum(len(s.materialization_events) for s in assets)
    total = sum(s.end_time - s.start_time for s in steps)
    in_checks = sum(s.end_time - s.start_time for s in checks)
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


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--partition", default="2023-12-06")
    parser.add_argument("--markets", type=int, default=SAMPLE_MARKETS, help="63: the sample as recorded")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--profile", action="store_true", help="one more CLI run under pyinstrument")
    parser.add_argument("--tree", type=Path, default=machine.REPO, help="the source tree to run (e.g. a patched copy)")
    args = parser.parse_args()
    replay = SAMPLE_REPLAY_DIR if args.markets == SAMPLE_MARKETS else build(args.markets)
    print(machine.describe())
    print(f"replay: {replay} ({args.markets} KRW markets)")
    print(f"partition {args.partition}, tree {args.tree}; wall times include Python start-up and imports")
    jobs, ones, floors, computes = [], [], [], []
    for i in range(args.repeat):
        # Interleaved, so load from other work on the machine falls on all three alike.
        jobs.append(run_job(args.tree, replay, args.partition, OUT / "job"))
        ones.append(run_one_asset(args.tree, args.partition, OUT / "one-asset"))
        floor, compute = run_floor(args.tree, replay, args.partition, OUT / "floor")
        floors.append(floor)
        computes.append(compute)
        print(
            f"  run {i + 1}: analysis_job {jobs[-1]:5.2f} s, one-asset job {ones[-1]:5.2f} s, "
            f"bare computation {floor:5.2f} s (analysis {compute:.2f} s) (load {machine.load()})",
            flush=True,
        )
    job, one = statistics.median(jobs), statistics.median(ones)
    floor, compute = statistics.median(floors), statistics.median(computes)
    print(f"  last analysis_job run: {run_breakdown(OUT / 'job')}")
    differ = same_outputs(OUT / "job" / "var" / "storage", OUT / "floor", args.partition)
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
    print(f"  against the analysis alone (the floor's imports excluded): median ratio {strict:.2f}")
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

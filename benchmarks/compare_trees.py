"""analysis_job through the real CLI for several source trees, alternated, with paired differences.

    .venv/bin/python -m benchmarks.compare_trees [--repeat 5] TREE_A TREE_B [TREE_C ...]

A tree is a copy of the repository (`git archive <commit> | tar -x -C DIR`, or a patched copy).
Each round runs every tree once (benchmarks/analysis_job.run_job: fresh DAGSTER_HOME, demo mode,
the sample's 63 markets), then the one-asset job, so a slower minute of this shared machine falls
on all of them; what is printed per tree is its median wall time, its median CPU time (user + sys,
less bent by other work than wall time), the events and steps of its last run, and the median of
its per-round difference from the first tree. A difference well inside the rounds' spread is noise.
"""

import argparse
import resource
import statistics
from pathlib import Path

from benchmarks import machine
from benchmarks.analysis_job import run_breakdown, run_job, run_one_asset
from makenaide_assets.settings import SAMPLE_REPLAY_DIR

OUT = machine.BENCH_VAR / "compare-trees"


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("trees", nargs="+", type=Path)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--partition", default="2023-12-06")
    args = parser.parse_args()
    print(machine.describe())
    states = {tree: OUT / f"{n}-{tree.name}" for n, tree in enumerate(args.trees)}
    wall: dict[Path, list[float]] = {tree: [] for tree in args.trees}
    cpu: dict[Path, list[float]] = {tree: [] for tree in args.trees}
    ones = []
    for i in range(args.repeat):
        for tree in args.trees:
            before = _children_cpu()
            wall[tree].append(run_job(tree, SAMPLE_REPLAY_DIR, args.partition, states[tree]))
            cpu[tree].append(_children_cpu() - before)
        ones.append(run_one_asset(args.trees[0], args.partition, OUT / "one-asset"))
        times = ", ".join(f"{tree.name} {wall[tree][-1]:.2f} s" for tree in args.trees)
        print(f"  round {i + 1}: {times}, one-asset job {ones[-1]:.2f} s (load {machine.load()})", flush=True)
    first = args.trees[0]
    for tree in args.trees:
        paired = statistics.median(b - a for a, b in zip(wall[first], wall[tree], strict=True))
        print(
            f"  {tree.name}: median {statistics.median(wall[tree]):.2f} s (CPU {statistics.median(cpu[tree]):.2f} s), "
            f"{paired:+.2f} s against {first.name} (median per round); last run: {run_breakdown(states[tree])}"
        )
    print(f"  one-asset job: median {statistics.median(ones):.2f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

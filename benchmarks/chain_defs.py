"""Ten partitioned assets in a chain, two in-asset checks each, computing nothing — in 10, 6 or 4 steps.

What any ten-asset job costs through the CLI before any work, and what grouping its assets into
fewer steps (`@multi_asset`s, every asset and check keeping its key) saves:

    .venv/bin/python -m benchmarks.chain_defs [--repeat 5]

runs `dagster job execute -m benchmarks.chain_defs -j <job> --tags '{"dagster/partition": "2023-12-06"}'`
for each job below and the one-asset job (benchmarks/one_asset_defs.py), alternated, each with a
fresh DAGSTER_HOME, and prints the medians (docs/performance.md).

- `chain`: one step per asset (analysis_job before its market and breadth/candidates steps);
- `chain_6_steps`: steps of 4, 2, 1, 1, 1, 1 assets (analysis_job now: market, breadth_and_candidates,
  gpt_verdicts, timing_4h, strategy_stats, signals);
- `chain_4_steps`: 4, 2, 2, 2 (gpt_verdicts + timing_4h and strategy_stats + signals grouped too).
"""

import argparse
import os
import shutil
import statistics
import subprocess
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path

import dagster as dg

daily = dg.DailyPartitionsDefinition(start_date="2022-01-01", timezone="UTC", end_offset=0)
LAYOUTS = {"chain": (1,) * 10, "chain_6_steps": (4, 2, 1, 1, 1, 1), "chain_4_steps": (4, 2, 2, 2)}


def _checks(name: str) -> list[dg.AssetCheckSpec]:
    return [dg.AssetCheckSpec(f"{name}_check{n}", asset=name) for n in range(2)]


def _link(index: int) -> dg.AssetsDefinition:
    specs = _checks(f"link{index}")
    ins = {"upstream": dg.AssetIn(f"link{index - 1}")} if index else {}

    def results() -> Iterator[dg.Output | dg.AssetCheckResult]:
        yield dg.Output(index)
        for spec in specs:
            yield dg.AssetCheckResult(check_name=spec.name, passed=True)

    if not index:

        @dg.asset(name="link0", partitions_def=daily, check_specs=specs)
        def first() -> Iterator[dg.Output | dg.AssetCheckResult]:
            yield from results()

        return first

    # Each link reads the one before it, as the analysis assets read their upstream values.
    @dg.asset(name=f"link{index}", partitions_def=daily, ins=ins, check_specs=specs)
    def link(upstream: int) -> Iterator[dg.Output | dg.AssetCheckResult]:
        yield from results()

    return link


def _step(prefix: str, first: int, size: int) -> dg.AssetsDefinition:
    """Links `first` … `first + size - 1` of a chain as one step, each still its own asset with its checks."""
    names = [f"{prefix}_link{i}" for i in range(first, first + size)]
    before = [dg.AssetKey(f"{prefix}_link{first - 1}")] if first else []
    decorator = dg.multi_asset(
        name=f"{prefix}_step{first}",
        outs={name: dg.AssetOut(is_required=False) for name in names},
        ins={"upstream": dg.AssetIn(before[0])} if first else None,
        internal_asset_deps={name: {dg.AssetKey(names[n - 1])} if n else set(before) for n, name in enumerate(names)},
        check_specs=[spec for name in names for spec in _checks(name)],
        partitions_def=daily,
        can_subset=True,
    )

    def results() -> Iterator[dg.Output | dg.AssetCheckResult]:
        for n, name in enumerate(names):
            yield dg.Output(first + n, output_name=name)
            for spec in _checks(name):
                yield dg.AssetCheckResult(asset_key=name, check_name=spec.name, passed=True)

    if not first:

        @decorator
        def head() -> Iterator[dg.Output | dg.AssetCheckResult]:
            yield from results()

        return head

    @decorator
    def step(upstream: int) -> Iterator[dg.Output | dg.AssetCheckResult]:
        yield from results()

    return step


def _grouped(prefix: str, sizes: Sequence[int]) -> list[dg.AssetsDefinition]:
    starts = [sum(sizes[:n]) for n in range(len(sizes))]
    return [_step(prefix, first, size) for first, size in zip(starts, sizes, strict=True)]


links = [_link(i) for i in range(10)]
grouped = {name: _grouped(name, sizes) for name, sizes in LAYOUTS.items() if name != "chain"}
defs = dg.Definitions(
    assets=[*links, *(a for assets in grouped.values() for a in assets)],
    jobs=[
        dg.define_asset_job("chain", selection=[link.key for link in links]),
        *(dg.define_asset_job(name, selection=[k for a in assets for k in a.keys]) for name, assets in grouped.items()),
    ],
    executor=dg.in_process_executor,
)


def main() -> int:
    from benchmarks import machine

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--partition", default="2023-12-06")
    args = parser.parse_args()
    print(machine.describe())
    dagster = str(Path(sys.executable).with_name("dagster"))
    runs = {name: [] for name in [*LAYOUTS, "one_asset_job"]}
    for i in range(args.repeat):
        for job in runs:
            module = "benchmarks.one_asset_defs" if job == "one_asset_job" else "benchmarks.chain_defs"
            state = machine.BENCH_VAR / "chain" / job
            shutil.rmtree(state, ignore_errors=True)
            state.mkdir(parents=True)
            cli = [dagster, "job", "execute", "-m", module, "-j", job]
            cli += ["--tags", f'{{"dagster/partition": "{args.partition}"}}']
            env = {**os.environ, "DAGSTER_HOME": str(state), "PYTHONPATH": str(machine.REPO)}
            with machine.Stopwatch() as watch:
                subprocess.run(cli, cwd=machine.REPO, env=env, capture_output=True, check=True)
            runs[job].append(watch.seconds)
        print(
            f"  round {i + 1}: "
            + ", ".join(f"{j} {t[-1]:.2f} s" for j, t in runs.items())
            + f" (load {machine.load()})"
        )
    one = runs.pop("one_asset_job")
    for job, times in runs.items():
        ratios = [t / o for t, o in zip(times, one, strict=True)]
        print(
            f"  {job} ({len(LAYOUTS[job])} steps): median {statistics.median(times):.2f} s, "
            f"{statistics.median(ratios):.2f}x the one-asset job (median per round)"
        )
    print(f"  one-asset job: median {statistics.median(one):.2f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Speed: vectorbt's `Portfolio.from_signals` against our pipeline, on a recorded backtest's signals.

    .venv/bin/python -m benchmarks.vectorbt_compare [--fixture sample|long] [--repeat 5] [--pipeline-days 5]

Not like for like, and the output says so: vectorbt replays entry/exit signals that are already
known, while one partition of our pipeline computes them (candles, indicators, rules, analyst, 4h
timing, Kelly sizing, ledger, checks) through Dagster. Three figures:
1. vectorbt from_signals on the fixture's fills: first call (Numba compiles) and warm calls;
2. our own accounting of the same fills (`equity_curve` + `round_trips`), the part vectorbt replaces;
3. the pipeline per partition, measured now over `--pipeline-days` days of the same recording.
"""

import argparse
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path

from makenaide_assets.backtest.evaluate import round_trips
from makenaide_assets.backtest.runner import BacktestSpec, run_backtest
from makenaide_assets.strategy.performance import equity_curve
from makenaide_assets_tests.backtest.vectorbt_replay import load, portfolio, replay_dir


def timed(fn, repeat: int) -> list[float]:
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        fn()
        times.append(time.perf_counter() - started)
    return times


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--fixture", default="long", choices=["sample", "long"])
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--pipeline-days", type=int, default=5, help="0 skips the pipeline measurement")
    args = parser.parse_args()
    load_avg = " ".join(f"{x:.2f}" for x in os.getloadavg())
    print(f"machine: {os.cpu_count()} cores, Python {platform.python_version()}, load average {load_avg}")

    recorded = load(args.fixture)
    meta, days = recorded.meta, len(recorded.closes)
    print(f"fixture {args.fixture}: {meta['start']} → {meta['end']}, {days} days, {len(recorded.fills)} fills, "
          f"{len(recorded.closes.columns)} markets")  # fmt: skip

    started = time.perf_counter()
    import vectorbt  # noqa: F401  (import time is part of what a user pays)

    imported = time.perf_counter() - started
    first = timed(lambda: portfolio(recorded).value(), 1)[0]
    warm = timed(lambda: portfolio(recorded).value(), args.repeat)
    print(f"vectorbt: import {imported:.2f} s; first from_signals + value() {first:.2f} s (Numba compiles); "
          f"warm median {statistics.median(warm) * 1000:.1f} ms")  # fmt: skip

    fills, closes, cash = recorded.fills, recorded.closes, meta["initial_cash_krw"]
    ours = timed(lambda: (equity_curve(fills, closes, cash), round_trips(fills)), args.repeat)
    print(f"ours (equity_curve + round_trips on the same fills): median {statistics.median(ours) * 1000:.1f} ms")

    recorded_rate = meta["seconds"] / meta["partitions"]
    print(f"pipeline, as recorded when the fixture was made: {meta['seconds']} s for {meta['partitions']} "
          f"partitions = {recorded_rate:.2f} s per partition")  # fmt: skip
    if args.pipeline_days:
        end = recorded.closes.index[-1]
        start = recorded.closes.index[-args.pipeline_days]
        with tempfile.TemporaryDirectory() as tmp:
            spec = BacktestSpec(start=start, end=end, replay_dir=str(replay_dir(meta["recording"])),
                                workdir=Path(tmp) / "bt")  # fmt: skip
            run = run_backtest(spec)
        per, analysis = run.seconds / len(run.days), run.days["analysis_s"].median()
        print(f"pipeline now, {start} → {end}: {per:.2f} s per partition (analysis median {analysis:.2f} s); "
              f"a {days}-day backtest ≈ {per * days / 60:.0f} min")  # fmt: skip
    print(
        "vectorbt replays known signals; the pipeline produces them. The gap is the price of running the "
        "real assets (Dagster runs, checks, Parquet, ledger) instead of a vectorised second implementation."
    )


if __name__ == "__main__":
    main()

"""The two backtest engines measured in one run: per-day cost, their ratio, and the fast engine's full ranges.

.venv/bin/python benchmarks/backtest_engines.py [--dagster-days 6] [--skip-full]

1. The Dagster engine (the real jobs day by day, `runner.run_backtest`) on a short window of the
   sample that trades (2023-12-05 onwards): its seconds per day.
2. The fast engine (`fast.run_fast`) on the same window, in the same process: its seconds per day,
   and how many times cheaper a day is.
3. The fast engine over the long recording's whole range (2022-01-01 → 2025-09-29) and the sample's
   meaningful range (2023-07-12 → 2023-12-31): wall seconds against the 30 s targets, and per day
   against the Dagster engine's day.
Each fast run starts from a new engine (the replay files are read again); the process has already
imported everything, as a CLI run has after its first second. The machine's load (`uptime`) is
printed before and after: the 2-core machine is shared, and wall seconds move with it; the CPU
seconds of this process (`time.process_time`) move much less, and say what a quiet machine would take.
"""

import argparse
import subprocess
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd

from makenaide_assets.backtest.fast import run_fast
from makenaide_assets.backtest.runner import BacktestRun, BacktestSpec, run_backtest
from makenaide_assets.settings import SAMPLE_REPLAY_DIR

LONG = Path(__file__).resolve().parents[2] / "shared" / "data" / "upbit-long"
TARGET_RATIO = 50.0
TARGET_FULL_S = 30.0


def uptime() -> str:
    return subprocess.run(["uptime"], capture_output=True, text=True, check=False).stdout.strip()


def timed(run: Callable[[BacktestSpec], BacktestRun], spec: BacktestSpec) -> tuple[float, float, BacktestRun]:
    """Wall and CPU seconds of one run, and the run."""
    started, cpu = time.perf_counter(), time.process_time()
    done = run(spec)
    return time.perf_counter() - started, time.process_time() - cpu, done


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--dagster-days", type=int, default=6, help="days of the Dagster engine's window")
    parser.add_argument("--skip-full", action="store_true", help="only the short window of both engines")
    args = parser.parse_args()
    start = "2023-12-05"
    end = (pd.Timestamp(start) + pd.Timedelta(days=args.dagster_days - 1)).strftime("%Y-%m-%d")
    print(f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC; load before: {uptime()}", flush=True)
    with tempfile.TemporaryDirectory() as root:
        work = Path(root)
        window = {"start": start, "end": end, "replay_dir": str(SAMPLE_REPLAY_DIR)}
        d_s, d_cpu, d_run = timed(run_backtest, BacktestSpec(**window, workdir=work / "dagster"))
        f_s, f_cpu, f_run = timed(run_fast, BacktestSpec(**window, workdir=work / "fast"))
        days = len(d_run.days)
        d_fills = int((d_run.orders["status"] == "done").sum())
        f_fills = int((f_run.orders["status"] == "done").sum())
        per_day_d, per_day_f = d_s / days, f_s / days
        print(f"\nsample {start} → {end} ({days} days; fills: dagster {d_fills}, fast {f_fills})")
        print(f"  dagster engine: {d_s:7.1f} s  {per_day_d:8.3f} s/day  (CPU {d_cpu:.1f} s)")
        print(f"  fast engine:    {f_s:7.1f} s  {per_day_f:8.3f} s/day  (CPU {f_cpu:.1f} s)")
        ratio = per_day_d / per_day_f
        print(f"  a day is {ratio:,.0f}× cheaper on these {days} days (target ≥ {TARGET_RATIO:g}× over a range)")
        if args.skip_full:
            return
        rows = []
        for name, replay, first, last in (
            ("long", LONG, "2022-01-01", "2025-09-29"),
            ("sample", SAMPLE_REPLAY_DIR, "2023-07-12", "2023-12-31"),
        ):
            spec = BacktestSpec(start=first, end=last, replay_dir=str(replay), workdir=work / f"full-{name}")
            seconds, cpu, run = timed(run_fast, spec)
            days = len(run.days)
            fills = int((run.orders["status"] == "done").sum())
            ratio = per_day_d / (seconds / days)
            rows.append((name, f"{first} → {last}", days, fills, seconds, cpu, seconds / days, ratio))
            print(f"\nfast engine, {name} {first} → {last}: {days} days, {fills} fills; load {uptime()}", flush=True)
            print(
                f"  {seconds:.1f} s, CPU {cpu:.1f} s ({seconds / days * 1000:.1f} ms/day; target ≤ {TARGET_FULL_S:g} s)"
            )
            print(
                f"  against the Dagster engine's {per_day_d:.2f} s/day: {per_day_d * days / 60:.0f} min,"
                f" a day {ratio:,.0f}× cheaper"
            )
    print(f"\nload after: {uptime()}")
    columns = ["recording", "range", "days", "fills", "seconds", "cpu_seconds", "s_per_day", "x_cheaper_per_day"]
    print(pd.DataFrame(rows, columns=columns).to_markdown(index=False, floatfmt=".3f"))


if __name__ == "__main__":
    main()

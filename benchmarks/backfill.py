"""A 365-partition analysis_job backfill on a replay: wall time, per-partition time, peak memory.

    .venv/bin/python -m benchmarks.backfill [--start 2024-01-01 --end 2024-12-30] [--workers 2]

The way that proved fastest here: worker processes (one per core by default) that each import
the definitions once and execute the job in-process for their share of the partitions, on an
ephemeral Dagster instance. Asset values are written (Parquet under the state folder), as in
any run; the instance keeps its run and event history in memory only, since SQLite event writes
cost more than the analysis itself (`--instance sqlite` measures that: a DAGSTER_HOME per worker).
Analysis partitions do not depend on each other (no trading runs in between), so their order
does not matter. Default replay: the long recording (4 markets, 2022-01 → 2025-09).
"""

import argparse
import os
import resource
import shutil
import statistics
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path

import pandas as pd

from benchmarks import machine

LONG = machine.REPO.parent / "shared" / "data" / "upbit-long"
OUT = machine.BENCH_VAR / "backfill"
TARGET_S = 600.0
QUIET = {"loggers": {"console": {"config": {"log_level": "WARNING"}}}}


def work(partitions: list[str], instance_kind: str) -> dict:
    """One worker: import once, run each partition in-process; times, failures, peak RSS."""
    started = time.perf_counter()
    if instance_kind == "sqlite":
        os.environ["DAGSTER_HOME"] = tempfile.mkdtemp(dir=OUT)
    import dagster as dg

    from makenaide_assets.definitions import defs

    job = defs.resolve_job_def("analysis_job")
    instance = dg.DagsterInstance.get() if instance_kind == "sqlite" else dg.DagsterInstance.ephemeral()
    ready = time.perf_counter()
    times, failed = [], []
    for partition in partitions:
        t0 = time.perf_counter()
        result = job.execute_in_process(
            partition_key=partition, instance=instance, run_config=QUIET, raise_on_error=False
        )
        times.append(time.perf_counter() - t0)
        if not result.success:
            errors = [e.event_specific_data.error for e in result.all_events if e.is_step_failure]
            failed.append(f"{partition} ({errors[0].message.strip()[:300] if errors else 'no step failure'})")
    rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {"start_s": ready - started, "times": times, "failed": failed, "rss_mb": rss_mb}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--replay-dir", type=Path, default=LONG)
    parser.add_argument("--start", default="2024-01-01")
    parser.add_argument("--end", default="2024-12-30")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--instance", choices=["ephemeral", "sqlite"], default="ephemeral")
    args = parser.parse_args()
    partitions = [d.strftime("%Y-%m-%d") for d in pd.date_range(args.start, args.end, freq="D")]
    shutil.rmtree(OUT, ignore_errors=True)
    OUT.mkdir(parents=True)
    os.environ |= {"MAKENAIDE_VAR": str(OUT), "MAKENAIDE_REPLAY_DIR": str(args.replay_dir), "MAKENAIDE_MODE": "demo"}
    os.environ.pop("OPENAI_API_KEY", None)
    print(machine.describe())
    print(
        f"backfill: analysis_job × {len(partitions)} partitions {args.start} → {args.end} on {args.replay_dir}, "
        f"{args.workers} worker process(es), in-process executor, {args.instance} instance"
    )
    # The ledger exists before the workers start, as in any deployment: two runs creating a new
    # SQLite ledger in the same instant can collide on its first write.
    from makenaide_assets import settings
    from makenaide_assets.resources.ledger import TradingLedger

    TradingLedger(url=settings.ledger_url()).cash_krw(None)
    shares = [partitions[i :: args.workers] for i in range(args.workers)]
    with machine.Stopwatch() as watch, ProcessPoolExecutor(args.workers, mp_context=get_context("spawn")) as pool:
        results = list(pool.map(work, shares, [args.instance] * args.workers))
    times = sorted(t for r in results for t in r["times"])
    failed = sorted(p for r in results for p in r["failed"])
    per_partition = watch.seconds / len(partitions)
    print(
        f"  wall {watch.seconds:.0f} s = {watch.seconds / 60:.1f} min (target <= {TARGET_S / 60:.0f} min), "
        f"{per_partition:.2f} s per partition overall"
    )
    print(
        f"  one partition in a worker: median {statistics.median(times):.2f} s, "
        f"p90 {times[int(0.9 * (len(times) - 1))]:.2f} s, max {times[-1]:.2f} s; "
        f"start-up (imports, definitions) {max(r['start_s'] for r in results):.1f} s per worker"
    )
    rss = [r["rss_mb"] for r in results]
    print(f"  peak RSS per worker: {', '.join(f'{m:.0f} MB' for m in rss)} (sum {sum(rss):.0f} MB)")
    print(f"  failed partitions: {', '.join(failed) or 'none'}; load after: {machine.load()}")
    ok = not failed and watch.seconds <= TARGET_S
    print(f"targets {'met' if ok else 'MISSED'}. Output: asset values {OUT / 'storage'}, ledger {OUT}/ledger.sqlite")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())

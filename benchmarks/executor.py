"""analysis_job for one partition: in-process executor against the multiprocess one, through the real CLI.

    .venv/bin/python benchmarks/executor.py [--partition 2023-12-06] [--repeat 3]

Each run gets a fresh DAGSTER_HOME and state folder, so both executors do the same work.
"""

import argparse
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def run_once(job: str, partition: str) -> float:
    with tempfile.TemporaryDirectory() as tmp:
        env = {**os.environ, "DAGSTER_HOME": tmp, "MAKENAIDE_VAR": str(Path(tmp) / "var"), "MAKENAIDE_MODE": "demo"}
        started = time.perf_counter()
        done = subprocess.run(
            [str(Path(sys.executable).with_name("dagster")), "job", "execute", "-f", "benchmarks/executor_defs.py",
             "-j", job, "--tags", f'{{"dagster/partition": "{partition}"}}'],
            cwd=REPO, env=env, capture_output=True, text=True, check=False,
        )  # fmt: skip
        elapsed = time.perf_counter() - started
        if done.returncode != 0:
            raise SystemExit(f"{job} failed:\n{done.stderr[-2000:]}")
        return elapsed


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--partition", default="2023-12-06")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    print(
        f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
        f"Python {platform.python_version()}"
    )
    print(f"analysis_job, partition {args.partition}, {args.repeat} runs each, wall time incl. CLI start-up")
    for job in ("analysis_job", "analysis_job_multiprocess"):
        times = []
        for i in range(args.repeat):
            times.append(run_once(job, args.partition))
            print(f"  {job:28s} run {i + 1}: {times[-1]:6.1f} s", flush=True)
        print(f"  {job:28s} median: {statistics.median(times):6.1f} s")


if __name__ == "__main__":
    main()

"""Cold and warm daily analysis runs against the rate-limited local Upbit server.

    .venv/bin/python -m benchmarks.daily_fetch [--partition 2023-12-06] [--markets 230]

`analysis_job` runs in this process with the live client (`UpbitMarketData`) pointed at
makenaide_assets.testing.upbit_server (its own process, 10 requests/s per group, 429/418),
which serves the replicated replay (benchmarks/replicated_replay.py) as of 00:05 UTC after the
partition's close. Cold: an empty candle store, partition D. Warm: the server's clock moves a day
and partition D+1 runs on the store D left. Floor = requests / 10 per second (Upbit's limit).
The universe uses demo's 6-month threshold: the recording holds at most 13 monthly candles.
"""

import argparse
import os
import shutil
from pathlib import Path

import pandas as pd

from benchmarks import machine
from benchmarks.replicated_replay import DEFAULT_MARKETS, build
from benchmarks.server_process import ServerProcess

TARGET_FLOOR_RATIO = 1.2
OUT = machine.BENCH_VAR / "daily-fetch"


def _defs(url: str, store_dir: Path):  # -> dg.Definitions; Dagster is imported after MAKENAIDE_VAR is set
    import dagster as dg

    from makenaide_assets.definitions import build_defs
    from makenaide_assets.resources.thresholds import UniverseThresholds
    from makenaide_assets.resources.upbit_quotation import UpbitMarketData

    base = build_defs()
    resources = {
        **base.resources,
        "market_data": UpbitMarketData(base_url=url, store_dir=str(store_dir)),
        "universe_thresholds": UniverseThresholds(min_months=6),
    }
    return dg.Definitions(assets=base.assets, asset_checks=base.asset_checks, jobs=base.jobs, resources=resources)


def _meta(result, asset: str, key: str) -> int:
    """A metadata value of `asset`'s last materialisation (by asset: a step may produce several)."""
    events = [e for e in result.get_asset_materialization_events() if e.asset_key.to_user_string() == asset]
    return int(events[-1].materialization.metadata[key].value)


def run_day(server: ServerProcess, job, partition: str) -> dict:
    before = server.stats()
    with machine.Stopwatch() as watch:
        result = job.execute_in_process(partition_key=partition, raise_on_error=False)
    after = server.stats()
    if not result.success:
        raise SystemExit(f"analysis_job failed for {partition}; see the log above")
    requests = after["requests"] - before["requests"]
    groups = {g: n - before["by_group"].get(g, 0) for g, n in after["by_group"].items()}
    return {
        "partition": partition,
        "seconds": watch.seconds,
        "requests": requests,
        "groups": groups,
        "429": after["429"] - before["429"],
        "418": after["418"] - before["418"],
        "universe": _meta(result, "universe", "passed"),
        "candidates": _meta(result, "timing_4h", "dagster/row_count"),
        "floor": requests / 10.0,
    }


def report(label: str, day: dict) -> bool:
    ratio = day["seconds"] / day["floor"]
    groups = ", ".join(f"{g} {n}" for g, n in sorted(day["groups"].items()))
    print(
        f"  {label} {day['partition']}: {day['requests']} requests ({groups}), {day['429']} × 429, "
        f"{day['418']} × 418; wall {day['seconds']:.1f} s vs floor {day['floor']:.1f} s = {ratio:.2f}x "
        f"(target <= {TARGET_FLOOR_RATIO}x); universe {day['universe']}, 4h candidates {day['candidates']}"
    )
    return day["429"] == 0 and day["418"] == 0 and ratio <= TARGET_FLOOR_RATIO


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--partition", default="2023-12-06", help="the cold day; the warm day is the next")
    parser.add_argument("--markets", type=int, default=DEFAULT_MARKETS)
    args = parser.parse_args()
    replay = build(args.markets)
    shutil.rmtree(OUT, ignore_errors=True)
    os.environ["MAKENAIDE_VAR"] = str(OUT)  # ledger, asset values: a fresh state each time
    cold = args.partition
    warm = (pd.Timestamp(cold) + pd.Timedelta(days=1)).strftime("%Y-%m-%d")
    print(machine.describe())
    print(f"replay: {replay} — {args.markets} KRW markets, the sample's 63 real ones and byte copies under new codes")
    with ServerProcess(replay, f"{warm}T00:05:00Z") as server:
        job = _defs(server.url, OUT / "candles").resolve_job_def("analysis_job")
        print(f"daily analysis_job against {server.url} (10 requests/s per group), in this process:")
        cold_day = run_day(server, job, cold)
        ok = report("cold", cold_day)
        server.set_now(f"{(pd.Timestamp(warm) + pd.Timedelta(days=1)):%Y-%m-%d}T00:05:00Z")
        warm_day = run_day(server, job, warm)
        ok = report("warm", warm_day) and ok
    budget = warm_day["universe"] + warm_day["candidates"] + 3
    print(f"  warm requests {warm_day['requests']} vs universe + candidates + 3 = {budget}")
    ok = ok and warm_day["requests"] <= budget
    print(f"machine load after: {machine.load()}" + ("  (busy: re-run for a clean figure)" if machine.busy() else ""))
    print(f"targets {'met' if ok else 'MISSED'}.")
    print(f"Output: candle store {OUT / 'candles'}, asset values {OUT / 'storage'}")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())

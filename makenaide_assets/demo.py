"""The demo: analysis for a range of recorded days, the sensor after each, trading where it asks.

Runs the real jobs and the real `signals_sensor` against the persistent Dagster instance in
DAGSTER_HOME, so `dagster dev` afterwards shows every run, materialisation and check.
Day by day, because D+1's signals read the positions D's fills left in the ledger.
"""

import argparse
import os
import sys
import time
from pathlib import Path

import dagster as dg
import pandas as pd

# The console shows one line per day; every event still goes to the instance's event log (UI).
QUIET = {"loggers": {"console": {"config": {"log_level": "WARNING"}}}}
DEFAULT_START = "2023-12-01"
DEFAULT_END = "2023-12-31"


def _parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m makenaide_assets.demo", description=__doc__)
    parser.add_argument("--start", default=DEFAULT_START, help=f"first partition (default {DEFAULT_START})")
    parser.add_argument("--end", default=DEFAULT_END, help=f"last partition (default {DEFAULT_END})")
    return parser.parse_args(argv)


def _signal_summary(result: dg.ExecuteInProcessResult) -> str:
    materializations = result.asset_materializations_for_node("signals")
    if not materializations:
        return "signals not materialised"
    meta = materializations[-1].metadata
    count = meta["signal_count"].value
    parts = [f"{meta[k].value} {k}" for k in ("buys", "adds", "sells") if k in meta and meta[k].value]
    return f"{count} signals" + (f" ({', '.join(parts)})" if parts else "")


def run(argv: list[str] | None = None) -> int:
    args = _parse(argv)
    os.environ.setdefault("DAGSTER_HOME", str(Path.cwd()))
    from makenaide_assets import settings
    from makenaide_assets.definitions import defs
    from makenaide_assets.trading.sensors import signals_sensor

    if settings.mode() != "demo":
        print(f"the demo runs in MAKENAIDE_MODE=demo only (now {settings.mode()}); nothing was run", file=sys.stderr)
        return 2
    partitions = [d.strftime("%Y-%m-%d") for d in pd.date_range(args.start, args.end, freq="D")]
    instance = dg.DagsterInstance.get()
    analysis = defs.resolve_job_def("analysis_job")
    trading = defs.resolve_job_def("trading_job")
    print(f"Makenaide demo: {len(partitions)} partitions {args.start} → {args.end} on {settings.replay_dir()}")
    # The sensor's cursor starts at this instance's newest `signals` materialisation, as a daemon
    # would carry it: an earlier demo's days must not be offered for trading again.
    latest = instance.fetch_materializations(dg.AssetKey("signals"), limit=1).records
    cursor = str(latest[0].storage_id) if latest else None
    failures, traded, started = [], [], time.monotonic()
    for i, partition in enumerate(partitions, 1):
        t0 = time.monotonic()
        result = analysis.execute_in_process(
            partition_key=partition, instance=instance, run_config=QUIET, raise_on_error=False
        )
        line = f"[{i}/{len(partitions)}] {partition} analysis {'ok' if result.success else 'FAILED'}"
        line += f": {_signal_summary(result)}" if result.success else ""
        if not result.success:
            failures.append(partition)
        context = dg.build_sensor_context(instance=instance, cursor=cursor, definitions=defs)
        tick = signals_sensor.evaluate_tick(context)
        cursor = tick.cursor
        for request in tick.run_requests or []:
            trade = trading.execute_in_process(
                partition_key=request.partition_key,
                instance=instance,
                tags=request.tags,
                run_config=QUIET,
                raise_on_error=False,
            )
            traded.append(request.partition_key)
            line += f"; trading {'ok' if trade.success else 'FAILED'}"
            if not trade.success:
                failures.append(f"{request.partition_key} (trading)")
        print(f"{line} ({time.monotonic() - t0:.1f}s)", flush=True)
    _print_results(instance, traded, failures, time.monotonic() - started)
    return 1 if failures else 0


def _print_results(instance: dg.DagsterInstance, traded: list[str], failures: list[str], seconds: float) -> None:
    from makenaide_assets import settings
    from makenaide_assets.trading.ledger import TradingLedger

    ledger = TradingLedger(url=settings.ledger_url())
    equity = ledger.equity_history()
    print(f"\nDone in {seconds:.0f}s: trading ran for {len(traded)} day(s); failures: {', '.join(failures) or 'none'}")
    if not equity.empty:
        last = equity.iloc[-1]
        print(f"Equity on {last['partition_key']}: {last['equity_krw']:,.0f} KRW (cash {last['cash_krw']:,.0f})")
    print("Results:")
    print(f"  asset values (Parquet, one file per partition): {settings.storage_root()}")
    print(f"  trading ledger (orders, fills, positions, cash): {settings.ledger_url()}")
    print(f"  Dagster instance (runs, materialisations, checks): {Path(instance.root_directory).resolve()}")
    print("  browse them: DAGSTER_HOME=$PWD .venv/bin/dagster dev   → http://127.0.0.1:3000")


if __name__ == "__main__":
    sys.exit(run())

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

DEFAULT_START = "2023-12-01"
DEFAULT_END = "2023-12-31"


def _parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m makenaide_assets.demo", description=__doc__)
    parser.add_argument("--start", default=DEFAULT_START, help=f"first partition (default {DEFAULT_START})")
    parser.add_argument("--end", default=DEFAULT_END, help=f"last partition (default {DEFAULT_END})")
    return parser.parse_args(argv)


def run(argv: list[str] | None = None) -> int:
    args = _parse(argv)
    os.environ.setdefault("DAGSTER_HOME", str(Path.cwd()))
    from makenaide_assets import settings
    from makenaide_assets.days import DayRunner
    from makenaide_assets.definitions import build_defs
    from makenaide_assets.partitions import daily

    if settings.mode() != "demo":
        print(f"the demo runs in MAKENAIDE_MODE=demo only (now {settings.mode()}); nothing was run", file=sys.stderr)
        return 2
    partitions = [d.strftime("%Y-%m-%d") for d in pd.date_range(args.start, args.end, freq="D")]
    outside = [p for p in partitions if not daily.has_partition_key(p)]
    if not partitions or outside:
        first, last = daily.get_first_partition_key(), daily.get_last_partition_key()
        print(
            f"{args.start} → {args.end} is not inside the partitions of {settings.replay_dir()} ({first} → {last});"
            " nothing was run",
            file=sys.stderr,
        )
        return 2
    instance = dg.DagsterInstance.get()
    runner = DayRunner.from_instance_cursor(build_defs(), instance)
    print(f"Makenaide demo: {len(partitions)} partitions {args.start} → {args.end} on {settings.replay_dir()}")
    failures, traded, started = [], [], time.monotonic()
    for i, partition in enumerate(partitions, 1):
        day = runner.run(partition)
        line = f"[{i}/{len(partitions)}] {partition} analysis {'ok' if day.analysis_ok else 'FAILED'}"
        line += f": {day.signal_summary}" if day.analysis_ok else ""
        if not day.analysis_ok:
            failures.append(partition)
        for key in day.traded:
            traded.append(key)
            line += f"; trading {'ok' if day.trading_ok else 'FAILED'}"
            line += f": {', '.join(day.orders)}" if day.orders else ""
        for _ in day.reported:
            line += f"; valued and reported{'' if day.trading_ok else ' (FAILED)'}"
        if day.stopped:
            line += f"; stop watch sold {', '.join(day.stopped)}"
        if (day.traded or day.reported) and not day.trading_ok:
            failures.append(f"{partition} (trading or report)")
        print(f"{line} ({day.analysis_s + day.trading_s:.1f}s)", flush=True)
    _print_results(instance, traded, failures, time.monotonic() - started)
    return 1 if failures else 0


def _print_results(instance: dg.DagsterInstance, traded: list[str], failures: list[str], seconds: float) -> None:
    from makenaide_assets import settings
    from makenaide_assets.resources.ledger import TradingLedger
    from makenaide_assets.sql import shown_url

    ledger = TradingLedger(url=settings.ledger_url())
    equity = ledger.equity_history(None)
    print(f"\nDone in {seconds:.0f}s: trading ran for {len(traded)} day(s); failures: {', '.join(failures) or 'none'}")
    if not equity.empty:
        print(_result_line(ledger.initial_cash_krw, equity))
    print("Results:")
    print(f"  asset values (Parquet, one file per partition): {settings.storage_root()}")
    print(f"  trading ledger (orders, fills, positions, cash): {shown_url(settings.ledger_url())}")
    print(f"  Dagster instance (runs, materialisations, checks): {Path(instance.root_directory).resolve()}")
    print("  browse them: DAGSTER_HOME=$PWD .venv/bin/dagster dev   → http://127.0.0.1:3000")


def _result_line(start_krw: float, equity: pd.DataFrame) -> str:
    """Start capital, equity on the last day and its return, and buy-and-hold KRW-BTC over the same
    days (all of the start capital into KRW-BTC at the first day's close, fee paid)."""
    from makenaide_assets import settings
    from makenaide_assets.resources.market_data import ReplayMarketData, daily_closes
    from makenaide_assets.strategy.performance import buy_and_hold
    from makenaide_assets.strategy.ticks import FEE_RATE

    first, last = equity.iloc[0], equity.iloc[-1]
    end = float(last["equity_krw"])
    line = (
        f"Start capital {start_krw:,.0f} KRW; equity on {last['partition_key']}: {end:,.0f} KRW"
        f" ({end / start_krw - 1:+.2%}; cash {float(last['cash_krw']):,.0f})"
    )
    market_data = ReplayMarketData(replay_dir=settings.replay_dir())
    closes = daily_closes(market_data, ["KRW-BTC"], first["partition_key"], last["partition_key"])["KRW-BTC"]
    held = buy_and_hold(closes, start_krw, FEE_RATE).dropna() if closes.notna().any() else closes.dropna()
    if held.empty:
        return line + "; buy-and-hold KRW-BTC: no KRW-BTC closes in the recording"
    days = f"{first['partition_key']} → {held.index[-1]}"
    return line + f"\nBuy-and-hold KRW-BTC over {days}: {held.iloc[-1]:,.0f} KRW ({held.iloc[-1] / start_krw - 1:+.2%})"


if __name__ == "__main__":
    sys.exit(run())

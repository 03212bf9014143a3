"""Run the project's real jobs day by day over a range of partitions, in a sandbox of their own.

Not a second implementation of the strategy: each day is `analysis_job`, the real
`signals_sensor`, and `trading_job` for what it requests, exactly as the schedule and the demo run
them. Only the resources differ: replayed market data, the rules analyst, the paper broker, and a
fresh ledger, Parquet storage and in-memory Dagster instance inside `workdir`. The sandbox matters:
in the user's instance the real sensor would see the backtest's `signals` and trade them into the
real ledger.
"""

import json
import shutil
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import dagster as dg
import pandas as pd

from makenaide_assets.days import QUIET, DayRunner
from makenaide_assets.pipeline import pipeline_definitions
from makenaide_assets.resources.broker import PaperBroker
from makenaide_assets.resources.io_manager import ParquetIOManager
from makenaide_assets.resources.ledger import TradingLedger
from makenaide_assets.resources.market_data import ReplayMarketData
from makenaide_assets.resources.modes import resources_for
from makenaide_assets.trading.stop_watch import stop_levels_config

MARKER = "BACKTEST.json"  # only a folder carrying it is ever wiped
DAY_COLUMNS = ["partition", "analysis_ok", "signal_count", "traded", "trading_ok", "analysis_s", "trading_s", "error"]


@dataclass(frozen=True)
class BacktestSpec:
    start: str
    end: str
    replay_dir: str
    workdir: Path
    initial_cash_krw: float = 10_000_000.0
    # Run config per analysis op, e.g. {"signals": {"config": {"min_trades": 5}}}.
    ops_config: Mapping[str, Any] = field(default_factory=dict)
    # "rules" (offline, reproducible) or "openai" (GPT, Dagster engine only: OPENAI_API_KEY, budgeted).
    analyst: str = "rules"

    def partitions(self) -> list[str]:
        days = pd.date_range(self.start, self.end, freq="D")
        if days.empty:
            raise ValueError(f"backtest range {self.start} → {self.end} holds no day")
        return [d.strftime("%Y-%m-%d") for d in days]


@dataclass(frozen=True)
class BacktestRun:
    spec: BacktestSpec
    days: pd.DataFrame  # DAY_COLUMNS, one row per partition
    orders: pd.DataFrame  # every order of the ledger with its fill (status done) or why not
    ledger_equity: pd.DataFrame  # what `portfolio` recorded on the days trading ran
    seconds: float
    # Every day's signals with partition_key and stats_trades (fast engine); None: in the storage.
    signals: pd.DataFrame | None = None
    engine: str = "dagster"

    def fills(self) -> pd.DataFrame:
        return self.orders[self.orders["status"] == "done"].reset_index(drop=True)


def prepare_workdir(workdir: Path, spec: BacktestSpec) -> None:
    """Start from nothing: a backtest on a ledger left by another would not be a backtest."""
    if workdir.exists() and any(workdir.iterdir()):
        if not (workdir / MARKER).is_file():
            raise FileExistsError(f"{workdir} is not empty and is not a backtest folder; refusing to delete it")
        shutil.rmtree(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    recipe = {"start": spec.start, "end": spec.end, "replay_dir": spec.replay_dir, "ops": dict(spec.ops_config)}
    recipe["analyst"] = spec.analyst
    (workdir / MARKER).write_text(json.dumps(recipe, indent=2, default=str))


def sandbox_resources(spec: BacktestSpec) -> dict[str, Any]:
    """Demo mode's resources, pointed into the workdir. The rules analyst unless `spec.analyst` asks
    for GPT: over hundreds of days it spends up to the per-partition budget each day and is not
    reproducible (the fast engine refuses it)."""
    ledger = TradingLedger(url=f"sqlite:///{spec.workdir / 'ledger.sqlite'}", initial_cash_krw=spec.initial_cash_krw)
    market_data = ReplayMarketData(replay_dir=spec.replay_dir)
    return {
        **resources_for("demo", has_openai_key=spec.analyst == "openai"),
        "io_manager": ParquetIOManager(base_path=str(spec.workdir / "storage")),
        "ledger": ledger,
        "market_data": market_data,
        # The sandbox's own ledger and prices: the demo broker's would book into the user's ledger.
        "broker": PaperBroker(ledger=ledger, market_data=market_data),
    }


def run_backtest(spec: BacktestSpec, progress: Callable[[str], None] | None = None) -> BacktestRun:
    prepare_workdir(spec.workdir, spec)
    resources = sandbox_resources(spec)
    runner = DayRunner(
        pipeline_definitions(resources),
        dg.DagsterInstance.ephemeral(),
        analysis_config={**QUIET, "ops": dict(spec.ops_config)} if spec.ops_config else QUIET,
        trading_config=stop_levels_config(spec.ops_config.get("signals", {}).get("config", {})),
    )
    started, rows = time.monotonic(), []
    partitions = spec.partitions()
    for i, partition in enumerate(partitions, 1):
        day = runner.run(partition)
        rows.append({
            "partition": partition, "analysis_ok": day.analysis_ok, "signal_count": day.signal_count,
            "traded": bool(day.traded), "trading_ok": day.trading_ok, "analysis_s": day.analysis_s,
            "trading_s": day.trading_s, "error": day.error,
        })  # fmt: skip
        if progress is not None:
            status = "ok" if day.analysis_ok else f"FAILED ({day.error})"
            progress(f"[{i}/{len(partitions)}] {partition} analysis {status}, {day.signal_count} signals"
                     + (f", trading {'ok' if day.trading_ok else 'FAILED'}" if day.traded else ""))  # fmt: skip
    days = pd.DataFrame(rows, columns=DAY_COLUMNS)
    days.to_csv(spec.workdir / "days.csv", index=False)
    ledger: TradingLedger = resources["ledger"]
    orders = ledger.all_orders()
    orders.to_csv(spec.workdir / "orders.csv", index=False)
    equity = ledger.equity_history(None)
    ledger.engine().dispose()
    return BacktestRun(spec, days, orders, equity, seconds=time.monotonic() - started)

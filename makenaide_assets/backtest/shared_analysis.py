"""Fast-engine runs that share the analysis up to `candidates` with the other runs of their process.

A walk-forward runs every grid cell on overlapping train windows (180-day windows stepping by 30
days put each day in six of them), and every run with the same candidate parameters
(`breadth_and_candidates`' `min_score`) reads the same universe, indicators and candidates for a
day: `FastEngine.prepare` computes them from the recording and those parameters alone, never from
the book or `signals`' config. `run_shared` is `fast.run_fast` with those days taken from a cache
kept per process (a pool worker, a Dagster run), filled in chunks aligned to the calendar so a
window starting on any day reuses the chunks of the windows before it.

What it does not share: everything after `candidates` (verdicts, 4-hour timing, the book, orders,
the stop watch), which `FastEngine.analyse` computes per run. `test_walk_forward.py` holds a
shared run equal to `run_fast`'s, cell after cell in one process.
"""

import time
from collections.abc import Sequence
from typing import Any

import pandas as pd

from makenaide_assets.backtest.fast import (
    DAY_COLUMNS,
    EQUITY_COLUMNS,
    ORDER_COLUMNS,
    PREPARE_DAYS,
    SIGNAL_COLUMNS,
    Day,
    FastEngine,
    Prepared,
    refuse_unsupported,
)
from makenaide_assets.backtest.runner import BacktestRun, BacktestSpec, prepare_workdir
from makenaide_assets.strategy.calendar import partition_close
from makenaide_assets.trading.stop_watch import StopWatchConfig, shared_exits

# Chunks start on multiples of PREPARE_DAYS days from this day, whatever a run's first day.
ORIGIN = pd.Timestamp("2000-01-01")
# (replay, candidate parameters) kept at once: a walk-forward's grid names a few min_score values;
# a long-lived process (tests, a code server) should not keep every recording it ever saw.
MAX_KEPT = 4
_prepared: dict[tuple[str, Any], dict[str, Prepared]] = {}


def clear() -> None:
    """Forget every prepared day of this process."""
    _prepared.clear()


def _chunk_of(key: str) -> list[str]:
    """The calendar-aligned PREPARE_DAYS days holding `key`."""
    offset = (pd.Timestamp(key) - ORIGIN).days // PREPARE_DAYS * PREPARE_DAYS
    first = ORIGIN + pd.Timedelta(days=offset)
    return pd.date_range(first, periods=PREPARE_DAYS, freq="D").strftime("%Y-%m-%d").tolist()


def _cache_for(engine: FastEngine) -> dict[str, Prepared]:
    key = (engine.spec.replay_dir, engine.candidate_params)
    if key not in _prepared and len(_prepared) >= MAX_KEPT:
        _prepared.pop(next(iter(_prepared)))  # the oldest
    return _prepared.setdefault(key, {})


def prepared_days(engine: FastEngine, keys: Sequence[str]) -> dict[str, Prepared]:
    """`engine.prepare` of `keys`, each computed once per process for the engine's recording and
    candidate parameters. Shared read-only: `analyse` reads a Prepared, never changes it."""
    cache = _cache_for(engine)
    for key in keys:
        if key not in cache:
            cache.update(engine.prepare(_chunk_of(key)))
    return {key: cache[key] for key in keys}


def run_shared(spec: BacktestSpec) -> BacktestRun:
    """`fast.run_fast(spec)`, the days up to `candidates` from this process's cache."""
    refuse_unsupported(spec)
    prepare_workdir(spec.workdir, spec)
    started = time.monotonic()
    engine = FastEngine.for_spec(spec)
    # The stop watch watches the exits `signals` judges with, as in run_fast.
    exits = StopWatchConfig(**shared_exits(spec.ops_config.get("signals", {}).get("config", {}))).exits()
    partitions = spec.partitions()
    t0 = time.monotonic()
    prepared = prepared_days(engine, partitions)
    share = (time.monotonic() - t0) / len(partitions)
    days: list[Day] = []
    for key in partitions:
        day = Day(key)
        if prepared[key].error is None:
            # The engine's own market list and candles, which `analyse` cuts (prepare reads them
            # when it runs; a fully cached run never called it). Cheap: the files are read once per process.
            engine.tickers(partition_close(key))
        t0 = time.monotonic()
        engine.analyse(day, prepared[key])
        t1 = time.monotonic()
        day.analysis_s = share + t1 - t0
        if day.reported:
            day.traded = day.analysis_ok and day.signal_count > 0
            if day.traded:
                engine.trade(day)
            engine.value(day)
            engine.watch_stops(day, exits)
            day.trading_ok = True
            day.trading_s = time.monotonic() - t1
        days.append(day)
    return _run_of(spec, days, engine, time.monotonic() - started)


def _run_of(spec: BacktestSpec, days: list[Day], engine: FastEngine, seconds: float) -> BacktestRun:
    """The BacktestRun run_fast returns (and its days.csv, orders.csv)."""
    frame = pd.DataFrame([d.row() for d in days], columns=DAY_COLUMNS)
    frame.to_csv(spec.workdir / "days.csv", index=False)
    orders = pd.DataFrame(engine.orders, columns=ORDER_COLUMNS)
    for column in ("price", "volume", "fee", "krw_value", "realized_pnl_krw", "ref_price"):
        orders[column] = orders[column].astype("float64")
    orders["executed_at"] = pd.to_datetime(orders["executed_at"])
    orders["triggered_at"] = pd.to_datetime(orders["triggered_at"])
    orders.to_csv(spec.workdir / "orders.csv", index=False)
    signals = [
        d.signals.assign(partition_key=d.partition, stats_trades=d.stats_trades)
        for d in days
        if d.signals is not None and len(d.signals)
    ]
    sized = pd.concat(signals, ignore_index=True)[SIGNAL_COLUMNS] if signals else pd.DataFrame(columns=SIGNAL_COLUMNS)
    return BacktestRun(
        spec,
        frame,
        orders,
        pd.DataFrame(engine.equity, columns=EQUITY_COLUMNS),
        seconds,
        signals=sized,
        engine="fast",
    )

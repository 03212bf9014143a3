"""Fast-engine runs that share the analysis up to `candidates` with the other runs of their process.

A walk-forward runs every grid cell on overlapping train windows (180-day windows stepping by 30
days put each day in six of them), and every run with the same candidate parameters
(`breadth_and_candidates`' `min_score`) reads the same universe, indicators and candidates for a
day: `FastEngine.prepare` computes them from the recording and those parameters alone, never from
the book or `signals`' config. `run_shared` is `fast.run_fast` with those days taken from a cache
kept per process (a pool worker, a Dagster run), filled in chunks aligned to the calendar so a
window starting on any day reuses the chunks of the windows before it; the run itself is run_fast's.

What it does not share: everything after `candidates` (verdicts, 4-hour timing, the book, orders,
the stop watch), which `FastEngine.analyse` computes per run. `test_walk_forward.py` holds a
shared run equal to `run_fast`'s, cell after cell in one process.
"""

from collections.abc import Sequence
from typing import Any

import pandas as pd

from makenaide_assets.backtest.fast import PREPARE_DAYS, FastEngine, Prepared, run_fast
from makenaide_assets.backtest.runner import BacktestRun, BacktestSpec
from makenaide_assets.strategy.calendar import partition_close

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
        elif cache[key].error is None:
            # The engine's own market list and candles, which `analyse` cuts (`prepare` reads them
            # when it runs; a run whose days all come from the cache never called it).
            engine.tickers(partition_close(key))
    return {key: cache[key] for key in keys}


def run_shared(spec: BacktestSpec) -> BacktestRun:
    """`fast.run_fast(spec)`, the days up to `candidates` from this process's cache."""
    return run_fast(spec, prepare_days=prepared_days)

"""The one day runner: `analysis_job` for a partition, a `signals_sensor` tick, what the tick
asks (`trading_job`, or `report_job` on a day nothing is traded), then a `stop_watch_sensor` tick
at the end of the watch that follows (and the `stop_exit_job` it asks) — the daemon's order of
things, in one process.

Used by the demo (the user's instance) and the Dagster backtest engine (a sandbox). Whoever
calls it hands in the Definitions, so nothing that runs inside a run imports `definitions`.
"""

import logging
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, field
from typing import Any

import dagster as dg
import pandas as pd

from makenaide_assets.strategy.calendar import simulated_clock
from makenaide_assets.strategy.intraday import watch_window

# The console shows one line per day; every event still goes to the instance's event log (UI).
QUIET: dict[str, Any] = {"loggers": {"console": {"config": {"log_level": "WARNING"}}}}


@dataclass
class Day:
    partition: str
    analysis_ok: bool
    signal_count: int
    signal_summary: str
    traded: list[str] = field(default_factory=list)  # partitions whose trading ran after this day's tick
    reported: list[str] = field(default_factory=list)  # partitions only valued and reported (report_job)
    stopped: list[str] = field(default_factory=list)  # markets sold by the stop watch after them
    orders: list[str] = field(default_factory=list)  # the trading runs' executed orders, "buy KRW-DOGE"
    trading_ok: bool | None = None  # None: no trading or report run
    error: str | None = None
    analysis_s: float = 0.0
    trading_s: float = 0.0


@contextmanager
def at_instant(instant: pd.Timestamp) -> Iterator[None]:
    """ "Now" is `instant` inside the block (a replayed day's stop watch)."""
    with simulated_clock(lambda: pd.Timestamp(instant).to_pydatetime()):
        yield


class DayRunner:
    """Runs days in order against one instance, carrying the sensor's cursor from tick to tick.

    `clock(instant)` makes "now" that instant while the stop watch after a day ticks (default
    `at_instant`; the live rehearsal moves its local exchange's clock instead). The watch ticks
    once at its end, or every `watch_every` (the live rehearsal: a ticker shows one instant, so a
    daemon's ticks through the day are imitated).
    """

    def __init__(
        self,
        defs: dg.Definitions,
        instance: dg.DagsterInstance,
        analysis_config: Mapping[str, Any] | None = None,
        cursor: str | None = None,
        clock: Callable[[pd.Timestamp], AbstractContextManager[Any]] = at_instant,
        watch_every: pd.Timedelta | None = None,
        trading_config: Mapping[str, Any] | None = None,
    ) -> None:
        self.defs = defs
        self.instance = instance
        self.analysis_config = dict(analysis_config or QUIET)
        # The trading and report runs' config (a backtest's exits for `stop_levels`), quiet too.
        self.trading_config = {**QUIET, **(trading_config or {})}
        self.analysis = defs.resolve_job_def("analysis_job")
        self.trading = defs.resolve_job_def("trading_job")
        self.report = defs.resolve_job_def("report_job")
        self.sensor = defs.resolve_sensor_def("signals_sensor")
        self.watch = defs.resolve_sensor_def("stop_watch_sensor")
        self.stop_exit = defs.resolve_job_def("stop_exit_job")
        self.cursor = cursor
        self.clock = clock
        self.watch_every = watch_every

    @classmethod
    def from_instance_cursor(cls, defs: dg.Definitions, instance: dg.DagsterInstance, **kwargs: Any) -> "DayRunner":
        """Start where a daemon would: after this instance's newest `signals` materialisation, so
        days an earlier run already offered for trading are not offered again."""
        latest = instance.fetch_materializations(dg.AssetKey("signals"), limit=1).records
        return cls(defs, instance, cursor=str(latest[0].storage_id) if latest else None, **kwargs)

    def run(self, partition: str) -> Day:
        t0 = time.monotonic()
        result = self.analysis.execute_in_process(
            partition_key=partition, instance=self.instance, run_config=self.analysis_config, raise_on_error=False
        )
        count, summary = signal_summary(result)
        day = Day(partition, result.success, count, summary, analysis_s=time.monotonic() - t0)
        day.error = None if result.success else first_failure(result)
        with dg.build_sensor_context(instance=self.instance, cursor=self.cursor, definitions=self.defs) as context:
            # Outside the daemon a tick has no log key: its `context.log` goes to the console only,
            # an INFO line per day ("2023-12-06: 1 signals → trading_job") repeating the caller's
            # own. Quiet like the runs' console (QUIET): warnings and errors still show.
            context.log.setLevel(logging.WARNING)
            tick = self.sensor.evaluate_tick(context)
        self.cursor = tick.cursor
        for request in tick.run_requests or []:
            t1 = time.monotonic()
            job = self.report if request.job_name == self.report.name else self.trading
            trade = job.execute_in_process(
                partition_key=request.partition_key, instance=self.instance, tags=request.tags,
                run_config=self.trading_config, raise_on_error=False,
            )  # fmt: skip
            (day.reported if job is self.report else day.traded).append(str(request.partition_key))
            day.trading_s += time.monotonic() - t1
            day.trading_ok = trade.success if day.trading_ok is None else (day.trading_ok and trade.success)
            if job is self.trading and trade.success:
                fills = trade.output_for_node("fills")
                day.orders += [f"{r.side} {r.market}" for r in fills.itertuples() if r.status == "done"]
            if not trade.success:
                day.error = f"trading {request.partition_key}: {first_failure(trade)}"
            elif request.partition_key is not None:
                day.trading_s += self._watch(str(request.partition_key), day)
        return day

    def _watch(self, partition: str, day: Day) -> float:
        """The stop watch after `partition`'s run. Ticked at its end by default: a replay's 4-hour
        candles have all been seen by then, and a daemon ticking every few minutes finds the same
        first crossing, since the exit fills where the crossing was. Returns the seconds it took."""
        t0 = time.monotonic()
        start, end = watch_window(partition)
        instants = (
            [end]
            if self.watch_every is None
            else list(pd.date_range(start + self.watch_every, end, freq=self.watch_every))
        )
        resources = {key: self.defs.resources[key] for key in self.watch.required_resource_keys}
        for instant in instants:
            with self.clock(instant):
                with dg.build_sensor_context(
                    instance=self.instance, definitions=self.defs, resources=resources
                ) as context:
                    context.log.setLevel(logging.WARNING)
                    tick = self.watch.evaluate_tick(context)
                for request in tick.run_requests or []:
                    run = self.stop_exit.execute_in_process(
                        partition_key=partition, instance=self.instance, tags=request.tags, run_config=QUIET,
                        raise_on_error=False,
                    )  # fmt: skip
                    if run.success:
                        day.stopped.extend(str(request.tags.get("makenaide/stop_exits", "")).split(","))
                    else:
                        day.error = f"stop exits after {partition}: {first_failure(run)}"
                        day.trading_ok = False
        return time.monotonic() - t0


def signal_summary(result: dg.ExecuteInProcessResult) -> tuple[int, str]:
    """`signals`' count and a few words on it ("2 signals (1 buys, 1 sells)")."""
    materializations = result.asset_materializations_for_node("signals")
    if not materializations:
        return 0, "signals not materialised"
    meta = materializations[-1].metadata
    count = int(meta["signal_count"].value)  # type: ignore[arg-type]
    parts = [f"{meta[k].value} {k}" for k in ("buys", "adds", "sells") if k in meta and meta[k].value]
    return count, f"{count} signals" + (f" ({', '.join(parts)})" if parts else "")


def first_failure(result: dg.ExecuteInProcessResult) -> str:
    for event in result.all_events:
        if event.is_step_failure and event.step_failure_data is not None:
            error = event.step_failure_data.error
            message = error.message if error is not None else "no detail"
            return f"{event.step_key}: {message.strip().splitlines()[-1][:300]}"
    failed_checks = [e.check_name for e in result.get_asset_check_evaluations() if not e.passed]
    return f"failed checks: {', '.join(failed_checks)}" if failed_checks else "run failed"

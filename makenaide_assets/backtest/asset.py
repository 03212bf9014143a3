"""`backtest_report`: a backtest ending at partition D, run by the fast engine (backtest/fast.py), with plots.

The fast engine runs the assets' own functions in one process; `test_fast_engine.py` holds its
trades and equity equal to the Dagster engine's (the real jobs day by day, `runner.run_backtest`,
`python -m makenaide_assets.backtest --engine dagster`).

Daily-partitioned like every other asset: partition D is the backtest's last day, so it reads
nothing that had not closed by D (DESIGN §2), and re-materialising D with the same config gives
the same report. The first day comes from config (`start`, or `lookback_days` back from D).
"""

import math
from pathlib import Path

import dagster as dg
import pandas as pd
from pydantic import Field

from makenaide_assets import settings
from makenaide_assets.backtest.evaluate import BENCHMARK, BacktestResult, evaluate
from makenaide_assets.backtest.fast import run_fast
from makenaide_assets.backtest.plots import trade_returns_markdown
from makenaide_assets.backtest.runner import BacktestRun, BacktestSpec
from makenaide_assets.market.metadata import preview
from makenaide_assets.partitions import daily
from makenaide_assets.resources.market_data import ReplayMarketData
from makenaide_assets.trading.plots import equity_curve_markdown

HEADLINE = ["total_return_pct", "cagr_pct", "max_drawdown_pct", "sharpe", "exposure_pct", "time_in_market_pct"]


class BacktestConfig(dg.Config):
    start: str | None = Field(None, description="first partition, YYYY-MM-DD; default: lookback_days back from D")
    lookback_days: int = Field(180, ge=1, description="days ending at D when start is not given")
    replay_dir: str | None = Field(None, description="replay directory; default MAKENAIDE_REPLAY_DIR or the sample")
    initial_cash_krw: float = Field(10_000_000.0, gt=0.0)
    workdir: str | None = Field(None, description="sandbox folder; default <var>/backtests/<recording>_<start>_<D>")

    def spec(self, end: str) -> BacktestSpec:
        start = self.start or (pd.Timestamp(end) - pd.Timedelta(days=self.lookback_days - 1)).strftime("%Y-%m-%d")
        if pd.Timestamp(start) > pd.Timestamp(end):
            raise dg.Failure(f"backtest start {start} is after its last day {end}")
        replay = self.replay_dir or settings.replay_dir()
        name = f"{Path(replay).name}_{start}_{end}"
        workdir = Path(self.workdir) if self.workdir else settings.var_dir() / "backtests" / name
        return BacktestSpec(
            start=start, end=end, replay_dir=replay, workdir=workdir, initial_cash_krw=self.initial_cash_krw
        )


@dg.asset(
    partitions_def=daily,
    group_name="backtest",
    kinds={"pandas"},
    metadata={"contract": "a backtest ending at D: equity curve, return, drawdown, Sharpe, trades vs buy-and-hold"},
)
def backtest_report(context: dg.AssetExecutionContext, config: BacktestConfig) -> dg.MaterializeResult:
    """A backtest ending at D: the pipeline's functions over the range (fast engine), against buy-and-hold KRW-BTC."""
    spec = config.spec(context.partition_key)
    context.log.info(f"backtest {spec.start} → {spec.end} on {spec.replay_dir} in {spec.workdir}")
    run = run_fast(spec, progress=context.log.info)
    if not run.days["analysis_ok"].any():
        raise dg.Failure(f"no partition of {spec.start} → {spec.end} ran: {run.days['error'].iloc[0]}")
    result = evaluate(run, ReplayMarketData(replay_dir=spec.replay_dir))
    return dg.MaterializeResult(value=result.curve, metadata=report_metadata(run, result))


def report_metadata(run: BacktestRun, result: BacktestResult) -> dict[str, dg.MetadataValue | str]:
    spec, days, stats = run.spec, run.days, result.trade_stats
    failed = days[~days["analysis_ok"] | (days["trading_ok"] == False)]  # noqa: E712 (None = did not trade)
    curve = result.curve.rename(columns={"date": "partition_key"})
    title = f"Makenaide backtest {spec.start} → {spec.end}"
    sized = result.sizing.groupby(["kelly_source", "kelly_action"]).size().rename("entries").reset_index()
    return {
        "range": f"{spec.start} → {spec.end} ({len(days)} partitions)",
        "replay_dir": spec.replay_dir,
        "workdir": str(spec.workdir),
        **{name: _number(value) for name, value in result.strategy.items() if name in HEADLINE},
        **{f"benchmark_{name}": _number(result.benchmark[name]) for name in HEADLINE[:4]},
        "trades": dg.MetadataValue.int(stats.trades),
        "win_rate": _number(stats.win_rate),
        "profit_factor": _number(stats.profit_factor),
        "expectancy_krw": _number(stats.expectancy_krw),
        "summary": dg.MetadataValue.md(summary_table(result)),
        "equity_curve": dg.MetadataValue.md(equity_curve_markdown(curve, title, spec.initial_cash_krw)),
        "trade_returns": dg.MetadataValue.md(trade_returns_markdown(result.trips, "closed trades, after fees")),
        "closed_trades": preview(result.trips, rows=100),
        "entry_sizing": preview(sized, rows=20),
        "entries": preview(result.sizing, rows=100),
        "failed_partitions": preview(failed[["partition", "error"]], rows=50),
        "equity_reconciled": f"{result.reconciled_days} days against the equity the ledger recorded, "
        f"max difference {result.max_reconcile_diff_krw:,.6f} KRW",
        "seconds": _number(run.seconds),
        "seconds_per_partition": _number(run.seconds / len(days)),
        "analysis_s_median": _number(float(days["analysis_s"].median())),
        "trading_s_median_when_traded": _number(float(days.loc[days["traded"], "trading_s"].median())),
    }


def summary_table(result: BacktestResult) -> str:
    """Strategy against buy-and-hold, then the closed-trade statistics."""
    rows = [(name, result.strategy[name], result.benchmark[name]) for name in ["final_equity_krw", *HEADLINE]]
    table = pd.DataFrame(rows, columns=["metric", "strategy", f"buy & hold {BENCHMARK}"])
    stats = pd.DataFrame(list(result.trade_stats.as_dict().items()), columns=["closed trades", "value"])
    return table.to_markdown(index=False, floatfmt=",.4g") + "\n\n" + stats.to_markdown(index=False, floatfmt=",.4g")


def _number(value: float) -> dg.MetadataValue:
    return dg.MetadataValue.float(float(value)) if math.isfinite(value) else dg.MetadataValue.text(str(value))

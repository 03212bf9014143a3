"""What a backtest run amounts to: equity curve against buy-and-hold, trades, and how entries were sized."""

from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from makenaide_assets.backtest.runner import BacktestRun
from makenaide_assets.resources.market_data import MarketData, daily_closes
from makenaide_assets.strategy import performance
from makenaide_assets.strategy.stats import TradeStats, stats_of
from makenaide_assets.strategy.ticks import FEE_RATE

BENCHMARK = "KRW-BTC"
TRIP_COLUMNS = ["market", "entry_partition", "exit_partition", "entries", "holding_days", "pnl_krw", "return_pct"]
SIZING_COLUMNS = ["partition_key", "market", "side", "krw_value", "kelly_source", "kelly_action", "kelly_fraction"]


@dataclass(frozen=True)
class BacktestResult:
    curve: pd.DataFrame  # one row per day: equity, benchmark, drawdowns, exposure, the day's run
    strategy: dict[str, float]
    benchmark: dict[str, float]
    trade_stats: TradeStats
    trips: pd.DataFrame
    sizing: pd.DataFrame
    reconciled_days: int
    max_reconcile_diff_krw: float


def round_trips(fills: pd.DataFrame) -> pd.DataFrame:
    """One row per sell: since when the market was held (its first entry after being flat), the P&L."""
    rows = []
    for market, group in fills.sort_values(["partition_key"], kind="stable").groupby("market"):
        held, entry, entries = 0.0, None, 0
        for fill in group.itertuples(index=False):
            if fill.side in ("buy", "add"):
                entry = entry or fill.partition_key
                held, entries = held + fill.volume, entries + 1
                continue
            cost = fill.krw_value - fill.fee - fill.realized_pnl_krw
            days = (pd.Timestamp(fill.partition_key) - pd.Timestamp(entry)).days if entry else None
            rows.append(
                [
                    market,
                    entry,
                    fill.partition_key,
                    entries,
                    days,
                    fill.realized_pnl_krw,
                    fill.realized_pnl_krw / cost * 100,
                ]
            )
            held -= fill.volume
            if held <= 1e-9:
                held, entry, entries = 0.0, None, 0
    return pd.DataFrame(rows, columns=TRIP_COLUMNS).sort_values(["exit_partition", "market"], ignore_index=True)


def on_curve_days(fills: pd.DataFrame, last_day: str) -> pd.DataFrame:
    """Fills keyed by the day whose equity they move. A stop exit booked under D (kind `stop`) was sold
    during D+1, after D's `portfolio` valued D: it moves D+1's equity (none after the last day)."""
    if "kind" not in fills or not (fills["kind"] == "stop").any():
        return fills
    moved = fills.copy()
    stops = moved["kind"] == "stop"
    next_day = pd.to_datetime(moved.loc[stops, "partition_key"]) + pd.Timedelta(days=1)
    moved.loc[stops, "partition_key"] = next_day.dt.strftime("%Y-%m-%d")
    return moved[moved["partition_key"] <= last_day].reset_index(drop=True)


def entry_sizing(storage: Path, fills: pd.DataFrame, signals: pd.DataFrame | None = None) -> pd.DataFrame:
    """Each executed entry with the Kelly source, action and fraction its `signals` row carried.

    `signals`: every day's signals with `partition_key` and `stats_trades` (the fast engine keeps
    them); None reads the values the Dagster engine stored under `storage`.
    """
    entries = fills[fills["side"].isin(["buy", "add"])]
    rows = []
    for partition, group in entries.groupby("partition_key"):
        if signals is None:
            day = pd.read_parquet(storage / "signals" / f"{partition}.parquet")
            trades = int(pd.read_parquet(storage / "strategy_stats" / f"{partition}.parquet")["trades"].iloc[0])
        else:
            day = signals[signals["partition_key"] == partition]
            trades = int(day["stats_trades"].iloc[0])
        sized = group.merge(day[["market", "side", "kelly_source", "kelly_action", "kelly_fraction"]], how="left")
        rows.append(sized.assign(stats_trades=trades))
    if not rows:
        return pd.DataFrame(columns=[*SIZING_COLUMNS, "stats_trades"])
    return pd.concat(rows, ignore_index=True)[[*SIZING_COLUMNS, "stats_trades"]]


def evaluate(run: BacktestRun, market_data: MarketData, benchmark: str = BENCHMARK) -> BacktestResult:
    spec, fills = run.spec, run.fills()
    cash = spec.initial_cash_krw
    markets = sorted(set(fills["market"]) | {benchmark})
    closes = daily_closes(market_data, markets, spec.start, spec.end)
    curve = performance.equity_curve(on_curve_days(fills, spec.end), closes, cash)
    curve["benchmark_krw"] = performance.buy_and_hold(closes[benchmark], cash, FEE_RATE).to_numpy()
    curve["drawdown_pct"] = performance.drawdown(curve["equity_krw"], cash).to_numpy() * 100
    curve = curve.merge(run.days.rename(columns={"partition": "date"}), on="date", how="left")
    bench = curve[["date", "benchmark_krw"]].rename(columns={"benchmark_krw": "equity_krw"}).dropna()
    # On the days trading ran, `portfolio` recorded the ledger's own equity: the curve must agree.
    recorded = run.ledger_equity.set_index("partition_key")["equity_krw"]
    mine = curve.set_index("date")["equity_krw"].reindex(recorded.index)
    diff = (mine - recorded).abs()
    return BacktestResult(
        curve=curve,
        strategy=performance.summarise(curve, cash),
        benchmark=performance.summarise(bench.assign(exposure=1.0), cash),
        trade_stats=stats_of(fills[fills["side"] == "sell"]),
        trips=round_trips(fills),
        sizing=entry_sizing(spec.workdir / "storage", fills, run.signals),
        reconciled_days=int(diff.notna().sum()),
        max_reconcile_diff_krw=float(diff.max()) if diff.notna().any() else 0.0,
    )

"""`strategy_stats`: the closed-trade evidence for partition D, which `signals` sizes Kelly from.

It reads the trading ledger rather than `fills` as an asset input: D's statistics come from the
fills of earlier partitions, and fills -> strategy_stats -> signals -> fills would be a cycle in
the asset graph. `known_by` keeps the answer the same on a re-run made after later days traded.
"""

import math

import dagster as dg
import pandas as pd
from pydantic import Field

from makenaide_assets.market.metadata import preview
from makenaide_assets.partitions import daily
from makenaide_assets.resources.ledger import TradingLedger
from makenaide_assets.strategy.calendar import partition_close
from makenaide_assets.strategy.stats import TradeStats, in_window, known_by, stats_of, trade_returns, window_start

STATS_COLUMNS = [
    "date",
    "window_start",
    "window_days",
    *TradeStats.__dataclass_fields__,
    "trades_known",
    "last_trade_partition",
    "last_trade_executed_at",
    "note",
]
TRADE_COLUMNS = ["partition_key", "market", "price", "volume", "fee", "realized_pnl_krw", "return_pct"]


class StrategyStatsConfig(dg.Config):
    window_days: int = Field(365, ge=1, description="Partitions before D whose closed trades count")


def stats_frame(closed: pd.DataFrame, partition_key: str, window_days: int) -> pd.DataFrame:
    """The one-row statistics of D from every closed trade of the ledger (pure, for tests and checks)."""
    window = in_window(closed, partition_key, window_days)
    known = known_by(closed, partition_key)
    stats = stats_of(window)
    last = window.iloc[-1] if len(window) else None
    if stats.trades == 0:
        note = "no closed trade in the window: statistics undefined"
    elif stats.losses == 0:
        note = "no losing trade in the window: payoff ratio undefined, profit factor infinite"
    elif stats.wins == 0:
        note = "no winning trade in the window: average win and payoff ratio undefined"
    else:
        note = ""
    row = {
        "date": partition_key,
        "window_start": window_start(partition_key, window_days),
        "window_days": window_days,
        **stats.as_dict(),
        "trades_known": len(known),
        "last_trade_partition": None if last is None else str(last["partition_key"]),
        "last_trade_executed_at": pd.NaT if last is None else pd.Timestamp(last["executed_at"]),
        "note": note,
    }
    frame = pd.DataFrame([row], columns=STATS_COLUMNS)
    return frame.astype({"last_trade_executed_at": "datetime64[us]", "last_trade_partition": "object"})


@dg.asset(
    partitions_def=daily,
    group_name="analysis",
    kinds={"pandas", "sql"},
    metadata={"contract": "trades, win_rate, payoff_ratio, profit_factor, expectancy over a rolling window"},
)
def strategy_stats(
    context: dg.AssetExecutionContext, config: StrategyStatsConfig, ledger: TradingLedger
) -> dg.MaterializeResult:
    """Win rate, average win/loss, profit factor and expectancy of the trades closed before D (Kelly's inputs)."""
    key = context.partition_key
    closed = ledger.closed_trades()
    frame = stats_frame(closed, key, config.window_days)
    row = frame.iloc[0]
    window = in_window(closed, key, config.window_days)
    trades = window.assign(return_pct=trade_returns(window) * 100)[TRADE_COLUMNS] if len(window) else window
    return dg.MaterializeResult(
        value=frame,
        metadata={
            "trades": dg.MetadataValue.int(int(row["trades"])),
            "trades_known": dg.MetadataValue.int(int(row["trades_known"])),
            "win_rate": _float(row["win_rate"]),
            "payoff_ratio": _float(row["payoff_ratio"]),
            "profit_factor": _float(row["profit_factor"]),
            "expectancy_krw": _float(row["expectancy_krw"]),
            "total_pnl_krw": _float(row["total_pnl_krw"]),
            "window": f"{row['window_start']} → {key} (sells ordered before {key}, filled by its close)",
            "note": row["note"] or "none",
            "closed_trades": preview(trades, rows=50),
        },
    )


def _float(value: float) -> dg.MetadataValue:
    # Metadata floats must be finite to render; undefined statistics show as text.
    return dg.MetadataValue.float(float(value)) if math.isfinite(value) else dg.MetadataValue.text(str(value))


def consistency_problems(frame: pd.DataFrame, partition_key: str) -> list[str]:
    """Invariants any honest statistics row for D holds, whatever computed it."""
    if len(frame) != 1:
        return [f"{len(frame)} rows instead of one"]
    r = frame.iloc[0]
    problems = []
    if str(r["date"]) != partition_key:
        problems.append(f"date {r['date']} is not the partition {partition_key}")
    if int(r["wins"]) + int(r["losses"]) != int(r["trades"]) or int(r["trades"]) > int(r["trades_known"]):
        problems.append(f"wins {r['wins']} + losses {r['losses']} != trades {r['trades']} (known {r['trades_known']})")
    if int(r["trades"]) and not 0.0 <= float(r["win_rate"]) <= 1.0:
        problems.append(f"win rate {r['win_rate']} outside [0, 1]")
    for column in ("avg_win_krw", "avg_loss_krw", "avg_win_pct", "avg_loss_pct", "payoff_ratio", "profit_factor"):
        if float(r[column]) < 0:
            problems.append(f"{column} {r[column]} is negative")
    if int(r["trades"]) and abs(float(r["expectancy_krw"]) * int(r["trades"]) - float(r["total_pnl_krw"])) > 1e-6 * (
        1 + abs(float(r["total_pnl_krw"]))
    ):
        problems.append("expectancy × trades != total P&L")
    if pd.notna(r["last_trade_partition"]) and not str(r["last_trade_partition"]) < partition_key:
        problems.append(f"a trade ordered on {r['last_trade_partition']} was counted for {partition_key}")
    if pd.notna(r["last_trade_executed_at"]) and pd.Timestamp(r["last_trade_executed_at"]) > partition_close(
        partition_key
    ):
        problems.append(f"a trade filled at {r['last_trade_executed_at']}, after {partition_key} closed, was counted")
    return problems


def _window_of_run(context: dg.AssetCheckExecutionContext) -> int:
    ops = (context.run.run_config or {}).get("ops", {})
    return StrategyStatsConfig(**ops.get("strategy_stats", {}).get("config", {})).window_days


# Blocking: `signals` sizes money from these numbers.
@dg.asset_check(asset=strategy_stats, blocking=True, partitions_def=daily)
def strategy_stats_consistent(
    context: dg.AssetCheckExecutionContext, strategy_stats: pd.DataFrame
) -> dg.AssetCheckResult:
    """One row for D; wins + losses = trades; rates and averages in range; no trade closed after D counted."""
    problems = consistency_problems(strategy_stats, context.partition_key)
    return dg.AssetCheckResult(passed=not problems, metadata={"problems": "; ".join(problems) or "none"})


@dg.asset_check(asset=strategy_stats, blocking=True, partitions_def=daily)
def strategy_stats_matches_ledger(
    context: dg.AssetCheckExecutionContext, ledger: TradingLedger, strategy_stats: pd.DataFrame
) -> dg.AssetCheckResult:
    """Recomputed from the ledger's closed trades now, D's statistics are the same (re-runs are stable)."""
    again = stats_frame(ledger.closed_trades(), context.partition_key, _window_of_run(context))
    try:
        pd.testing.assert_frame_equal(strategy_stats, again, check_dtype=False, rtol=1e-9)
    except AssertionError as exc:
        return dg.AssetCheckResult(passed=False, metadata={"difference": str(exc)[:500]})
    return dg.AssetCheckResult(passed=True, metadata={"trades": int(again.iloc[0]["trades"])})


strategy_stats_checks = [strategy_stats_consistent, strategy_stats_matches_ledger]

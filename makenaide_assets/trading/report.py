"""`daily_report`: equity, P&L, drawdown, the day's trades and the day's check report."""

import dagster as dg
import pandas as pd

from makenaide_assets.market.metadata import preview
from makenaide_assets.partitions import daily
from makenaide_assets.resources.check_catalog import CheckCatalog
from makenaide_assets.resources.ledger import CutOff, TradingLedger
from makenaide_assets.resources.notifier import Notifier
from makenaide_assets.strategy.performance import drawdown
from makenaide_assets.trading.alerts import daily_summary
from makenaide_assets.trading.check_report import PASSED, check_outcomes, verdict
from makenaide_assets.trading.plots import equity_curve_markdown


def summarise_day(equity: pd.DataFrame, fills: pd.DataFrame, partition_key: str, initial_cash: float) -> dict:
    """Equity, P&L and drawdown for D from the equity history up to D (pure, for tests)."""
    history = equity[equity["partition_key"] <= partition_key].sort_values("partition_key")
    if history.empty or history["partition_key"].iloc[-1] != partition_key:
        raise ValueError(f"no equity recorded for {partition_key}: portfolio must run first")
    today = float(history["equity_krw"].iloc[-1])
    previous = float(history["equity_krw"].iloc[-2]) if len(history) > 1 else initial_cash
    drawdowns = drawdown(history["equity_krw"], initial_cash)
    done = fills[fills["status"] == "done"] if not fills.empty else fills
    return {
        "partition": partition_key,
        "equity_krw": today,
        "cash_krw": float(history["cash_krw"].iloc[-1]),
        "positions_value_krw": float(history["positions_value_krw"].iloc[-1]),
        "pnl_since_last_report_krw": today - previous,
        "pnl_total_krw": today - initial_cash,
        "return_total_pct": (today / initial_cash - 1) * 100,
        "drawdown_pct": float(drawdowns.iloc[-1] * 100),
        "max_drawdown_pct": float(drawdowns.min() * 100),
        "trades": len(done),
        "buys": int(done["side"].isin(["buy", "add"]).sum()) if len(done) else 0,
        "sells": int((done["side"] == "sell").sum()) if len(done) else 0,
        "fees_krw": float(done["fee"].sum()) if len(done) else 0.0,
        "not_executed": len(fills) - len(done),
    }


@dg.asset(partitions_def=daily, group_name="trading", kinds={"pandas"}, deps=["fills"])
def daily_report(
    context: dg.AssetExecutionContext,
    ledger: TradingLedger,
    check_catalog: CheckCatalog,
    notifier: Notifier,
    portfolio: pd.DataFrame,
) -> dg.MaterializeResult:
    """Equity, P&L, drawdown and trades of the day, an equity curve, and every check of D with its outcome."""
    key = context.partition_key
    fills = ledger.fills_for_partition(key)
    equity = ledger.equity_history(CutOff(key, own_orders=True))
    summary = summarise_day(equity, fills, key, ledger.initial_cash_krw)
    checks = check_outcomes(context.instance, check_catalog.check_keys(), key)
    summary["checks"] = len(checks)
    summary["checks_failed"] = int(checks["outcome"].str.startswith("failed").sum())
    summary["trust"] = verdict(checks)
    curve = equity[equity["partition_key"] <= key]
    trades = fills[["identifier", "market", "side", "price", "volume", "fee", "krw_value", "status", "reason"]]
    problems = checks[checks["outcome"] != PASSED]
    # The morning message, every day: the operator should not have to open the UI to know.
    notifier.send(daily_summary(summary, portfolio, fills, context.run.tags.get("makenaide/not_traded")), routine=True)
    return dg.MaterializeResult(
        value=pd.DataFrame([summary]),
        metadata={
            "can_i_trust_today": summary["trust"],
            "equity_krw": dg.MetadataValue.float(summary["equity_krw"]),
            "pnl_total_krw": dg.MetadataValue.float(summary["pnl_total_krw"]),
            "drawdown_pct": dg.MetadataValue.float(summary["drawdown_pct"]),
            "max_drawdown_pct": dg.MetadataValue.float(summary["max_drawdown_pct"]),
            "trades": dg.MetadataValue.int(summary["trades"]),
            "equity_curve": dg.MetadataValue.md(
                equity_curve_markdown(curve, f"Makenaide equity to {key}", ledger.initial_cash_krw)
            ),
            "trades_of_the_day": preview(trades, rows=50),
            "check_report": dg.MetadataValue.md(checks.to_markdown(index=False)),
            "check_problems": preview(problems, rows=50),
        },
    )

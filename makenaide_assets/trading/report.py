"""`daily_report`: equity, P&L, drawdown, the day's trades and the day's check report.

Returns are net of what was put in: the contributions as of a day are the ledger's seed (paper) or
opening balance (live) plus every KRW deposit and minus every withdrawal booked by D's cut-off
(the reconciliation's `adjustment` / `unexplained` cash events), so a deposit is never profit.
"""

from collections.abc import Sequence

import dagster as dg
import pandas as pd

from makenaide_assets.market.metadata import COLUMN_SCHEMA, OWNERS, catalog, krw, pct, table, table_schema
from makenaide_assets.partitions import daily
from makenaide_assets.resources.check_catalog import CheckCatalog
from makenaide_assets.resources.ledger import CutOff, TradingLedger
from makenaide_assets.resources.ledger.queries import ADJUSTMENT_KINDS
from makenaide_assets.resources.market_data import MarketData, daily_closes
from makenaide_assets.resources.notifier import Notifier
from makenaide_assets.strategy.performance import buy_and_hold, drawdown
from makenaide_assets.strategy.ticks import FEE_RATE
from makenaide_assets.trading.alerts import daily_summary
from makenaide_assets.trading.check_report import BLOCKED, FAILED, PASSED, check_outcomes, verdict
from makenaide_assets.trading.plots import equity_curve_markdown

BENCHMARK = "KRW-BTC"
CONTRIBUTION_KINDS = ("seed", *ADJUSTMENT_KINDS)
TRADE_COLUMNS = ["identifier", "market", "side", "price", "volume", "fee", "krw_value", "status", "reason"]

SCHEMA = table_schema(
    ("partition", "string", "The day D"),
    ("equity_krw", "float", "Cash plus positions at D's closes, KRW"),
    ("cash_krw", "float", "Ledger cash after D's orders, KRW"),
    ("positions_value_krw", "float", "Open positions at D's closes, KRW"),
    ("contributions_krw", "float", "Net KRW put in by D: seed or opening balance, plus deposits, minus withdrawals"),
    ("pnl_since_last_report_krw", "float", "Equity change since the previous recorded day, deposits excluded, KRW"),
    ("pnl_total_krw", "float", "Equity minus contributions, KRW"),
    ("return_total_pct", "float", "(equity - contributions) / contributions, %"),
    ("drawdown_pct", "float", "Below the highest value so far, deposits and withdrawals removed, %"),
    ("max_drawdown_pct", "float", "Deepest drawdown up to D, %"),
    ("buy_and_hold_krw", "float", "The contributions put into KRW-BTC on their day (fee paid), at D's close, KRW"),
    ("buy_and_hold_return_pct", "float", "(buy-and-hold - contributions) / contributions, %"),
    ("trades", "int", "Orders of D that executed"),
    ("buys", "int", "Of those, buys and adds"),
    ("sells", "int", "Of those, sells"),
    ("fees_krw", "float", "Fees of D's executed orders, KRW"),
    ("not_executed", "int", "Orders of D that did not execute (rejected, failed, skipped, unresolved)"),
    ("checks", "int", "Checks of the pipeline listed in the check report"),
    ("checks_failed", "int", "Of those, failed with error severity"),
    ("trust", "string", "can_i_trust_today: YES / YES, with warnings / CAUTION / NO, and why"),
)


def contributions_by_day(cash_events: pd.DataFrame, days: Sequence[str]) -> pd.Series:
    """Net KRW put in as of each day: the seed (undated) plus the dated adjustments booked by then.

    `cash_events` is `TradingLedger.cash_history(cut)` (kind, amount_krw, partition_key); fills'
    cash events are trading, not contributions."""
    flows = cash_events[cash_events["kind"].isin(CONTRIBUTION_KINDS)] if len(cash_events) else cash_events
    if flows.empty:
        return pd.Series(0.0, index=list(days), dtype="float64")
    undated = flows["partition_key"].isna()
    base = float(flows.loc[undated, "amount_krw"].sum())
    dated = flows[~undated]
    amounts = [base + float(dated.loc[dated["partition_key"] <= day, "amount_krw"].sum()) for day in days]
    return pd.Series(amounts, index=list(days), dtype="float64")


def growth_index(equity: pd.Series, contributions: pd.Series) -> pd.Series:
    """Value of 1 KRW put in at the start, deposits and withdrawals removed (time-weighted): each
    day's flow is taken as arriving before that day's result. Without flows it is equity / seed."""
    equity = equity.astype("float64").reset_index(drop=True)
    contributions = contributions.astype("float64").reset_index(drop=True)
    base = equity.shift(1) + contributions.diff()
    base.iloc[0] = contributions.iloc[0]
    ratio = (equity / base).where(base > 0, 1.0)
    return ratio.cumprod()


def buy_and_hold_by_day(closes: pd.Series, contributions: pd.Series) -> pd.Series:
    """Each KRW put in bought KRW-BTC at its day's close (the start capital on the first equity day,
    a later deposit on its day; a withdrawal sells), fee paid, valued at each day's close.

    `closes` and `contributions` share the index of the equity days; NaN where no close is known yet."""
    closes = closes.astype("float64").ffill()
    flows = contributions.diff().fillna(contributions.iloc[0])
    value = pd.Series(0.0, index=closes.index)
    for day, amount in flows[flows != 0].items():
        held = closes.loc[day:]
        if held.dropna().empty:
            return pd.Series(float("nan"), index=closes.index)
        value = value.add(buy_and_hold(held, float(amount), FEE_RATE), fill_value=0.0)
    return value.where(closes.notna())


def summarise_day(
    equity: pd.DataFrame,
    fills: pd.DataFrame,
    partition_key: str,
    contributions: pd.Series,
    benchmark: pd.Series | None = None,
) -> dict:
    """Equity, P&L and drawdown for D from the equity history up to D (pure, for tests).

    `contributions` (and `benchmark`, buy-and-hold KRW-BTC) are indexed by the partition keys of the
    equity history."""
    history = equity[equity["partition_key"] <= partition_key].sort_values("partition_key")
    if history.empty or history["partition_key"].iloc[-1] != partition_key:
        raise ValueError(f"no equity recorded for {partition_key}: portfolio must run first")
    days = history["partition_key"].tolist()
    put_in = contributions.reindex(days).astype("float64")
    values = history["equity_krw"].astype("float64")
    today, contributed = float(values.iloc[-1]), float(put_in.iloc[-1])
    if len(history) > 1:  # the change since the last recorded day, minus what was put in meanwhile
        pnl_since = today - float(values.iloc[-2]) - (contributed - float(put_in.iloc[-2]))
    else:
        pnl_since = today - contributed
    drawdowns = drawdown(growth_index(values, put_in), 1.0)
    bench = float(benchmark.reindex(days).iloc[-1]) if benchmark is not None else float("nan")
    done = fills[fills["status"] == "done"] if not fills.empty else fills
    return {
        "partition": partition_key,
        "equity_krw": today,
        "cash_krw": float(history["cash_krw"].iloc[-1]),
        "positions_value_krw": float(history["positions_value_krw"].iloc[-1]),
        "contributions_krw": contributed,
        "pnl_since_last_report_krw": pnl_since,
        "pnl_total_krw": today - contributed,
        "return_total_pct": (today / contributed - 1) * 100 if contributed > 0 else 0.0,
        "drawdown_pct": float(drawdowns.iloc[-1] * 100),
        "max_drawdown_pct": float(drawdowns.min() * 100),
        "buy_and_hold_krw": bench,
        "buy_and_hold_return_pct": (bench / contributed - 1) * 100 if contributed > 0 else float("nan"),
        "trades": len(done),
        "buys": int(done["side"].isin(["buy", "add"]).sum()) if len(done) else 0,
        "sells": int((done["side"] == "sell").sum()) if len(done) else 0,
        "fees_krw": float(done["fee"].sum()) if len(done) else 0.0,
        "not_executed": len(fills) - len(done),
    }


def benchmark_closes(market_data: MarketData, days: Sequence[str]) -> pd.Series:
    """KRW-BTC's close on each equity day (read as of the last one's close: nothing later)."""
    closes = daily_closes(market_data, [BENCHMARK], days[0], days[-1])[BENCHMARK]
    return closes.reindex(list(days))


@dg.asset(
    partitions_def=daily,
    group_name="trading",
    kinds={"pandas"},
    deps=["fills"],
    metadata={COLUMN_SCHEMA: SCHEMA},
    owners=OWNERS,
    code_version="1",
)
def daily_report(
    context: dg.AssetExecutionContext,
    ledger: TradingLedger,
    check_catalog: CheckCatalog,
    notifier: Notifier,
    market_data: MarketData,
    portfolio: pd.DataFrame,
) -> dg.MaterializeResult:
    """Equity against buy-and-hold KRW-BTC, P&L net of deposits, drawdown, trades, and every check of D."""
    key = context.partition_key
    fills = ledger.fills_for_partition(key)
    cut = CutOff(key, own_orders=True)
    equity = ledger.equity_history(cut)
    curve = equity[equity["partition_key"] <= key].sort_values("partition_key").reset_index(drop=True)
    days = curve["partition_key"].tolist()
    contributions = contributions_by_day(ledger.cash_history(cut), days)
    benchmark = buy_and_hold_by_day(benchmark_closes(market_data, days), contributions) if days else None
    summary = summarise_day(equity, fills, key, contributions, benchmark)
    checks = check_outcomes(context.instance, check_catalog.check_keys(), key)
    summary["checks"] = len(checks)
    summary["checks_failed"] = int(checks["outcome"].isin([FAILED, BLOCKED]).sum())
    summary["trust"] = verdict(checks)
    problems = checks[checks["outcome"] != PASSED]
    # The morning message, every day: the operator should not have to open the UI to know.
    notifier.send(daily_summary(summary, portfolio, fills, context.run.tags.get("makenaide/not_traded")), routine=True)
    frame = pd.DataFrame([summary])
    under = drawdown(growth_index(curve["equity_krw"], contributions), 1.0) * 100
    plotted = curve.assign(drawdown_pct=under.to_numpy())
    if benchmark is not None:
        plotted["benchmark_krw"] = benchmark.to_numpy()
    bench_known = summary["buy_and_hold_krw"] == summary["buy_and_hold_krw"]  # not NaN
    bench_return = summary["buy_and_hold_return_pct"]  # NaN without a close or anything put in
    return dg.MaterializeResult(
        value=frame,
        metadata={
            **catalog(frame, SCHEMA),
            "can_i_trust_today": summary["trust"],
            # Numbers on every partition: the UI plots each across partitions (README: "In the UI").
            "equity_krw": krw(summary["equity_krw"]),
            "equity_buy_and_hold_btc_krw": krw(summary["buy_and_hold_krw"]) if bench_known else "unknown",
            "contributions_krw": krw(summary["contributions_krw"]),
            "pnl_total_krw": krw(summary["pnl_total_krw"]),
            "return_total_pct": pct(summary["return_total_pct"]),
            "buy_and_hold_return_pct": pct(bench_return) if bench_return == bench_return else "unknown",
            "drawdown_pct": pct(summary["drawdown_pct"]),
            "max_drawdown_pct": pct(summary["max_drawdown_pct"]),
            "trades": dg.MetadataValue.int(summary["trades"]),
            "equity_curve": dg.MetadataValue.md(
                equity_curve_markdown(plotted, f"Makenaide equity to {key}", float(contributions.iloc[0]))
            ),
            "trades_of_the_day": table(fills[TRADE_COLUMNS], rows=50),
            "check_report": table(checks, rows=len(checks)),
            "check_problems": table(problems, rows=50),
        },
    )

"""`monthly_report`: a calendar month of trading from the ledger, its job, and the schedule that runs
it on the 1st for the month that just ended (09:45 KST, after the day's trading run).

Monthly partitions follow the daily ones: from the month of the first daily partition; in demo mode
up to the replay's last month, elsewhere up to the current month, which reports as partial. Keys are
`YYYY-MM`, so a month's runs are never mistaken for a day's (the daily check report reads runs by
their `dagster/partition` tag). The arithmetic is `strategy/monthly.py`'s.
"""

import math
from datetime import timedelta

import dagster as dg
import pandas as pd

from makenaide_assets.market.metadata import COLUMN_SCHEMA, catalog, preview, table_schema
from makenaide_assets.partitions import daily
from makenaide_assets.resources.ledger import CutOff, TradingLedger
from makenaide_assets.resources.market_data import MarketData, daily_closes
from makenaide_assets.resources.notifier import Notifier
from makenaide_assets.strategy import monthly as month
from makenaide_assets.strategy.performance import drawdown

BENCHMARK = "KRW-BTC"
MONTH_FORMAT = "%Y-%m"


def monthly_partitions(days: dg.DailyPartitionsDefinition) -> dg.MonthlyPartitionsDefinition:
    """Months over the days of `days`: an end when the days have one (demo: the replay's last
    month, so the UI lists no empty months), else the current month too (`end_offset=1`)."""
    first = days.start.strftime(MONTH_FORMAT)
    if days.end is None:
        return dg.MonthlyPartitionsDefinition(start_date=first, timezone="UTC", fmt=MONTH_FORMAT, end_offset=1)
    after_last = pd.Timestamp(days.get_last_partition_key()) + pd.offsets.MonthBegin(1)
    return dg.MonthlyPartitionsDefinition(
        start_date=first, end_date=after_last.strftime(MONTH_FORMAT), timezone="UTC", fmt=MONTH_FORMAT
    )


monthly = monthly_partitions(daily)

SCHEMA = table_schema(
    ("month", "string", "The calendar month, YYYY-MM (UTC days, as the daily partitions)"),
    ("days_in_month", "int", "Days of the calendar month"),
    ("days_recorded", "int", "Of those, days with an equity row in the ledger"),
    ("coverage", "string", "'complete: 30 of 30 days' or 'partial: N of M days'"),
    ("start_basis", "string", "What the return starts from: the previous month's last equity, or initial cash"),
    ("start_equity_krw", "float", "Equity the month starts from, KRW"),
    ("last_day", "string", "The month's last day with recorded equity"),
    ("end_equity_krw", "float", "Equity of that day, KRW"),
    ("return_pct", "float", "end / start equity - 1, %"),
    ("max_drawdown_pct", "float", "Deepest fall below the month's running peak (start equity the first peak), %"),
    ("trades", "int", "Orders filled in the month (its partitions), buys, adds and sells"),
    ("buys", "int", "Of those, buys and adds"),
    ("sells", "int", "Of those, sells"),
    ("closed_trades", "int", "Sells with a realised P&L"),
    ("wins", "int", "Closed trades that made money after fees"),
    ("win_rate_pct", "float", "wins / closed trades, % (empty without a closed trade)"),
    ("realized_pnl_krw", "float", "Realised P&L of the closed trades, KRW"),
    ("fees_krw", "float", "Fees paid on the month's fills, KRW"),
    ("benchmark_from", "string", "Day whose KRW-BTC close buy-and-hold buys at (the start equity's day)"),
    ("benchmark_return_pct", "float", "Buy-and-hold KRW-BTC over the same days, buy fee paid, %"),
    ("excess_return_pct", "float", "return_pct - benchmark_return_pct, percentage points"),
    ("flags", "string", "The operations guide's 5 / 8 / 15 % loss lines crossed, in words; empty: none"),
)

COMPLETE = dg.AssetCheckSpec(
    "monthly_report_complete",
    asset="monthly_report",
    description="Every day of the month that has closed has an equity row in the ledger (names the missing days)",
    blocking=False,
    partitions_def=monthly,
)


@dg.asset(
    partitions_def=monthly,
    group_name="trading",
    kinds={"pandas", "sql"},
    # Lineage: a month is made of its days' `portfolio` (Dagster maps the daily partitions into the
    # month itself). A dependency, not an input: the figures come from the ledger's equity rows, and
    # the current month's later days, not partitions yet, are never loaded.
    deps=["portfolio"],
    metadata={COLUMN_SCHEMA: SCHEMA},
    check_specs=[COMPLETE],
    dagster_type=pd.DataFrame,
)
def monthly_report(
    context: dg.AssetExecutionContext, ledger: TradingLedger, market_data: MarketData, notifier: Notifier
) -> dg.MaterializeResult:
    """The month's return, drawdown, trades, win rate and fees against buy-and-hold KRW-BTC, loss lines flagged."""
    window = context.partition_time_window
    days = list(pd.date_range(window.start, window.end, freq="D", inclusive="left").strftime("%Y-%m-%d"))
    # The month's cut-off: everything booked for its partitions and before, nothing after.
    equity = ledger.equity_history(CutOff(days[-1], own_orders=True))
    orders = ledger.all_orders()
    fills = orders[(orders["status"] == "done") & orders["partition_key"].isin(days)]
    start = month.month_start(equity, days[0], ledger.initial_cash_krw)
    recorded = month.month_equity(equity, days)
    bench_from = month.benchmark_from(start, recorded)
    closes = pd.Series(dtype="float64")
    if bench_from is not None:
        closes = daily_closes(market_data, [BENCHMARK], bench_from, str(recorded.index[-1]))[BENCHMARK]
    row = month.summarise_month(context.partition_key, days, equity, fills, closes, ledger.initial_cash_krw)
    frame = month.month_frame(row)

    first_day, last_day = daily.get_first_partition_key(), daily.get_last_partition_key()
    due = [day for day in days if first_day <= day <= (last_day or "")]  # days that have closed
    missing = month.missing_days(due, equity)
    by_day = pd.DataFrame(
        {
            "day": recorded.index,
            "equity_krw": recorded.round(0).to_numpy(),
            "drawdown_pct": (drawdown(recorded, start.equity_krw) * 100).round(2).to_numpy(),
            f"{BENCHMARK}_close": closes.reindex(recorded.index).to_numpy(),
        }
    )
    notifier.send(monthly_message(row), routine=not row["flags"])
    return dg.MaterializeResult(
        value=frame,
        metadata={
            **catalog(frame, SCHEMA),
            "coverage": row["coverage"],
            "return_pct": _number(row["return_pct"]),
            "max_drawdown_pct": _number(row["max_drawdown_pct"]),
            "benchmark_return_pct": _number(row["benchmark_return_pct"]),
            "excess_return_pct": _number(row["excess_return_pct"]),
            "end_equity_krw": _number(row["end_equity_krw"], 0),
            "trades": dg.MetadataValue.int(int(row["trades"])),
            "closed_trades": dg.MetadataValue.int(int(row["closed_trades"])),
            "win_rate_pct": _number(row["win_rate_pct"], 1),
            "fees_krw": _number(row["fees_krw"], 0),
            "flags": row["flags"] or "none",
            "month": month_table(row),
            "equity_by_day": preview(by_day, rows=31),
        },
        check_results=[
            dg.AssetCheckResult(
                check_name=COMPLETE.name,
                passed=not missing,
                severity=dg.AssetCheckSeverity.WARN,
                metadata={
                    "missing_days": ", ".join(month.day_ranges(missing)) or "none",
                    "count": dg.MetadataValue.int(len(missing)),
                    "coverage": row["coverage"],
                    "days_closed": dg.MetadataValue.int(len(due)),
                },
            )
        ],
    )


def _number(value: float, digits: int = 2) -> dg.MetadataValue:
    # Metadata floats must be finite to render; an undefined figure says so in words.
    return dg.MetadataValue.float(round(float(value), digits)) if math.isfinite(value) else dg.MetadataValue.text("n/a")


def _pct(value: float) -> str:
    return f"{value:+.2f} %" if math.isfinite(value) else "n/a"


def _krw(value: float) -> str:
    return f"{value:,.0f} KRW" if math.isfinite(value) else "n/a"


def month_table(row: dict) -> dg.MetadataValue:
    """The month as a person reads it: one figure a line, rounded, in words."""
    win_rate = (
        f"{row['win_rate_pct']:.0f} % ({row['wins']} of {row['closed_trades']})" if row["closed_trades"] else "n/a"
    )
    lines = [
        ("days", row["coverage"]),
        ("start", f"{_krw(row['start_equity_krw'])} ({row['start_basis']})"),
        ("end", f"{_krw(row['end_equity_krw'])} ({row['last_day'] or 'no equity recorded'})"),
        ("return", _pct(row["return_pct"])),
        ("max drawdown", _pct(row["max_drawdown_pct"])),
        (f"{BENCHMARK} buy-and-hold", f"{_pct(row['benchmark_return_pct'])} (from {row['benchmark_from']}'s close)"),
        ("return - buy-and-hold", _pct(row["excess_return_pct"]).replace(" %", " points")),
        ("trades", f"{row['trades']} ({row['buys']} buys, {row['sells']} sells)"),
        ("win rate", win_rate),
        ("realised P&L", _krw(row["realized_pnl_krw"])),
        ("fees", _krw(row["fees_krw"])),
        ("flags", row["flags"] or "none"),
    ]
    schema = dg.TableSchema(columns=[dg.TableColumn("figure", "string"), dg.TableColumn("value", "string")])
    return dg.MetadataValue.table([dg.TableRecord({"figure": k, "value": v}) for k, v in lines], schema)


def monthly_message(row: dict) -> str:
    """The monthly summary pushed to the operator: a few lines, rounded, flags last."""
    lines = [
        f"Makenaide monthly report {row['month']} ({row['coverage']})",
        f"return {_pct(row['return_pct'])} ({_krw(row['start_equity_krw'])} → {_krw(row['end_equity_krw'])}), "
        f"max drawdown {_pct(row['max_drawdown_pct'])}; {BENCHMARK} buy-and-hold {_pct(row['benchmark_return_pct'])}",
        f"trades {row['trades']}, closed {row['closed_trades']}"
        + (f" (win rate {row['win_rate_pct']:.0f} %)" if row["closed_trades"] else "")
        + f", realised P&L {row['realized_pnl_krw']:+,.0f} KRW, fees {_krw(row['fees_krw'])}",
        f"flags: {row['flags'] or 'none'}",
    ]
    return "\n".join(lines)


monthly_report_job = dg.define_asset_job(
    name="monthly_report_job",
    selection=dg.AssetSelection.assets("monthly_report"),
    tags={"dagster/max_runtime": str(30 * 60)},
    description="monthly_report for one month; the schedule runs it on the 1st for the month that ended.",
)


@dg.schedule(
    job=monthly_report_job,
    cron_schedule="45 0 1 * *",
    execution_timezone="UTC",
    name="monthly_report_schedule",
    description="On the 1st at 09:45 KST (after the day's trading run), the report of the month that just ended.",
)
def monthly_report_schedule(context: dg.ScheduleEvaluationContext) -> dg.RunRequest | dg.SkipReason:
    # 00:45 UTC on the 1st: the last day of the month before closed 45 minutes ago, and its
    # analysis and trading runs (09:05 KST, due by 09:35) have recorded its equity.
    ended = (context.scheduled_execution_time - timedelta(days=1)).strftime(MONTH_FORMAT)
    if not monthly.has_partition_key(ended):
        first, last = monthly.get_first_partition_key(), monthly.get_last_partition_key()
        return dg.SkipReason(f"{ended} is not a month of the partitions ({first} → {last}): nothing recorded for it")
    return dg.RunRequest(run_key=ended, partition_key=ended, job_name=monthly_report_job.name)

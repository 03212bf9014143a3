"""A calendar month of trading, from the ledger's daily equity and fills (pure: `monthly_report`'s arithmetic).

The month's return runs from the equity the previous month ended with (the last equity recorded
before the month; the ledger's initial cash for its first month) to the equity of the month's last
recorded day. Drawdown is `performance.drawdown` over the month's days with that starting equity as
the first peak, so a month that opens by falling shows it. Buy-and-hold KRW-BTC covers the same days:
bought at the close of the day the starting equity was recorded (the first recorded day in the
ledger's first month), fee paid, marked at the close of the month's last recorded day.

The loss lines are the operations guide's (seeds/makenaide-operations-guide.ko.md, 거래_성과_지표,
최대_손실 "maximum loss"): 안전 (safe) under 5 %, 경고 (warning) over 8 %, 위험 (danger) over 15 %;
its evening checklist keeps the maximum loss "within -8 %" (최대 손실 -8% 이내). The guide gives no
word between 5 and 8 %: past 5 % a loss is simply no longer in its safe band.
"""

import math
from collections.abc import Sequence
from dataclasses import dataclass

import pandas as pd

from makenaide_assets.strategy.performance import buy_and_hold, drawdown
from makenaide_assets.strategy.stats import stats_of
from makenaide_assets.strategy.ticks import FEE_RATE

# (line in %, what the guide calls a loss past it), largest first: a flag names the largest line crossed.
LOSS_LINES: tuple[tuple[float, str], ...] = (
    (15.0, "past the 15 % danger line (위험)"),
    (8.0, "past the 8 % warning line (경고; the guide keeps the maximum loss within 8 %)"),
    (5.0, "past the 5 % line, out of the guide's safe band (안전: under 5 %)"),
)

MONTH_COLUMNS = [
    "month",
    "days_in_month",
    "days_recorded",
    "coverage",
    "start_basis",
    "start_equity_krw",
    "last_day",
    "end_equity_krw",
    "return_pct",
    "max_drawdown_pct",
    "trades",
    "buys",
    "sells",
    "closed_trades",
    "wins",
    "win_rate_pct",
    "realized_pnl_krw",
    "fees_krw",
    "benchmark_from",
    "benchmark_return_pct",
    "excess_return_pct",
    "flags",
]


@dataclass(frozen=True)
class Start:
    """What the month's return is measured from."""

    day: str | None  # the last day with equity before the month; None: the ledger's first month
    equity_krw: float

    def describe(self) -> str:
        return "initial cash" if self.day is None else f"equity of {self.day}"


def month_start(equity: pd.DataFrame, first_day: str, initial_cash_krw: float) -> Start:
    """The last equity recorded before `first_day`, or the initial cash when there is none."""
    before = equity[equity["partition_key"].astype(str) < first_day].sort_values("partition_key")
    if before.empty:
        return Start(None, float(initial_cash_krw))
    last = before.iloc[-1]
    return Start(str(last["partition_key"]), float(last["equity_krw"]))


def month_equity(equity: pd.DataFrame, days: Sequence[str]) -> pd.Series:
    """The month's recorded equity, indexed by day, oldest first."""
    rows = equity[equity["partition_key"].astype(str).isin(list(days))].sort_values("partition_key")
    return pd.Series(rows["equity_krw"].astype("float64").to_numpy(), index=rows["partition_key"].astype(str))


def benchmark_from(start: Start, recorded: pd.Series) -> str | None:
    """The day buy-and-hold buys at: the starting equity's day (the first recorded day in the ledger's first month)."""
    if start.day is not None:
        return start.day
    return str(recorded.index[0]) if len(recorded) else None


def missing_days(days_due: Sequence[str], equity: pd.DataFrame) -> list[str]:
    """Days of the month that have happened (are partitions) but have no equity row."""
    recorded = set(equity["partition_key"].astype(str))
    return [day for day in days_due if day not in recorded]


def day_ranges(days: Sequence[str]) -> list[str]:
    """Consecutive days shortened for a person: ["2023-11-01 → 2023-11-27", "2023-11-30"]."""
    ranges: list[list[str]] = []
    for day in sorted(days):
        if ranges and pd.Timestamp(day) - pd.Timestamp(ranges[-1][-1]) == pd.Timedelta(days=1):
            ranges[-1].append(day)
        else:
            ranges.append([day])
    return [run[0] if len(run) == 1 else f"{run[0]} → {run[-1]}" for run in ranges]


def coverage(days_recorded: int, days_in_month: int) -> str:
    state = "complete" if days_recorded == days_in_month else "partial"
    return f"{state}: {days_recorded} of {days_in_month} days"


def loss_flags(return_pct: float, max_drawdown_pct: float) -> list[str]:
    """The month's loss and its deepest drawdown against the guide's 5 / 8 / 15 % lines."""
    flags = []
    for what, value in (("max drawdown", max_drawdown_pct), ("return", return_pct)):
        if math.isnan(value):
            continue
        line = next((text for level, text in LOSS_LINES if -value > level), None)
        if line is not None:
            flags.append(f"{what} {value:.1f} %: {line}")
    return flags


def benchmark_return(closes: pd.Series, start_day: str | None, last_day: str | None) -> float:
    """Buy-and-hold return over [start_day, last_day] from daily closes indexed by day; NaN without both closes."""
    if start_day is None or last_day is None:
        return math.nan
    window = closes.loc[start_day:last_day].astype("float64")  # type: ignore[misc]
    if window.empty or pd.isna(window.iloc[0]) or pd.isna(window.iloc[-1]):
        return math.nan
    value = buy_and_hold(window, 1.0, FEE_RATE)
    return float(value.iloc[-1]) - 1.0


def summarise_month(
    month: str,
    days: Sequence[str],
    equity: pd.DataFrame,
    fills: pd.DataFrame,
    benchmark_closes: pd.Series,
    initial_cash_krw: float,
) -> dict:
    """One row of MONTH_COLUMNS.

    `days` are every day of the calendar month; `equity` the ledger's equity rows (partition_key,
    equity_krw) up to the month's end at least; `fills` executed fills (partition_key, side, fee,
    krw_value, realized_pnl_krw); `benchmark_closes` KRW-BTC's daily closes indexed by day. A month
    without any recorded equity has no return, drawdown or benchmark (NaN), and says so in `coverage`.
    """
    days = list(days)
    start = month_start(equity, days[0], initial_cash_krw)
    recorded = month_equity(equity, days)
    last_day = str(recorded.index[-1]) if len(recorded) else None
    end_equity = float(recorded.iloc[-1]) if len(recorded) else math.nan
    return_pct = (end_equity / start.equity_krw - 1.0) * 100 if len(recorded) else math.nan
    max_dd_pct = float(drawdown(recorded, start.equity_krw).min()) * 100 if len(recorded) else math.nan

    done = fills[fills["partition_key"].astype(str).isin(days)] if len(fills) else fills
    sells = done[done["side"] == "sell"] if len(done) else done
    closed = sells[sells["realized_pnl_krw"].notna()] if len(sells) else sells
    stats = stats_of(closed) if len(closed) else None
    bench_day = benchmark_from(start, recorded)
    bench_pct = benchmark_return(benchmark_closes, bench_day, last_day) * 100
    return {
        "month": month,
        "days_in_month": len(days),
        "days_recorded": len(recorded),
        "coverage": coverage(len(recorded), len(days)),
        "start_basis": start.describe(),
        "start_equity_krw": start.equity_krw,
        "last_day": last_day,
        "end_equity_krw": end_equity,
        "return_pct": return_pct,
        "max_drawdown_pct": max_dd_pct,
        "trades": len(done),
        "buys": int(done["side"].isin(["buy", "add"]).sum()) if len(done) else 0,
        "sells": len(sells),
        "closed_trades": len(closed),
        "wins": stats.wins if stats else 0,
        "win_rate_pct": stats.win_rate * 100 if stats else math.nan,
        "realized_pnl_krw": stats.total_pnl_krw if stats else 0.0,
        "fees_krw": float(done["fee"].astype("float64").sum()) if len(done) else 0.0,
        "benchmark_from": bench_day,
        "benchmark_return_pct": bench_pct,
        "excess_return_pct": return_pct - bench_pct,
        "flags": "; ".join(loss_flags(return_pct, max_dd_pct)),
    }


def month_frame(row: dict) -> pd.DataFrame:
    return pd.DataFrame([row], columns=MONTH_COLUMNS).astype({"last_day": "object", "benchmark_from": "object"})

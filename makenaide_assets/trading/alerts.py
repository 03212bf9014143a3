"""What reaches the operator's phone, in words and rounded for a person (sent by the Notifier).

One message per executed order (an exit says which rule fired), one per order a limit or the
halt switch held back, and the daily summary naming the day. Pure: text from the frames the
assets already hold, so the tests read exactly what the operator reads.
"""

from collections.abc import Iterable, Mapping
from typing import Any, NamedTuple

import pandas as pd

# Skip names of orders held back by a limit or the operator (resources/broker.py, strategy/limits.py).
LIMIT_SKIPS = ("operator_halt", "over_limit", "outside_price_band", "account_unreconciled", "unresolved_order")


class Message(NamedTuple):
    text: str
    routine: bool  # news (an executed order) rather than something that needs the operator


def _krw(value: float) -> str:
    return f"{value:,.0f} KRW"


def order_messages(partition_key: str, orders: pd.DataFrame) -> list[Message]:
    """The day's executed orders, and the orders a limit, the halt switch or the exchange stopped."""
    messages = []
    for row in orders.to_dict("records"):
        what = f"{row['side']} {row['market']}"
        if row["status"] == "done":
            text = f"Makenaide {partition_key}: {what} executed, {row['volume']:.8g} at {row['price']:,.8g} = "
            text += f"{_krw(row['krw_value'])} (fee {row['fee']:,.0f})"
            if row["side"] == "sell" and _present(row.get("reason")):
                text += f"; exit: {row['reason']}"
            messages.append(Message(text, routine=True))
        elif _present(row.get("status_reason")) and str(row["status_reason"]).split(":")[0] in LIMIT_SKIPS:
            messages.append(Message(f"Makenaide {partition_key}: {what} held back: {row['status_reason']}", False))
        elif row["status"] in ("rejected", "failed"):
            text = f"Makenaide {partition_key}: {what} {row['status']}: {row.get('status_reason')}"
            messages.append(Message(text, routine=False))
    return messages


def daily_summary(
    summary: Mapping[str, Any], positions: pd.DataFrame, orders: pd.DataFrame, signals_note: str | None
) -> str:
    """The morning message: the day, equity and P&L, open positions, the day's orders, trust."""
    # Returns are on the KRW put in (seed or opening balance, plus deposits, minus withdrawals).
    put_in = f" on {_krw(summary['contributions_krw'])} put in" if "contributions_krw" in summary else ""
    bench = summary.get("buy_and_hold_return_pct")
    versus = f" (buy-and-hold KRW-BTC {bench:+.2f} %)" if bench is not None and not pd.isna(bench) else ""
    lines = [
        f"Makenaide daily report {summary['partition']}: {summary['trust']}",
        f"equity {_krw(summary['equity_krw'])} (cash {_krw(summary['cash_krw'])}), "
        f"P&L since last report {summary['pnl_since_last_report_krw']:+,.0f} KRW, "
        f"total {summary['return_total_pct']:+.2f} %{put_in}{versus}, drawdown {summary['drawdown_pct']:.2f} %",
    ]
    held = positions[positions["market"] != "KRW"] if not positions.empty else positions
    if held.empty:
        lines.append("open positions: none")
    else:
        lines.append("open positions: " + "; ".join(_position(p) for p in held.to_dict("records")))
    lines.append(_orders_line(orders.to_dict("records")))
    if signals_note:
        lines.append(f"not traded: {signals_note}")
    return "\n".join(lines)


def _position(p: Mapping[str, Any]) -> str:
    return f"{p['market']} {_krw(p['value_krw'])} ({p['unrealized_pnl_pct']:+.1f} %)"


def _orders_line(orders: Iterable[Mapping[str, Any]]) -> str:
    parts = []
    for o in orders:
        part = f"{o['side']} {o['market']} {o['status']}"
        if o["status"] != "done" and _present(o.get("status_reason")):
            part += f" ({o['status_reason']})"
        parts.append(part)
    return "orders: " + ("; ".join(parts) if parts else "none")


def _present(value: Any) -> bool:
    return value is not None and not (isinstance(value, float) and pd.isna(value)) and str(value) != ""

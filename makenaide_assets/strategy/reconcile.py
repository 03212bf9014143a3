"""Reconciling the ledger with the exchange account: which differences are explained, and by what.

In live mode the Upbit account is the truth (DESIGN §8). A reconciliation compares the account's
balances (balance + locked, per currency) with what the ledger holds (cash; each coin's position
plus the coins held outside Makenaide) and turns every difference into dated adjustment events:
- an **event the exchange lists** explains its part: an order made outside Makenaide (no
  identifier of ours) or a KRW deposit or withdrawal; each is booked once, under its own key;
- a ledger that has never been reconciled takes what is left as its **opening balance**;
- anything still left is **unexplained**: booked too (the ledger must equal the account), but
  flagged, so that no new buy goes out that day and the operator is told.
Pure: the broker fetches the account and the exchange's events, the ledger books the result.
"""

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

KRW = "KRW"
KRW_TOLERANCE = 1.0  # fees are fractional KRW; the account shows them rounded
COIN_TOLERANCE = 5e-9  # half a unit of Upbit's 8th decimal


@dataclass(frozen=True)
class ExchangeEvent:
    """Something the exchange did to the account that Makenaide did not order."""

    key: str  # unique and stable: "manual:<uuid>", "deposit:<uuid>", "withdraw:<uuid>"
    deltas: Mapping[str, float]  # currency -> change of the account's balance
    reason: str


@dataclass(frozen=True)
class Adjustment:
    key: str  # the ledger's event key: booked at most once
    currency: str
    amount: float
    reason: str
    explained: bool


@dataclass(frozen=True)
class Reconciliation:
    """What reconciling found for a partition: the adjustments booked, and why no buy may go out
    (an unexplained difference, or an account that could not be reconciled at all), if so."""

    adjustments: tuple[Adjustment, ...] = ()
    buys_held: str | None = None


def account_balances(accounts: Iterable[Mapping[str, Any]]) -> dict[str, float]:
    """Upbit's /v1/accounts as currency -> balance + locked (locked is still the account's)."""
    return {str(a["currency"]): float(a["balance"]) + float(a["locked"]) for a in accounts}


def differs(currency: str, amount: float) -> bool:
    """Whether a difference of `amount` in `currency` is more than rounding."""
    return abs(amount) > (KRW_TOLERANCE if currency == KRW else COIN_TOLERANCE)


def currency_of(market: str) -> str:
    """KRW-BTC -> BTC."""
    return market.split("-", 1)[1]


def manual_order(order: Mapping[str, object]) -> ExchangeEvent:
    """An order made outside Makenaide, from Upbit's order answer (with its trades or totals)."""
    market, side, uuid = str(order["market"]), str(order["side"]), str(order["uuid"])
    volume = float(order.get("executed_volume") or 0.0)  # type: ignore[arg-type]
    trades = order.get("trades") or []
    funds = sum(float(trade["funds"]) for trade in trades)  # type: ignore[union-attr,index]
    if not funds:
        funds = float(order.get("executed_funds") or 0.0)  # type: ignore[arg-type]
    fee = float(order.get("paid_fee") or 0.0)  # type: ignore[arg-type]
    coin = currency_of(market)
    deltas = {KRW: -(funds + fee), coin: volume} if side == "bid" else {KRW: funds - fee, coin: -volume}
    what = "bought" if side == "bid" else "sold"
    reason = f"order {uuid} made outside Makenaide at {order.get('created_at')}: {what} {volume:g} {coin}"
    return ExchangeEvent(f"manual:{uuid}", deltas, reason)


def transfer(item: Mapping[str, object], kind: str) -> ExchangeEvent:
    """A KRW deposit or withdrawal from Upbit's /v1/deposits or /v1/withdraws."""
    amount = float(item["amount"])  # type: ignore[arg-type]
    fee = float(item.get("fee") or 0.0)  # type: ignore[arg-type]
    currency = str(item.get("currency") or KRW)
    delta = amount - fee if kind == "deposit" else -(amount + fee)
    when = item.get("done_at") or item.get("created_at")
    return ExchangeEvent(
        f"{kind}:{item['uuid']}", {currency: delta}, f"{kind} {item['uuid']} of {amount:,.0f} {currency} at {when}"
    )


def reconcile(
    account: Mapping[str, float],
    ledger: Mapping[str, float],
    events: Iterable[ExchangeEvent],
    booked: set[str],
    *,
    opening: bool,
    stamp: str,
) -> list[Adjustment]:
    """The adjustments that make the ledger equal the account; `booked` holds event keys already
    in the ledger, `stamp` names this reconciliation (keys of the residual adjustments)."""
    expected = dict(ledger)
    adjustments: list[Adjustment] = []
    for event in events:
        for currency, delta in event.deltas.items():
            key = f"{event.key}:{currency}"
            if key in booked or not differs(currency, delta):
                continue
            adjustments.append(Adjustment(key, currency, delta, event.reason, explained=True))
            expected[currency] = expected.get(currency, 0.0) + delta
    for currency in sorted(set(account) | set(expected)):
        have, want = account.get(currency, 0.0), expected.get(currency, 0.0)
        residual = have - want
        if not differs(currency, residual):
            continue
        if opening:
            reason, explained = f"opening balance: /v1/accounts holds {have:,.8g} {currency}", True
        else:
            reason = (
                f"unexplained: /v1/accounts holds {have:,.8g} {currency}, the ledger expected {want:,.8g} "
                "(no order, deposit or withdrawal on the exchange accounts for it)"
            )
            explained = False
        adjustments.append(Adjustment(f"{stamp}:{currency}", currency, residual, reason, explained))
    return adjustments

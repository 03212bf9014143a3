"""What must hold between the exchange and the ledger, whatever faults and manual events happened.

- no (partition, market, side) has two executed exchange orders (an order was never sent twice);
- every exchange order of ours with executed volume is in the ledger with that volume and fee;
- the ledger's balances equal the account's (plus what orders it holds unresolved executed since):
  KRW within 1 KRW, every coin to Upbit's 8 decimals;
- no order stays unresolved past the next run.
Pure functions over the exchange's dump and the ledger's rows: the rehearsal and tests call them.
"""

from collections import Counter
from collections.abc import Iterable, Mapping
from typing import Any

from makenaide_assets.strategy.reconcile import COIN_TOLERANCE, account_balances, differs

FEE_TOLERANCE_KRW = 0.01


def _key(identifier: str) -> str:
    """(partition, market, side) of one of our identifiers: mkn-<partition>-<market>-<side>-<hash>."""
    return identifier.rsplit("-", 1)[0]


def sent_twice(exchange_orders: Iterable[Mapping[str, Any]]) -> list[str]:
    executed = Counter(
        _key(str(o["identifier"]))
        for o in exchange_orders
        if o.get("identifier") and float(o.get("executed_volume") or 0) > 0
    )
    return sorted(f"{key} executed {n} times" for key, n in executed.items() if n > 1)


def missing_from_ledger(
    exchange_orders: Iterable[Mapping[str, Any]], ledger_orders: Mapping[str, Mapping[str, Any]]
) -> list[str]:
    """Executed orders of ours the ledger lacks, or holds with another volume or fee."""
    problems = []
    for order in exchange_orders:
        identifier = order.get("identifier")
        volume = float(order.get("executed_volume") or 0)
        if not identifier or volume <= 0:
            continue
        booked = ledger_orders.get(str(identifier))
        if booked is None:
            problems.append(f"{identifier}: executed {volume} on the exchange, not in the ledger")
        elif booked["status"] != "done":
            problems.append(f"{identifier}: executed {volume} on the exchange, {booked['status']} in the ledger")
        elif abs(float(booked["volume"]) - volume) > COIN_TOLERANCE:
            problems.append(f"{identifier}: executed {volume}, booked {booked['volume']}")
        elif abs(float(booked["fee"]) - float(order.get("paid_fee") or 0)) > FEE_TOLERANCE_KRW:
            problems.append(f"{identifier}: fee {order.get('paid_fee')} on the exchange, {booked['fee']} booked")
    return problems


def in_flight(
    exchange_orders: Iterable[Mapping[str, Any]], ledger_orders: Mapping[str, Mapping[str, Any]]
) -> dict[str, float]:
    """What orders the ledger holds unresolved (pending, submitted) have executed on the exchange,
    per currency: the account already shows it, the ledger books it when the next run resolves
    them (time moves on between runs: a `wait` order may fill before anyone looks)."""
    effect: dict[str, float] = {}
    for order in exchange_orders:
        booked = ledger_orders.get(str(order.get("identifier")))
        volume = float(order.get("executed_volume") or 0)
        if booked is None or booked["status"] not in ("pending", "submitted") or volume <= 0:
            continue
        coin = str(order["market"]).split("-", 1)[1]
        funds, fee = float(order.get("executed_funds") or 0), float(order.get("paid_fee") or 0)
        sign = 1.0 if order["side"] == "bid" else -1.0
        effect[coin] = effect.get(coin, 0.0) + sign * volume
        effect["KRW"] = effect.get("KRW", 0.0) - sign * funds - fee
    return effect


def balances_differ(
    exchange: Mapping[str, float], ledger: Mapping[str, float], unbooked: Mapping[str, float] | None = None
) -> list[str]:
    """The account against the ledger plus what its unresolved orders executed (`in_flight`)."""
    problems = []
    pending = unbooked or {}
    for currency in sorted(set(exchange) | set(ledger)):
        have, booked = exchange.get(currency, 0.0), ledger.get(currency, 0.0) + pending.get(currency, 0.0)
        if differs(currency, have - booked):
            problems.append(f"{currency}: account {have:,.8f}, ledger {booked:,.8f}")
    return problems


def unresolved_too_long(ledger_orders: Iterable[Mapping[str, Any]], day: str) -> list[str]:
    """Orders of partitions before `day` still unresolved after `day`'s run (each run resolves
    every earlier one first)."""
    return sorted(
        f"{o['identifier']} still {o['status']}"
        for o in ledger_orders
        if o["status"] in ("pending", "submitted") and str(o["partition_key"]) < day
    )


__all__ = [
    "account_balances", "balances_differ", "in_flight", "missing_from_ledger", "sent_twice", "unresolved_too_long",
]  # fmt: skip

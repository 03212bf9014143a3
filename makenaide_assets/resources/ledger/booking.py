"""Booking one fill: the fill row, the position, the cash event and the order status together."""

from typing import Any

import pandas as pd
import sqlalchemy as sa

from makenaide_assets.resources.ledger import schema as t
from makenaide_assets.strategy.accounting import AccountingError, Position, apply_fill
from makenaide_assets.strategy.calendar import utc_now_naive


class BookingError(RuntimeError):
    """The fill contradicts the ledger (unknown order, already booked, selling more than held)."""


def book_fill(
    conn: sa.Connection,
    identifier: str,
    *,
    price: float,
    volume: float,
    fee: float,
    executed_at: pd.Timestamp,
    exchange_uuid: str | None,
) -> dict[str, Any]:
    """Must run inside the caller's transaction: either all of it is booked or none of it."""
    order = (
        conn.execute(sa.select(t.orders).where(t.orders.c.identifier == identifier).with_for_update())
        .mappings()
        .first()
    )
    if order is None:
        raise BookingError(f"no order {identifier} in the ledger; record the intent before the fill")
    if order["status"] not in t.UNRESOLVED:
        raise BookingError(f"order {identifier} is already {order['status']}; refusing to book a second fill")

    market, side, partition_key = order["market"], order["side"], order["partition_key"]
    row = (
        conn.execute(sa.select(t.positions).where(t.positions.c.market == market).with_for_update()).mappings().first()
    )
    held = None if row is None else Position(**{k: row[k] for k in Position.__dataclass_fields__})
    try:
        # The same arithmetic the as-of reads replay (strategy/accounting.py): booked today and
        # replayed later, a position is the same numbers.
        effect = apply_fill(
            held, market=market, side=side, partition_key=partition_key, price=price, volume=volume, fee=fee
        )
    except AccountingError as exc:
        raise BookingError(f"order {identifier}: {exc}") from exc
    now = utc_now_naive()
    _store_position(conn, market, held, effect.position, now)
    conn.execute(
        t.cash_events.insert().values(
            event_key=f"fill:{identifier}",
            # A stop exit's cash is told apart from the partition's own (queries.CutOff).
            kind=t.STOP if order["kind"] == t.STOP else side,
            amount_krw=effect.cash_delta_krw,
            partition_key=partition_key,
            created_at=now,
        )
    )
    fill = dict(
        identifier=identifier,
        partition_key=partition_key,
        market=market,
        side=side,
        price=float(price),
        volume=float(volume),
        fee=float(fee),
        krw_value=float(price * volume),
        realized_pnl_krw=effect.realized_pnl_krw,
        executed_at=pd.Timestamp(executed_at).to_pydatetime(),
        kind=order["kind"],
    )
    conn.execute(t.fills.insert().values(**fill))
    conn.execute(
        t.orders.update()
        .where(t.orders.c.identifier == identifier)
        .values(status=t.DONE, exchange_uuid=exchange_uuid or order["exchange_uuid"], updated_at=now)
    )
    return fill


def _store_position(
    conn: sa.Connection, market: str, before: Position | None, after: Position | None, now: Any
) -> None:
    where = t.positions.c.market == market
    if after is None:
        conn.execute(t.positions.delete().where(where))
    elif before is None:
        conn.execute(t.positions.insert().values(**after.__dict__, updated_at=now))
    else:
        conn.execute(t.positions.update().where(where).values(**after.__dict__, updated_at=now))

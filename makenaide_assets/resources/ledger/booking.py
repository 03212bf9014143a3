"""Booking one fill: the fill row, the position, the cash event and the order status together."""

from typing import Any

import pandas as pd
import sqlalchemy as sa

from makenaide_assets.resources.ledger import schema as t
from makenaide_assets.strategy.calendar import utc_now_naive

# Volumes are 8-decimal on Upbit; anything below half a unit of the 8th decimal is rounding noise.
DUST_VOLUME = 5e-9


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
    if not (price > 0 and volume > 0 and fee >= 0):
        raise BookingError(f"order {identifier}: implausible fill price={price} volume={volume} fee={fee}")

    market, side, partition_key = order["market"], order["side"], order["partition_key"]
    krw_value = price * volume
    now = utc_now_naive()
    position = (
        conn.execute(sa.select(t.positions).where(t.positions.c.market == market).with_for_update()).mappings().first()
    )

    realized_pnl: float | None = None
    if side in ("buy", "add"):
        cash_delta = -(krw_value + fee)
        _add_to_position(conn, position, market, partition_key, price, volume, krw_value + fee, now)
    else:
        held = 0.0 if position is None else float(position["volume"])
        if volume > held + DUST_VOLUME:
            raise BookingError(f"order {identifier}: sells {volume} {market} but the ledger holds {held}")
        cash_delta = krw_value - fee
        realized_pnl = _reduce_position(conn, position, volume, cash_delta, now)

    conn.execute(
        t.cash_events.insert().values(
            event_key=f"fill:{identifier}",
            kind=side,
            amount_krw=cash_delta,
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
        krw_value=float(krw_value),
        realized_pnl_krw=realized_pnl,
        executed_at=pd.Timestamp(executed_at).to_pydatetime(),
    )
    conn.execute(t.fills.insert().values(**fill))
    conn.execute(
        t.orders.update()
        .where(t.orders.c.identifier == identifier)
        .values(status=t.DONE, exchange_uuid=exchange_uuid or order["exchange_uuid"], updated_at=now)
    )
    return fill


def _add_to_position(
    conn: sa.Connection,
    position: sa.RowMapping | None,
    market: str,
    partition_key: str,
    price: float,
    volume: float,
    cost: float,
    now: Any,
) -> None:
    if position is None:
        conn.execute(
            t.positions.insert().values(
                market=market,
                volume=volume,
                avg_price=price,
                cost_krw=cost,
                entries=1,
                highest_price=price,
                opened_partition=partition_key,
                last_add_partition=partition_key,
                updated_at=now,
            )
        )
        return
    held = float(position["volume"])
    total = held + volume
    conn.execute(
        t.positions.update()
        .where(t.positions.c.market == market)
        .values(
            volume=total,
            # Volume-weighted average of fill prices; fees live in cost_krw, as freqtrade keeps them apart.
            avg_price=(float(position["avg_price"]) * held + price * volume) / total,
            cost_krw=float(position["cost_krw"]) + cost,
            entries=int(position["entries"]) + 1,
            highest_price=max(float(position["highest_price"]), price),
            last_add_partition=partition_key,
            updated_at=now,
        )
    )


def _reduce_position(
    conn: sa.Connection, position: sa.RowMapping | None, volume: float, proceeds: float, now: Any
) -> float:
    """Shrink the position; the sold share of its cost against the net proceeds is the realised P&L."""
    assert position is not None  # book_fill checked the held volume
    held = float(position["volume"])
    sold_share = min(volume / held, 1.0)
    cost_sold = float(position["cost_krw"]) * sold_share
    remaining = held - volume
    where = t.positions.c.market == position["market"]
    if remaining <= DUST_VOLUME:
        conn.execute(t.positions.delete().where(where))
    else:
        conn.execute(
            t.positions.update()
            .where(where)
            .values(volume=remaining, cost_krw=float(position["cost_krw"]) - cost_sold, updated_at=now)
        )
    return proceeds - cost_sold

"""The ledger's accounting as pure functions: what a fill does to a position and to the cash.

One implementation for both sides of the ledger: booking a fill (resources/ledger/booking.py)
and replaying the fills known at a partition's cut-off (the as-of reads of DESIGN §8), so the
positions a past partition saw and the positions booked today are the same arithmetic.
"""

from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, replace
from typing import Any

import pandas as pd

# Volumes are 8-decimal on Upbit; anything below half a unit of the 8th decimal is rounding noise.
DUST_VOLUME = 5e-9
ENTRY_SIDES = ("buy", "add")
POSITION_COLUMNS = [
    "market", "volume", "avg_price", "cost_krw", "entries", "highest_price", "opened_partition", "last_add_partition",
]  # fmt: skip


class AccountingError(ValueError):
    """A fill that contradicts the book (selling more than is held, implausible numbers)."""


@dataclass(frozen=True)
class Position:
    market: str
    volume: float
    avg_price: float
    # KRW that left the cash for the volume still held, fees included: the basis of realised P&L.
    cost_krw: float
    entries: int
    highest_price: float
    opened_partition: str
    last_add_partition: str


@dataclass(frozen=True)
class FillEffect:
    position: Position | None  # None: the position is closed
    cash_delta_krw: float
    realized_pnl_krw: float | None  # sells only


def apply_fill(
    position: Position | None, *, market: str, side: str, partition_key: str, price: float, volume: float, fee: float
) -> FillEffect:
    """The position and cash after one fill of `market`."""
    if not (price > 0 and volume > 0 and fee >= 0):
        raise AccountingError(f"{market}: implausible fill price={price} volume={volume} fee={fee}")
    krw_value = price * volume
    if side in ENTRY_SIDES:
        cost = krw_value + fee
        if position is None:
            opened = Position(market, volume, price, cost, 1, price, partition_key, partition_key)
            return FillEffect(opened, -cost, None)
        total = position.volume + volume
        grown = replace(
            position,
            volume=total,
            # Volume-weighted average of fill prices; fees live in cost_krw, as freqtrade keeps them apart.
            avg_price=(position.avg_price * position.volume + price * volume) / total,
            cost_krw=position.cost_krw + cost,
            entries=position.entries + 1,
            highest_price=max(position.highest_price, price),
            last_add_partition=partition_key,
        )
        return FillEffect(grown, -cost, None)
    if side != "sell":
        raise AccountingError(f"{market}: side {side!r} is not buy, add or sell")
    held = 0.0 if position is None else position.volume
    if position is None or volume > held + DUST_VOLUME:
        raise AccountingError(f"{market}: sells {volume} but {held} is held")
    proceeds = krw_value - fee
    cost_sold = position.cost_krw * min(volume / held, 1.0)
    remaining = held - volume
    after = (
        None
        if remaining <= DUST_VOLUME
        else replace(position, volume=remaining, cost_krw=position.cost_krw - cost_sold)
    )
    return FillEffect(after, proceeds, proceeds - cost_sold)


def replay_positions(fills: Iterable[Mapping[str, Any]]) -> dict[str, Position]:
    """Open positions after `fills` (market, side, partition_key, price, volume, fee), in booking order."""
    book: dict[str, Position] = {}
    for fill in fills:
        market = str(fill["market"])
        effect = apply_fill(
            book.get(market),
            market=market,
            side=str(fill["side"]),
            partition_key=str(fill["partition_key"]),
            price=float(fill["price"]),
            volume=float(fill["volume"]),
            fee=float(fill["fee"]),
        )
        if effect.position is None:
            book.pop(market, None)
        else:
            book[market] = effect.position
    return book


def positions_frame(book: Mapping[str, Position]) -> pd.DataFrame:
    """POSITION_COLUMNS, one row per open position, by market."""
    rows = [asdict(book[market]) for market in sorted(book)]
    return pd.DataFrame(rows, columns=POSITION_COLUMNS)

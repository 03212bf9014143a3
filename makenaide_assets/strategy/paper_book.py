"""The paper ledger in memory, for the fast backtest: the SQL ledger's accounting and cut-offs, no SQL.

Same arithmetic as the ledger (`accounting.apply_fill` when a fill is booked, `replay_positions`
for what a cut-off admits) and the same reads (resources/ledger/queries.py): cash is the sum of
the admitted cash events in booking order (SQLite's `sum()` adds them one by one, as here), and a
cut-off admits by partition key and order kind (DESIGN §8):
- `signals(D)`, `strategy_stats(D)`: the partitions before D (their stop exits included);
- `fills(D)`, `portfolio(D)` (`own_orders`): the same plus D's daily orders, not D's stop exits;
- the stop watch after D (`stop_exits`): everything of D.
The paper fill itself is `paper_fill`: PaperBroker's price (first price after the close, slippage
against us), its volume rounding and its fee.
"""

from dataclasses import dataclass
from typing import Any

import pandas as pd

from makenaide_assets.strategy.accounting import ENTRY_SIDES, Position, apply_fill, positions_frame, replay_positions
from makenaide_assets.strategy.ticks import round_volume

DAILY, STOP = "daily", "stop"
FILL_COLUMNS = [
    "id", "identifier", "partition_key", "market", "side", "price", "volume", "fee", "krw_value",
    "realized_pnl_krw", "executed_at", "kind",
]  # fmt: skip


@dataclass(frozen=True)
class Cut:
    """What a read of partition D admits (resources/ledger/queries.CutOff, without SQL)."""

    partition_key: str
    own_orders: bool = False
    stop_exits: bool = False

    def admits(self, partition_key: str | None, kind: str) -> bool:
        if partition_key is None:  # the seed cash
            return True
        if self.stop_exits:
            return partition_key <= self.partition_key
        if not self.own_orders:
            return partition_key < self.partition_key
        return partition_key < self.partition_key or (partition_key == self.partition_key and kind != STOP)


def slipped_price(quote: float, side: str, slippage_bps: float) -> float:
    """PaperBroker's fill price: slippage always against us (buys pay more, sells receive less)."""
    slip = slippage_bps / 10_000
    return quote * (1 + slip) if side in ENTRY_SIDES else quote * (1 - slip)


def paper_fill(
    side: str, price: float, fee_rate: float, *, krw_amount: float | None = None, volume: float | None = None
) -> tuple[float, float]:
    """(volume, fee) of a paper fill at `price`: an entry spends `krw_amount`, a sell sells `volume`."""
    filled = round_volume(float(krw_amount) / price) if side in ENTRY_SIDES else round_volume(float(volume))  # type: ignore[arg-type]
    return filled, filled * price * fee_rate


class PaperBook:
    """Cash events and fills in booking order, with the positions they leave."""

    def __init__(self, initial_cash_krw: float) -> None:
        self.cash_events: list[tuple[str | None, str, float]] = [(None, "seed", float(initial_cash_krw))]
        self.fills: list[dict[str, Any]] = []
        self._positions: dict[str, Position] = {}
        # Reads by the number of fills they admit: a backtest books in partition order, so what a
        # cut-off admits is always the first n fills (and cash events), and a quiet day reads again
        # what the day before read.
        self._reads: dict[tuple[str, int], Any] = {}

    def cash_krw(self, cut: Cut) -> float:
        total = 0.0
        for partition_key, kind, amount in self.cash_events:
            if cut.admits(partition_key, kind):
                total += amount
        return total

    def _admitted(self, cut: Cut) -> list[dict[str, Any]]:
        return [f for f in self.fills if cut.admits(f["partition_key"], f["kind"])]

    def _read(self, name: str, cut: Cut, build: Any) -> Any:
        admitted = self._admitted(cut)
        if admitted != self.fills[: len(admitted)]:  # not a prefix (an out-of-order booking): no cache
            return build(admitted)
        key = (name, len(admitted))
        if key not in self._reads:
            self._reads[key] = build(admitted)
        return self._reads[key]

    def open_positions(self, cut: Cut) -> pd.DataFrame:
        return self._read("positions", cut, lambda fills: positions_frame(replay_positions(fills))).copy()

    def closed_trades(self, cut: Cut) -> pd.DataFrame:
        """Sell fills with their realised P&L, by execution time then booking order."""
        return self._read("closed", cut, _closed_frame).copy()

    def holds_anything(self) -> bool:
        """Whether any position is open after every fill booked so far."""
        return bool(self._positions)

    def position(self, market: str) -> Position | None:
        """The position as booked now (every fill so far)."""
        return self._positions.get(market)

    def book(
        self,
        identifier: str,
        *,
        partition_key: str,
        market: str,
        side: str,
        price: float,
        volume: float,
        fee: float,
        executed_at: pd.Timestamp,
        kind: str = DAILY,
    ) -> dict[str, Any]:
        """Book one fill: position, cash event and fill row together (ledger/booking.py)."""
        effect = apply_fill(
            self._positions.get(market),
            market=market,
            side=side,
            partition_key=partition_key,
            price=price,
            volume=volume,
            fee=fee,
        )
        if effect.position is None:
            self._positions.pop(market, None)
        else:
            self._positions[market] = effect.position
        self.cash_events.append((partition_key, STOP if kind == STOP else side, effect.cash_delta_krw))
        fill = {
            "id": len(self.fills) + 1,
            "identifier": identifier,
            "partition_key": partition_key,
            "market": market,
            "side": side,
            "price": float(price),
            "volume": float(volume),
            "fee": float(fee),
            "krw_value": float(price * volume),
            "realized_pnl_krw": effect.realized_pnl_krw,
            "executed_at": pd.Timestamp(executed_at),
            "kind": kind,
        }
        self.fills.append(fill)
        return fill


def _closed_frame(fills: list[dict[str, Any]]) -> pd.DataFrame:
    sells = [f for f in fills if f["side"] == "sell"]
    frame = pd.DataFrame(sorted(sells, key=lambda f: (f["executed_at"], f["id"])), columns=FILL_COLUMNS)
    frame["executed_at"] = pd.to_datetime(frame["executed_at"])
    return frame

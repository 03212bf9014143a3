"""Brokers turn `signals` rows into ledger orders and fills; `PaperBroker` simulates the exchange.

A broker holds the ledger it books into (and the paper broker the market data it fills from) as
Dagster nested resources, wired in `modes.resources_for` to the same objects as the top-level
`ledger` and `market_data`. Dagster initialises a nested resource separately from the top-level
one, so in a run the broker's ledger is its own copy with its own engine on the same database;
that is safe because the ledger keeps nothing in memory but the engine: every read goes to the
database and every write is one committed transaction.

`Broker.execute(orders, partition_key, log)` runs, per signal row (sells first, so cash freed by
a sale can pay for a buy):

1. identifier = `identifier_for_signal(partition_key, row)` (deterministic, see ledger.py);
2. already `done` / `rejected` / `failed` in the ledger -> nothing is sent again;
3. `pending` / `submitted` (a run died between submission and booking) -> `_resolve` first:
   the paper broker finishes the recorded intent, Upbit looks the identifier up;
4. otherwise plan it: not sendable -> a `skipped` row with the reason; else record the intent
   as `pending` (own transaction), submit, and book fill + position + cash in ONE transaction.

It returns `self.ledger.fills_for_partition(partition_key)`: every order of the partition, so a
re-run adds nothing and still shows the day's fills.
"""

import math
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any, Protocol

import dagster as dg
import pandas as pd
from pydantic import Field

from makenaide_assets.resources.ledger import CutOff, TradingLedger, identifier_for_signal
from makenaide_assets.resources.ledger import schema as t
from makenaide_assets.resources.market_data import MarketData
from makenaide_assets.strategy.accounting import ENTRY_SIDES
from makenaide_assets.strategy.calendar import partition_close
from makenaide_assets.strategy.ticks import FEE_RATE, MIN_ORDER_KRW, round_volume

# Paper fills trade this much worse than the first price after the close, always against us.
PAPER_SLIPPAGE_BPS = 10.0


class Log(Protocol):
    def info(self, msg: str, *args: Any) -> None: ...
    def warning(self, msg: str, *args: Any) -> None: ...
    def error(self, msg: str, *args: Any) -> None: ...


class OrderOutcomeUnknown(RuntimeError):
    """The exchange's answer could not be established; the ledger keeps the order unresolved
    (pending/submitted) and the next run looks it up before doing anything else."""


@dataclass(frozen=True)
class Skip:
    name: str
    reason: str


@dataclass(frozen=True)
class OrderPlan:
    krw_amount: float | None  # buy/add: KRW to spend, fee excluded
    volume: float | None  # sell: units to sell
    note_name: str | None = None  # e.g. a buy reduced to the cash available
    note: str | None = None


class Broker(dg.ConfigurableResource, ABC):
    """Executes order intents against an exchange (real or simulated), booking every step in the ledger."""

    ledger: TradingLedger = Field(description="where every order, fill, position and cash movement is booked")

    @property
    @abstractmethod
    def name(self) -> str:
        """Short broker name stored with each order."""

    def describe(self) -> str:
        return self.name

    def execute(self, orders: pd.DataFrame, partition_key: str, log: Log) -> pd.DataFrame:
        self._start(log)
        for signal in _in_execution_order(orders):
            self._execute_one(signal, partition_key, log)
        return self.ledger.fills_for_partition(partition_key)

    def _execute_one(self, signal: dict, partition_key: str, log: Log) -> None:
        ledger = self.ledger
        identifier = identifier_for_signal(partition_key, signal)
        existing = ledger.order(identifier)
        if existing is not None and existing["status"] in (t.DONE, t.REJECTED, t.FAILED):
            log.info(f"{identifier}: already {existing['status']} in the ledger; not ordering again")
            return
        if existing is not None and existing["status"] in t.UNRESOLVED:
            log.warning(f"{identifier}: left {existing['status']} by an earlier run; resolving it before anything else")
            self._resolve(existing, log)
            return
        plan = self._plan(signal, identifier, partition_key)
        intent = dict(
            partition_key=partition_key,
            market=signal["market"],
            side=signal["side"],
            broker=self.name,
            ref_price=_number(signal.get("price")),
            reason=None if pd.isna(signal.get("reason")) else str(signal.get("reason")),
        )
        if isinstance(plan, Skip):
            ledger.record_intent(
                identifier,
                **intent,
                krw_amount=_number(signal.get("krw_amount")),
                volume=_number(signal.get("volume")),
                status=t.SKIPPED,
                error_name=plan.name,
                error_message=plan.reason,
            )
            log.warning(f"{identifier}: skipped ({plan.name}): {plan.reason}")
            return
        ledger.record_intent(
            identifier,
            **intent,
            krw_amount=plan.krw_amount,
            volume=plan.volume,
            error_name=plan.note_name,
            error_message=plan.note,
        )
        if plan.note:
            log.warning(f"{identifier}: {plan.note}")
        order = ledger.order(identifier)
        assert order is not None  # recorded just above
        self._submit(order, log)

    def _plan(self, signal: dict, identifier: str, partition_key: str) -> OrderPlan | Skip:
        """Checks every broker shares; `_adjust` adds what the particular exchange needs."""
        market, side = str(signal["market"]), str(signal["side"])
        if side in ENTRY_SIDES:
            krw = _number(signal.get("krw_amount"))
            if krw is None or krw <= 0:
                return Skip("no_amount", f"{side} signal without a positive krw_amount ({signal.get('krw_amount')!r})")
            if krw < MIN_ORDER_KRW:
                return Skip("under_min_total", f"{krw:,.0f} KRW is below Upbit's minimum order of {MIN_ORDER_KRW:,.0f}")
            done = self.ledger.fills_for_partition(partition_key)
            entered = done["side"].isin(ENTRY_SIDES) & (done["status"] == t.DONE)
            earlier = done[entered & (done["market"] == market) & (done["identifier"] != identifier)]
            if not earlier.empty:
                # A re-materialised `signals` may turn today's buy into an "add": one entry per day.
                return Skip("already_entered", f"{market} was already entered today by {earlier['identifier'].iloc[0]}")
            plan = OrderPlan(krw_amount=krw, volume=None)
        elif side == "sell":
            volume = _number(signal.get("volume"))
            if volume is None or volume <= 0:
                return Skip("no_volume", f"sell signal without a positive volume ({signal.get('volume')!r})")
            positions = self.ledger.open_positions(CutOff(partition_key, own_orders=True)).set_index("market")
            if market not in positions.index:
                return Skip("no_position", f"the ledger holds no {market}")
            volume = round_volume(min(volume, float(positions.at[market, "volume"])))
            if volume <= 0:
                return Skip("no_volume", f"the {market} position rounds to zero volume")
            plan = OrderPlan(krw_amount=None, volume=volume)
        else:
            return Skip("unknown_side", f"side {side!r} is not buy, add or sell")
        return self._adjust(plan, market, side, partition_key)

    def _start(self, log: Log) -> None:
        """Called once per execute(); a live broker refuses here when it must not trade."""

    def _adjust(self, plan: OrderPlan, market: str, side: str, partition_key: str) -> OrderPlan | Skip:
        return plan

    @abstractmethod
    def _submit(self, order: dict, log: Log) -> None:
        """Send a `pending` order and book its outcome (fill, rejection) in the ledger."""

    @abstractmethod
    def _resolve(self, order: dict, log: Log) -> None:
        """Finish an order an earlier run left `pending` or `submitted`, without ordering twice."""


class PaperBroker(Broker):
    """Fills at the first tradable price after the partition closed, plus slippage, minus Upbit's fee."""

    # The paper exchange is the market data: its prices are the fills. The live broker has none.
    market_data: MarketData = Field(description="first traded price after the close, for each fill")
    slippage_bps: float = PAPER_SLIPPAGE_BPS
    fee_rate: float = FEE_RATE

    @property
    def name(self) -> str:
        return "paper"

    def describe(self) -> str:
        return f"paper (slippage {self.slippage_bps:g} bps, fee {self.fee_rate:.2%})"

    def _adjust(self, plan: OrderPlan, market: str, side: str, partition_key: str) -> OrderPlan | Skip:
        quote = self._fill_price(market, side, partition_key)
        if quote is None:
            after = partition_close(partition_key)
            return Skip("no_price", f"no {market} price at or after {after} in {self.market_data.describe()}")
        if plan.volume is not None:
            value = plan.volume * quote[1]
            if value < MIN_ORDER_KRW:
                return Skip("under_min_total", f"{plan.volume} {market} is worth {value:,.0f} KRW, below the minimum")
            return plan
        assert plan.krw_amount is not None
        cash = self.ledger.cash_krw(CutOff(partition_key, own_orders=True))
        affordable = math.floor(cash / (1 + self.fee_rate))
        if plan.krw_amount <= affordable:
            return plan
        if affordable < MIN_ORDER_KRW:
            return Skip("insufficient_cash", f"{plan.krw_amount:,.0f} KRW + fee asked, the ledger has {cash:,.0f} KRW")
        return OrderPlan(
            krw_amount=float(affordable),
            volume=None,
            note_name="reduced_to_cash",
            note=f"buy reduced from {plan.krw_amount:,.0f} to {affordable:,.0f} KRW, what the cash pays with the fee",
        )

    def _fill_price(self, market: str, side: str, partition_key: str) -> tuple[pd.Timestamp, float] | None:
        quote = self.market_data.first_price_after(market, partition_close(partition_key))
        if quote is None:
            return None
        at, price = quote
        slip = self.slippage_bps / 10_000
        # Slippage always works against us: buys pay more, sells receive less.
        return at, price * (1 + slip) if side in ENTRY_SIDES else price * (1 - slip)

    def _submit(self, order: dict, log: Log) -> None:
        ledger, identifier = self.ledger, order["identifier"]
        quote = self._fill_price(order["market"], order["side"], order["partition_key"])
        if quote is None:
            ledger.close_order(identifier, t.SKIPPED, "no_price", f"no {order['market']} price after the close")
            log.warning(f"{identifier}: skipped: no price")
            return
        executed_at, price = quote
        if order["side"] in ENTRY_SIDES:
            volume = round_volume(float(order["krw_amount"]) / price)
        else:
            volume = round_volume(float(order["volume"]))
        fee = volume * price * self.fee_rate
        ledger.mark_submitted(identifier, exchange_uuid=None)
        self._on_submitted(identifier)
        fill = ledger.record_fill(identifier, price=price, volume=volume, fee=fee, executed_at=executed_at)
        what = f"{order['side']} {volume} {order['market']} at {price:,.4f}"
        log.info(f"{identifier}: paper {what} = {fill['krw_value']:,.0f} KRW")

    def _resolve(self, order: dict, log: Log) -> None:
        # The paper exchange is the replayed price: the recorded intent fills the same way again.
        self._submit(order, log)

    def _on_submitted(self, identifier: str) -> None:
        """Between "the exchange has it" and "the ledger booked it": where a crash hurts most."""


def _number(value: Any) -> float | None:
    if value is None:
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return None if math.isnan(number) or math.isinf(number) else number


def _in_execution_order(orders: pd.DataFrame) -> list[dict]:
    if orders.empty:
        return []
    missing = {"market", "side"} - set(orders.columns)
    if missing:
        raise ValueError(f"orders lack the contract columns {sorted(missing)}")
    records = orders.to_dict("records")
    # Sells first: the cash they free may pay for today's buys. The sort is stable otherwise.
    return sorted(records, key=lambda row: 0 if row["side"] == "sell" else 1)

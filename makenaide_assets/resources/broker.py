"""Brokers turn `signals` rows into ledger orders and fills; `PaperBroker` simulates the exchange.

A broker holds the ledger it books into (and the paper broker the market data it fills from) as
Dagster nested resources, wired in `modes.resources_for` to the same objects as the top-level
`ledger` and `market_data`. Dagster initialises a nested resource separately from the top-level
one, so in a run the broker's ledger is its own copy with its own engine on the same database;
that is safe because the ledger keeps nothing in memory but the engine: every read goes to the
database and every write is one committed transaction.

`Broker.execute(orders, partition_key, log)` holds the ledger's writer lock (one trading writer at
a time, however the run was started) and then:

0. with `plan=True` (the `fills` asset), records the partition's plan first (PlanConflict when a
   past partition's signals changed: nothing is ordered);
1. resolves every unresolved order of ANY partition (`_resolve`): the paper broker finishes the
   recorded intent, Upbit looks the identifier up. One whose outcome stays unknown blocks new
   orders of its market (buys; sells too when it is a sell) until a later run resolves it;
2. `_before_orders`: what the particular exchange checks before planning (the live broker looks
   refused orders up again and reconciles with the account);
3. per signal row, sells first (cash freed by a sale can pay for a buy): identifier =
   `identifier_for_signal(partition_key, row)`; already `done` / `rejected` / `failed` -> nothing
   is sent again; otherwise plan it: not sendable -> a `skipped` row with the reason; else record
   the intent as `pending` (own transaction), submit, and book fill + position + cash in ONE
   transaction. A side the ledger cannot hold is refused with an error and left for the
   `fills_match_signals` check, never booked.

It returns `self.ledger.fills_for_partition(partition_key)`: every order of the partition, so a
re-run adds nothing and still shows the day's fills. `notices` collects what the operator must
be told (fills found for refused orders, orders still unresolved); `fills` sends them.
"""

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any, Protocol

import dagster as dg
import pandas as pd
from pydantic import Field, PrivateAttr

from makenaide_assets.resources.ledger import CutOff, TradingLedger, identifier_for_signal, identifiers_for_signals
from makenaide_assets.resources.ledger import schema as t
from makenaide_assets.resources.market_data import MarketData
from makenaide_assets.resources.trading_limits import TradingLimits
from makenaide_assets.strategy.accounting import ENTRY_SIDES
from makenaide_assets.strategy.calendar import partition_close
from makenaide_assets.strategy.limits import Limits, Refusal, cap_buy, outside_band, sells_halted
from makenaide_assets.strategy.numbers import finite
from makenaide_assets.strategy.reconcile import Reconciliation
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
    limits: TradingLimits = Field(default_factory=TradingLimits, description="caps, loss limits, price band")

    _notices: list[str] = PrivateAttr(default_factory=list)
    _limits: Limits = PrivateAttr(default_factory=Limits)
    # Why no buy may go out in this execute (halt switch, unexplained account difference), if any.
    _buys_refused: Refusal | None = PrivateAttr(default=None)

    @property
    @abstractmethod
    def name(self) -> str:
        """Short broker name stored with each order."""

    def describe(self) -> str:
        return self.name

    def execute(self, orders: pd.DataFrame, partition_key: str, log: Log, *, plan: bool = False) -> pd.DataFrame:
        self._start(log)
        self._notices = []
        self._read_limits(log)
        with self.ledger.writer(f"trading {partition_key} through {self.describe()}"):
            if plan:
                # Recorded before the first order: a later run of this partition must plan the same.
                self.ledger.record_plan(partition_key, identifiers_for_signals(partition_key, orders))
            stuck = self._resolve_outstanding(log)
            self._before_orders(partition_key, log)
            for signal in _in_execution_order(orders):
                self._execute_one(signal, partition_key, log, stuck)
        return self.ledger.fills_for_partition(partition_key)

    def execute_stop_exits(self, exits: pd.DataFrame, partition_key: str, log: Log) -> pd.DataFrame:
        """Sell the positions whose stop or take-profit was crossed during the day after the
        partition's trading run (`stop_exits`). Rows: market, volume, price (where the intraday
        rule fills it), triggered_at, reason. Unresolved orders are resolved first, as always; no
        reconciliation (the next daily run does it) and no plan (the partition's plan is its daily
        orders). Returns every stop exit of the partition."""
        self._start(log)
        self._notices = []
        self._read_limits(log)
        with self.ledger.writer(f"stop exits after {partition_key} through {self.describe()}"):
            stuck = self._resolve_outstanding(log)
            rows = exits.assign(side="sell", kind=t.STOP, signal_id=t.STOP)
            for signal in _in_execution_order(rows):
                self._execute_one(signal, partition_key, log, stuck)
        return self.ledger.stop_exits(partition_key)

    @property
    def notices(self) -> list[str]:
        """What the last `execute` found that the operator must hear about."""
        return list(self._notices)

    def _notify(self, log: Log, message: str) -> None:
        log.error(message)
        self._notices.append(message)

    def _read_limits(self, log: Log) -> None:
        """The limits and the operator's halt switch as they stand now (read at every run)."""
        self._limits, warning = self.limits.resolve()
        if warning:
            self._notify(log, warning)
        self._buys_refused = (
            Refusal("operator_halt", f"halt switch: {self._limits.halt}") if self._limits.halt else None
        )

    def _halted(self, side: str) -> Refusal | None:
        """Why no order of `side` may go out now, if none may (buys: also an unreconciled account)."""
        return self._buys_refused if side in ENTRY_SIDES else sells_halted(self._limits)

    def _resolve_outstanding(self, log: Log) -> dict[str, set[str]]:
        """Resolve every unresolved order, of any partition, before anything new is planned
        (DESIGN §8). Returns market -> sides of the orders whose outcome is still unknown."""
        stuck: dict[str, set[str]] = {}
        for order in self.ledger.unresolved_orders():
            log.warning(f"{order['identifier']}: left {order['status']} by an earlier run; resolving it first")
            try:
                self._resolve(order, log)
            except OrderOutcomeUnknown as exc:
                stuck.setdefault(order["market"], set()).add(order["side"])
                self._notify(log, f"{exc}. No new order in {order['market']} until it is resolved.")
        return stuck

    def _execute_one(self, signal: dict, partition_key: str, log: Log, stuck: dict[str, set[str]]) -> None:
        ledger = self.ledger
        market, side = str(signal["market"]), str(signal["side"])
        identifier = identifier_for_signal(partition_key, signal)
        if side not in t.SIDES:
            # The ledger cannot hold it (its CHECK constraint), and nothing may be sent for it.
            log.error(f"{identifier}: side {side!r} is not buy, add or sell; refused, not ordered")
            return
        existing = ledger.order(identifier)
        if existing is not None and existing["status"] != t.SKIPPED:
            # Done, refused or failed: the identifier is spent. Still unresolved: reported above.
            log.info(f"{identifier}: already {existing['status']} in the ledger; not ordering again")
            return
        blocked = stuck.get(market, set())
        plan = (
            Skip("unresolved_order", f"an earlier {market} order's outcome is still unknown; nothing new until it is")
            if (side in ENTRY_SIDES and blocked) or (side == "sell" and "sell" in blocked)
            else self._plan(signal, identifier, partition_key)
        )
        intent = dict(
            partition_key=partition_key,
            market=market,
            side=side,
            broker=self.name,
            ref_price=finite(signal.get("price")),
            reason=None if pd.isna(signal.get("reason")) else str(signal.get("reason")),
            kind=_kind(signal),
            triggered_at=signal.get("triggered_at"),
        )
        if isinstance(plan, Skip):
            ledger.record_intent(
                identifier,
                **intent,
                krw_amount=finite(signal.get("krw_amount")),
                volume=finite(signal.get("volume")),
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
        try:
            self._submit(order, log)
        except OrderOutcomeUnknown as exc:
            # Left pending/submitted in the ledger: the next run resolves it before anything else.
            self._notify(log, str(exc))

    def _plan(self, signal: dict, identifier: str, partition_key: str) -> OrderPlan | Skip:
        """Checks every broker shares; `_adjust` adds what the particular exchange needs."""
        market, side = str(signal["market"]), str(signal["side"])
        if side in ENTRY_SIDES:
            krw = finite(signal.get("krw_amount"))
            if krw is None or krw <= 0:
                return Skip("no_amount", f"{side} signal without a positive krw_amount ({signal.get('krw_amount')!r})")
            if krw < MIN_ORDER_KRW:
                return Skip("under_min_total", f"{krw:,.0f} KRW is below Upbit's minimum order of {MIN_ORDER_KRW:,.0f}")
            if self._buys_refused is not None:
                return Skip(self._buys_refused.name, self._buys_refused.reason)
            done = self.ledger.fills_for_partition(partition_key)
            entered = done["side"].isin(ENTRY_SIDES) & (done["status"] == t.DONE)
            earlier = done[entered & (done["market"] == market) & (done["identifier"] != identifier)]
            if not earlier.empty:
                # A re-materialised `signals` may turn today's buy into an "add": one entry per day.
                return Skip("already_entered", f"{market} was already entered today by {earlier['identifier'].iloc[0]}")
            band = outside_band(self._limits, finite(signal.get("price")), self._quote(market, partition_key))
            if band is not None:
                return Skip(band.name, band.reason)
            # An entry of the day whose outcome is still unknown may have executed (Upbit holds its
            # KRW): it counts against the daily cap at what it asked for.
            unknown = done["side"].isin(ENTRY_SIDES) & done["status"].isin(t.UNRESOLVED)
            unknown &= done["identifier"] != identifier
            bought = float(done.loc[entered, "krw_value"].sum()) + float(done.loc[unknown, "requested_krw"].sum())
            capped = cap_buy(self._limits, krw, bought, self._buying_power(market, partition_key), FEE_RATE)
            if capped.krw < MIN_ORDER_KRW:
                name = "insufficient_cash" if capped.binding == "cash" else "over_limit"
                return Skip(name, f"{capped.note}, below Upbit's minimum order of {MIN_ORDER_KRW:,.0f} KRW")
            name = None if capped.note is None else "reduced_to_cash" if capped.binding == "cash" else "capped"
            plan = OrderPlan(krw_amount=capped.krw, volume=None, note_name=name, note=capped.note)
        elif side == "sell":
            if (halted := sells_halted(self._limits)) is not None:
                return Skip(halted.name, halted.reason)
            volume = finite(signal.get("volume"))
            if volume is None or volume <= 0:
                return Skip("no_volume", f"sell signal without a positive volume ({signal.get('volume')!r})")
            # A stop exit sells what the day's orders and earlier stop exits of the watch left.
            as_of = CutOff(partition_key, own_orders=True, stop_exits=_kind(signal) == t.STOP)
            positions = self.ledger.open_positions(as_of).set_index("market")
            if market not in positions.index:
                return Skip("no_position", f"the ledger holds no {market}")
            volume = round_volume(min(volume, float(positions.at[market, "volume"])))
            if volume <= 0:
                return Skip("no_volume", f"the {market} position rounds to zero volume")
            plan = OrderPlan(krw_amount=None, volume=volume)
        else:
            raise AssertionError(f"side {side!r} was refused before planning")
        return self._adjust(plan, signal, partition_key)

    def _start(self, log: Log) -> None:
        """Called once per execute(); a live broker refuses here when it must not trade."""

    def _before_orders(self, partition_key: str, log: Log) -> None:
        """After outstanding orders are resolved and before the day's are planned."""

    def reconcile(self, partition_key: str, log: Log) -> Reconciliation:
        """Before `signals` plans (DESIGN §8): every unresolved order of any partition resolved,
        then the ledger made equal to the exchange account. `notices` says what was found."""
        self._start(log)
        self._notices = []
        self._read_limits(log)  # an order an earlier run left unsent is sent only if no halt holds it
        with self.ledger.writer(f"signals of {partition_key} through {self.describe()}"):
            self._resolve_outstanding(log)
            return self._reconcile(partition_key, log)

    def _reconcile(self, partition_key: str, log: Log) -> Reconciliation:
        """Nothing to reconcile where the ledger is the exchange (paper)."""
        return Reconciliation()

    def _adjust(self, plan: OrderPlan, signal: dict, partition_key: str) -> OrderPlan | Skip:
        return plan

    def _buying_power(self, market: str, partition_key: str) -> float:
        """KRW a buy may spend, the fee on top: the ledger's cash (the account's too, when live)."""
        return self.ledger.cash_krw(CutOff(partition_key, own_orders=True))

    @abstractmethod
    def _quote(self, market: str, partition_key: str) -> float | None:
        """The price a market order would trade at now, for the price band (None: unknown)."""

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

    def _adjust(self, plan: OrderPlan, signal: dict, partition_key: str) -> OrderPlan | Skip:
        market = str(signal["market"])
        quote = self._fill_price({**signal, "partition_key": partition_key, "ref_price": signal.get("price")})
        if quote is None:
            after = partition_close(partition_key)
            return Skip("no_price", f"no {market} price at or after {after} in {self.market_data.describe()}")
        if plan.volume is not None:
            value = plan.volume * quote[1]
            if value < MIN_ORDER_KRW:
                return Skip("under_min_total", f"{plan.volume} {market} is worth {value:,.0f} KRW, below the minimum")
            return plan
        return plan

    def _quote(self, market: str, partition_key: str) -> float | None:
        quote = self.market_data.first_price_after(market, partition_close(partition_key))
        return None if quote is None else quote[1]

    def _fill_price(self, order: dict) -> tuple[pd.Timestamp, float] | None:
        """Where an order (a ledger row, or a signal with its partition) fills, before slippage."""
        side = str(order["side"])
        if _kind(order) == t.STOP:
            # A stop watched between daily runs fills where the intraday rule says: at the level,
            # or at the open of a candle that gapped past it (strategy/intraday.py).
            price, at = finite(order.get("ref_price")), order.get("triggered_at")
            quote = None if price is None or at is None or pd.isna(at) else (pd.Timestamp(at), price)
        else:
            quote = self.market_data.first_price_after(order["market"], partition_close(order["partition_key"]))
        if quote is None:
            return None
        at, price = quote
        slip = self.slippage_bps / 10_000
        # Slippage always works against us: buys pay more, sells receive less.
        return at, price * (1 + slip) if side in ENTRY_SIDES else price * (1 - slip)

    def _submit(self, order: dict, log: Log) -> None:
        ledger, identifier = self.ledger, order["identifier"]
        quote = self._fill_price(order)
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


def _kind(order: dict) -> str:
    kind = order.get("kind")
    return t.DAILY if kind is None or pd.isna(kind) else str(kind)


def _in_execution_order(orders: pd.DataFrame) -> list[dict]:
    if orders.empty:
        return []
    missing = {"market", "side"} - set(orders.columns)
    if missing:
        raise ValueError(f"orders lack the contract columns {sorted(missing)}")
    records = orders.to_dict("records")
    # Sells first: the cash they free may pay for today's buys. The sort is stable otherwise.
    return sorted(records, key=lambda row: 0 if row["side"] == "sell" else 1)

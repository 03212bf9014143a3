"""The local exchange's state and rules: accounts, orders, fills and injected faults, no HTTP.

`upbit_server` answers Upbit's exchange API from a `LocalExchange`; tests and rehearsals may also
drive it directly (`deposit`, `manual_trade`, `settle`, `dump`). Its clock is the replay's
(`attach` a `ReplayAnswers`): the quotation and exchange APIs always agree on `now`.

Rules, in Upbit's shapes (string-typed numbers, `created_at` with +09:00):
- a market order (bid `ord_type=price` with the KRW to spend, ask `ord_type=market` with a volume)
  fills at the next recorded price after the clock: the open of the first recorded 4-hour candle
  starting at or after it, else of the first daily one (the replay's paper-fill rule); with none,
  the order is refused (`no_recorded_price`). Its trade is stamped with the clock;
- a limit order rests `wait` with its funds locked and fills at its own price once the clock has
  passed a recorded candle that started at or after the order and whose low (bid) or high (ask)
  reached that price; its trade is stamped with that candle's start;
- fee 0.05 % of the funds on every trade (a bid locks it on top of the amount); volumes floored to
  8 decimals; a market buy ends `cancel` when dust is returned, else `done`;
- an `identifier` is unique forever: once used, even by a refused or cancelled order, it is refused
  (`duplicated_identifier`) — Upbit's guide says so but its error table has no name for it; the
  name is the one a third-party Upbit client maps (found by code search);
- seeded faults (`fault_rate`, `seed`, `fault_kinds`), counted by kind, drawn in request order;
- deposits and withdrawals (`deposit`) are listed as Upbit lists them (`transfers`), and every
  order, Makenaide's or a `manual_trade`, in the closed-orders list once it is done or cancelled.

What it cannot show: there is no order book, no slippage, no partial fills but the injected ones
and no price between recorded candles: every fill is at a recorded candle price (or a limit price
a recorded candle reached). Only KRW markets; no `best`, `ioc`/`fok`, SMP, open-order lists or
coin withdrawals to addresses; one account, whose keys may do everything.
"""

import random
import threading
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from decimal import ROUND_DOWN, ROUND_HALF_EVEN, Decimal, InvalidOperation
from typing import Any, Protocol

import numpy as np
import pandas as pd

from makenaide_assets.strategy.candles import Interval, candle_close_time
from makenaide_assets.strategy.ticks import FEE_RATE, MIN_ORDER_KRW, VOLUME_DECIMALS, round_price_to_tick

FEE = Decimal(str(FEE_RATE))
MIN_TOTAL = Decimal(str(MIN_ORDER_KRW))
MAX_TOTAL = Decimal("1000000000")
_STEP = Decimal(1).scaleb(-VOLUME_DECIMALS)
_KST = pd.Timedelta(hours=9)
# Where fill prices come from, finest first (as the replay's paper fills).
FILL_INTERVALS: tuple[Interval, ...] = ("minute240", "day")

FAULT_KINDS = (
    "accepted_then_timeout",
    "server_error",
    "rate_limited",
    "ip_blocked",
    "stays_wait",
    "partial_fill",
    "empty_trades",
)
READ_FAULT_KINDS = ("server_error", "rate_limited")
_ANSWERED_FAULTS = ("server_error", "rate_limited", "ip_blocked")  # answered at once, nothing executed
DUPLICATE_IDENTIFIER = "duplicated_identifier"
NO_RECORDED_PRICE = "no_recorded_price"
_TICK_MESSAGE = "주문가격 단위를 잘못 입력하셨습니다. 확인 후 시도해주세요."  # Upbit's text for invalid_price_*


class ExchangeError(Exception):
    """A refusal in Upbit's shape: HTTP status and `{"error": {"name", "message"}}`."""

    def __init__(self, status: int, name: str, message: str) -> None:
        super().__init__(f"{name}: {message}")
        self.status = status
        self.name = name
        self.message = message

    @property
    def body(self) -> dict[str, dict[str, str]]:
        return {"error": {"name": self.name, "message": self.message}}


class InjectedFault(Exception):
    """A seeded fault the HTTP layer must act out: answer `status`, or (None) close without answering."""

    def __init__(self, kind: str, status: int | None) -> None:
        super().__init__(f"injected fault {kind} (HTTP {status})")
        self.kind = kind
        self.status = status


class Recording(Protocol):
    """What the exchange reads from the replay: its clock and its recorded candles (ReplayAnswers)."""

    now: pd.Timestamp

    def recorded(self, market: str, interval: Interval) -> pd.DataFrame: ...

    def is_listed(self, market: str) -> bool: ...


@dataclass(frozen=True)
class _Candles:
    starts: np.ndarray
    closes: np.ndarray
    opens: np.ndarray
    highs: np.ndarray
    lows: np.ndarray


@dataclass
class _Account:
    currency: str
    balance: Decimal = Decimal(0)
    locked: Decimal = Decimal(0)
    avg_buy_price: Decimal = Decimal(0)

    def view(self) -> dict[str, Any]:
        return {
            "currency": self.currency,
            "balance": _num(self.balance),
            "locked": _num(self.locked),
            "avg_buy_price": _num(self.avg_buy_price),
            # As Upbit answers: the KRW row says modified, coin rows say whether a user edited it.
            "avg_buy_price_modified": self.currency == "KRW",
            "unit_currency": "KRW",
        }


@dataclass(frozen=True)
class _Trade:
    uuid: str
    market: str
    side: str
    price: Decimal
    volume: Decimal
    funds: Decimal
    at: pd.Timestamp

    def view(self) -> dict[str, Any]:
        return {
            "market": self.market,
            "uuid": self.uuid,
            "price": _num(self.price),
            "volume": _num(self.volume),
            "funds": _num(self.funds),
            "created_at": kst(self.at),
            "side": self.side,
        }


@dataclass
class _Order:
    uuid: str
    identifier: str | None
    market: str
    side: str  # bid | ask
    ord_type: str  # price | market | limit
    price: Decimal | None  # price order: the KRW to spend; limit: the limit price
    volume: Decimal | None
    created_at: pd.Timestamp
    locked: Decimal  # still reserved: KRW (fee included) for a bid, the coin for an ask
    reserved_fee: Decimal
    state: str = "wait"
    paid_fee: Decimal = Decimal(0)
    remaining_fee: Decimal = Decimal(0)
    executed_volume: Decimal = Decimal(0)
    trades: list[_Trade] = field(default_factory=list)
    fault: str | None = None
    held: bool = False  # stays_wait: executes at the next clock move
    fraction: Decimal = Decimal(1)  # partial_fill: the share that executes
    hide_trades: bool = False  # empty_trades: lookups answer `trades: []`

    @property
    def coin(self) -> str:
        return self.market.split("-", 1)[1]


class LocalExchange:
    """One account at a simulated Upbit; every public method is thread-safe (one lock)."""

    def __init__(
        self,
        access_key: str,
        secret_key: str,
        *,
        krw: float | str | Decimal = 10_000_000,
        fault_rate: float = 0.0,
        seed: int = 0,
        fault_kinds: Iterable[str] | None = None,
    ) -> None:
        if not 0.0 <= fault_rate <= 1.0:
            raise ValueError(f"fault_rate must be within [0, 1], got {fault_rate}")
        kinds = FAULT_KINDS if fault_kinds is None else tuple(fault_kinds)
        unknown = sorted(set(kinds) - set(FAULT_KINDS))
        if unknown:
            raise ValueError(f"unknown fault kinds {unknown}; known: {list(FAULT_KINDS)}")
        self.access_key = access_key
        self.secret_key = secret_key
        self.fault_rate = fault_rate
        self.seed = seed
        # FAULT_KINDS' order, whatever order was given: the same seed draws the same faults.
        self.fault_kinds = tuple(kind for kind in FAULT_KINDS if kind in kinds)
        self._read_kinds = tuple(kind for kind in self.fault_kinds if kind in READ_FAULT_KINDS)
        self._faults_rng = random.Random(seed)
        self._ids_rng = random.Random(f"uuids:{seed}")  # uuids do not shift the fault draws
        self.initial_krw = _decimal(krw, "krw")
        self._accounts: dict[str, _Account] = {"KRW": _Account("KRW", self.initial_krw)}
        self._orders: dict[str, _Order] = {}
        self._by_identifier: dict[str, _Order] = {}
        self._spent_identifiers: set[str] = set()
        self._faults = dict.fromkeys(FAULT_KINDS, 0)
        self._events: list[dict[str, Any]] = []
        self._transfers: list[dict[str, Any]] = []  # deposits and withdrawals, as Upbit lists them
        self._refused: list[dict[str, Any]] = []
        self._candles: dict[tuple[str, Interval], _Candles] = {}
        self._recording: Recording | None = None
        self._lock = threading.RLock()

    def attach(self, recording: Recording) -> "LocalExchange":
        """Trade on `recording`'s prices and clock (the server attaches its own ReplayAnswers)."""
        with self._lock:
            if self._recording is not None and self._recording is not recording:
                raise RuntimeError("this LocalExchange already trades on another recording")
            self._recording = recording
            return self

    @property
    def now(self) -> pd.Timestamp:
        ts = pd.Timestamp(self._recording_or_fail().now)
        return ts.tz_convert("UTC").tz_localize(None) if ts.tzinfo is not None else ts

    # ---- Upbit's exchange API ----

    def accounts(self) -> list[dict[str, Any]]:
        with self._lock:
            self._read_fault()
            return self._account_views()

    def chance(self, market: str | None) -> dict[str, Any]:
        with self._lock:
            self._read_fault()
            market = self._market(market)
            coin = market.split("-", 1)[1]
            return {
                "bid_fee": _num(FEE),
                "ask_fee": _num(FEE),
                "maker_bid_fee": _num(FEE),
                "maker_ask_fee": _num(FEE),
                "market": {
                    "id": market,
                    "name": f"{coin}/KRW",
                    "order_sides": ["ask", "bid"],
                    "bid_types": ["limit", "price"],
                    "ask_types": ["limit", "market"],
                    "bid": {"currency": "KRW", "min_total": _num(MIN_TOTAL)},
                    "ask": {"currency": coin, "min_total": _num(MIN_TOTAL)},
                    "max_total": _num(MAX_TOTAL),
                    "state": "active",
                },
                "bid_account": self._account("KRW").view(),
                "ask_account": self._account(coin).view(),
            }

    def create_order(self, body: Mapping[str, Any]) -> dict[str, Any]:
        """POST /v1/orders: the order as accepted (`wait`, nothing executed yet, as Upbit answers).

        A market order has executed by the time this returns: a lookup shows it `done`/`cancel`.
        Raises ExchangeError (refused) or InjectedFault (see FAULT_KINDS).
        """
        with self._lock:
            fault = self._draw_order_fault()
            if fault in _ANSWERED_FAULTS:
                # Upbit never processed it: nothing recorded, the identifier stays free.
                self._faults[fault] += 1
                status = {"rate_limited": 429, "ip_blocked": 418}.get(fault) or self._faults_rng.choice((500, 503))
                raise InjectedFault(fault, status)
            fraction = Decimal(str(round(self._faults_rng.uniform(0.2, 0.9), 4))) if fault == "partial_fill" else None
            identifier = _identifier(body)
            try:
                order, quote = self._plan(body, identifier)
            except ExchangeError as refusal:
                self._refuse(body, identifier, refusal)
                raise
            self._accept(order)
            answer = self._view(order, trades=False)
            if fault is not None:
                self._faults[fault] += 1
                order.fault = fault
                order.held = fault == "stays_wait" and order.ord_type != "limit"
                order.hide_trades = fault == "empty_trades"
                order.fraction = fraction or Decimal(1)
            if quote is not None and not order.held:
                self._fill(order, quote, self.now, order.fraction)
            if fault == "accepted_then_timeout":
                raise InjectedFault(fault, None)
            return answer

    def test_order(self, body: Mapping[str, Any]) -> dict[str, Any]:
        """POST /v1/orders/test: checked exactly as a real order; nothing executed, nothing recorded."""
        with self._lock:
            order, _ = self._plan(body, _identifier(body))
            return self._view(order, trades=False)

    def order(self, uuid: str | None = None, identifier: str | None = None) -> dict[str, Any]:
        """GET /v1/order: by uuid (preferred, as Upbit) or identifier; 404 order_not_found."""
        with self._lock:
            self._read_fault()
            return self._view(self._find(uuid, identifier), trades=True)

    def cancel(self, uuid: str | None = None, identifier: str | None = None) -> dict[str, Any]:
        """DELETE /v1/order: cancels a `wait` order and releases its funds.

        Answers the order as the cancel was accepted (`wait`), as Upbit does; a lookup then shows
        `cancel`. An order no longer waiting is refused as the broker expects Upbit to: 404
        order_not_found, the message naming its state.
        """
        with self._lock:
            order = self._find(uuid, identifier)
            if order.state != "wait":
                raise ExchangeError(404, "order_not_found", f"주문을 찾지 못했습니다: {order.uuid} is {order.state}")
            answer = self._view(order, trades=False)
            order.held = False
            self._close(order, "cancel")
            return answer

    def closed_orders(self, params: Mapping[str, Any]) -> list[dict[str, Any]]:
        """GET /v1/orders/closed: `done`/`cancel` orders created within a window of at most 7 days
        (Upbit's defaults: the 7 days before now, or after `start_time`, or before `end_time`)."""
        with self._lock:
            self._read_fault()
            market = self._market(params["market"]) if params.get("market") else None
            states = _states(params)
            start, end = _window(params.get("start_time"), params.get("end_time"), self.now)
            limit = _limit(params.get("limit"), default=100, most=1000)
            newest_first = _order_by(params.get("order_by"))
            rows = [
                order
                for order in self._orders.values()
                if order.state in states and start <= order.created_at <= end and market in (None, order.market)
            ]
            rows.sort(key=lambda order: order.created_at)  # stable: creation order within an instant
            if newest_first:
                rows.reverse()
            return [self._view(order, trades=False) for order in rows[:limit]]

    def transfers(self, kind: str, params: Mapping[str, Any]) -> list[dict[str, Any]]:
        """GET /v1/deposits (`kind` "deposit") or /v1/withdraws ("withdraw"), as made by `deposit`."""
        with self._lock:
            self._read_fault()
            currency, state = params.get("currency"), params.get("state")
            uuids = _listed(params, "uuids[]")
            limit = _limit(params.get("limit"), default=100, most=100)
            page = _limit(params.get("page"), default=1, most=10**6)
            rows = [
                row
                for row in self._transfers
                if row["type"] == kind
                and currency in (None, row["currency"])
                and state in (None, row["state"])
                and (not uuids or row["uuid"] in uuids)
            ]
            if _order_by(params.get("order_by")):
                rows.reverse()
            return [dict(row) for row in rows[(page - 1) * limit : page * limit]]

    # ---- the clock and the control API ----

    def settle(self) -> int:
        """Execute what the clock now allows: held orders at the next price, crossed limit orders.

        The server calls this whenever its clock moves; returns how many orders executed.
        """
        with self._lock:
            now = self.now
            settled = 0
            for order in list(self._orders.values()):
                if order.state != "wait":
                    continue
                if order.held:
                    order.held = False
                    quote = self._next_open(order.market, now)
                    if quote is None:
                        self._close(order, "cancel")  # no recorded price left: nothing can execute
                    else:
                        self._fill(order, quote, now, order.fraction)
                    settled += 1
                elif order.ord_type == "limit":
                    crossed_at = self._first_cross(order, now)
                    if crossed_at is not None:
                        assert order.price is not None
                        self._fill(order, order.price, crossed_at, order.fraction)
                        settled += 1
            return settled

    def deposit(self, currency: str, amount: float | str | Decimal) -> dict[str, Any]:
        """Add `amount` of `currency` (negative: a withdrawal, refused below zero); the account after."""
        with self._lock:
            currency = str(currency).strip().upper()
            value = _decimal(amount, "amount")
            if not currency or value == 0:
                raise ExchangeError(400, "validation_error", "currency and a non-zero amount are required")
            available = self._account(currency).balance
            if available + value < 0:
                raise ExchangeError(
                    400,
                    "insufficient_funds",
                    f"withdrawal of {_num(-value)} {currency} exceeds the available {_num(available)}",
                )
            account = self._accounts.setdefault(currency, _Account(currency))
            account.balance += value
            view = account.view()
            self._drop_if_empty(account)
            transfer = {
                "type": "deposit" if value > 0 else "withdraw",
                "uuid": self._uuid(),
                "currency": currency,
                "net_type": currency,
                "txid": None,
                "state": "ACCEPTED" if value > 0 else "DONE",  # Upbit's final states of each
                "created_at": kst(self.now),
                "done_at": kst(self.now),
                "amount": _num(abs(value)),
                "fee": "0",
                "transaction_type": "default",
            }
            self._transfers.append(transfer)
            self._events.append(
                {
                    "at": kst(self.now),
                    "kind": "deposit" if value > 0 else "withdrawal",
                    "uuid": transfer["uuid"],
                    "currency": currency,
                    "amount": _num(value),
                    "balance_after": view["balance"],
                }
            )
            return view

    def manual_trade(
        self,
        market: str,
        side: str,
        *,
        krw: float | str | Decimal | None = None,
        volume: float | str | Decimal | None = None,
    ) -> dict[str, Any]:
        """An order made outside Makenaide (no identifier), executed at once by the market-order rule."""
        with self._lock:
            if side == "bid" and krw is not None and volume is None:
                body: dict[str, Any] = {"market": market, "side": "bid", "ord_type": "price", "price": str(krw)}
            elif side == "ask" and volume is not None and krw is None:
                body = {"market": market, "side": "ask", "ord_type": "market", "volume": str(volume)}
            else:
                raise ExchangeError(400, "validation_error", "a manual trade is bid with krw, or ask with volume")
            order, quote = self._plan(body, None)
            assert quote is not None  # market orders always carry their price
            self._accept(order)
            self._fill(order, quote, self.now, Decimal(1))
            amount = {"krw": body["price"]} if side == "bid" else {"volume": body["volume"]}
            self._events.append(
                {"at": kst(self.now), "kind": "manual_trade", "uuid": order.uuid, "market": order.market, "side": side}
                | amount
            )
            return self._view(order, trades=True)

    def faults_injected(self) -> dict[str, int]:
        with self._lock:
            return dict(self._faults)

    def dump(self) -> dict[str, Any]:
        """Everything, for a rehearsal report: never faulted, trades always shown."""
        with self._lock:
            orders = []
            for order in self._orders.values():
                row = self._view(order, trades=True, reveal=True)
                orders.append({"identifier": order.identifier, **row, "fault": order.fault})
            return {
                "now": kst(self.now),
                "initial_krw": _num(self.initial_krw),
                "accounts": self._account_views(),
                "orders": orders,
                "faults_injected": dict(self._faults),
                "events": list(self._events),
                "transfers": [dict(row) for row in self._transfers],
                "refused": list(self._refused),
            }

    # ---- rules ----

    def _plan(self, body: Mapping[str, Any], identifier: str | None) -> tuple[_Order, Decimal | None]:
        """The order `body` asks for, checked as Upbit checks it; nothing changes. Also its fill price
        when it is a market order (the next recorded price)."""
        market = self._market(body.get("market"))
        side = _choice(body, "side", ("bid", "ask"))
        ord_type = _choice(body, "ord_type", ("limit", "price", "market"))
        price = _number(body, "price")
        volume = _number(body, "volume")
        if identifier is not None and identifier in self._spent_identifiers:
            raise ExchangeError(400, DUPLICATE_IDENTIFIER, f"identifier {identifier!r} has already been used")
        if volume is not None and volume != volume.quantize(_STEP, rounding=ROUND_DOWN):
            raise ExchangeError(400, "validation_error", f"volume has more than {VOLUME_DECIMALS} decimals")
        total, quote = self._total(market, side, ord_type, price, volume)
        if total < MIN_TOTAL:
            raise ExchangeError(400, f"under_min_total_{side}", "최소주문금액 이상으로 주문해주세요")
        if total > MAX_TOTAL:
            raise ExchangeError(400, "validation_error", f"the order's total exceeds max_total {_num(MAX_TOTAL)} KRW")
        if side == "bid":
            reserved_fee, locked = total * FEE, total + total * FEE
            if self._account("KRW").balance < locked:
                raise ExchangeError(400, "insufficient_funds_bid", "주문가능한 금액(KRW)이 부족합니다.")
        else:
            assert volume is not None  # every ask names its volume (`_total` checked)
            coin = market.split("-", 1)[1]
            reserved_fee, locked = Decimal(0), volume
            if self._account(coin).balance < volume:
                raise ExchangeError(400, "insufficient_funds_ask", f"주문가능한 금액({coin})이 부족합니다.")
        order = _Order(
            uuid=self._uuid(),
            identifier=identifier,
            market=market,
            side=side,
            ord_type=ord_type,
            price=price,
            volume=volume,
            created_at=self.now,
            locked=locked,
            reserved_fee=reserved_fee,
            remaining_fee=reserved_fee,
        )
        return order, quote

    def _total(
        self, market: str, side: str, ord_type: str, price: Decimal | None, volume: Decimal | None
    ) -> tuple[Decimal, Decimal | None]:
        """The order's KRW total and, for a market order, the price it fills at."""
        if ord_type == "limit":
            if price is None or volume is None:
                raise ExchangeError(400, "validation_error", f"{'price' if price is None else 'volume'} is missing")
            if not _on_tick(price):
                raise ExchangeError(400, f"invalid_price_{side}", _TICK_MESSAGE)
            return price * volume, None
        refused = ExchangeError(
            400,
            "create_bid_error" if side == "bid" else "create_ask_error",
            "주문 요청 정보가 올바르지 않습니다: ord_type=price is a bid with price (KRW) and no volume, "
            "ord_type=market an ask with volume and no price",
        )
        if ord_type == "price":
            if side != "bid" or price is None or volume is not None:
                raise refused
            return price, self._quote(market)
        if side != "ask" or volume is None or price is not None:
            raise refused
        quote = self._quote(market)
        return volume * quote, quote

    def _quote(self, market: str) -> Decimal:
        now = self.now
        quote = self._next_open(market, now)
        if quote is None:
            raise ExchangeError(
                400, NO_RECORDED_PRICE, f"{market} has no recorded price at or after {now:%Y-%m-%d %H:%M} UTC"
            )
        return quote

    def _accept(self, order: _Order) -> None:
        currency = "KRW" if order.side == "bid" else order.coin
        account = self._accounts.setdefault(currency, _Account(currency))
        account.balance -= order.locked
        account.locked += order.locked
        self._orders[order.uuid] = order
        if order.identifier is not None:
            self._spent_identifiers.add(order.identifier)
            self._by_identifier[order.identifier] = order

    def _fill(self, order: _Order, price: Decimal, at: pd.Timestamp, fraction: Decimal) -> None:
        """Execute `fraction` of `order` at `price` in one trade, then close it (the rest returned)."""
        if order.ord_type == "price":
            assert order.price is not None
            volume = _floor(order.price * fraction / price)
        else:
            assert order.volume is not None
            volume = _floor(order.volume * fraction)
        funds = volume * price
        fee = funds * FEE
        if volume > 0:
            if order.side == "bid":
                self._accounts["KRW"].locked -= funds + fee
                order.locked -= funds + fee
                self._bought(order.coin, volume, funds)
            else:
                self._accounts[order.coin].locked -= volume
                order.locked -= volume
                self._accounts["KRW"].balance += funds - fee
            order.trades.append(_Trade(self._uuid(), order.market, order.side, price, volume, funds, at))
            order.executed_volume += volume
            order.paid_fee += fee
        complete = funds == order.price if order.ord_type == "price" else order.executed_volume == order.volume
        self._close(order, "done" if complete else "cancel")

    def _close(self, order: _Order, state: str) -> None:
        currency = "KRW" if order.side == "bid" else order.coin
        account = self._accounts[currency]
        account.locked -= order.locked
        account.balance += order.locked
        order.locked = Decimal(0)
        # A bid reserved its fee and keeps what it did not pay; an ask pays from its proceeds.
        order.remaining_fee = order.reserved_fee - order.paid_fee if order.side == "bid" else Decimal(0)
        order.state = state
        if order.side == "ask":
            self._drop_if_empty(account)

    def _bought(self, coin: str, volume: Decimal, funds: Decimal) -> None:
        account = self._accounts.setdefault(coin, _Account(coin))
        held = account.balance + account.locked
        # Upbit's average buy price: fees excluded, weighted by volume.
        average = (held * account.avg_buy_price + funds) / (held + volume)
        account.avg_buy_price = average.quantize(_STEP, rounding=ROUND_HALF_EVEN)
        account.balance += volume

    def _drop_if_empty(self, account: _Account) -> None:
        if account.currency != "KRW" and account.balance == 0 and account.locked == 0:
            del self._accounts[account.currency]  # Upbit lists only what is held

    def _refuse(self, body: Mapping[str, Any], identifier: str | None, refusal: ExchangeError) -> None:
        # Upbit: an identifier cannot be used again even when the order it came with failed.
        if identifier is not None:
            self._spent_identifiers.add(identifier)
        self._refused.append(
            {
                "at": kst(self.now),
                "identifier": identifier,
                "market": body.get("market"),
                "side": body.get("side"),
                "name": refusal.name,
                "message": refusal.message,
            }
        )

    def _find(self, uuid: str | None, identifier: str | None) -> _Order:
        if not uuid and not identifier:
            raise ExchangeError(400, "validation_error", "uuid, identifier are missing, exactly one must be provided")
        order = self._orders.get(uuid) if uuid else self._by_identifier.get(identifier or "")
        if order is None:
            raise ExchangeError(404, "order_not_found", "주문을 찾지 못했습니다.")
        return order

    def _market(self, market: object) -> str:
        if not isinstance(market, str) or not market:
            raise ExchangeError(400, "validation_error", "market is missing")
        recording = self._recording_or_fail()
        if not market.startswith("KRW-") or not recording.is_listed(market):
            # Unknown, or not yet listed at the simulated instant.
            raise ExchangeError(400, "validation_error", "market does not have a valid value")
        return market

    def _account(self, currency: str) -> _Account:
        return self._accounts.get(currency) or _Account(currency)

    def _account_views(self) -> list[dict[str, Any]]:
        return [account.view() for account in self._accounts.values()]

    # ---- recorded prices ----

    def _next_open(self, market: str, at: pd.Timestamp) -> Decimal | None:
        for interval in FILL_INTERVALS:
            candles = self._recorded(market, interval)
            i = int(np.searchsorted(candles.starts, np.datetime64(at, "ns"), side="left"))
            if i < len(candles.starts):
                return _price(candles.opens[i])
        return None

    def _first_cross(self, order: _Order, now: pd.Timestamp) -> pd.Timestamp | None:
        assert order.price is not None
        for interval in FILL_INTERVALS:
            candles = self._recorded(order.market, interval)
            first = int(np.searchsorted(candles.starts, np.datetime64(order.created_at, "ns"), side="left"))
            if first == len(candles.starts):
                continue  # nothing recorded after the order at this interval
            closed = int(np.searchsorted(candles.closes, np.datetime64(now, "ns"), side="right"))
            reached = candles.lows if order.side == "bid" else candles.highs
            window = reached[first:closed]
            hits = np.nonzero(window <= float(order.price) if order.side == "bid" else window >= float(order.price))[0]
            return pd.Timestamp(candles.starts[first + int(hits[0])]) if len(hits) else None
        return None

    def _recorded(self, market: str, interval: Interval) -> _Candles:
        key = (market, interval)
        if key not in self._candles:
            frame = self._recording_or_fail().recorded(market, interval)
            starts = frame["candle_date_time_utc"]
            self._candles[key] = _Candles(
                starts=starts.to_numpy(dtype="datetime64[ns]"),
                closes=pd.Series(candle_close_time(starts, interval)).to_numpy(dtype="datetime64[ns]"),
                opens=frame["opening_price"].to_numpy(dtype="float64"),
                highs=frame["high_price"].to_numpy(dtype="float64"),
                lows=frame["low_price"].to_numpy(dtype="float64"),
            )
        return self._candles[key]

    def _recording_or_fail(self) -> Recording:
        if self._recording is None:
            raise RuntimeError("LocalExchange has no recording: attach(ReplayAnswers(...)) or give it to UpbitServer")
        return self._recording

    # ---- faults and identities ----

    def _draw_order_fault(self) -> str | None:
        if self.fault_rate <= 0 or not self.fault_kinds or self._faults_rng.random() >= self.fault_rate:
            return None
        return self._faults_rng.choice(self.fault_kinds)

    def _read_fault(self) -> None:
        # Reads fail less often than orders (a quarter of the rate), and only as 5xx or 429.
        if self.fault_rate <= 0 or not self._read_kinds or self._faults_rng.random() >= self.fault_rate / 4:
            return
        kind = self._faults_rng.choice(self._read_kinds)
        self._faults[kind] += 1
        raise InjectedFault(kind, 429 if kind == "rate_limited" else self._faults_rng.choice((500, 503)))

    def _view(self, order: _Order, *, trades: bool, reveal: bool = False) -> dict[str, Any]:
        view: dict[str, Any] = {
            "uuid": order.uuid,
            "side": order.side,
            "ord_type": order.ord_type,
            "price": None if order.price is None else _num(order.price),
            "state": order.state,
            "market": order.market,
            "created_at": kst(order.created_at),
            "volume": None if order.volume is None else _num(order.volume),
            "remaining_volume": None if order.volume is None else _num(order.volume - order.executed_volume),
            "reserved_fee": _num(order.reserved_fee),
            "remaining_fee": _num(order.remaining_fee),
            "paid_fee": _num(order.paid_fee),
            "locked": _num(order.locked),
            "prevented_volume": "0",
            "prevented_locked": "0",
            "executed_volume": _num(order.executed_volume),
            "executed_funds": _num(sum((trade.funds for trade in order.trades), Decimal(0))),
            "trades_count": len(order.trades),
        }
        if order.identifier is not None:
            view["identifier"] = order.identifier
        if trades:
            shown = order.trades if reveal or not order.hide_trades else []
            view["trades"] = [trade.view() for trade in shown]
        return view

    def _uuid(self) -> str:
        return str(uuid.UUID(int=self._ids_rng.getrandbits(128), version=4))


def kst(ts: pd.Timestamp) -> str:
    """A naive UTC instant as Upbit writes it: KST with its offset, to the second."""
    return (pd.Timestamp(ts) + _KST).strftime("%Y-%m-%dT%H:%M:%S+09:00")


def _num(value: Decimal) -> str:
    # Upbit's string numbers: plain notation, no exponent, no trailing zeros.
    text = format(value, "f")
    return text.rstrip("0").rstrip(".") if "." in text else text


def _floor(value: Decimal) -> Decimal:
    return value.quantize(_STEP, rounding=ROUND_DOWN)


def _price(value: float) -> Decimal:
    return Decimal(str(float(value)))  # through str: the recorded decimal, not its binary expansion


def _on_tick(price: Decimal) -> bool:
    # A price on the tick grid is its own floor and ceiling.
    return round_price_to_tick(price, "buy") == round_price_to_tick(price, "sell")


def _decimal(value: object, name: str) -> Decimal:
    try:
        result = Decimal(str(value))
    except InvalidOperation:
        raise ExchangeError(400, "validation_error", f"{name} does not have a valid value") from None
    if not result.is_finite():
        raise ExchangeError(400, "validation_error", f"{name} does not have a valid value")
    return result


def _number(body: Mapping[str, Any], key: str) -> Decimal | None:
    value = body.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise ExchangeError(400, "validation_error", f"{key} does not have a valid value")
    result = _decimal(value, key)
    if result <= 0:
        raise ExchangeError(400, "validation_error", f"{key} does not have a valid value")
    return result


def _choice(body: Mapping[str, Any], key: str, allowed: tuple[str, ...]) -> str:
    value = body.get(key)
    if value is None:
        raise ExchangeError(400, "validation_error", f"{key} is missing")
    if value not in allowed:
        raise ExchangeError(400, "validation_error", f"{key} does not have a valid value")
    return str(value)


def _listed(params: Mapping[str, Any], key: str) -> list[str]:
    value = params.get(key)
    if value is None:
        return []
    return [str(item) for item in value] if isinstance(value, list) else [str(value)]


def _states(params: Mapping[str, Any]) -> set[str]:
    state, states = params.get("state"), _listed(params, "states[]")
    if state is not None and states:
        raise ExchangeError(400, "validation_error", "state and states[] cannot be used together")
    wanted = {str(state)} if state is not None else set(states) or {"done", "cancel"}
    if not wanted <= {"done", "cancel"}:
        raise ExchangeError(400, "validation_error", "state does not have a valid value")
    return wanted


def _instant(value: object, name: str) -> pd.Timestamp | None:
    """Upbit's time parameters: ISO-8601 with its offset, or a millisecond timestamp; naive UTC."""
    if value is None:
        return None
    text = str(value)
    try:
        ts = pd.Timestamp(int(text), unit="ms") if text.isdigit() else pd.Timestamp(text)
    except ValueError:
        raise ExchangeError(400, "validation_error", f"{name} does not have a valid value") from None
    if not text.isdigit() and ts.tzinfo is None:
        raise ExchangeError(400, "validation_error", f"{name} needs a time zone (ISO-8601) or milliseconds")
    return ts.tz_convert("UTC").tz_localize(None) if ts.tzinfo is not None else ts


def _window(start_value: object, end_value: object, now: pd.Timestamp) -> tuple[pd.Timestamp, pd.Timestamp]:
    week = pd.Timedelta(days=7)
    start, end = _instant(start_value, "start_time"), _instant(end_value, "end_time")
    if start is None and end is None:
        return now - week, now
    if end is None:
        assert start is not None
        return start, start + week
    if start is None:
        return end - week, end
    if not pd.Timedelta(0) <= end - start <= week:
        raise ExchangeError(400, "validation_error", "start_time and end_time must span 0 to 7 days")
    return start, end


def _limit(value: object, *, default: int, most: int) -> int:
    if value is None:
        return default
    text = str(value)
    if not text.isdigit() or not 1 <= int(text) <= most:
        raise ExchangeError(400, "validation_error", f"limit/page must be an integer from 1 to {most}")
    return int(text)


def _order_by(value: object) -> bool:
    """True: newest first (Upbit's default)."""
    if value not in (None, "asc", "desc"):
        raise ExchangeError(400, "validation_error", "order_by does not have a valid value")
    return value != "asc"


def _identifier(body: Mapping[str, Any]) -> str | None:
    value = body.get("identifier")
    if value is None:
        return None
    if not isinstance(value, str) or not value:
        raise ExchangeError(400, "validation_error", "identifier does not have a valid value")
    return value

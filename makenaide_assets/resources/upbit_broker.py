"""Live orders on Upbit: market buys by KRW amount, market sells by volume, each with its identifier.

Never twice. Upbit refuses an `identifier` it has seen before, even one whose order failed. So:
- a POST that times out or gets a 5xx is looked up by identifier first; found -> booked;
- not found -> it never reached Upbit, and it is sent once more with the SAME identifier. If the
  first one did arrive after all, Upbit rejects the duplicate, so the resend cannot order twice;
  a refused resend is looked up once more and otherwise booked as rejected;
- a run that died after sending finds the order `pending`/`submitted` in the ledger and looks
  it up before anything else (`_resolve`).
A refusal (insufficient funds, tick, minimum, any other 4xx) becomes a `rejected` row carrying
Upbit's error name and message and an error log line; an unknowable outcome raises
`OrderOutcomeUnknown` and leaves the order unresolved for the next run.
"""

import time
from typing import Any

import dagster as dg
import pandas as pd
from pydantic import Field, PrivateAttr

from makenaide_assets.resources.broker import Broker, Log, OrderOutcomeUnknown, OrderPlan, Skip
from makenaide_assets.resources.ledger import schema as t
from makenaide_assets.resources.upbit_exchange import UpbitApiError, UpbitExchange, UpbitUnavailable
from makenaide_assets.resources.upbit_retry import (
    BACKOFF_BASE_S,
    MAX_BACKOFF_S,
    MAX_RETRIES,
    TIMEOUT_S,
    UPBIT_API_URL,
    RetryPolicy,
)
from makenaide_assets.strategy.accounting import ENTRY_SIDES
from makenaide_assets.strategy.calendar import partition_close, utc_now_naive
from makenaide_assets.strategy.ticks import api_number

FINAL_STATES = ("done", "cancel")


class LiveTradingRefused(RuntimeError):
    """The live broker was configured without keys or without MAKENAIDE_LIVE_CONFIRM=yes."""


class UpbitBroker(Broker):
    """Real orders on Upbit; refuses to start unless both keys are set and live_confirm is "yes"."""

    access_key: str = Field(default="", repr=False, description="UPBIT_ACCESS_KEY")
    secret_key: str = Field(default="", repr=False, description="UPBIT_SECRET_KEY")
    live_confirm: str = Field(default="", description='MAKENAIDE_LIVE_CONFIRM; must be "yes"')
    base_url: str = UPBIT_API_URL
    timeout_s: float = TIMEOUT_S
    # Retries of what cannot order twice: GETs, and 429s (Upbit did not process the request). An
    # order POST without a trustworthy answer is looked up by its identifier instead (`_send`).
    max_retries: int = MAX_RETRIES
    backoff_base_s: float = BACKOFF_BASE_S
    max_backoff_s: float = MAX_BACKOFF_S
    poll_attempts: int = 10
    poll_interval_s: float = 0.5
    # A backfill of old partitions must not buy today on last month's signal.
    max_signal_age_hours: float = 12.0

    _exchange: UpbitExchange | None = PrivateAttr(default=None)
    _preflight_done: bool = PrivateAttr(default=False)

    @property
    def name(self) -> str:
        return "upbit"

    def describe(self) -> str:
        return f"Upbit live orders at {self.base_url}"

    def setup_for_execution(self, context: dg.InitResourceContext) -> None:
        self._check_allowed()

    def _check_allowed(self) -> None:
        problems = [
            f"{variable} is not set"
            for variable, value in (("UPBIT_ACCESS_KEY", self.access_key), ("UPBIT_SECRET_KEY", self.secret_key))
            if not value.strip()
        ]
        if self.live_confirm.strip().lower() != "yes":
            problems.append('MAKENAIDE_LIVE_CONFIRM is not "yes"')
        if problems:
            raise LiveTradingRefused("UpbitBroker refuses to place live orders: " + "; ".join(problems))

    def _client(self) -> UpbitExchange:
        if self._exchange is None:
            self._exchange = UpbitExchange(
                access_key=self.access_key,
                secret_key=self.secret_key,
                base_url=self.base_url,
                timeout_s=self.timeout_s,
                retry=RetryPolicy(self.max_retries, self.backoff_base_s, self.max_backoff_s),
            )
        return self._exchange

    def _start(self, log: Log) -> None:
        self._check_allowed()
        self._preflight_done = False

    def _adjust(self, plan: OrderPlan, market: str, side: str, partition_key: str) -> OrderPlan | Skip:
        age_h = (pd.Timestamp(utc_now_naive()) - partition_close(partition_key)) / pd.Timedelta(hours=1)
        if age_h > self.max_signal_age_hours:
            return Skip("stale_signal", f"partition {partition_key} closed {age_h:.0f} h ago; live orders are same-day")
        chance = self._client().get("/v1/orders/chance", {"market": market})
        if chance["market"].get("state") != "active":
            return Skip("market_inactive", f"Upbit reports {market} as {chance['market'].get('state')!r}")
        min_total = float(chance["market"]["bid"].get("min_total") or 0)
        if plan.krw_amount is not None and plan.krw_amount < min_total:
            return Skip("under_min_total", f"{plan.krw_amount:,.0f} KRW is below Upbit's {min_total:,.0f} for {market}")
        return plan

    @staticmethod
    def _body(order: dict) -> dict[str, Any]:
        if order["side"] in ENTRY_SIDES:
            # Market buy: `price` is the KRW to spend; Upbit adds the fee on top.
            amounts = {"side": "bid", "ord_type": "price", "price": api_number(order["krw_amount"], 0)}
        else:
            amounts = {"side": "ask", "ord_type": "market", "volume": api_number(order["volume"])}
        return {"market": order["market"], **amounts, "identifier": order["identifier"]}

    def _submit(self, order: dict, log: Log) -> None:
        body = self._body(order)
        if not self._preflight_done:
            # Without the identifier: a test order must not spend the real order's identifier.
            test_body = {key: value for key, value in body.items() if key != "identifier"}
            try:
                self._client().post("/v1/orders/test", test_body)
            except UpbitApiError as exc:
                if exc.status in (401, 403):
                    # Keys or permissions, not this order: stop before anything is sent.
                    raise LiveTradingRefused(f"Upbit refused the pre-flight test order: {exc.name}") from None
                self._reject(order, exc, log, "pre-flight POST /v1/orders/test refused it: ")
                return
            self._preflight_done = True
        self._send(order, body, log, resent=False)

    def _send(self, order: dict, body: dict, log: Log, *, resent: bool) -> None:
        identifier = order["identifier"]
        try:
            answer = self._client().post("/v1/orders", body)
        except UpbitApiError as exc:
            found = self._lookup(identifier) if resent else None
            if found is None:
                self._reject(order, exc, log, "")
            else:
                self._finish(order, found, log)
            return
        except UpbitUnavailable as exc:
            log.warning(f"{identifier}: {exc}; looking the identifier up before deciding anything")
            found = self._lookup(identifier)
            if found is not None:
                self._finish(order, found, log)
                return
            if resent:
                raise OrderOutcomeUnknown(f"{identifier}: resent without a trustworthy answer; left pending") from None
            log.warning(
                f"{identifier}: Upbit does not know it, so it never arrived; resending with the same identifier"
            )
            self._send(order, body, log, resent=True)
            return
        self._finish(order, answer, log)

    def _resolve(self, order: dict, log: Log) -> None:
        identifier = order["identifier"]
        found = self._lookup(identifier)
        if found is not None:
            log.info(f"{identifier}: Upbit has it ({found.get('state')}); booking what it executed")
            self._finish(order, found, log)
        elif order["status"] == t.SUBMITTED:
            raise OrderOutcomeUnknown(f"{identifier}: the ledger saw Upbit accept it, but Upbit cannot find it")
        else:
            plan = self._adjust(
                OrderPlan(order["krw_amount"], order["volume"]),
                order["market"],
                order["side"],
                order["partition_key"],
            )
            if isinstance(plan, Skip):
                self.ledger.close_order(identifier, t.SKIPPED, plan.name, plan.reason)
                log.warning(f"{identifier}: never reached Upbit and is now skipped ({plan.name}): {plan.reason}")
                return
            log.warning(f"{identifier}: never reached Upbit; sending it now")
            self._submit(order, log)

    def _lookup(self, identifier: str) -> dict | None:
        try:
            return self._client().get("/v1/order", {"identifier": identifier})
        except UpbitApiError as exc:
            if exc.status == 404:
                return None
            raise OrderOutcomeUnknown(f"{identifier}: cannot look it up: {exc}") from None
        except UpbitUnavailable as exc:
            raise OrderOutcomeUnknown(f"{identifier}: cannot look it up: {exc}") from None

    def _finish(self, order: dict, answer: dict, log: Log) -> None:
        ledger, identifier = self.ledger, order["identifier"]
        if answer.get("market") != order["market"]:
            raise OrderOutcomeUnknown(f"{identifier}: Upbit has it on {answer.get('market')}, not {order['market']}")
        current = ledger.order(identifier)
        if current is not None and current["status"] == t.PENDING:
            ledger.mark_submitted(identifier, exchange_uuid=answer["uuid"])
        for _ in range(self.poll_attempts):
            if answer.get("state") in FINAL_STATES and "trades" in answer:
                break
            time.sleep(self.poll_interval_s)
            try:
                answer = self._client().get("/v1/order", {"uuid": answer["uuid"]})
            except (UpbitApiError, UpbitUnavailable) as exc:
                raise OrderOutcomeUnknown(f"{identifier}: accepted, outcome unread ({exc}); left submitted") from None
        if answer.get("state") not in FINAL_STATES:
            raise OrderOutcomeUnknown(f"{identifier}: still {answer.get('state')!r} on Upbit; left submitted")
        trades = answer.get("trades") or []
        volume = sum(float(trade["volume"]) for trade in trades)
        if volume <= 0:
            ledger.close_order(identifier, t.FAILED, "nothing_executed", f"Upbit ended it as {answer['state']!r}")
            log.error(f"{identifier}: Upbit ended it as {answer['state']!r} with nothing executed")
            return
        funds = sum(float(trade["funds"]) for trade in trades)
        executed_at = max(pd.Timestamp(trade["created_at"]) for trade in trades)
        fill = ledger.record_fill(
            identifier,
            price=funds / volume,
            volume=volume,
            fee=float(answer.get("paid_fee") or 0.0),
            executed_at=executed_at.tz_convert("UTC").tz_localize(None),
            exchange_uuid=answer["uuid"],
        )
        log.info(f"{identifier}: Upbit {order['side']} {volume} {order['market']} = {fill['krw_value']:,.0f} KRW")

    def _reject(self, order: dict, exc: UpbitApiError, log: Log, prefix: str) -> None:
        self.ledger.close_order(order["identifier"], t.REJECTED, exc.name, prefix + exc.message)
        log.error(f"{order['identifier']}: rejected by Upbit: {exc.name}: {prefix}{exc.message}")

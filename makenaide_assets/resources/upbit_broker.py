"""Live orders on Upbit: market buys by KRW amount, market sells by volume, each with its identifier.

Never twice. Upbit refuses an `identifier` it has seen before, even one whose order failed. So:
- a POST that times out or gets a 5xx is looked up by identifier first; found -> booked;
- not found -> it never reached Upbit, and it is sent once more with the SAME identifier. If the
  first one did arrive after all, Upbit rejects the duplicate, so the resend cannot order twice;
  a refused resend is looked up once more and otherwise booked as rejected;
- a run that died after sending finds the order `pending`/`submitted` in the ledger and looks
  it up before anything else (`_resolve`).
- any refusal of a send (4xx) is looked up by identifier before it is booked: a duplicate-
  identifier refusal from a second, overlapping run must book the first one's execution, not a
  rejection. Only an identifier Upbit does not know is booked `rejected`, with Upbit's error
  name and message and an error log line;
- rejected or failed orders of the last few partitions are looked up again at the start of each
  run: a fill found for one is booked and the operator told;
- `executed_volume` is the truth when `trades` is empty or short: the price then comes from
  `executed_funds`, else from the fee Upbit charged.
An unknowable outcome raises `OrderOutcomeUnknown` and leaves the order unresolved; the next run
resolves it before planning anything, and no new order of that market goes out meanwhile.
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
from makenaide_assets.strategy.intraday import watch_window
from makenaide_assets.strategy.limits import Refusal
from makenaide_assets.strategy.reconcile import (
    Adjustment,
    ExchangeEvent,
    Reconciliation,
    account_balances,
    manual_order,
    reconcile,
    transfer,
)
from makenaide_assets.strategy.ticks import FEE_RATE, api_number, round_volume

FINAL_STATES = ("done", "cancel")
# Refused or failed orders are looked up again this many partitions back (an answer lost on the way).
RECHECK_PARTITIONS = 3


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
    # The account is the truth (DESIGN §8): reconciled before every day's orders. Off only for
    # unit tests that replay a handful of exchange answers without an account behind them.
    reconcile_account: bool = True

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
        if self.ledger.mode != "live":
            # Paper fills in the ledger would be sold for real (DESIGN §8): a live ledger only.
            problems.append(f"its ledger is not a live ledger (mode {self.ledger.mode!r})")
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

    def _age_hours(self, partition_key: str) -> float:
        return (pd.Timestamp(utc_now_naive()) - partition_close(partition_key)) / pd.Timedelta(hours=1)

    def _stale(self, partition_key: str, signal: dict) -> Skip | None:
        if signal.get("kind") == t.STOP:
            # A stop exit of P may go out while P's watch lasts, never once P+1's daily run owns the book.
            end = watch_window(partition_key)[1]
            if pd.Timestamp(utc_now_naive()) > end:
                return Skip("watch_over", f"the stop watch after {partition_key} ended at {end} UTC")
            return None
        age_h = self._age_hours(partition_key)
        if age_h > self.max_signal_age_hours:
            return Skip("stale_signal", f"partition {partition_key} closed {age_h:.0f} h ago; live orders are same-day")
        return None

    def _plan(self, signal: dict, identifier: str, partition_key: str) -> OrderPlan | Skip:
        # Before anything asks the exchange: an old partition is never traded live.
        return self._stale(partition_key, signal) or super()._plan(signal, identifier, partition_key)

    def _adjust(self, plan: OrderPlan, signal: dict, partition_key: str) -> OrderPlan | Skip:
        market = str(signal["market"])
        if (stale := self._stale(partition_key, signal)) is not None:
            return stale
        chance = self._chance(market)
        if isinstance(chance, Skip):
            return chance
        if chance["market"].get("state") != "active":
            return Skip("market_inactive", f"Upbit reports {market} as {chance['market'].get('state')!r}")
        min_total = float(chance["market"]["bid"].get("min_total") or 0)
        if plan.krw_amount is not None and plan.krw_amount < min_total:
            return Skip("under_min_total", f"{plan.krw_amount:,.0f} KRW is below Upbit's {min_total:,.0f} for {market}")
        if plan.volume is not None:
            # Only what the account holds free can be sold (coins sold by hand, or locked in an order).
            free = round_volume(float((chance.get("ask_account") or {}).get("balance") or 0.0))
            if free <= 0:
                return Skip("nothing_to_sell", f"the account holds no free {market.split('-', 1)[1]}")
            if free < plan.volume:
                note = f"sell reduced from {plan.volume} to the {free} the account holds free"
                return OrderPlan(krw_amount=None, volume=free, note_name="reduced_to_account", note=note)
        return plan

    def _chance(self, market: str) -> dict | Skip:
        try:
            return self._client().get("/v1/orders/chance", {"market": market})
        except (UpbitApiError, UpbitUnavailable) as exc:
            # This market only: the orders after it still go out (a delisted market answers 404).
            return Skip("chance_unavailable", f"GET /v1/orders/chance for {market} failed: {exc}")

    def _buying_power(self, market: str, partition_key: str) -> float:
        ledger_cash = super()._buying_power(market, partition_key)
        chance = self._chance(market)
        if isinstance(chance, Skip):
            return ledger_cash  # `_adjust` skips the order with the reason
        free = float((chance.get("bid_account") or {}).get("balance") or 0.0)
        return min(ledger_cash, free)

    def _quote(self, market: str, partition_key: str) -> float | None:
        try:
            [ticker] = self._client().get("/v1/ticker", {"markets": market})
        except (UpbitApiError, UpbitUnavailable, ValueError):
            return None  # no band without a quote; the chance and the order itself still check
        return float(ticker["trade_price"])

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
            # Looked up before being booked rejected: a duplicate identifier means an earlier send
            # (another run's, or ours whose answer was lost) reached Upbit.
            found = self._lookup(identifier)
            if found is None:
                self._reject(order, exc, log, "")
            else:
                log.warning(f"{identifier}: Upbit refused the send ({exc.name}) but has the order; booking it")
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

    def _before_orders(self, partition_key: str, log: Log) -> None:
        self._recheck_refused(partition_key, log)
        found = self._reconcile(partition_key, log)
        if found.buys_held and self._buys_refused is None:
            self._buys_refused = Refusal("account_unreconciled", f"no new buy today: {found.buys_held}")

    def _reconcile(self, partition_key: str, log: Log) -> Reconciliation:
        """Make the ledger equal the account (DESIGN §8); every adjustment booked for the partition
        so far, and why buys are held, if they are. Only for the partition that just closed: a
        re-run of an old day reads no account, whose balances are today's, not that day's."""
        if not self.reconcile_account or self._age_hours(partition_key) > self.max_signal_age_hours:
            return Reconciliation()
        if self.ledger.unresolved_orders():
            # Their effect is in the account but not yet in the ledger: a difference now would be
            # booked as unexplained. Nothing new is bought until they are resolved.
            held = "orders with an unknown outcome are still open, so the account cannot be reconciled"
            self._notify(log, f"reconciliation waits: {held}")
            return Reconciliation(buys_held=held)
        now = pd.Timestamp(utc_now_naive())
        try:
            accounts = self._client().get("/v1/accounts", {})
            since = self.ledger.reconciled_at()
            # The opening lists what the exchange reports from its own instant on, as the next
            # reconciliation will (`now` becomes `since`): what happened in that second, before
            # the read, is in the snapshot and must be booked under its key, not counted again.
            events = self._exchange_events(now if since is None else since)
        except (UpbitApiError, UpbitUnavailable) as exc:
            # Never fails the run: sells must still go out. Buys wait for an account we can read.
            held = f"the account could not be read ({exc})"
            self._notify(log, f"reconciliation failed: {held}")
            return Reconciliation(buys_held=held)
        account = account_balances(accounts)
        adjustments = reconcile(
            account,
            self.ledger.balances(),
            events,
            self.ledger.booked_event_keys("adj:"),
            opening=since is None,
            stamp=f"reconcile:{partition_key}:{now.isoformat()}",
        )
        self.ledger.record_reconciliation(partition_key, now, adjustments)
        for adjustment in adjustments:
            text = f"{adjustment.amount:+,.8g} {adjustment.currency} adjusted: {adjustment.reason}"
            if adjustment.explained:
                log.warning(f"reconciliation: {text}")
                self._notices.append(f"reconciliation: {text}")
            else:
                self._notify(log, f"reconciliation found a difference it cannot explain: {text}")
        found = tuple(
            Adjustment(str(r.event_key), str(r.currency), float(r.amount), str(r.reason), bool(r.explained))
            for r in self.ledger.adjustments(partition_key).itertuples()
        )
        unexplained = "; ".join(a.reason for a in found if not a.explained)
        return Reconciliation(found, buys_held=unexplained or None)

    def _exchange_events(self, since: pd.Timestamp) -> list[ExchangeEvent]:
        """What the exchange did to the account since the last reconciliation without Makenaide:
        orders without one of our identifiers, KRW deposits and withdrawals."""
        # From the instant the last reconciliation read the account: what happened before it was
        # in that snapshot (booked then), what happened after it was not.
        # "Z", not "+00:00": a raw "+" in a query string reads as a space, and the hash would differ.
        start = since.strftime("%Y-%m-%dT%H:%M:%SZ")
        events = []
        for order in self._client().get("/v1/orders/closed", {"start_time": start, "limit": 1000}):
            identifier = order.get("identifier")
            if float(order.get("executed_volume") or 0) <= 0:
                continue
            if identifier and self.ledger.order(str(identifier)) is not None:
                continue
            detail = self._client().get("/v1/order", {"uuid": order["uuid"]})
            events.append(manual_order(detail))
        for path, kind, done in (("/v1/deposits", "deposit", "ACCEPTED"), ("/v1/withdraws", "withdraw", "DONE")):
            for item in self._client().get(path, {"currency": "KRW", "state": done}):
                when = item.get("done_at") or item.get("created_at")
                if when is not None and _utc(pd.Timestamp(str(when))) >= since:
                    events.append(transfer(item, kind))
        return events

    def _recheck_refused(self, partition_key: str, log: Log) -> None:
        since = (pd.Timestamp(partition_key) - pd.Timedelta(days=RECHECK_PARTITIONS)).strftime("%Y-%m-%d")
        for order in self.ledger.refused_orders(self.name, since):
            try:
                found = self._lookup(order["identifier"])
            except OrderOutcomeUnknown as exc:
                log.warning(f"{exc}; looked up again next run")
                continue
            if found is None or float(found.get("executed_volume") or 0) <= 0:
                continue
            identifier = order["identifier"]
            self.ledger.reopen(
                identifier,
                exchange_uuid=found.get("uuid"),
                why=f"booked {order['status']} ({order['error_name']}), but Upbit executed it",
            )
            self._notify(
                log,
                f"{identifier}: booked {order['status']} ({order['error_name']}) but Upbit executed "
                f"{found.get('executed_volume')} {order['market']}; the fill is booked now",
            )
            try:
                self._finish(order, found, log)
            except OrderOutcomeUnknown as exc:
                # Reopened, so it is unresolved now: the next run's first step resolves it.
                self._notify(log, str(exc))

    def _resolve(self, order: dict, log: Log) -> None:
        identifier = order["identifier"]
        found = self._lookup(identifier)
        if found is not None:
            log.info(f"{identifier}: Upbit has it ({found.get('state')}); booking what it executed")
            self._finish(order, found, log)
        elif order["status"] == t.SUBMITTED:
            raise OrderOutcomeUnknown(f"{identifier}: the ledger saw Upbit accept it, but Upbit cannot find it")
        else:
            # It never reached Upbit: sending it now is a new order, which the halt switch holds back.
            halted = self._halted(order["side"])
            plan = (
                Skip(halted.name, halted.reason)
                if halted is not None
                else self._adjust(
                    OrderPlan(order["krw_amount"], order["volume"]),
                    order["market"],
                    order["side"],
                    order["partition_key"],
                )
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
        executed = _executed(answer)
        if executed is None:
            ledger.close_order(identifier, t.FAILED, "nothing_executed", f"Upbit ended it as {answer['state']!r}")
            log.error(f"{identifier}: Upbit ended it as {answer['state']!r} with nothing executed")
            return
        volume, funds, executed_at = executed
        fill = ledger.record_fill(
            identifier,
            price=funds / volume,
            volume=volume,
            fee=float(answer.get("paid_fee") or 0.0),
            executed_at=executed_at,
            exchange_uuid=answer["uuid"],
        )
        log.info(f"{identifier}: Upbit {order['side']} {volume} {order['market']} = {fill['krw_value']:,.0f} KRW")

    def _reject(self, order: dict, exc: UpbitApiError, log: Log, prefix: str) -> None:
        self.ledger.close_order(order["identifier"], t.REJECTED, exc.name, prefix + exc.message)
        log.error(f"{order['identifier']}: rejected by Upbit: {exc.name}: {prefix}{exc.message}")


def _executed(answer: dict) -> tuple[float, float, pd.Timestamp] | None:
    """(volume, funds, when) Upbit executed for a finished order, or None when nothing was.

    `executed_volume` is the truth: Upbit may answer `done` with an empty or short `trades`
    list. The funds then come from `executed_funds`, else from the fee it charged (0.05 %)."""
    trades = answer.get("trades") or []
    traded = round_volume(sum(float(trade["volume"]) for trade in trades))
    volume = round_volume(float(answer.get("executed_volume") or traded))
    if volume <= 0:
        return None
    if trades and traded == volume:
        funds = sum(float(trade["funds"]) for trade in trades)
        return volume, funds, _utc(max(pd.Timestamp(trade["created_at"]) for trade in trades))
    if answer.get("executed_funds") is not None:
        funds = float(answer["executed_funds"])
    else:
        funds = float(answer.get("paid_fee") or 0.0) / FEE_RATE
    if funds <= 0:
        raise OrderOutcomeUnknown(f"{answer.get('uuid')}: executed {volume}, but no funds or fee say at what price")
    return volume, funds, _utc(pd.Timestamp(answer.get("created_at") or utc_now_naive()))


def _utc(ts: pd.Timestamp) -> pd.Timestamp:
    return ts.tz_convert("UTC").tz_localize(None) if ts.tzinfo is not None else ts

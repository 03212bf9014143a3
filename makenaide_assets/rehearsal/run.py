"""The rehearsal's day loop: the local Upbit, live mode's environment, the jobs, the invariants.

For each partition D: the person's manual events of D land at 00:02 UTC of D+1, the clock moves
to 00:05 UTC of D+1 (09:05 KST, when the schedule runs), `analysis_job` runs for D, the sensor
tick's requests run `trading_job` (days.DayRunner, as the demo and the backtest run them), and
the invariants are asserted against the exchange's own records. After the last day one more
broker pass resolves what the last run left open, as the next morning's run would.
"""

import contextlib
import json
import os
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import dagster as dg
import pandas as pd

from makenaide_assets.days import DayRunner
from makenaide_assets.pipeline import pipeline_definitions
from makenaide_assets.rehearsal import invariants
from makenaide_assets.rehearsal.events import ManualEvent, plan_events
from makenaide_assets.resources.analyst import RulesAnalyst
from makenaide_assets.resources.ledger import TradingLedger
from makenaide_assets.resources.modes import DEMO_MIN_MONTHS, resources_for
from makenaide_assets.resources.thresholds import UniverseThresholds
from makenaide_assets.resources.trading_limits import LIVE_LIMITS
from makenaide_assets.resources.upbit_broker import UpbitBroker
from makenaide_assets.resources.upbit_quotation import UpbitMarketData
from makenaide_assets.strategy.calendar import simulated_clock
from makenaide_assets.testing.exchange_book import ExchangeError, LocalExchange
from makenaide_assets.testing.upbit_server import UpbitServer

# Keys of the local exchange only: it checks every request's JWT against them, as Upbit would.
ACCESS_KEY = "rehearsal-access-key-local-exchange-only"
SECRET_KEY = "rehearsal-secret-key-local-exchange-only"
RUN_AT = pd.Timedelta(hours=0, minutes=5)  # 09:05 KST, the schedule's time
MANUAL_AT = pd.Timedelta(minutes=2)
WATCH_EVERY = pd.Timedelta(hours=4)  # the stop watch's ticks between two daily runs
# Upbit allows 10 quotation requests a second per group; the local one 100, and the client paces
# to it by the same code: a rehearsal day is then not ten seconds of waiting for the rate limit.
REQUESTS_PER_SECOND = 100


@dataclass(frozen=True)
class RehearsalSpec:
    replay_dir: str
    start: str
    end: str
    workdir: Path
    seed: int = 0
    fault_rate: float = 0.0
    manual_events: int = 0
    krw: float = 10_000_000.0

    def days(self) -> list[str]:
        days = [d.strftime("%Y-%m-%d") for d in pd.date_range(self.start, self.end, freq="D")]
        if not days:
            raise ValueError(f"{self.start} → {self.end} holds no day")
        return days


@dataclass
class Report:
    spec: dict[str, Any]
    days: list[dict[str, Any]] = field(default_factory=list)
    faults_injected: dict[str, int] = field(default_factory=dict)
    manual_events: list[dict[str, Any]] = field(default_factory=list)
    exchange_orders: list[dict[str, Any]] = field(default_factory=list)
    ledger_orders: list[dict[str, Any]] = field(default_factory=list)
    balances: list[dict[str, Any]] = field(default_factory=list)
    invariant_failures: list[str] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def passed(self) -> bool:
        return not self.invariant_failures


def rehearse(spec: RehearsalSpec, say: Callable[[str], None] = print) -> Report:
    days = spec.days()
    spec.workdir.mkdir(parents=True, exist_ok=True)
    report = Report(spec={**asdict(spec), "workdir": str(spec.workdir)})
    exchange = LocalExchange(ACCESS_KEY, SECRET_KEY, krw=spec.krw, fault_rate=spec.fault_rate, seed=spec.seed)
    started = time.monotonic()
    server = UpbitServer(spec.replay_dir, _clock(days[0]), exchange=exchange, per_second=REQUESTS_PER_SECOND)
    with server:
        env = _environment(spec.workdir, server.url)
        with _patched_environ(env), simulated_clock(lambda: server.answers.now.to_pydatetime()):
            ledger = TradingLedger(url=env["MAKENAIDE_LEDGER_URL"], mode="live")
            broker = _broker(ledger, server.url)
            markets = [m["market"] for m in server.answers.market_all(False)]
            events = plan_events(days, spec.manual_events, markets, spec.seed)
            instance = dg.DagsterInstance.get()
            # The stop watch between daily runs ticks every 4 hours on the local exchange's clock:
            # live, it reads the ticker, which shows one instant.
            runner = DayRunner.from_instance_cursor(
                _definitions(broker, server.url, spec.workdir),
                instance,
                clock=lambda instant: _server_at(server, instant),
                watch_every=WATCH_EVERY,
            )
            say(
                f"rehearsal: live mode, {len(days)} days {days[0]} → {days[-1]} on {spec.replay_dir}, "
                f"fault rate {spec.fault_rate:g} (seed {spec.seed}), {len(events)} manual events"
            )
            for i, day in enumerate(days, 1):
                for event in (e for e in events if e.day == day):
                    server.set_now(_clock(day) - RUN_AT + MANUAL_AT)
                    report.manual_events.append(_apply(exchange, event))
                server.set_now(_clock(day))
                result = runner.run(day)
                failures = _check_day(report, exchange, ledger, day)
                report.days.append(
                    {
                        "day": day,
                        "analysis_ok": result.analysis_ok,
                        "signals": result.signal_summary,
                        "traded": result.traded,
                        "stop_exits": result.stopped,
                        "trading_ok": result.trading_ok,
                        "error": result.error,
                        "invariant_failures": failures,
                    }
                )
                traded = f"; traded {'ok' if result.trading_ok else 'FAILED'}" if result.traded else ""
                traded += f"; stop watch sold {', '.join(result.stopped)}" if result.stopped else ""
                verdict = "invariants hold" if not failures else f"INVARIANTS FAILED: {'; '.join(failures)}"
                say(f"[{i}/{len(days)}] {day} {result.signal_summary}{traded}; {verdict}")
            # The next morning's first act: every order the last run left open is resolved.
            after = (pd.Timestamp(days[-1]) + pd.Timedelta(days=1)).strftime("%Y-%m-%d")
            server.set_now(_clock(after))
            broker.reconcile(after, _Quiet())
            _check_day(report, exchange, ledger, after, final=True)
            dump = exchange.dump()
            report.faults_injected = dump["faults_injected"]
            report.exchange_orders = [_exchange_row(o) for o in dump["orders"]]
            report.ledger_orders = _ledger_rows(ledger)
    report.seconds = time.monotonic() - started
    return report


def write_report(report: Report, out: Path) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    data = {**asdict(report), "passed": report.passed}
    out.write_text(json.dumps(data, indent=2, ensure_ascii=False, default=str), encoding="utf-8")


def _check_day(
    report: Report, exchange: LocalExchange, ledger: TradingLedger, day: str, final: bool = False
) -> list[str]:
    dump = exchange.dump()
    account = invariants.account_balances(dump["accounts"])
    booked = ledger.balances()
    rows = _ledger_rows(ledger)
    by_identifier = {r["identifier"]: r for r in rows}
    unbooked = invariants.in_flight(dump["orders"], by_identifier)
    balances = {"day": day, "exchange": account, "ledger": booked, "in_flight": unbooked}
    report.balances.append({**balances, **({"final": True} if final else {})})
    failures = invariants.sent_twice(dump["orders"]) + invariants.balances_differ(account, booked, unbooked)
    failures += invariants.unresolved_too_long(rows, day)
    if final:
        # Orders still in flight mid-rehearsal are booked by the next run; after the final pass, all are.
        failures += invariants.missing_from_ledger(dump["orders"], by_identifier)
    report.invariant_failures += [f"{day}: {failure}" for failure in failures]
    return failures


def _definitions(broker: UpbitBroker, url: str, workdir: Path) -> dg.Definitions:
    resources = resources_for("live", has_openai_key=False)
    market_data = UpbitMarketData(
        base_url=url, store_dir=str(workdir / "var" / "candles"), requests_per_second=REQUESTS_PER_SECOND
    )
    return pipeline_definitions(
        {
            **resources,
            "broker": broker,
            "market_data": market_data,
            # OpenAI cannot be reached from a rehearsal; the rules analyst decides the entries. The
            # analyst's failures (no key, outage, budget) have their own tests: they never stop exits.
            "analyst": RulesAnalyst(),
            # A year-long recording holds 13 monthly candles; the seeds' 14 would leave no market.
            "universe_thresholds": UniverseThresholds(min_months=DEMO_MIN_MONTHS),
        }
    )


def _broker(ledger: TradingLedger, url: str) -> UpbitBroker:
    # Live mode's broker with its live limits; only the waits are short (the local exchange answers
    # in milliseconds, and a held `wait` fills when the clock moves, not while the broker polls).
    return UpbitBroker(
        ledger=ledger,
        limits=LIVE_LIMITS,
        base_url=url,
        access_key=ACCESS_KEY,
        secret_key=SECRET_KEY,
        live_confirm="yes",
        poll_attempts=3,
        poll_interval_s=0.02,
        backoff_base_s=0.02,
        max_backoff_s=0.2,
    )


def _environment(workdir: Path, url: str) -> dict[str, str]:
    """Live mode against the local exchange; ledger, storage and instance where the person says
    (MAKENAIDE_LEDGER_URL, MAKENAIDE_STORAGE, DAGSTER_HOME), else inside the workdir."""
    home = Path(os.environ.get("DAGSTER_HOME") or workdir / "dagster_home")
    home.mkdir(parents=True, exist_ok=True)
    return {
        "MAKENAIDE_MODE": "live",
        "MAKENAIDE_LIVE_CONFIRM": "yes",
        "UPBIT_ACCESS_KEY": ACCESS_KEY,
        "UPBIT_SECRET_KEY": SECRET_KEY,
        "MAKENAIDE_UPBIT_API_URL": url,
        "MAKENAIDE_VAR": str(workdir / "var"),
        "MAKENAIDE_LEDGER_URL": os.environ.get("MAKENAIDE_LEDGER_URL") or f"sqlite:///{workdir / 'ledger-live.sqlite'}",
        "MAKENAIDE_STORAGE": os.environ.get("MAKENAIDE_STORAGE") or str(workdir / "storage"),
        "DAGSTER_HOME": str(home),
    }


@contextlib.contextmanager
def _patched_environ(values: Mapping[str, str]) -> Iterator[None]:
    saved = {name: os.environ.get(name) for name in (*values, "OPENAI_API_KEY")}
    os.environ.update(values)
    os.environ.pop("OPENAI_API_KEY", None)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


@contextlib.contextmanager
def _server_at(server: UpbitServer, instant: pd.Timestamp) -> Iterator[None]:
    """The local exchange's clock (which the rehearsal's "now" follows) moved to `instant`."""
    server.set_now(instant)
    yield


def _clock(day: str) -> pd.Timestamp:
    return pd.Timestamp(day) + pd.Timedelta(days=1) + RUN_AT


def _apply(exchange: LocalExchange, event: ManualEvent) -> dict[str, Any]:
    """Carry out one manual event; one the account cannot take (nothing to sell) says so."""
    row: dict[str, Any] = {**asdict(event), "at": exchange.now.isoformat()}
    try:
        if event.kind == "deposit":
            assert event.krw is not None
            exchange.deposit("KRW", event.krw)
            row["amount_krw"] = event.krw
        elif event.kind == "withdrawal":
            free = _free(exchange, "KRW")
            amount = round(free * (event.fraction or 0.0))
            exchange.deposit("KRW", -amount)
            row["amount_krw"] = -amount
        elif event.kind == "manual_buy":
            assert event.market is not None and event.krw is not None
            order = exchange.manual_trade(event.market, "bid", krw=event.krw)
            row["uuid"] = order["uuid"]
        else:
            held = _held_by_hand(exchange)
            if not held:
                row["skipped"] = "nothing bought by hand is held"
                return row
            market, volume = held[0]
            sell = round(volume * (event.fraction or 1.0), 8)
            order = exchange.manual_trade(market, "ask", volume=sell)
            row |= {"market": market, "volume": sell, "uuid": order["uuid"]}
    except ExchangeError as exc:
        row["skipped"] = f"{exc.name}: {exc.message}"
    return row


def _free(exchange: LocalExchange, currency: str) -> float:
    return next((float(a["balance"]) for a in exchange.dump()["accounts"] if a["currency"] == currency), 0.0)


def _held_by_hand(exchange: LocalExchange) -> list[tuple[str, float]]:
    """Coins bought by manual orders and still free in the account, largest first."""
    dump = exchange.dump()
    markets = {o["market"] for o in dump["orders"] if o["identifier"] is None and o["side"] == "bid"}
    sold_by_hand = {o["market"] for o in dump["orders"] if o["identifier"] is None and o["side"] == "ask"}
    free = {a["currency"]: float(a["balance"]) for a in dump["accounts"]}
    held = [(m, free.get(m.split("-", 1)[1], 0.0)) for m in sorted(markets - sold_by_hand)]
    return sorted((h for h in held if h[1] > 0), key=lambda h: -h[1])


def _exchange_row(order: Mapping[str, Any]) -> dict[str, Any]:
    keys = ("identifier", "uuid", "market", "side", "ord_type", "state", "executed_volume", "paid_fee", "fault")
    return {key: order.get(key) for key in keys}


def _ledger_rows(ledger: TradingLedger) -> list[dict[str, Any]]:
    orders = ledger.all_orders()
    rows = []
    for o in orders.to_dict("records"):
        rows.append(
            {
                "identifier": o["identifier"],
                "partition_key": o["partition_key"],
                "market": o["market"],
                "side": o["side"],
                "status": o["status"],
                "volume": 0.0 if pd.isna(o["volume"]) else float(o["volume"]),
                "fee": 0.0 if pd.isna(o["fee"]) else float(o["fee"]),
                "status_reason": o["status_reason"],
            }
        )
    return rows


class _Quiet:
    """A log for the final resolution pass, outside any run: warnings and errors still print."""

    def info(self, msg: str, *args: Any) -> None:
        pass

    def warning(self, msg: str, *args: Any) -> None:
        print(f"  {msg}")

    def error(self, msg: str, *args: Any) -> None:
        print(f"  {msg}")

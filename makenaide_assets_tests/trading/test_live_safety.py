"""Live trading you can trust: each reproduction of the issue, run against the local Upbit exchange.

The real `UpbitBroker` and its real HTTP client trade on loopback with `UpbitServer` + `LocalExchange`
(makenaide_assets.testing), on the recorded sample: every fill is at a recorded candle's price and the
clock is the server's, set to 00:05 UTC after the traded day closed (`simulated_clock`). Faults are
injected where a reproduction needs one, and stopped (`fault_rate = 0`) where it should stop.

Numbered as in the issue: 1 an accepted order whose outcome was never established; 2 the ledger is
the account (modes, per-mode files, reconciliation, free balances); 3 overlapping runs; 4 limits;
7 the smaller failures (empty `trades`, one market's chance, an unknown side, unchecked signals).

Every test fails on the code before the fixes (d545047) on the behaviour it is about: configuration
the fixes added is left out where a class lacks it (`configured`), and their new names are imported
where they are used, so the old code runs the same scenario and does the wrong thing.
"""

import contextlib
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from datetime import datetime
from decimal import ROUND_DOWN, Decimal
from pathlib import Path
from typing import Any

import dagster as dg
import pandas as pd
import pytest
import sqlalchemy as sa

from makenaide_assets.partitions import daily
from makenaide_assets.resources import upbit_broker as upbit_broker_module
from makenaide_assets.resources.broker import OrderOutcomeUnknown, PaperBroker
from makenaide_assets.resources.io_manager import ParquetIOManager
from makenaide_assets.resources.ledger import LedgerConflict, TradingLedger, identifier_for_signal
from makenaide_assets.resources.ledger import schema as t
from makenaide_assets.resources.market_data import ReplayMarketData
from makenaide_assets.resources.notifier import Notifier
from makenaide_assets.resources.upbit_broker import LiveTradingRefused, UpbitBroker
from makenaide_assets.resources.upbit_exchange import UpbitExchange
from makenaide_assets.resources.upbit_retry import RetryPolicy
from makenaide_assets.settings import SAMPLE_REPLAY_DIR
from makenaide_assets.testing.exchange_book import LocalExchange
from makenaide_assets.testing.upbit_server import UpbitServer
from makenaide_assets.trading.fills import fills

pytest_plugins = ["makenaide_assets_tests.e2e.servers"]

ACCESS = "local-access-key-0123456789abcdefghijklm"  # 40 characters, as Upbit's keys
SECRET = "local-secret-key-0123456789abcdefghijklm"
D1, D2 = "2023-12-19", "2023-12-20"  # inside the sample; BTC, ETH and DOGE have 4-hour candles
FEE = 0.0005
EIGHT = Decimal("0.00000001")


# ---- the code before the fixes ----------------------------------------------------------------------

_ADDED_FIELDS = {"mode", "writer_wait_s", "limits", "reconcile_account"}


def configured(cls: Any, **fields: Any) -> Any:
    """`cls(**fields)`, without the fields the fixes added where `cls` lacks them (the old code)."""
    absent = {name for name in fields if name not in cls.model_fields}
    assert absent <= _ADDED_FIELDS, f"{cls.__name__} has no {sorted(absent)}"
    return cls(**{name: value for name, value in fields.items() if name not in absent})


def limits(**caps: float) -> Any:
    """TradingLimits with these caps; None where the code had no limits at all."""
    try:
        from makenaide_assets.resources.trading_limits import TradingLimits
    except ImportError:
        return None
    return TradingLimits(**caps)


@contextmanager
def simulated(now: Callable[[], datetime]) -> Iterator[None]:
    try:
        from makenaide_assets.strategy.calendar import simulated_clock
    except ImportError:  # the old live broker read the wall clock for its same-day guard
        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(upbit_broker_module, "utc_now_naive", now)
            yield
        return
    with simulated_clock(now):
        yield


# ---- the local exchange, the ledger, the broker --------------------------------------------------------


def after_close(day: str, minutes: int = 5) -> str:
    """`minutes` after partition `day` closed (D+1 00:00 UTC)."""
    return f"{pd.Timestamp(day) + pd.Timedelta(days=1, minutes=minutes):%Y-%m-%dT%H:%M:%S}Z"


def close(market: str, day: str) -> float:
    """The recorded daily close: the price a signal of `day` carries."""
    frame = pd.read_csv(SAMPLE_REPLAY_DIR / "candles" / "day" / f"{market}.csv.gz")
    return float(frame.loc[frame["candle_date_time_utc"].str[:10] == day, "trade_price"].iloc[0])


def buy(market: str, day: str, krw: float = 1_000_000.0, **extra: Any) -> dict[str, Any]:
    return {"market": market, "side": "buy", "price": close(market, day), "krw_amount": krw, "reason": "test"} | extra


def sell(market: str, day: str, volume: float) -> dict[str, Any]:
    return {"market": market, "side": "sell", "price": close(market, day), "volume": volume, "reason": "test"}


class SteppingClock:
    """The rate limiters' clock: one second per reading, so no test meets a 429 by accident."""

    def __init__(self) -> None:
        self.now = 1_000.0

    def __call__(self) -> float:
        self.now += 1.0
        return self.now


@dataclass
class Upbit:
    server: UpbitServer

    @property
    def exchange(self) -> LocalExchange:
        assert self.server.exchange is not None
        return self.server.exchange

    @property
    def url(self) -> str:
        return self.server.url

    def trading_day(self, day: str, minutes: int = 5) -> None:
        """The clock to `minutes` after `day` closed; the exchange executes what that allows."""
        self.server.set_now(after_close(day, minutes))

    def client(self) -> UpbitExchange:
        """Someone else with the account's keys (the operator, another run)."""
        return UpbitExchange(ACCESS, SECRET, base_url=self.url, retry=RetryPolicy(0, 0.0, 0.0))

    def orders(self) -> list[dict[str, Any]]:
        return self.exchange.dump()["orders"]

    def account(self) -> dict[str, float]:
        return {
            row["currency"]: float(row["balance"]) + float(row["locked"]) for row in self.exchange.dump()["accounts"]
        }

    def free(self, currency: str) -> Decimal:
        return next(Decimal(a["balance"]) for a in self.exchange.dump()["accounts"] if a["currency"] == currency)


UpbitFactory = Callable[..., Upbit]


@pytest.fixture
def upbit() -> Iterator[UpbitFactory]:
    """`upbit(day, krw=..., fault_rate=..., fault_kinds=...)`: a local Upbit at 00:05 after `day`
    closed, whose clock `utc_now_naive()` answers while the test runs."""
    with ExitStack() as stack:

        def make(day: str = D1, **exchange: Any) -> Upbit:
            server = UpbitServer(
                SAMPLE_REPLAY_DIR,
                after_close(day),
                clock=SteppingClock(),
                exchange=LocalExchange(ACCESS, SECRET, **exchange),
            )
            stack.enter_context(server)
            stack.enter_context(simulated(lambda: server.answers.now.to_pydatetime()))
            return Upbit(server)

        yield make


@pytest.fixture(autouse=True)
def no_halt(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MAKENAIDE_HALT", raising=False)


def live_ledger(url: str | Path, **fields: Any) -> TradingLedger:
    url = f"sqlite:///{url}" if isinstance(url, Path) else url
    return configured(TradingLedger, url=url, mode="live", **fields)


def live_broker(ledger: TradingLedger, upbit: Upbit, **fields: Any) -> UpbitBroker:
    config = dict(access_key=ACCESS, secret_key=SECRET, live_confirm="yes", base_url=upbit.url)
    return configured(UpbitBroker, ledger=ledger, **config, poll_interval_s=0.01, backoff_base_s=0.0, **fields)


class Lines:
    """A `Log` that keeps what it was told."""

    def __init__(self) -> None:
        self.lines: list[tuple[str, str]] = []

    def info(self, msg: str, *args: Any) -> None:
        self.lines.append(("info", msg))

    def warning(self, msg: str, *args: Any) -> None:
        self.lines.append(("warning", msg))

    def error(self, msg: str, *args: Any) -> None:
        self.lines.append(("error", msg))

    def text(self, level: str | None = None) -> str:
        return "\n".join(msg for lvl, msg in self.lines if level in (None, lvl))


def execute(broker: UpbitBroker, day: str, *signals: dict[str, Any], log: Lines | None = None) -> pd.DataFrame:
    frame = broker.execute(pd.DataFrame(list(signals)), day, log or Lines())
    return frame.set_index("market")


def by_identifier(upbit: Upbit, identifier: str) -> dict[str, Any]:
    [order] = [o for o in upbit.orders() if o["identifier"] == identifier]
    return order


def booked_as_upbit_executed(row: pd.Series, order: dict[str, Any]) -> None:
    """The ledger's fill is what the exchange executed: volume, funds, fee."""
    funds = sum(Decimal(trade["funds"]) for trade in order["trades"])
    assert row["volume"] == pytest.approx(float(order["executed_volume"]), abs=1e-9)
    assert row["krw_value"] == pytest.approx(float(funds), abs=1e-6)
    assert row["fee"] == pytest.approx(float(order["paid_fee"]), abs=1e-6)


# ---- 1: an accepted order whose outcome was never established ------------------------------------------


def test_1_an_order_left_wait_is_resolved_by_the_next_days_run_first(upbit: UpbitFactory, tmp_path: Path) -> None:
    """Upbit accepted the buy and kept it `wait` past every poll: left `submitted`. The next day's
    run (whose signals do not mention it) looks it up before anything else and books its fill."""
    exchange = upbit(D1, fault_rate=1.0, fault_kinds=["stays_wait"])
    ledger = live_ledger(tmp_path / "ledger.sqlite")
    btc = buy("KRW-BTC", D1)
    with contextlib.suppress(OrderOutcomeUnknown):  # the old code let it out of the run
        execute(live_broker(ledger, exchange, poll_attempts=3), D1, btc)
    assert ledger.order(identifier_for_signal(D1, btc))["status"] == t.SUBMITTED

    exchange.exchange.fault_rate = 0.0
    exchange.trading_day(D2)  # Upbit executes it when the clock moves
    today = execute(live_broker(ledger, exchange), D2, buy("KRW-ETH", D2))
    assert today.at["KRW-ETH", "status"] == t.DONE
    stuck = ledger.fills_for_partition(D1).set_index("identifier").loc[identifier_for_signal(D1, btc)]
    assert stuck["status"] == t.DONE  # the old code left it `submitted` for ever
    booked_as_upbit_executed(stuck, by_identifier(exchange, identifier_for_signal(D1, btc)))
    assert ledger.cash_krw(None) == pytest.approx(exchange.account()["KRW"], abs=1.0)


def test_1_an_order_still_unknown_blocks_new_buys_of_its_market_and_is_notified(
    upbit: UpbitFactory, tmp_path: Path
) -> None:
    """The next day Upbit still shows the order `wait`: its outcome stays unknown, so no new BTC buy
    goes out (the old code bought BTC again), the operator hears of it, fills_nothing_unresolved fails."""
    from makenaide_assets.trading.fills import fill_checks

    exchange = upbit(D1, fault_rate=1.0, fault_kinds=["stays_wait"])
    ledger = live_ledger(tmp_path / "ledger.sqlite")
    stuck_id = identifier_for_signal(D1, buy("KRW-BTC", D1))
    with contextlib.suppress(OrderOutcomeUnknown):  # the old code let it out of the run
        execute(live_broker(ledger, exchange, poll_attempts=3), D1, buy("KRW-BTC", D1))
    assert ledger.order(stuck_id)["status"] == t.SUBMITTED

    exchange.exchange.fault_rate = 0.0
    # The clock moves without the exchange executing it: Upbit still shows it `wait` (`set_now`
    # would let the held order execute).
    exchange.server.answers.now = pd.Timestamp(after_close(D2)[:-1])
    broker = live_broker(ledger, exchange, poll_attempts=3)
    signals = [buy("KRW-BTC", D2)]
    frame = broker.execute(pd.DataFrame(signals), D2, Lines())
    row = frame.set_index("market").loc["KRW-BTC"]
    assert row["status"] == t.SKIPPED and row["status_reason"].startswith("unresolved_order")
    assert [o["identifier"] for o in exchange.orders()] == [stuck_id]  # nothing new reached Upbit
    assert any(stuck_id in notice and "KRW-BTC" in notice for notice in broker.notices)
    checks = {c.check_name: c.passed for c in fill_checks(frame, pd.DataFrame(signals), D2, ledger, broker)}
    assert checks["fills_nothing_unresolved"] is False


# ---- 2: the ledger is the account ----------------------------------------------------------------------


@pytest.mark.parametrize(("first", "then"), [("paper", "live"), ("live", "paper")])
def test_2_a_ledger_belongs_to_the_mode_that_first_used_it(tmp_path: Path, first: str, then: str) -> None:
    url = f"sqlite:///{tmp_path / 'ledger.sqlite'}"
    configured(TradingLedger, url=url, mode=first).cash_krw(None)
    with pytest.raises(LedgerConflict, match=f"belongs to {first} mode and MAKENAIDE_MODE is {then}") as caught:
        configured(TradingLedger, url=url, mode=then).cash_krw(None)
    assert type(caught.value).__name__ == "LedgerModeMismatch"


def test_2_the_live_broker_never_sells_what_paper_fills_put_in_a_ledger(upbit: UpbitFactory, tmp_path: Path) -> None:
    """A paper ledger holds BTC from paper fills; the account holds BTC for other reasons. A live
    broker given that ledger refuses to start: the old one sold the account's BTC for real."""
    exchange = upbit(D1)
    ledger = configured(TradingLedger, url=f"sqlite:///{tmp_path / 'ledger.sqlite'}", mode="paper")
    paper = PaperBroker(ledger=ledger, market_data=ReplayMarketData(replay_dir=str(SAMPLE_REPLAY_DIR)))
    [volume] = paper.execute(pd.DataFrame([buy("KRW-BTC", D1)]), D1, Lines())["volume"]
    exchange.exchange.manual_trade("KRW-BTC", "bid", krw=2_000_000)  # the operator's own BTC

    with pytest.raises(LiveTradingRefused, match="not a live ledger"):
        live_broker(ledger, exchange).execute(pd.DataFrame([sell("KRW-BTC", D1, volume)]), D1, Lines())
    assert [o["identifier"] for o in exchange.orders()] == [None]  # the manual trade only


def test_2_each_mode_has_its_own_default_ledger_file(tmp_path: Path) -> None:
    """MAKENAIDE_LEDGER_URL unset: paper fills never land in the ledger live mode trades from."""
    paper = configured(TradingLedger, mode="paper")
    PaperBroker(ledger=paper, market_data=ReplayMarketData(replay_dir=str(SAMPLE_REPLAY_DIR))).execute(
        pd.DataFrame([buy("KRW-BTC", D1)]), D1, Lines()
    )
    live = configured(TradingLedger, mode="live")
    assert live.open_positions(None).empty and live.fills_for_partition(D1).empty
    assert live.cash_krw(None) == 0.0  # a live ledger takes its cash from the account, not a seed
    files = {Path(str(ledger.engine().url.database)).name for ledger in (paper, live)}
    assert files == {"ledger-paper.sqlite", "ledger-live.sqlite"}
    assert {p.name for p in (tmp_path / "var").glob("*.sqlite")} == files


def test_2_the_first_reconciliation_takes_the_opening_balance_from_the_account(
    upbit: UpbitFactory, tmp_path: Path
) -> None:
    """No notional seed: cash and coins come from /v1/accounts, and a buy is sized on them. A trade
    made in the very second of that first read is booked once, under its own key: the next day's
    reconciliation lists it again and must find nothing left to adjust."""
    exchange = upbit(D1, krw=7_000_000)
    exchange.trading_day(D1, minutes=1)
    exchange.exchange.manual_trade("KRW-ETH", "bid", krw=500_000)  # held before Makenaide started
    exchange.trading_day(D1)
    same_second = exchange.exchange.manual_trade("KRW-DOGE", "bid", krw=200_000)
    ledger = live_ledger(tmp_path / "ledger.sqlite")
    frame = execute(live_broker(ledger, exchange), D1, buy("KRW-BTC", D1))
    assert frame.at["KRW-BTC", "status"] == t.DONE
    account = exchange.account()
    assert ledger.cash_krw(None) == pytest.approx(account["KRW"], abs=1.0)
    assert ledger.balances() == pytest.approx(account)
    opening = ledger.adjustments(D1)
    assert opening["explained"].all()
    assert set(opening.loc[opening["reason"].str.startswith("opening balance"), "currency"]) == {"KRW", "ETH"}
    assert set(opening.loc[opening["reason"].str.contains(same_second["uuid"]), "currency"]) == {"KRW", "DOGE"}

    exchange.trading_day(D2)
    assert execute(live_broker(ledger, exchange), D2, buy("KRW-ETH", D2)).at["KRW-ETH", "status"] == t.DONE
    assert ledger.adjustments(D2).empty
    assert ledger.balances() == pytest.approx(exchange.account())


def test_2_deposits_withdrawals_and_manual_trades_are_explained(upbit: UpbitFactory, tmp_path: Path) -> None:
    exchange = upbit(D1)
    ledger = live_ledger(tmp_path / "ledger.sqlite")
    execute(live_broker(ledger, exchange), D1, buy("KRW-BTC", D1))

    exchange.trading_day(D2, minutes=1)
    exchange.exchange.deposit("KRW", 2_000_000)
    exchange.exchange.deposit("KRW", -500_000)
    manual = exchange.exchange.manual_trade("KRW-ETH", "bid", krw=300_000)
    exchange.trading_day(D2)
    broker = live_broker(ledger, exchange)
    assert execute(broker, D2, buy("KRW-DOGE", D2)).at["KRW-DOGE", "status"] == t.DONE  # nothing holds buys

    assert ledger.cash_krw(None) == pytest.approx(exchange.account()["KRW"], abs=1.0)
    assert ledger.balances() == pytest.approx(exchange.account())
    found = ledger.adjustments(D2)
    assert found["explained"].all()
    reasons = found.groupby("currency")["reason"].apply(sorted).to_dict()
    assert [r.split(" ")[0] for r in reasons["KRW"]] == ["deposit", "order", "withdraw"]
    assert [r.split(" ")[0] for r in reasons["ETH"]] == ["order"]
    assert all("made outside Makenaide" in r for r in reasons["ETH"])
    by_currency = found.groupby("currency")["amount"].sum()
    assert by_currency["ETH"] == pytest.approx(float(manual["executed_volume"]))
    assert by_currency["KRW"] == pytest.approx(
        2_000_000 - 500_000 - float(manual["executed_funds"]) - float(manual["paid_fee"])
    )
    assert len(broker.notices) == 4 and all(n.startswith("reconciliation: ") for n in broker.notices)


def test_2_an_unexplained_difference_holds_back_buys_but_the_sell_goes_out(upbit: UpbitFactory, tmp_path: Path) -> None:
    exchange = upbit(D1)
    ledger = live_ledger(tmp_path / "ledger.sqlite")
    held = execute(live_broker(ledger, exchange), D1, buy("KRW-BTC", D1)).at["KRW-BTC", "volume"]

    exchange.trading_day(D2, minutes=1)
    exchange.exchange.deposit("ETH", "0.5")  # coins moved in: no KRW transfer or order explains them
    exchange.trading_day(D2)
    broker = live_broker(ledger, exchange)
    frame = execute(broker, D2, sell("KRW-BTC", D2, held), buy("KRW-DOGE", D2))
    assert frame.at["KRW-BTC", "status"] == t.DONE  # exits are never held back
    assert frame.at["KRW-DOGE", "status"] == t.SKIPPED
    assert frame.at["KRW-DOGE", "status_reason"].startswith("account_unreconciled")
    assert "KRW-DOGE" not in {o["market"] for o in exchange.orders()}
    assert any("cannot explain" in notice and "ETH" in notice for notice in broker.notices)
    assert ledger.balances() == pytest.approx(exchange.account())  # booked, flagged


def test_2_a_sell_is_capped_at_the_coins_the_account_holds_free(upbit: UpbitFactory, tmp_path: Path) -> None:
    exchange = upbit(D1)
    ledger = live_ledger(tmp_path / "ledger.sqlite")
    held = execute(live_broker(ledger, exchange), D1, buy("KRW-BTC", D1)).at["KRW-BTC", "volume"]
    locked = (Decimal(str(held)) * Decimal("0.4")).quantize(EIGHT, rounding=ROUND_DOWN)
    # The operator's limit ask, far above the market: those coins are locked in it.
    exchange.client().post(
        "/v1/orders",
        {"market": "KRW-BTC", "side": "ask", "ord_type": "limit", "price": "99000000", "volume": str(locked)},
    )

    exchange.trading_day(D2)
    row = execute(live_broker(ledger, exchange), D2, sell("KRW-BTC", D2, held)).loc["KRW-BTC"]
    assert row["status"] == t.DONE  # the old code sent the whole position: insufficient_funds_ask
    assert row["volume"] == pytest.approx(float(Decimal(str(held)) - locked), abs=1e-9)
    assert row["status_reason"].startswith("reduced_to_account")
    assert exchange.free("BTC") == 0


# ---- 3: overlapping runs -------------------------------------------------------------------------------


def test_3_a_duplicate_identifier_from_an_overlapping_run_books_its_execution(
    upbit: UpbitFactory, tmp_path: Path
) -> None:
    """Another run sent the day's BTC buy first; ours gets Upbit's duplicate-identifier 400. Looked
    up, the order is Upbit's execution, booked `done` once (the old code booked `rejected`)."""
    exchange = upbit(D1)
    ledger = live_ledger(tmp_path / "ledger.sqlite")
    execute(live_broker(ledger, exchange), D1)  # the day's reconciliation: the opening balance
    btc = buy("KRW-BTC", D1)
    identifier = identifier_for_signal(D1, btc)
    body = {"market": "KRW-BTC", "side": "bid", "ord_type": "price", "price": "1000000", "identifier": identifier}
    exchange.client().post("/v1/orders", body)  # the overlapping run's send

    # The account's side of it is another test's: this ledger never saw the other run's intent.
    row = execute(live_broker(ledger, exchange, reconcile_account=False), D1, btc).loc["KRW-BTC"]
    assert row["status"] == t.DONE
    assert [o["identifier"] for o in exchange.orders()] == [identifier]
    assert [r["name"] for r in exchange.exchange.dump()["refused"]] == ["duplicated_identifier"]
    booked_as_upbit_executed(row, by_identifier(exchange, identifier))


def test_3_a_rejected_order_upbit_executed_is_booked_and_the_operator_told(upbit: UpbitFactory, tmp_path: Path) -> None:
    """The old code booked an executed order `rejected` (its duplicate-identifier answer). The next
    run looks refused orders of the last partitions up again, books the fill and says so."""
    exchange = upbit(D1)
    ledger = live_ledger(tmp_path / "ledger.sqlite")
    execute(live_broker(ledger, exchange), D1)  # the opening balance
    btc = buy("KRW-BTC", D1)
    identifier = identifier_for_signal(D1, btc)
    body = {"market": "KRW-BTC", "side": "bid", "ord_type": "price", "price": "1000000", "identifier": identifier}
    exchange.client().post("/v1/orders", body)
    intent = dict(partition_key=D1, market="KRW-BTC", side="buy", broker="upbit", ref_price=btc["price"])
    ledger.record_intent(identifier, **intent, krw_amount=1_000_000.0, volume=None, reason="test")
    ledger.close_order(identifier, t.REJECTED, "duplicated_identifier", "identifier has already been used")

    exchange.trading_day(D2)
    broker = live_broker(ledger, exchange)
    execute(broker, D2)
    row = ledger.fills_for_partition(D1).set_index("identifier").loc[identifier]
    assert row["status"] == t.DONE
    booked_as_upbit_executed(row, by_identifier(exchange, identifier))
    assert any(identifier in notice and "booked rejected" in notice for notice in broker.notices)
    assert ledger.balances() == pytest.approx(exchange.account())  # the reconciliation finds nothing more


def overlapping_runs(upbit: UpbitFactory, url_a: str | Path, url_b: str | Path, wait_s: float) -> None:
    """Run A's buy is accepted and held `wait` (it polls, holding the writer lock); run B starts
    the same partition meanwhile. B waits and then sends nothing again, or gives up at once."""
    exchange = upbit(D1, fault_rate=1.0, fault_kinds=["stays_wait"])
    btc = buy("KRW-BTC", D1)
    runs: dict[str, Any] = {}
    logs = {"a": Lines(), "b": Lines()}
    brokers = {
        "a": live_broker(live_ledger(url_a), exchange, poll_attempts=3000),
        "b": live_broker(live_ledger(url_b, writer_wait_s=wait_s), exchange),
    }

    def run(name: str) -> None:
        try:
            runs[name] = execute(brokers[name], D1, btc, log=logs[name])
        except Exception as error:
            runs[name] = error

    threads = {name: threading.Thread(target=run, args=(name,)) for name in brokers}
    threads["a"].start()
    deadline = time.monotonic() + 20
    while not exchange.orders() and time.monotonic() < deadline:
        time.sleep(0.01)
    assert exchange.orders(), "run A never sent its order"
    threads["b"].start()
    time.sleep(0.6)
    if wait_s:
        assert threads["b"].is_alive() and "b" not in runs, f"run B did not wait: {runs.get('b')!r}"
    else:
        threads["b"].join(timeout=10)
        error = runs.get("b")
        assert type(error).__name__ == "LedgerBusy", f"run B did not give up: {error!r}"
        assert "holds the ledger" in str(error)
    exchange.exchange.fault_rate = 0.0
    exchange.trading_day(D1, minutes=6)  # Upbit executes A's order; A books it and lets go
    for thread in threads.values():
        thread.join(timeout=20)
    assert not any(thread.is_alive() for thread in threads.values())
    assert isinstance(runs["a"], pd.DataFrame), runs["a"]
    assert runs["a"].at["KRW-BTC", "status"] == t.DONE
    if wait_s:
        assert isinstance(runs["b"], pd.DataFrame), runs["b"]
        pd.testing.assert_frame_equal(runs["b"], runs["a"])
        assert "already done in the ledger" in logs["b"].text() and "resolving" not in logs["b"].text()
    assert len(exchange.orders()) == 1 and exchange.exchange.dump()["refused"] == []


@pytest.mark.parametrize("wait_s", [120.0, 0.0], ids=["waits", "gives_up"])
def test_3_overlapping_runs_take_turns_on_a_sqlite_ledger(upbit: UpbitFactory, tmp_path: Path, wait_s: float) -> None:
    overlapping_runs(upbit, tmp_path / "ledger.sqlite", tmp_path / "ledger.sqlite", wait_s)


@pytest.mark.e2e
@pytest.mark.parametrize("wait_s", [120.0, 0.0], ids=["waits", "gives_up"])
def test_3_overlapping_runs_take_turns_on_postgresql(upbit: UpbitFactory, pg_database: sa.URL, wait_s: float) -> None:
    url = pg_database.render_as_string(hide_password=False)
    overlapping_runs(upbit, url, url, wait_s)


# ---- 4: limits -----------------------------------------------------------------------------------------


def test_4_an_absurd_amount_is_capped_per_order(upbit: UpbitFactory, tmp_path: Path) -> None:
    exchange = upbit(D1)
    ledger = live_ledger(tmp_path / "ledger.sqlite")
    broker = live_broker(ledger, exchange, limits=limits(max_krw_per_order=1_000_000))
    row = execute(broker, D1, buy("KRW-BTC", D1, krw=1e12)).loc["KRW-BTC"]
    assert (row["status"], row["requested_krw"]) == (t.DONE, 1_000_000)
    assert row["status_reason"].startswith("capped: buy of 1,000,000,000,000 KRW reduced to 1,000,000")
    assert [o["price"] for o in exchange.orders()] == ["1000000"]

    from makenaide_assets.resources.modes import resources_for
    from makenaide_assets.resources.trading_limits import LIVE_LIMITS

    assert resources_for("live", has_openai_key=False)["broker"].limits == LIVE_LIMITS
    assert LIVE_LIMITS.max_krw_per_order == 1_000_000


def test_4_the_daily_cap_spans_the_days_buys(upbit: UpbitFactory, tmp_path: Path) -> None:
    exchange = upbit(D1)
    broker = live_broker(live_ledger(tmp_path / "ledger.sqlite"), exchange, limits=limits(max_krw_per_day=1_500_000))
    frame = execute(broker, D1, buy("KRW-BTC", D1), buy("KRW-ETH", D1))
    assert frame["status"].tolist() == [t.DONE, t.DONE]
    assert frame.at["KRW-ETH", "requested_krw"] == int(1_500_000 - frame.at["KRW-BTC", "krw_value"])
    assert frame["krw_value"].sum() <= 1_500_000


def test_4_the_daily_cap_counts_a_buy_whose_outcome_is_unknown(upbit: UpbitFactory, tmp_path: Path) -> None:
    """The first buy stays `wait` past every poll (seed 4 holds the first order, not the second):
    Upbit holds its KRW and will execute it, so the second buy gets only what the cap leaves."""
    exchange = upbit(D1, fault_rate=0.5, fault_kinds=["stays_wait"], seed=4)
    ledger = live_ledger(tmp_path / "ledger.sqlite")
    broker = live_broker(ledger, exchange, poll_attempts=3, limits=limits(max_krw_per_day=1_500_000))
    with contextlib.suppress(OrderOutcomeUnknown):  # the old code let it out of the run
        execute(broker, D1, buy("KRW-BTC", D1), buy("KRW-ETH", D1))
    frame = ledger.fills_for_partition(D1).set_index("market")
    assert frame.at["KRW-BTC", "status"] == t.SUBMITTED
    assert (frame.at["KRW-ETH", "status"], frame.at["KRW-ETH", "requested_krw"]) == (t.DONE, 500_000)
    assert sum(int(o["price"]) for o in exchange.orders()) == 1_500_000


def test_4_a_buy_is_capped_at_the_free_krw_of_the_account(upbit: UpbitFactory, tmp_path: Path) -> None:
    """The operator's resting limit bid locks most of the KRW: the ledger's cash is the account's
    total, but a buy may spend only what is free (the old code sent it: insufficient_funds_bid)."""
    exchange = upbit(D1, krw=2_000_000)
    bid = {"market": "KRW-BTC", "side": "bid", "ord_type": "limit", "price": "30000000", "volume": "0.0466"}
    exchange.client().post("/v1/orders", bid)
    free = float(exchange.free("KRW"))
    ledger = live_ledger(tmp_path / "ledger.sqlite")
    row = execute(live_broker(ledger, exchange), D1, buy("KRW-ETH", D1)).loc["KRW-ETH"]
    assert row["status"] == t.DONE and row["status_reason"].startswith("reduced_to_cash")
    assert row["requested_krw"] == int(free / (1 + FEE))
    assert ledger.cash_krw(None) == pytest.approx(exchange.account()["KRW"], abs=1.0)


def test_4_a_buy_whose_quote_left_the_price_band_is_refused(upbit: UpbitFactory, tmp_path: Path) -> None:
    exchange = upbit(D1)
    broker = live_broker(live_ledger(tmp_path / "ledger.sqlite"), exchange, limits=limits(price_band_pct=3.0))
    stale_price = close("KRW-BTC", "2023-12-03")  # 53.7M; the quote after D1 is 57.8M
    frame = execute(broker, D1, buy("KRW-BTC", D1, price=stale_price), buy("KRW-ETH", D1))
    assert frame.at["KRW-BTC", "status"] == t.SKIPPED
    assert frame.at["KRW-BTC", "status_reason"].startswith("outside_price_band")
    assert frame.at["KRW-ETH", "status"] == t.DONE
    assert [o["market"] for o in exchange.orders()] == ["KRW-ETH"]


@pytest.mark.parametrize(
    ("halt", "sold", "notice"),
    [("buys", True, None), ("all", False, None), ("stop please", False, 'read as "all"')],
)
def test_4_the_halt_switch(
    upbit: UpbitFactory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, halt: str, sold: bool, notice: str | None
) -> None:
    exchange = upbit(D1)
    ledger = live_ledger(tmp_path / "ledger.sqlite")
    held = execute(live_broker(ledger, exchange), D1, buy("KRW-BTC", D1)).at["KRW-BTC", "volume"]

    exchange.trading_day(D2)
    monkeypatch.setenv("MAKENAIDE_HALT", halt)
    broker = live_broker(ledger, exchange)
    frame = execute(broker, D2, sell("KRW-BTC", D2, held), buy("KRW-ETH", D2))
    assert frame.at["KRW-BTC", "status"] == (t.DONE if sold else t.SKIPPED)
    assert frame.at["KRW-ETH", "status"] == t.SKIPPED
    skipped = frame[frame["status"] == t.SKIPPED]
    assert skipped["status_reason"].str.startswith("operator_halt").all()
    assert len(exchange.orders()) == (2 if sold else 1)
    if notice:
        assert any(notice in n for n in broker.notices)


@pytest.mark.parametrize("path", ["fills", "signals"])
def test_4_the_halt_switch_holds_an_order_an_earlier_run_left_unsent(
    upbit: UpbitFactory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, path: str
) -> None:
    """Every send answered 5xx and Upbit never had it: the buy is left `pending`. The operator sets
    MAKENAIDE_HALT=all; the day's next run (trading, or `signals` resolving first) must not send it."""
    exchange = upbit(D1, fault_rate=1.0, fault_kinds=["server_error"])
    ledger = live_ledger(tmp_path / "ledger.sqlite")
    btc = buy("KRW-BTC", D1)
    identifier = identifier_for_signal(D1, btc)
    with contextlib.suppress(OrderOutcomeUnknown):  # the old code let it out of the run
        execute(live_broker(ledger, exchange), D1, btc)
    assert ledger.order(identifier)["status"] == t.PENDING and exchange.orders() == []

    exchange.exchange.fault_rate = 0.0
    exchange.trading_day(D1, minutes=30)
    monkeypatch.setenv("MAKENAIDE_HALT", "all")
    broker = live_broker(ledger, exchange)
    if path == "fills":
        execute(broker, D1, btc)
    else:
        broker.reconcile(D1, Lines())
    assert exchange.orders() == []
    assert (ledger.order(identifier)["status"], ledger.order(identifier)["error_name"]) == (t.SKIPPED, "operator_halt")

    monkeypatch.delenv("MAKENAIDE_HALT")  # lifted: the day's re-run plans it again
    assert execute(live_broker(ledger, exchange), D1, btc).at["KRW-BTC", "status"] == t.DONE


@pytest.mark.parametrize(
    ("caps", "history", "halted"),
    [
        # The previous close 10 % higher than today's equity: a 5 % daily loss limit stops buys.
        ({"daily_loss_pct": 5.0}, {"2023-10-23": 1 / 0.9}, "daily_loss_limit"),
        # Flat since yesterday, 20 % below the peak: a 15 % drawdown halt stops buys.
        ({"daily_loss_pct": 5.0, "drawdown_halt_pct": 15.0}, {"2023-10-20": 1 / 0.8, "2023-10-23": 1.0}, "drawdown"),
    ],
    ids=["daily_loss", "drawdown"],
)
def test_4_signals_holds_buys_after_a_daily_loss_or_a_drawdown(
    tmp_path: Path, caps: dict[str, float], history: dict[str, float], halted: str
) -> None:
    """test_signals' day (sell STORJ, add ETH, buy BTC) with a recorded equity history: only the
    sell is left; the old `signals` had no loss limits and kept every buy."""
    from makenaide_assets.analysis.signals import signals
    from makenaide_assets_tests.analysis.test_signals import DAY, ENTRY_DAY, HELD, close_on, stand_in, upstream

    ledger = TradingLedger(url=f"sqlite:///{tmp_path / 'ledger.sqlite'}")
    for market, volume in HELD.items():
        price, identifier = close_on(market, ENTRY_DAY), f"test-{ENTRY_DAY}-{market}"
        intent = dict(partition_key=ENTRY_DAY, market=market, side="buy", broker="paper", ref_price=price)
        ledger.record_intent(identifier, **intent, krw_amount=price * volume, volume=None, reason="test entry")
        ledger.record_fill(
            identifier, price=price, volume=volume, fee=price * volume * FEE, executed_at=pd.Timestamp(ENTRY_DAY)
        )
    equity_today = ledger.cash_krw(None) + sum(volume * close_on(market, DAY) for market, volume in HELD.items())
    for day, ratio in history.items():
        ledger.record_equity(day, equity_today * ratio - ledger.cash_krw(None))

    market_data = ReplayMarketData(replay_dir=str(SAMPLE_REPLAY_DIR))
    result = dg.materialize(
        [*(stand_in(key, frame) for key, frame in upstream().items()), signals],
        resources={
            "io_manager": ParquetIOManager(base_path=str(tmp_path / "storage")),
            "ledger": ledger,
            "market_data": market_data,
            "broker": configured(PaperBroker, ledger=ledger, market_data=market_data, limits=limits(**caps)),
            "notifier": Notifier(),
        },
        partition_key=DAY,
    )
    assert result.success
    orders = result.asset_value("signals")
    assert orders[["market", "side"]].values.tolist() == [["KRW-STORJ", "sell"]]
    metadata = result.asset_materializations_for_node("signals")[0].metadata
    assert metadata["buys_halted"].value.startswith(halted)
    assert metadata["allow_new_buys"].value is False


# ---- 7: the smaller failures ---------------------------------------------------------------------------


def test_7_done_with_an_executed_volume_and_empty_trades_is_booked_as_executed(
    upbit: UpbitFactory, tmp_path: Path
) -> None:
    exchange = upbit(D1, fault_rate=1.0, fault_kinds=["empty_trades"])
    ledger = live_ledger(tmp_path / "ledger.sqlite")
    btc = buy("KRW-BTC", D1)
    row = execute(live_broker(ledger, exchange), D1, btc).loc["KRW-BTC"]
    assert row["status"] == t.DONE  # the old code: failed, nothing_executed
    order = by_identifier(exchange, identifier_for_signal(D1, btc))
    booked_as_upbit_executed(row, order)
    assert row["price"] == pytest.approx(float(order["trades"][0]["price"]))
    exchange.exchange.fault_rate = 0.0
    assert ledger.balances() == pytest.approx(exchange.account())


def test_7_a_market_whose_chance_fails_is_skipped_and_the_orders_after_it_still_go(
    upbit: UpbitFactory, tmp_path: Path
) -> None:
    """KRW-GRT's first recorded candle is 2023-06-01: before it, Upbit refuses its chance."""
    day = "2023-05-20"
    exchange = upbit(day)
    broker = live_broker(live_ledger(tmp_path / "ledger.sqlite"), exchange)
    grt = {"market": "KRW-GRT", "side": "buy", "price": None, "krw_amount": 500_000.0, "reason": "test"}
    frame = execute(broker, day, grt, buy("KRW-ETH", day), buy("KRW-DOGE", day))
    assert frame.at["KRW-GRT", "status"] == t.SKIPPED
    assert frame.at["KRW-GRT", "status_reason"].startswith("chance_unavailable")
    assert frame.loc[["KRW-ETH", "KRW-DOGE"], "status"].tolist() == [t.DONE, t.DONE]


def fills_run(
    tmp_path: Path, broker: UpbitBroker, prepared: pd.DataFrame, day: str, **kwargs: Any
) -> dg.ExecuteInProcessResult:
    @dg.asset(name="signals", partitions_def=daily)
    def stand_in_signals() -> pd.DataFrame:
        return prepared

    return dg.materialize(
        [stand_in_signals, fills],
        partition_key=day,
        resources={
            "broker": broker,
            "ledger": broker.ledger,
            "notifier": Notifier(),
            "io_manager": ParquetIOManager(base_path=str(tmp_path / "storage")),
        },
        **kwargs,
    )


def test_7_a_side_outside_buy_add_sell_is_refused_not_booked(upbit: UpbitFactory, tmp_path: Path) -> None:
    exchange = upbit(D1)
    ledger = live_ledger(tmp_path / "ledger.sqlite")
    short = {"market": "KRW-ETH", "side": "short", "price": close("KRW-ETH", D1), "volume": 1.0, "reason": "test"}
    prepared = pd.DataFrame([short, buy("KRW-BTC", D1)])
    result = fills_run(tmp_path, live_broker(ledger, exchange), prepared, D1, raise_on_error=False)
    assert result.success, "a side the ledger cannot hold must not fail the run"
    frame = ledger.fills_for_partition(D1)
    assert frame[["market", "status"]].values.tolist() == [["KRW-BTC", t.DONE]]
    assert [o["market"] for o in exchange.orders()] == ["KRW-BTC"]
    [check] = [e for e in result.get_asset_check_evaluations() if e.check_name == "fills_match_signals"]
    assert not check.passed
    assert check.metadata["signals_without_order"].value == identifier_for_signal(D1, short)


def test_7_fills_refuses_signals_whose_blocking_checks_failed(upbit: UpbitFactory, tmp_path: Path) -> None:
    """`signals` was stored, then its blocking check failed; a hand-started `fills` must not trade it."""
    exchange = upbit(D1)
    ledger = live_ledger(tmp_path / "ledger.sqlite")
    prepared = pd.DataFrame([buy("KRW-BTC", D1, krw=1e9)])

    @dg.asset(
        name="signals",
        partitions_def=daily,
        check_specs=[dg.AssetCheckSpec("signals_within_cash", asset="signals", blocking=True)],
    )
    def overspending_signals() -> Iterator[Any]:
        yield dg.Output(prepared)
        yield dg.AssetCheckResult(check_name="signals_within_cash", passed=False)

    instance = dg.DagsterInstance.ephemeral()
    resources = {
        "broker": live_broker(ledger, exchange),
        "ledger": ledger,
        "notifier": Notifier(),
        "io_manager": ParquetIOManager(base_path=str(tmp_path / "storage")),
    }
    analysed = dg.materialize(
        [overspending_signals], partition_key=D1, instance=instance, resources=resources, raise_on_error=False
    )
    assert not analysed.success and analysed.asset_materializations_for_node("signals")

    traded = dg.materialize(
        [overspending_signals, fills],
        selection=[fills.key],
        partition_key=D1,
        instance=instance,
        resources=resources,
        raise_on_error=False,
    )
    assert not traded.success
    assert exchange.orders() == [] and ledger.fills_for_partition(D1).empty
    [failure] = [e for e in traded.all_events if e.is_step_failure]
    assert "failed blocking checks (signals_within_cash)" in str(failure.step_failure_data.error)

"""UpbitBroker against recorded-shape Upbit answers (`responses`): never twice, never silent, no secrets."""

import hashlib
import json
import logging
from datetime import timedelta
from pathlib import Path

import dagster as dg
import jwt
import pandas as pd
import pytest
import requests
import responses
from responses import matchers

from makenaide_assets.resources.ledger import TradingLedger, identifier_for_signal
from makenaide_assets.resources.ledger import schema as t
from makenaide_assets.resources.upbit_broker import LiveTradingRefused, UpbitBroker
from makenaide_assets.resources.upbit_exchange import query_string
from makenaide_assets.strategy.calendar import utc_now_naive
from makenaide_assets.strategy.reconcile import Adjustment

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "upbit_exchange"
ACCESS = "acc-7Hq2LkV9pZrX4mN8sT1wY6uB3dF5gJ0c"
SECRET = "sec-Qw3Er5Ty7Ui9Op1As2Df4Gh6Jk8Lz0Xc"
BASE = "https://api.upbit.test"
ORDERS, ORDER, TEST, CHANCE = (f"{BASE}/v1/{path}" for path in ("orders", "order", "orders/test", "orders/chance"))
# The partition that closed most recently: live orders are only placed for it.
DAY = (utc_now_naive() - timedelta(days=1)).strftime("%Y-%m-%d")
BUY = {"market": "KRW-BTC", "side": "buy", "price": 148_000_000.0, "krw_amount": 1_000_000.0, "reason": "vcp"}
SELL = {"market": "KRW-BTC", "side": "sell", "price": 149_000_000.0, "volume": 0.005, "reason": "take profit"}
LOG = logging.getLogger("test_upbit_broker")


def body(name: str, identifier: str = "") -> dict:
    data = json.loads((FIXTURES / name).read_text(encoding="utf-8"))
    if "identifier" in data:
        data["identifier"] = identifier
    return data


BID_UUID = "9ca023a5-851b-4fec-9f0a-48cd83c2eaae"  # the uuid in order_created/done_bid.json


def by(**params: str) -> list:
    return [matchers.query_param_matcher(params)]


def live_ledger(path: Path, krw: float = 10_000_000.0) -> TradingLedger:
    """A live ledger whose opening balance a reconciliation took from the account."""
    ledger = TradingLedger(url=f"sqlite:///{path}", mode="live")
    opening = Adjustment("opening:KRW", "KRW", krw, "opening balance: /v1/accounts", explained=True)
    ledger.record_reconciliation(DAY, pd.Timestamp(utc_now_naive()), [opening])
    return ledger


@pytest.fixture
def ledger(tmp_path: Path) -> TradingLedger:
    return live_ledger(tmp_path / "ledger.sqlite")


@pytest.fixture
def upbit():
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        mock.add(responses.GET, CHANCE, json=body("chance_krw_btc.json"), match=by(market="KRW-BTC"))
        mock.add(responses.POST, TEST, json=body("order_test_bid.json"), status=201)
        yield mock


def broker(ledger: TradingLedger, **overrides) -> UpbitBroker:
    # No account behind these replayed answers: reconciliation has its own tests.
    config = dict(
        access_key=ACCESS, secret_key=SECRET, live_confirm="yes", base_url=BASE, backoff_base_s=0.0,
        reconcile_account=False,
    )  # fmt: skip
    return UpbitBroker(
        ledger=ledger,
        **{**config, "poll_interval_s": 0.0, "max_retries": 2, "max_signal_age_hours": 48.0, **overrides},
    )


def calls(mock: responses.RequestsMock, method: str, url: str) -> list:
    return [c for c in mock.calls if c.request.method == method and c.request.url.split("?")[0] == url]


def run(ledger: TradingLedger, *signals: dict, **overrides) -> pd.DataFrame:
    return broker(ledger, **overrides).execute(pd.DataFrame(list(signals)), DAY, LOG)


BUY_ID = identifier_for_signal(DAY, BUY)


def test_a_buy_is_signed_carries_its_identifier_and_is_booked(upbit, ledger) -> None:
    upbit.add(responses.POST, ORDERS, json=body("order_created_bid.json", BUY_ID), status=201)
    upbit.add(responses.GET, ORDER, json=body("order_done_bid.json", BUY_ID), match=by(uuid=BID_UUID))
    row = run(ledger, BUY).iloc[0]
    assert (row["status"], row["identifier"]) == (t.DONE, BUY_ID)
    assert row["volume"] == pytest.approx(0.00671812)
    assert row["krw_value"] == pytest.approx(999_994.88012)
    assert row["fee"] == pytest.approx(499.99744006)
    assert ledger.cash_krw(None) == pytest.approx(10_000_000 - 999_994.88012 - 499.99744006)

    [sent] = calls(upbit, "POST", ORDERS)
    order = json.loads(sent.request.body)
    assert order == {"market": "KRW-BTC", "side": "bid", "ord_type": "price", "price": "1000000", "identifier": BUY_ID}
    claims = jwt.decode(sent.request.headers["Authorization"].removeprefix("Bearer "), SECRET, algorithms=["HS256"])
    assert claims["access_key"] == ACCESS
    assert claims["query_hash"] == hashlib.sha512(query_string(order).encode()).hexdigest()
    [test] = calls(upbit, "POST", TEST)
    assert "identifier" not in json.loads(test.request.body)  # the pre-flight must not spend it


def test_a_sell_is_a_market_order_by_volume(upbit, ledger) -> None:
    held = identifier_for_signal("2020-01-01", BUY)
    seed = dict(market="KRW-BTC", side="buy", broker="upbit", ref_price=None, krw_amount=1e6, volume=None)
    ledger.record_intent(held, partition_key="2020-01-01", reason="an earlier buy", **seed)
    ledger.record_fill(held, price=147_250_000.0, volume=0.005, fee=368.1, executed_at=pd.Timestamp("2020-01-02"))
    sell_id = identifier_for_signal(DAY, SELL)
    upbit.add(responses.POST, ORDERS, json=body("order_created_ask.json", sell_id), status=201)
    upbit.add(responses.GET, ORDER, json=body("order_done_ask.json", sell_id))
    row = run(ledger, SELL).iloc[0]
    assert json.loads(calls(upbit, "POST", ORDERS)[0].request.body)["ord_type"] == "market"
    assert (row["status"], row["price"], row["fee"]) == (t.DONE, 149_000_000.0, 372.5)
    assert ledger.open_positions(None).empty


@pytest.mark.parametrize("lost", [requests.exceptions.ReadTimeout("read timed out"), 502])
def test_accepted_but_unanswered_is_looked_up_and_never_sent_twice(upbit, ledger, lost) -> None:
    answer = {"body": lost} if isinstance(lost, Exception) else {"status": lost, "body": "<html>Bad Gateway</html>"}
    upbit.add(responses.POST, ORDERS, **answer)
    upbit.add(responses.GET, ORDER, json=body("order_done_bid.json", BUY_ID), match=by(identifier=BUY_ID))
    frame = run(ledger, BUY)
    assert frame["status"].tolist() == [t.DONE]
    assert len(calls(upbit, "POST", ORDERS)) == 1


def test_not_found_after_a_timeout_is_resent_once_with_the_same_identifier(upbit, ledger) -> None:
    upbit.add(responses.POST, ORDERS, body=requests.exceptions.ConnectTimeout("connect timed out"))
    upbit.add(responses.POST, ORDERS, json=body("order_created_bid.json", BUY_ID), status=201)
    not_found = body("error_order_not_found.json")
    upbit.add(responses.GET, ORDER, json=not_found, status=404, match=by(identifier=BUY_ID))
    upbit.add(responses.GET, ORDER, json=body("order_done_bid.json", BUY_ID), match=by(uuid=BID_UUID))
    assert run(ledger, BUY)["status"].tolist() == [t.DONE]
    posted = [json.loads(c.request.body)["identifier"] for c in calls(upbit, "POST", ORDERS)]
    assert posted == [BUY_ID, BUY_ID]
    assert len(ledger.cash_history(None)) == 2


@pytest.mark.parametrize(
    ("url", "fixture", "name"),
    [
        (ORDERS, "error_insufficient_funds_bid.json", "insufficient_funds_bid"),
        (TEST, "error_invalid_price_bid.json", "invalid_price_bid"),
    ],
)
def test_refusals_become_rejected_rows_with_upbits_reason(upbit, ledger, caplog, url, fixture, name) -> None:
    upbit.upsert(responses.POST, url, json=body(fixture), status=400)
    # A refused send is looked up before it is booked rejected: Upbit does not know it.
    upbit.add(responses.GET, ORDER, json=body("error_order_not_found.json"), status=404, match=by(identifier=BUY_ID))
    with caplog.at_level(logging.ERROR):
        row = run(ledger, BUY).iloc[0]
    assert row["status"] == t.REJECTED
    assert row["status_reason"].startswith(f"{name}: ")
    assert body(fixture)["error"]["message"] in row["status_reason"]
    assert name in caplog.text
    assert ledger.cash_krw(None) == 10_000_000
    sent = len(calls(upbit, "POST", ORDERS))
    run(ledger, BUY)  # a re-run does not try the spent identifier again
    assert len(calls(upbit, "POST", ORDERS)) == sent == (1 if url == ORDERS else 0)


def test_rate_limits_are_waited_out(upbit, ledger) -> None:
    upbit.add(responses.POST, ORDERS, status=429, body="Too many API requests.")
    upbit.add(responses.POST, ORDERS, json=body("order_created_bid.json", BUY_ID), status=201)
    upbit.add(responses.GET, ORDER, json=body("order_done_bid.json", BUY_ID))
    assert run(ledger, BUY)["status"].tolist() == [t.DONE]
    assert len(calls(upbit, "POST", ORDERS)) == 2


def test_a_run_killed_after_submission_is_finished_by_the_next(upbit, ledger) -> None:
    upbit.add(responses.POST, ORDERS, json=body("order_created_bid.json", BUY_ID), status=201)
    upbit.add(responses.GET, ORDER, body=requests.exceptions.ConnectionError("reset"), match=by(uuid=BID_UUID))
    first = broker(ledger)
    assert first.execute(pd.DataFrame([BUY]), DAY, LOG)["status"].tolist() == [t.SUBMITTED]
    # Not a failed run: the order stays unresolved, the operator is told, the next run resolves it.
    assert [BUY_ID in notice and "left submitted" in notice for notice in first.notices] == [True]
    upbit.add(responses.GET, ORDER, json=body("order_done_bid.json", BUY_ID), match=by(identifier=BUY_ID))
    assert run(ledger, BUY)["status"].tolist() == [t.DONE]
    assert len(calls(upbit, "POST", ORDERS)) == 1


@pytest.mark.parametrize(
    ("overrides", "missing"),
    [
        ({"access_key": ""}, "UPBIT_ACCESS_KEY is not set"),
        ({"secret_key": " "}, "UPBIT_SECRET_KEY"),
        ({"live_confirm": "true"}, "MAKENAIDE_LIVE_CONFIRM"),
    ],
)
def test_refuses_without_keys_or_confirmation(ledger, overrides, missing) -> None:
    with responses.RequestsMock() as no_calls_allowed:
        with pytest.raises(LiveTradingRefused, match=missing) as refused:
            run(ledger, BUY, **overrides)
        with pytest.raises(LiveTradingRefused):
            broker(ledger, **overrides).setup_for_execution(dg.build_init_resource_context())
        assert not no_calls_allowed.calls
    assert SECRET not in str(refused.value) and ACCESS not in str(refused.value)


def test_stale_partitions_are_not_traded_live(ledger) -> None:
    with responses.RequestsMock():
        frame = broker(ledger).execute(pd.DataFrame([BUY]), "2023-07-03", LOG)
    assert frame["status_reason"].iloc[0].startswith("stale_signal")


def test_no_secret_in_logs_errors_or_reprs(upbit, ledger, caplog) -> None:
    upbit.add(responses.POST, ORDERS, body=requests.exceptions.ReadTimeout("read timed out"))
    upbit.add(responses.GET, ORDER, status=500, body="oops", match=by(identifier=BUY_ID))
    live = broker(ledger)
    with caplog.at_level(logging.DEBUG):
        assert live.execute(pd.DataFrame([BUY]), DAY, LOG)["status"].tolist() == [t.PENDING]
    tokens = [c.request.headers["Authorization"] for c in upbit.calls]
    texts = [caplog.text, *live.notices, repr(live), str(ledger.order(BUY_ID))]
    assert any("cannot look it up" in notice for notice in live.notices)
    for secret in (SECRET, ACCESS, *tokens):
        assert all(secret not in text for text in texts)


def test_a_key_problem_at_pre_flight_stops_the_run_before_any_order(upbit, ledger) -> None:
    denied = {"error": {"name": "out_of_scope", "message": "허용되지 않은 기능입니다."}}
    upbit.upsert(responses.POST, TEST, json=denied, status=401)
    with pytest.raises(LiveTradingRefused, match="out_of_scope"):
        run(ledger, BUY, {**BUY, "market": "KRW-ETH"})
    assert ledger.order(BUY_ID)["status"] == t.PENDING  # nothing was sent: the next run may send it
    assert not calls(upbit, "POST", ORDERS)

"""UpbitExchange through the shared retry loop: GETs are retried, an order POST only after a 429.

Upbit's answers are served by `responses`; waits go to a recording `sleep`, never a real one.
"""

import json
from pathlib import Path

import jwt
import pytest
import requests
import responses

from makenaide_assets.resources.upbit_exchange import UpbitApiError, UpbitExchange, UpbitUnavailable
from makenaide_assets.resources.upbit_retry import RetryPolicy

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "upbit_exchange"
BASE = "https://api.upbit.test"
ORDERS, ORDER = f"{BASE}/v1/orders", f"{BASE}/v1/order"
SECRET = "sec-Qw3Er5Ty7Ui9Op1As2Df4Gh6Jk8Lz0Xc"
BODY = {"market": "KRW-BTC", "side": "bid", "ord_type": "price", "price": "1000000", "identifier": "mkn-x"}
TIMEOUT = requests.exceptions.ReadTimeout("read timed out")


def fixture(name: str) -> dict:
    return json.loads((FIXTURES / name).read_text(encoding="utf-8"))


@pytest.fixture
def upbit():
    with responses.RequestsMock(assert_all_requests_are_fired=True) as mock:
        yield mock


def exchange(sleeps: list[float]) -> UpbitExchange:
    return UpbitExchange(
        access_key="acc",
        secret_key=SECRET,
        base_url=BASE,
        retry=RetryPolicy(max_retries=3, backoff_base_s=0.5, max_backoff_s=8.0),
        sleep=sleeps.append,
        jitter=lambda: 1.0,
    )


def test_a_get_is_retried_through_timeouts_and_5xx_each_time_freshly_signed(upbit) -> None:
    upbit.get(ORDER, body=TIMEOUT)
    upbit.get(ORDER, status=502, body="<html>Bad Gateway</html>")
    upbit.get(ORDER, json=fixture("order_done_bid.json"))
    sleeps: list[float] = []
    assert exchange(sleeps).get("/v1/order", {"identifier": "mkn-x"}) == fixture("order_done_bid.json")
    assert sleeps == [0.5, 1.0]
    nonces = [
        jwt.decode(c.request.headers["Authorization"].removeprefix("Bearer "), SECRET, algorithms=["HS256"])["nonce"]
        for c in upbit.calls
    ]
    assert len(set(nonces)) == 3  # Upbit refuses a nonce it has seen


@pytest.mark.parametrize(
    ("lost", "said"), [({"body": TIMEOUT}, r"no answer \(ReadTimeout\)"), ({"status": 502}, "HTTP 502")]
)
def test_an_order_post_without_a_trustworthy_answer_is_never_resent(upbit, lost: dict, said: str) -> None:
    upbit.post(ORDERS, **lost)
    sleeps: list[float] = []
    with pytest.raises(UpbitUnavailable, match=rf"POST /v1/orders: {said}.* after 1 attempt$"):
        exchange(sleeps).post("/v1/orders", BODY)
    assert len(upbit.calls) == 1 and sleeps == []


def test_an_order_post_is_resent_after_a_429_upbit_did_not_process(upbit) -> None:
    upbit.post(ORDERS, status=429, body="Too many API requests.")
    upbit.post(ORDERS, json=fixture("order_created_bid.json"), status=201)
    sleeps: list[float] = []
    assert exchange(sleeps).post("/v1/orders", BODY)["state"] == "wait"
    assert len(upbit.calls) == 2 and sleeps == [0.5]


def test_a_rate_limit_that_does_not_clear_ends_after_the_bounded_attempts(upbit) -> None:
    for _ in range(4):
        upbit.get(ORDER, status=429, body="Too many API requests.")
    sleeps: list[float] = []
    with pytest.raises(UpbitUnavailable, match=r"rate limited \(HTTP 429\) after 4 attempts"):
        exchange(sleeps).get("/v1/order", {"identifier": "mkn-x"})
    assert sleeps == [0.5, 1.0, 2.0]


@pytest.mark.parametrize("method", ["GET", "POST"])
def test_418_stops_at_once(upbit, method: str) -> None:
    upbit.add(method, ORDER, status=418, json={"error": {"name": "blocked", "message": "IP blocked"}})
    sleeps: list[float] = []
    client = exchange(sleeps)
    call = client.get if method == "GET" else client.post
    with pytest.raises(UpbitUnavailable, match="blocked this IP"):
        call("/v1/order", {"uuid": "u"})
    assert sleeps == []
    assert len(upbit.calls) == 1


def test_a_refusal_carries_upbits_error_and_is_not_retried(upbit) -> None:
    upbit.post(ORDERS, status=400, json=fixture("error_insufficient_funds_bid.json"))
    with pytest.raises(UpbitApiError) as refused:
        exchange([]).post("/v1/orders", BODY)
    expected = fixture("error_insufficient_funds_bid.json")["error"]
    assert (refused.value.status, refused.value.name, refused.value.message) == (
        400,
        expected["name"],
        expected["message"],
    )
    assert len(upbit.calls) == 1

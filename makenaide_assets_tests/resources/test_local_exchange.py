"""The local Upbit exchange (exchange_book, exchange_auth) behind the replay server, through the real client.

Every Upbit call goes through `UpbitExchange`, the client the live broker uses. Expected prices come
from the recording itself: `ReplayMarketData.first_price_after` (the paper broker's reading of the
same files) for market orders, the 4-hour candles read here for limit orders; none is invented.
Rate limits are driven by the server's clock (`SteppingClock`: each request opens a new second).
"""

import base64
import hashlib
import hmac
import json
import uuid
from collections.abc import Callable, Iterator
from decimal import ROUND_DOWN, Decimal
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlencode

import pandas as pd
import pytest
import requests

from makenaide_assets.resources.market_data import ReplayMarketData
from makenaide_assets.resources.upbit_exchange import UpbitApiError, UpbitExchange, UpbitUnavailable
from makenaide_assets.resources.upbit_retry import RetryPolicy
from makenaide_assets.strategy.ticks import round_price_to_tick
from makenaide_assets.testing.exchange_book import FAULT_KINDS, InjectedFault, LocalExchange
from makenaide_assets.testing.upbit_answers import ReplayAnswers
from makenaide_assets.testing.upbit_server import UpbitServer, build_parser, server_from_args

ACCESS = "local-access-key-0123456789abcdefghijklm"  # 40 characters, as Upbit's keys
SECRET = "local-secret-key-0123456789abcdefghijklm"
NOW = "2023-12-20T00:05:00Z"  # five minutes after partition 2023-12-19 closed
FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "upbit_exchange"
FEE = Decimal("0.0005")
KRW = Decimal(10_000_000)


class SteppingClock:
    """The rate limiter's clock: one second per reading, so no test meets a 429 by accident."""

    def __init__(self, step: float = 1.0) -> None:
        self.now, self.step = 1_000.0, step

    def __call__(self) -> float:
        self.now += self.step
        return self.now


ServerFactory = Callable[..., UpbitServer]


@pytest.fixture
def make_server(sample_dir: Path) -> Iterator[ServerFactory]:
    running: list[UpbitServer] = []

    def make(now: str = NOW, clock: Callable[[], float] | None = None, **exchange: Any) -> UpbitServer:
        server = UpbitServer(
            sample_dir, now, clock=clock or SteppingClock(), exchange=LocalExchange(ACCESS, SECRET, **exchange)
        )
        running.append(server.start())
        return server

    yield make
    for server in running:
        server.stop()


@pytest.fixture
def server(make_server: ServerFactory) -> UpbitServer:
    return make_server()


@pytest.fixture
def replay(sample_dir: Path) -> ReplayMarketData:
    return ReplayMarketData(replay_dir=str(sample_dir))


def client(server: UpbitServer, *, access: str = ACCESS, secret: str = SECRET, retries: int = 0) -> UpbitExchange:
    return UpbitExchange(
        access, secret, base_url=server.url, retry=RetryPolicy(retries, 0.0, 0.0), sleep=lambda _: None
    )


def refusal(call: Callable[[], Any]) -> tuple[int, str]:
    with pytest.raises(UpbitApiError) as caught:
        call()
    return caught.value.status, caught.value.name


def balances(exchange: UpbitExchange) -> dict[str, dict[str, Any]]:
    return {row["currency"]: row for row in exchange.get("/v1/accounts", {})}


def recorded_answer(name: str) -> Any:
    return json.loads((FIXTURES / name).read_text(encoding="utf-8"))


def floor8(value: Decimal) -> Decimal:
    return value.quantize(Decimal("0.00000001"), rounding=ROUND_DOWN)


def buy(exchange: UpbitExchange, market: str, krw: int, identifier: str) -> dict[str, Any]:
    body = {"market": market, "side": "bid", "ord_type": "price", "price": str(krw), "identifier": identifier}
    return exchange.post("/v1/orders", body)


def kst(utc: str) -> str:
    return (pd.Timestamp(utc) + pd.Timedelta(hours=9)).strftime("%Y-%m-%dT%H:%M:%S+09:00")


# ---- accounts, chance ----


def test_accounts_and_chance_answer_in_upbits_shapes(server: UpbitServer) -> None:
    upbit = client(server)
    assert upbit.get("/v1/accounts", {}) == [
        {"currency": "KRW", "balance": "10000000", "locked": "0", "avg_buy_price": "0",
         "avg_buy_price_modified": True, "unit_currency": "KRW"},
    ]  # fmt: skip
    chance = upbit.get("/v1/orders/chance", {"market": "KRW-BTC"})
    recorded = recorded_answer("chance_krw_btc.json")
    assert set(chance) == set(recorded)
    assert set(chance["market"]) == set(recorded["market"]) - {"order_types"}  # deprecated by Upbit, not served
    assert set(chance["bid_account"]) == set(recorded["bid_account"])
    assert (chance["bid_fee"], chance["ask_fee"], chance["market"]["state"]) == ("0.0005", "0.0005", "active")
    assert chance["market"]["bid"] == {"currency": "KRW", "min_total": "5000"}
    assert chance["market"]["ask"] == {"currency": "BTC", "min_total": "5000"}
    assert chance["market"]["max_total"] == "1000000000"
    assert chance["bid_account"]["balance"] == "10000000" and chance["ask_account"]["balance"] == "0"


def test_unknown_and_not_yet_listed_markets_are_refused(server: UpbitServer) -> None:
    upbit = client(server)
    assert refusal(lambda: upbit.get("/v1/orders/chance", {"market": "KRW-NOPE"})) == (400, "validation_error")
    server.set_now("2023-05-01T00:05:00Z")  # KRW-GRT's first recorded candle is 2023-06-01
    assert refusal(lambda: upbit.get("/v1/orders/chance", {"market": "KRW-GRT"})) == (400, "validation_error")
    assert refusal(lambda: buy(upbit, "KRW-GRT", 10_000, "grt-early")) == (400, "validation_error")


# ---- market orders ----


@pytest.mark.parametrize(
    ("market", "now", "candle"),
    [
        ("KRW-BTC", "2023-12-20T00:05:00Z", "2023-12-20T04:00:00"),  # the next 4-hour candle's open
        ("KRW-BTC", "2023-12-20T00:00:00Z", "2023-12-20T00:00:00"),  # exactly at a start: that candle's open
        ("KRW-SAND", "2023-12-20T00:05:00Z", "2023-12-21T00:00:00"),  # no 4-hour recording: the next day's open
    ],
)
def test_market_buy_by_price_fills_at_the_next_recorded_open_with_the_fee(
    make_server: ServerFactory, replay: ReplayMarketData, market: str, now: str, candle: str
) -> None:
    server = make_server(now)
    upbit = client(server)
    accepted = buy(upbit, market, 1_000_000, "buy-1")
    assert set(recorded_answer("order_created_bid.json")) <= set(accepted)
    assert (accepted["state"], accepted["locked"], accepted["reserved_fee"]) == ("wait", "1000500", "500")
    at, recorded = replay.first_price_after(market, pd.Timestamp(now[:-1]))
    assert at == pd.Timestamp(candle)
    price = Decimal(str(recorded))
    volume = floor8(Decimal(1_000_000) / price)
    funds, fee = volume * price, volume * price * FEE

    order = upbit.get("/v1/order", {"identifier": "buy-1"})
    assert order["uuid"] == accepted["uuid"]
    assert order["state"] == ("done" if funds == 1_000_000 else "cancel")  # dust returned → cancel
    assert [(Decimal(t["price"]), Decimal(t["volume"]), Decimal(t["funds"])) for t in order["trades"]] == [
        (price, volume, funds)
    ]
    assert order["trades"][0]["created_at"] == kst(now[:-1]) and order["trades"][0]["side"] == "bid"
    assert Decimal(order["executed_volume"]) == volume and Decimal(order["paid_fee"]) == fee
    assert Decimal(order["remaining_fee"]) == Decimal(500) - fee and order["locked"] == "0"
    held = balances(upbit)
    assert Decimal(held["KRW"]["balance"]) == KRW - funds - fee and held["KRW"]["locked"] == "0"
    coin = market.split("-")[1]
    assert Decimal(held[coin]["balance"]) == volume and Decimal(held[coin]["avg_buy_price"]) == price


def test_market_sell_by_volume_fills_at_the_open_after_the_clock_and_pays_the_fee(
    server: UpbitServer, replay: ReplayMarketData
) -> None:
    upbit = client(server)
    buy(upbit, "KRW-ETH", 2_000_000, "eth-in")
    bought = Decimal(upbit.get("/v1/order", {"identifier": "eth-in"})["executed_volume"])
    bought_for = Decimal(upbit.get("/v1/order", {"identifier": "eth-in"})["trades"][0]["funds"])
    server.set_now("2023-12-22T00:05:00Z")
    body = {"market": "KRW-ETH", "side": "ask", "ord_type": "market", "volume": str(bought), "identifier": "eth-out"}
    accepted = upbit.post("/v1/orders", body)
    assert set(recorded_answer("order_created_ask.json")) <= set(accepted)
    assert (accepted["state"], accepted["price"], accepted["locked"]) == ("wait", None, str(bought))
    sold = upbit.get("/v1/order", {"uuid": accepted["uuid"]})
    _, recorded = replay.first_price_after("KRW-ETH", pd.Timestamp("2023-12-22T00:05"))
    price = Decimal(str(recorded))
    assert sold["state"] == "done" and sold["trades"][0]["side"] == "ask"
    assert Decimal(sold["trades"][0]["price"]) == price and Decimal(sold["executed_volume"]) == bought
    funds = bought * price
    assert Decimal(sold["paid_fee"]) == funds * FEE
    held = balances(upbit)
    assert set(held) == {"KRW"}  # the coin row goes when nothing is held, as at Upbit
    assert Decimal(held["KRW"]["balance"]) == KRW - bought_for * (1 + FEE) + funds * (1 - FEE)


def test_no_recorded_price_after_the_clock_refuses_the_market_order(make_server: ServerFactory) -> None:
    upbit = client(make_server("2024-01-01T00:05:00Z"))  # the recording ends with 2023-12-31
    assert refusal(lambda: buy(upbit, "KRW-BTC", 10_000, "late")) == (400, "no_recorded_price")


# ---- limit orders and cancels ----


def test_limit_bid_rests_with_its_funds_locked_then_fills_when_the_clock_passes_a_crossing_candle(
    make_server: ServerFactory, sample_dir: Path
) -> None:
    now = "2023-12-10T00:05:00"  # a falling market: the two days' low comes days after the order
    candles = pd.read_csv(sample_dir / "candles" / "minute240" / "KRW-BTC.csv.gz")
    later = candles[candles["candle_date_time_utc"] >= now].reset_index(drop=True)
    price = Decimal(str(round_price_to_tick(later["low_price"].iloc[:12].min(), "sell")))
    crossing = later[later["low_price"] <= float(price)].iloc[0]
    start = pd.Timestamp(crossing["candle_date_time_utc"])
    assert start > pd.Timestamp(now) + pd.Timedelta(days=1)  # it rests for several candles first

    server = make_server(now + "Z")
    upbit = client(server)
    volume, total = Decimal("0.01"), price * Decimal("0.01")
    body = {"market": "KRW-BTC", "side": "bid", "ord_type": "limit", "price": str(price), "volume": "0.01"}
    placed = upbit.post("/v1/orders", {**body, "identifier": "limit-1"})
    assert placed["state"] == "wait" and Decimal(placed["locked"]) == total * (1 + FEE)
    held = balances(upbit)["KRW"]
    assert Decimal(held["locked"]) == total * (1 + FEE) and Decimal(held["balance"]) == KRW - total * (1 + FEE)

    server.set_now(start + pd.Timedelta(hours=3, minutes=59))  # the crossing candle is still open
    assert upbit.get("/v1/order", {"identifier": "limit-1"})["state"] == "wait"
    requests.post(server.url + "/_server/now", params={"now": f"{start + pd.Timedelta(hours=4):%Y-%m-%dT%H:%M:%S}Z"})
    filled = upbit.get("/v1/order", {"identifier": "limit-1"})
    assert filled["state"] == "done" and filled["executed_volume"] == "0.01" and filled["locked"] == "0"
    assert [(Decimal(t["price"]), t["created_at"]) for t in filled["trades"]] == [(price, kst(str(start)))]
    assert Decimal(filled["paid_fee"]) == total * FEE and Decimal(filled["remaining_fee"]) == 0
    held = balances(upbit)
    assert Decimal(held["KRW"]["balance"]) == KRW - total * (1 + FEE) and held["KRW"]["locked"] == "0"
    assert Decimal(held["BTC"]["balance"]) == volume


def test_delete_cancels_a_waiting_order_releases_its_funds_and_nothing_else(server: UpbitServer) -> None:
    upbit = client(server)
    buy(upbit, "KRW-BTC", 1_000_000, "btc-in")
    coins = balances(upbit)["BTC"]["balance"]
    ask = {"market": "KRW-BTC", "side": "ask", "ord_type": "limit", "price": "99000000", "volume": coins}
    placed = upbit.post("/v1/orders", {**ask, "identifier": "ask-high"})
    assert balances(upbit)["BTC"]["locked"] == coins and balances(upbit)["BTC"]["balance"] == "0"
    # The client has no public DELETE (the broker never cancels); its signed request path is used as is.
    cancelled = upbit._request("DELETE", "/v1/order", {"uuid": placed["uuid"]})
    assert cancelled["uuid"] == placed["uuid"] and cancelled["state"] == "wait"  # accepted, as Upbit answers
    assert upbit.get("/v1/order", {"identifier": "ask-high"})["state"] == "cancel"
    assert balances(upbit)["BTC"]["balance"] == coins and balances(upbit)["BTC"]["locked"] == "0"
    assert refusal(lambda: upbit._request("DELETE", "/v1/order", {"identifier": "ask-high"})) == (
        404,
        "order_not_found",
    )
    assert refusal(lambda: upbit._request("DELETE", "/v1/order", {"identifier": "btc-in"})) == (404, "order_not_found")
    assert refusal(lambda: upbit._request("DELETE", "/v1/order", {"uuid": str(uuid.uuid4())})) == (
        404,
        "order_not_found",
    )


# ---- identifiers, lookups, test orders, refusals ----


def test_an_identifier_is_spent_forever_even_by_a_refused_or_cancelled_order(server: UpbitServer) -> None:
    upbit = client(server)
    buy(upbit, "KRW-BTC", 10_000, "used")
    assert refusal(lambda: buy(upbit, "KRW-ETH", 10_000, "used")) == (400, "duplicated_identifier")
    assert refusal(lambda: buy(upbit, "KRW-BTC", 20_000_000, "failed")) == (400, "insufficient_funds_bid")
    assert refusal(lambda: buy(upbit, "KRW-BTC", 10_000, "failed")) == (400, "duplicated_identifier")
    assert refusal(lambda: upbit.get("/v1/order", {"identifier": "failed"})) == (404, "order_not_found")
    limit = {"market": "KRW-BTC", "side": "bid", "ord_type": "limit", "price": "1000000", "volume": "0.01"}
    upbit.post("/v1/orders", {**limit, "identifier": "cancelled"})
    upbit._request("DELETE", "/v1/order", {"identifier": "cancelled"})
    assert refusal(lambda: upbit.post("/v1/orders", {**limit, "identifier": "cancelled"})) == (
        400,
        "duplicated_identifier",
    )
    test_body = {"market": "KRW-BTC", "side": "bid", "ord_type": "price", "price": "10000"}
    assert refusal(lambda: upbit.post("/v1/orders/test", {**test_body, "identifier": "used"})) == (
        400,
        "duplicated_identifier",
    )
    upbit.post("/v1/orders/test", {**test_body, "identifier": "tested"})  # a test order spends nothing
    assert buy(upbit, "KRW-BTC", 10_000, "tested")["identifier"] == "tested"


def test_an_order_is_found_by_uuid_or_identifier_and_an_unknown_one_is_404(server: UpbitServer) -> None:
    upbit = client(server)
    placed = buy(upbit, "KRW-DOGE", 50_000, "doge-1")
    by_uuid = upbit.get("/v1/order", {"uuid": placed["uuid"]})
    assert by_uuid == upbit.get("/v1/order", {"identifier": "doge-1"})
    assert set(recorded_answer("order_done_bid.json")) <= set(by_uuid)
    assert set(recorded_answer("order_done_bid.json")["trades"][0]) - {"trend"} == set(by_uuid["trades"][0])
    with pytest.raises(UpbitApiError) as caught:
        upbit.get("/v1/order", {"uuid": str(uuid.uuid4())})
    assert (caught.value.status, caught.value.name, caught.value.message) == (
        404,
        *recorded_answer("error_order_not_found.json")["error"].values(),
    )


def test_a_test_order_is_checked_like_a_real_one_but_executes_and_records_nothing(server: UpbitServer) -> None:
    upbit = client(server)
    body = {"market": "KRW-BTC", "side": "bid", "ord_type": "price", "price": "1000000"}
    answer = upbit.post("/v1/orders/test", body)
    assert set(recorded_answer("order_test_bid.json")) <= set(answer) and "identifier" not in answer
    assert (answer["state"], answer["locked"], answer["trades_count"]) == ("wait", "1000500", 0)
    assert refusal(lambda: upbit.get("/v1/order", {"uuid": answer["uuid"]})) == (404, "order_not_found")
    assert refusal(lambda: upbit.post("/v1/orders/test", {**body, "price": "4999"})) == (400, "under_min_total_bid")
    assert balances(upbit)["KRW"]["balance"] == "10000000"
    assert server.exchange is not None and server.exchange.dump()["orders"] == []


@pytest.mark.parametrize(
    ("body", "status", "name"),
    [
        ({"side": "bid", "ord_type": "price", "price": "4999"}, 400, "under_min_total_bid"),
        ({"side": "bid", "ord_type": "price", "price": "20000000"}, 400, "insufficient_funds_bid"),
        ({"side": "ask", "ord_type": "market", "volume": "0.1"}, 400, "insufficient_funds_ask"),
        ({"side": "ask", "ord_type": "limit", "price": "57000000", "volume": "0.00001"}, 400, "under_min_total_ask"),
        ({"side": "bid", "ord_type": "limit", "price": "56101500", "volume": "0.001"}, 400, "invalid_price_bid"),
        ({"side": "bid", "ord_type": "price", "price": "abc"}, 400, "validation_error"),
        ({"side": "bid", "ord_type": "price", "price": "-5000"}, 400, "validation_error"),
        ({"side": "bid", "ord_type": "limit", "price": "57000000", "volume": "0.000000001"}, 400, "validation_error"),
        ({"side": "buy", "ord_type": "price", "price": "10000"}, 400, "validation_error"),
        ({"side": "bid", "ord_type": "market", "volume": "0.01"}, 400, "create_bid_error"),
        ({"side": "ask", "ord_type": "market", "volume": "0.01", "price": "57000000"}, 400, "create_ask_error"),
        ({"market": "KRW-NOPE", "side": "bid", "ord_type": "price", "price": "10000"}, 400, "validation_error"),
    ],
)
def test_refusals_carry_upbits_status_and_name(server: UpbitServer, body: dict, status: int, name: str) -> None:
    upbit = client(server)
    assert refusal(lambda: upbit.post("/v1/orders", {"market": "KRW-BTC", **body})) == (status, name)
    krw = balances(upbit)["KRW"]
    assert (krw["balance"], krw["locked"]) == ("10000000", "0")


def test_refusal_messages_are_upbits(server: UpbitServer) -> None:
    upbit = client(server)
    for body, recorded in (
        ({"side": "bid", "ord_type": "price", "price": "20000000"}, "error_insufficient_funds_bid.json"),
        ({"side": "bid", "ord_type": "limit", "price": "56101500", "volume": "0.001"}, "error_invalid_price_bid.json"),
    ):
        with pytest.raises(UpbitApiError) as caught:
            upbit.post("/v1/orders", {"market": "KRW-BTC", **body})
        assert {"name": caught.value.name, "message": caught.value.message} == recorded_answer(recorded)["error"]


# ---- JWT ----


def token(payload: dict[str, Any], *, secret: str = SECRET, alg: str = "HS256") -> str:
    """A JWT signed by hand, independent of PyJWT (which the client uses)."""

    def part(data: bytes) -> str:
        return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")

    signing = part(json.dumps({"alg": alg, "typ": "JWT"}).encode()) + "." + part(json.dumps(payload).encode())
    digest = hashlib.sha256 if alg == "HS256" else hashlib.sha512
    return signing + "." + part(hmac.new(secret.encode(), signing.encode(), digest).digest())


def claims(query: str | None = None, **extra: Any) -> dict[str, Any]:
    payload: dict[str, Any] = {"access_key": ACCESS, "nonce": str(uuid.uuid4())}
    if query is not None:
        payload |= {"query_hash": hashlib.sha512(query.encode()).hexdigest(), "query_hash_alg": "SHA512"}
    return payload | extra


def signed_get(server: UpbitServer, path: str, query: str, jwt: str) -> requests.Response:
    return requests.get(f"{server.url}{path}?{query}", headers={"Authorization": f"Bearer {jwt}"}, timeout=10)


def test_a_wrong_secret_or_access_key_is_refused_with_401(server: UpbitServer) -> None:
    assert refusal(lambda: client(server, secret="x" * 40).get("/v1/accounts", {})) == (401, "jwt_verification")
    assert refusal(lambda: client(server, access="y" * 40).get("/v1/accounts", {})) == (401, "invalid_access_key")
    missing = requests.get(server.url + "/v1/accounts", timeout=10)
    assert (missing.status_code, missing.json()["error"]["name"]) == (401, "jwt_verification")


def test_a_nonce_is_accepted_once_and_hs512_is_accepted(server: UpbitServer) -> None:
    once = token(claims("market=KRW-BTC"))
    assert signed_get(server, "/v1/orders/chance", "market=KRW-BTC", once).status_code == 200
    again = signed_get(server, "/v1/orders/chance", "market=KRW-BTC", once)
    assert (again.status_code, again.json()["error"]["name"]) == (401, "nonce_used")
    hs512 = token(claims("market=KRW-BTC"), alg="HS512")
    assert signed_get(server, "/v1/orders/chance", "market=KRW-BTC", hs512).status_code == 200


def test_a_query_hash_that_does_not_match_the_parameters_is_refused(server: UpbitServer) -> None:
    for jwt in (token(claims("market=KRW-ETH")), token(claims())):  # another query; no hash at all
        wrong = signed_get(server, "/v1/orders/chance", "market=KRW-BTC", jwt)
        assert (wrong.status_code, wrong.json()["error"]["name"]) == (401, "invalid_query_payload")
    body = {"market": "KRW-BTC", "side": "bid", "ord_type": "price", "price": "10000"}
    reordered = unquote(urlencode(dict(reversed(body.items()))))  # the hash covers the keys in sent order
    for hashed, status in ((reordered, 401), (unquote(urlencode(body)), 201)):
        answer = requests.post(
            server.url + "/v1/orders/test", json=body, headers={"Authorization": f"Bearer {token(claims(hashed))}"}
        )
        assert answer.status_code == status


def test_order_creation_has_its_own_rate_limit_group_of_eight_per_second(make_server: ServerFactory) -> None:
    server = make_server(clock=SteppingClock(step=0.0))  # the server's second never ends
    body = {"market": "KRW-BTC", "side": "bid", "ord_type": "price", "price": "10000"}
    codes = []
    for _ in range(9):
        answer = requests.post(
            server.url + "/v1/orders/test",
            json=body,
            headers={"Authorization": f"Bearer {token(claims(unquote(urlencode(body))))}"},
        )
        codes.append(answer.status_code)
    assert codes == [201] * 8 + [429] and answer.headers["Remaining-Req"].startswith("group=order;")
    assert signed_get(server, "/v1/accounts", "", token(claims())).status_code == 200  # the default group
    assert server.stats()["exchange"]["by_group"] == {"order": 9, "default": 1}


# ---- faults ----


def test_accepted_then_timeout_executes_the_order_and_closes_without_an_answer(make_server: ServerFactory) -> None:
    server = make_server(fault_rate=1.0, fault_kinds=["accepted_then_timeout"])
    upbit = client(server)
    with pytest.raises(UpbitUnavailable, match="no answer"):
        buy(upbit, "KRW-BTC", 100_000, "lost-answer")
    found = upbit.get("/v1/order", {"identifier": "lost-answer"})
    assert found["state"] in ("done", "cancel") and Decimal(found["executed_volume"]) > 0
    assert server.stats()["exchange"]["faults_injected"]["accepted_then_timeout"] == 1


@pytest.mark.parametrize(("kind", "seen"), [("server_error", "HTTP 50"), ("ip_blocked", "blocked")])
def test_server_error_and_ip_block_execute_nothing_and_leave_the_identifier_free(
    make_server: ServerFactory, kind: str, seen: str
) -> None:
    server = make_server(fault_rate=1.0, fault_kinds=[kind])
    upbit = client(server, retries=4)  # GETs retry the reads that fail a quarter of the time
    with pytest.raises(UpbitUnavailable, match=seen):
        buy(upbit, "KRW-BTC", 100_000, "never-arrived")
    assert refusal(lambda: upbit.get("/v1/order", {"identifier": "never-arrived"})) == (404, "order_not_found")
    assert balances(upbit)["KRW"]["balance"] == "10000000"
    exchange = server.exchange
    assert exchange is not None and exchange.dump()["faults_injected"][kind] >= 1
    exchange.fault_rate = 0.0  # the broker resends with the same identifier: accepted
    assert buy(upbit, "KRW-BTC", 100_000, "never-arrived")["identifier"] == "never-arrived"


def test_rate_limited_order_is_retried_by_the_client_and_never_executed(make_server: ServerFactory) -> None:
    server = make_server(fault_rate=1.0, fault_kinds=["rate_limited"])
    with pytest.raises(UpbitUnavailable, match="rate limited"):
        buy(client(server, retries=2), "KRW-BTC", 100_000, "throttled")
    exchange = server.exchange
    assert exchange is not None
    assert exchange.faults_injected()["rate_limited"] == 3  # the first try and two retries
    assert exchange.dump()["orders"] == [] and server.stats()["exchange"]["429"] == 0  # faults, not the limiter


def test_stays_wait_answers_and_shows_wait_until_the_clock_moves(
    make_server: ServerFactory, replay: ReplayMarketData
) -> None:
    server = make_server(fault_rate=1.0, fault_kinds=["stays_wait"])
    upbit = client(server)
    assert buy(upbit, "KRW-BTC", 100_000, "held")["state"] == "wait"
    held = upbit.get("/v1/order", {"identifier": "held"})
    assert (held["state"], held["trades"], held["locked"]) == ("wait", [], "100050")
    assert balances(upbit)["KRW"]["locked"] == "100050"
    server.set_now("2023-12-20T09:00:00Z")
    filled = upbit.get("/v1/order", {"identifier": "held"})
    _, price = replay.first_price_after("KRW-BTC", pd.Timestamp("2023-12-20T09:00"))
    assert filled["state"] in ("done", "cancel") and Decimal(filled["trades"][0]["price"]) == Decimal(str(price))
    assert filled["trades"][0]["created_at"] == "2023-12-20T18:00:00+09:00"
    assert balances(upbit)["KRW"]["locked"] == "0"


def test_partial_fill_executes_a_seeded_share_and_returns_the_rest(make_server: ServerFactory) -> None:
    server = make_server(fault_rate=1.0, fault_kinds=["partial_fill"], seed=3)
    upbit = client(server)
    buy(upbit, "KRW-ETH", 1_000_000, "partial")
    order = upbit.get("/v1/order", {"identifier": "partial"})
    funds = sum(Decimal(t["funds"]) for t in order["trades"])
    assert order["state"] == "cancel" and Decimal("0.2") * 1_000_000 <= funds <= Decimal("0.9") * 1_000_000
    held = balances(upbit)["KRW"]
    assert Decimal(held["balance"]) == KRW - funds * (1 + FEE) and held["locked"] == "0"


def test_empty_trades_reports_an_executed_volume_with_no_trades(make_server: ServerFactory) -> None:
    server = make_server(fault_rate=1.0, fault_kinds=["empty_trades"])
    upbit = client(server)
    buy(upbit, "KRW-BTC", 100_000, "no-trades")
    for _ in range(2):
        order = upbit.get("/v1/order", {"identifier": "no-trades"})
        assert order["state"] in ("done", "cancel") and Decimal(order["executed_volume"]) > 0
        assert order["trades"] == []
    assert server.exchange is not None
    assert len(server.exchange.dump()["orders"][0]["trades"]) == 1  # the dump tells the truth
    assert "BTC" in balances(upbit)


def test_reads_fail_a_quarter_of_the_fault_rate_as_5xx_or_429(sample_dir: Path) -> None:
    exchange = LocalExchange(ACCESS, SECRET, fault_rate=1.0, seed=11).attach(
        ReplayAnswers(sample_dir, pd.Timestamp(NOW))
    )
    failed = []
    for _ in range(40):
        try:
            exchange.accounts()
        except InjectedFault as fault:
            failed.append((fault.kind, fault.status))
    assert 4 <= len(failed) <= 20
    assert {kind for kind, _ in failed} <= {"server_error", "rate_limited"}
    assert {status for _, status in failed} <= {429, 500, 503}


def fault_story(sample_dir: Path, seed: int) -> tuple[list[str], dict[str, Any]]:
    exchange = LocalExchange(ACCESS, SECRET, fault_rate=0.5, seed=seed)
    answers = ReplayAnswers(sample_dir, pd.Timestamp(NOW))
    exchange.attach(answers)
    story = []
    for i in range(14):
        body = {"market": "KRW-BTC", "side": "bid", "ord_type": "price", "price": "100000", "identifier": f"o{i}"}
        try:
            story.append(exchange.create_order(body)["state"])
        except InjectedFault as fault:
            story.append(fault.kind)
        if i == 7:
            answers.now = pd.Timestamp("2023-12-21T00:05")
            exchange.settle()
    return story, exchange.dump()


def test_faults_are_deterministic_for_a_seed_and_counted_by_kind(sample_dir: Path) -> None:
    story, dump = fault_story(sample_dir, seed=7)
    assert (story, dump) == fault_story(sample_dir, seed=7)
    assert story != fault_story(sample_dir, seed=8)[0]
    assert set(dump["faults_injected"]) == set(FAULT_KINDS)
    assert sum(dump["faults_injected"].values()) == sum(1 for s in story if s != "wait") + sum(
        1 for order in dump["orders"] if order["fault"] in ("stays_wait", "partial_fill", "empty_trades")
    )


# ---- control: deposits, manual trades, dump, CLI ----


def test_deposits_withdrawals_and_manual_trades_show_in_the_dump(server: UpbitServer, replay: ReplayMarketData) -> None:
    control = server.url + "/_exchange"
    assert requests.post(control + "/deposit", json={"currency": "KRW", "amount": 1_000_000}).json()["balance"] == (
        "11000000"
    )
    assert requests.post(control + "/deposit", json={"currency": "KRW", "amount": -500_000}).status_code == 200
    too_much = requests.post(control + "/deposit", json={"currency": "KRW", "amount": -20_000_000})
    assert too_much.status_code == 400 and too_much.json()["error"]["name"] == "insufficient_funds"
    manual = requests.post(control + "/manual_trade", json={"market": "KRW-ETH", "side": "bid", "krw": 200_000})
    assert manual.status_code == 200 and "identifier" not in manual.json() and len(manual.json()["trades"]) == 1
    exchange = server.exchange
    assert exchange is not None
    sold = exchange.manual_trade("KRW-ETH", "ask", volume=manual.json()["executed_volume"])  # the same, in Python
    assert sold["state"] == "done"

    dump = requests.get(control + "/dump").json()
    assert dump == exchange.dump() and dump["now"] == "2023-12-20T09:05:00+09:00"
    assert [(e["kind"], e["at"]) for e in dump["events"]] == [
        ("deposit", "2023-12-20T09:05:00+09:00"),
        ("withdrawal", "2023-12-20T09:05:00+09:00"),
        ("manual_trade", "2023-12-20T09:05:00+09:00"),
        ("manual_trade", "2023-12-20T09:05:00+09:00"),
    ]
    assert [(o["identifier"], o["side"], o["state"]) for o in dump["orders"]] == [
        (None, "bid", manual.json()["state"]),
        (None, "ask", "done"),
    ]
    keys = {"identifier", "uuid", "market", "side", "ord_type", "state", "executed_volume", "paid_fee", "trades"}
    assert all(keys | {"created_at"} <= set(order) for order in dump["orders"])
    _, price = replay.first_price_after("KRW-ETH", pd.Timestamp(NOW[:-1]))
    assert all(Decimal(o["trades"][0]["price"]) == Decimal(str(price)) for o in dump["orders"])
    assert [a["currency"] for a in dump["accounts"]] == ["KRW"]
    assert set(dump["faults_injected"]) == set(FAULT_KINDS) and not any(dump["faults_injected"].values())


def test_the_cli_builds_an_exchange_on_the_same_clock(sample_dir: Path) -> None:
    args = build_parser().parse_args(
        ["--replay-dir", str(sample_dir), "--now", NOW, "--exchange", "--access-key", ACCESS, "--secret-key", SECRET,
         "--krw", "2500000", "--fault-rate", "0.25", "--seed", "5"]
    )  # fmt: skip
    server = server_from_args(args)
    assert server.exchange is not None and server.exchange.now == server.answers.now
    assert (server.exchange.fault_rate, server.exchange.seed) == (0.25, 5)
    assert server.exchange.dump()["accounts"][0]["balance"] == "2500000"
    server.stop()


# ---- what a reconciliation reads: closed orders, deposits, withdrawals ----


def test_closed_orders_deposits_and_withdrawals_list_what_happened(server: UpbitServer) -> None:
    upbit = client(server)
    exchange = server.exchange
    assert exchange is not None
    exchange.deposit("KRW", 1_000_000)
    exchange.deposit("KRW", -300_000)
    mine = buy(upbit, "KRW-BTC", 100_000, "mine")
    manual = exchange.manual_trade("KRW-ETH", "bid", krw=50_000)
    upbit.post("/v1/orders", {"market": "KRW-BTC", "side": "bid", "ord_type": "limit", "price": "1000000",
                              "volume": "0.01", "identifier": "resting"})  # fmt: skip
    since = int(pd.Timestamp(NOW).value // 1_000_000)  # milliseconds, as Upbit advises
    closed = upbit.get("/v1/orders/closed", {"start_time": since, "limit": 1000})
    assert [(o["uuid"], o.get("identifier")) for o in closed] == [(manual["uuid"], None), (mine["uuid"], "mine")]
    assert all("trades" not in o and Decimal(o["executed_funds"]) > 0 for o in closed)
    only_btc = upbit.get("/v1/orders/closed", {"market": "KRW-BTC", "order_by": "asc"})
    assert [o["uuid"] for o in only_btc] == [mine["uuid"]]
    deposits = upbit.get("/v1/deposits", {"currency": "KRW", "state": "ACCEPTED"})
    withdraws = upbit.get("/v1/withdraws", {"currency": "KRW", "state": "DONE"})
    assert [(d["amount"], d["done_at"]) for d in deposits] == [("1000000", "2023-12-20T09:05:00+09:00")]
    assert [(w["amount"], w["fee"]) for w in withdraws] == [("300000", "0")]
    too_long = {"start_time": since, "end_time": since + 8 * 86_400_000}  # Upbit's window is 7 days at most
    assert refusal(lambda: upbit.get("/v1/orders/closed", too_long)) == (400, "validation_error")


def test_an_iso_time_with_a_raw_plus_fails_the_query_check_as_upbit_warns(server: UpbitServer) -> None:
    upbit = client(server)
    iso = {"start_time": "2023-12-20T00:00:00+00:00"}
    assert refusal(lambda: upbit.get("/v1/orders/closed", iso)) == (401, "invalid_query_payload")
    assert upbit.get("/v1/orders/closed", {"start_time": "2023-12-20T00:00:00Z"}) == []

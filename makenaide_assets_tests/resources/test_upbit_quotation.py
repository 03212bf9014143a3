"""UpbitMarketData against recorded Upbit answers, offline: `responses` serves them to real requests.

The answers in fixtures/upbit_http/ are built from the recordings' real rows by its build_fixtures.py;
error answers (429, 5xx, 418, 404) are written here in Upbit's documented shapes.
"""

import json
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import dagster as dg
import pandas as pd
import pytest
import requests
import responses
from responses import matchers

from makenaide_assets.resources import upbit_quotation
from makenaide_assets.resources.market_data import MarketData, ReplayMarketData
from makenaide_assets.resources.upbit_http import UpbitBanned, UpbitRequestError
from makenaide_assets.resources.upbit_quotation import MarketNotFound, QuoteNotAsOf, UpbitMarketData
from makenaide_assets.settings import SAMPLE_REPLAY_DIR
from makenaide_assets.strategy.calendar import partition_close
from makenaide_assets.strategy.candles import CANDLE_COLUMNS, MalformedMarketData, normalise_candles
from makenaide_assets_tests.fixtures.upbit_http.build_fixtures import (
    FIXTURES,
    LONG_DIR,
    build_fixtures,
    recording,
)

BASE = "http://upbit.test"  # any host: the resource must never assume api.upbit.com
DAYS, H4, TICKER = "/v1/candles/days", "/v1/candles/minutes/240", "/v1/ticker"
CANDLES_LEFT = {"Remaining-Req": "group=candles; min=1800; sec=9"}
CANDLES_NONE_LEFT = {"Remaining-Req": "group=candles; min=1800; sec=0"}
TICKER_LEFT = {"Remaining-Req": "group=ticker; min=1800; sec=9"}
SAMPLE = ReplayMarketData(replay_dir=str(SAMPLE_REPLAY_DIR))
AS_OF = partition_close("2023-12-31")  # 2024-01-01 00:00 UTC


class FakeClock:
    """Records waits instead of sleeping, so throttle and backoff are checked to the millisecond."""

    def __init__(self) -> None:
        self.now = 1_000.0
        self.sleeps: list[float] = []

    def monotonic(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


def live(clock: FakeClock, **config: Any) -> UpbitMarketData:
    market_data = UpbitMarketData(base_url=BASE, **config)
    market_data._clock = clock  # the one test seam: time is injected, never slept
    return market_data


def recorded(rsps: responses.RequestsMock, name: str, base: str = BASE) -> dict:
    answer = json.loads((FIXTURES / f"{name}.json").read_text(encoding="utf-8"))
    rsps.get(
        base + answer["path"],
        json=answer["body"],
        status=answer["status"],
        headers=answer["headers"],
        match=[matchers.query_param_matcher(answer["params"])],
    )
    return answer


def expected(root: Path, interval: str, market: str, as_of: pd.Timestamp, count: int) -> pd.DataFrame:
    frame = normalise_candles(recording(root, interval, market), source="csv")
    closes = frame["candle_date_time_utc"] + (pd.Timedelta(days=1) if interval == "day" else pd.Timedelta(hours=4))
    return frame[closes <= as_of].tail(count).reset_index(drop=True)


def test_fixtures_are_built_from_the_recordings() -> None:
    built = build_fixtures()
    assert sorted(p.stem for p in FIXTURES.glob("*.json")) == sorted(built)
    for name, answer in built.items():
        assert json.loads((FIXTURES / f"{name}.json").read_text(encoding="utf-8")) == answer, name
        assert "Remaining-Req" in answer["headers"]


def test_400_days_page_back_from_as_of_ascending_and_exact() -> None:
    clock = FakeClock()
    with responses.RequestsMock() as rsps:
        recorded(rsps, "days_KRW-BTC_p1")  # to=2024-01-01, 200 candles
        recorded(rsps, "days_KRW-BTC_p2")  # to= the oldest candle of page 1
        frame = live(clock, timeout_s=7).candles("KRW-BTC", "day", AS_OF, 400)
        assert [call.request.req_kwargs["timeout"] for call in rsps.calls] == [7, 7]
    pd.testing.assert_frame_equal(frame, expected(LONG_DIR, "day", "KRW-BTC", AS_OF, 400))
    assert frame["candle_date_time_utc"].is_monotonic_increasing and frame["candle_date_time_utc"].is_unique
    assert frame["candle_date_time_utc"].iloc[-1] == pd.Timestamp("2023-12-31")
    assert clock.sleeps == pytest.approx([0.1])  # the second page waited its turn in the candles group


def test_paging_stops_where_the_listing_begins() -> None:
    with responses.RequestsMock() as rsps:
        recorded(rsps, "days_KRW-GRT_p1")
        recorded(rsps, "days_KRW-GRT_p2")  # asks 50, gets the 14 left
        frame = live(FakeClock()).candles("KRW-GRT", "day", AS_OF, 250)
    pd.testing.assert_frame_equal(frame, expected(SAMPLE_REPLAY_DIR, "day", "KRW-GRT", AS_OF, 250))
    assert len(frame) == 214 and frame["candle_date_time_utc"].iloc[0] == pd.Timestamp("2023-06-01")


def test_no_candles_before_listing_is_an_empty_frame() -> None:
    with responses.RequestsMock() as rsps:
        recorded(rsps, "days_KRW-GRT_before_listing")
        frame = live(FakeClock()).candles("KRW-GRT", "day", pd.Timestamp("2023-05-01"), 5)
    assert frame.empty and list(frame.columns) == CANDLE_COLUMNS


@pytest.mark.parametrize("name", ["minutes240_KRW-ETH", "minutes240_KRW-ETH_with_open_candle"])
def test_a_candle_still_open_at_as_of_is_never_returned(name: str) -> None:
    as_of = pd.Timestamp("2023-12-31T10:30")  # inside the 08:00-12:00 candle
    with responses.RequestsMock() as rsps:
        answer = recorded(rsps, name)  # asked up to 08:00; the second server answers the 08:00 candle anyway
        frame = live(FakeClock()).candles("KRW-ETH", "minute240", as_of, 5)
    assert answer["params"]["to"] == "2023-12-31T08:00:00Z"
    assert frame["candle_date_time_utc"].iloc[-1] == pd.Timestamp("2023-12-31T04:00")
    assert (frame["candle_date_time_utc"] + pd.Timedelta(hours=4) <= as_of).all()
    pd.testing.assert_frame_equal(frame, expected(SAMPLE_REPLAY_DIR, "minute240", "KRW-ETH", as_of, len(frame)))


TRANSIENT = {
    "429": {
        "status": 429,
        "body": "Too many API requests.",
        "headers": {"Remaining-Req": "group=candles; min=1800; sec=0"},
    },
    "500": {"status": 500, "json": {"error": {"name": "server_error", "message": "test"}}, "headers": CANDLES_LEFT},
    "502-html": {"status": 502, "body": "<html>Bad Gateway</html>", "headers": CANDLES_LEFT},
    "timeout": {"body": requests.exceptions.ReadTimeout("read timed out")},
    "connection": {"body": requests.exceptions.ConnectionError("connection reset")},
}


@pytest.mark.parametrize("failure", sorted(TRANSIENT))
def test_a_transient_failure_is_retried_after_a_backoff(failure: str) -> None:
    clock = FakeClock()
    with responses.RequestsMock() as rsps:
        rsps.get(BASE + DAYS, **TRANSIENT[failure])
        recorded(rsps, "days_KRW-ETH_5")
        frame = live(clock, backoff_base_s=0.5).candles("KRW-ETH", "day", AS_OF, 5)
        assert len(rsps.calls) == 2
    pd.testing.assert_frame_equal(frame, expected(SAMPLE_REPLAY_DIR, "day", "KRW-ETH", AS_OF, 5))
    assert 0.25 <= clock.sleeps[0] <= 0.5  # first backoff: jittered within [base/2, base]
    if failure == "429":  # the whole candles group rests for a second, backoff included
        assert sum(clock.sleeps) == pytest.approx(1.0)
    else:
        assert len(clock.sleeps) == 1


def test_418_is_raised_at_once_without_retry() -> None:
    clock = FakeClock()
    with responses.RequestsMock() as rsps:
        rsps.get(BASE + DAYS, status=418, json={"error": {"name": 418, "message": "test"}}, headers=CANDLES_LEFT)
        with pytest.raises(UpbitBanned, match=r"/v1/candles/days for KRW-ETH.*418"):
            live(clock, max_retries=5).candles("KRW-ETH", "day", AS_OF, 5)
        assert len(rsps.calls) == 1
    assert clock.sleeps == []


def test_retries_are_bounded_exponential_and_the_error_names_endpoint_and_market() -> None:
    clock = FakeClock()
    with responses.RequestsMock() as rsps:
        rsps.get(BASE + DAYS, status=503, body="unavailable", headers=CANDLES_LEFT)
        market_data = live(clock, max_retries=4, backoff_base_s=1.0, max_backoff_s=3.0)
        with pytest.raises(UpbitRequestError, match=r"/v1/candles/days for KRW-ETH: failed after 5 attempts.*503"):
            market_data.candles("KRW-ETH", "day", AS_OF, 5)
        assert len(rsps.calls) == 5
    for attempt, slept in enumerate(clock.sleeps, start=1):
        ceiling = min(3.0, 1.0 * 2 ** (attempt - 1))
        assert ceiling / 2 <= slept <= ceiling
    assert len(clock.sleeps) == 4


@pytest.mark.parametrize(
    "answer",
    [
        {"json": None},  # what pyupbit's get_ohlcv would have turned into None
        {"body": ""},
        {"body": "<html>maintenance</html>"},
        {"json": {"error": {"name": "x", "message": "an error object with HTTP 200"}}},
        {"json": [{"market": "KRW-ETH", "candle_date_time_utc": "2023-12-31T00:00:00"}]},  # fields missing
        {"json": "not a list"},
    ],
)
def test_an_empty_or_malformed_answer_is_an_error_not_an_empty_frame(answer: dict) -> None:
    with responses.RequestsMock() as rsps:
        rsps.get(BASE + DAYS, headers=CANDLES_LEFT, **answer)
        with pytest.raises(MalformedMarketData, match="KRW-ETH"):
            live(FakeClock()).candles("KRW-ETH", "day", AS_OF, 5)


def test_an_unknown_market_raises_market_not_found() -> None:
    code_not_found = {"error": {"name": 404, "message": "Code not found"}}
    with responses.RequestsMock() as rsps:
        rsps.get(BASE + DAYS, status=404, json=code_not_found, headers=CANDLES_LEFT)
        rsps.get(
            BASE + TICKER, status=404, json=code_not_found, headers={"Remaining-Req": "group=ticker; min=1800; sec=9"}
        )
        market_data = live(FakeClock())
        with pytest.raises(MarketNotFound, match="KRW-LUNA") as raised:
            market_data.candles("KRW-LUNA", "day", AS_OF, 5)
        assert raised.value.markets == ("KRW-LUNA",)
        with pytest.raises(MarketNotFound, match="KRW-LUNA"):
            market_data.trade_values_24h(["KRW-BTC", "KRW-LUNA"], AS_OF)
        assert len(rsps.calls) == 2  # a 404 is an answer, not retried


def test_a_404_that_is_not_upbits_is_an_http_error_not_a_missing_market() -> None:
    with responses.RequestsMock() as rsps:
        rsps.get(BASE + DAYS, status=404, body="<html>no such path</html>")
        with pytest.raises(UpbitRequestError, match="HTTP 404") as raised:
            live(FakeClock()).candles("KRW-ETH", "day", AS_OF, 5)
    assert not isinstance(raised.value, LookupError)


def fixture(name: str) -> dict:
    return json.loads((FIXTURES / f"{name}.json").read_text(encoding="utf-8"))


@pytest.mark.parametrize(("sec", "waits"), [(0, [1.0]), (9, [0.1])])
def test_remaining_req_sec_0_holds_the_group_until_the_next_second(sec: int, waits: list[float]) -> None:
    clock = FakeClock()
    body = fixture("days_KRW-ETH_5")["body"]
    with responses.RequestsMock() as rsps:
        rsps.get(BASE + DAYS, json=body, headers={"Remaining-Req": f"group=candles; min=1800; sec={sec}"})
        rsps.get(BASE + DAYS, json=body, headers=CANDLES_LEFT)
        recorded(rsps, "ticker_KRW-ETH_at_2023-12-31")
        market_data = live(clock)
        market_data.candles("KRW-ETH", "day", AS_OF, 5)
        market_data.candles("KRW-ETH", "day", AS_OF, 5)
        market_data.first_price_after("KRW-ETH", pd.Timestamp("2023-12-31"))  # another group: no wait
    assert clock.sleeps == pytest.approx(waits)


@pytest.mark.parametrize("header", [{}, {"Remaining-Req": "garbled"}])
def test_a_missing_or_garbled_remaining_req_does_not_fail_the_call(header: dict) -> None:
    with responses.RequestsMock() as rsps:
        rsps.get(BASE + DAYS, json=fixture("days_KRW-ETH_5")["body"], headers=header)
        frame = live(FakeClock()).candles("KRW-ETH", "day", AS_OF, 5)
    pd.testing.assert_frame_equal(frame, expected(SAMPLE_REPLAY_DIR, "day", "KRW-ETH", AS_OF, 5))


def test_24h_values_come_from_one_ticker_call_for_all_markets() -> None:
    markets = fixture("ticker_all_at_2024-01-01")["params"]["markets"].split(",")
    with responses.RequestsMock() as rsps:
        recorded(rsps, "ticker_all_at_2024-01-01")
        values = live(FakeClock()).trade_values_24h(markets, AS_OF)
        assert len(rsps.calls) == 1
    assert len(markets) == 63
    replay = SAMPLE.trade_values_24h(markets, AS_OF)
    pd.testing.assert_series_equal(values, replay)


def test_ticker_calls_are_chunked_only_when_the_url_would_be_too_long(monkeypatch: pytest.MonkeyPatch) -> None:
    answer = fixture("ticker_all_at_2024-01-01")
    rows = {row["market"]: row for row in answer["body"]}
    monkeypatch.setattr(upbit_quotation, "MAX_TICKER_MARKETS_CHARS", 100)

    def serve(request: requests.PreparedRequest) -> tuple[int, dict, str]:
        asked = parse_qs(urlsplit(request.url).query)["markets"][0].split(",")
        return 200, answer["headers"], json.dumps([rows[m] for m in asked])

    with responses.RequestsMock() as rsps:
        rsps.add_callback(responses.GET, BASE + TICKER, callback=serve)
        values = live(FakeClock()).trade_values_24h(list(rows), AS_OF)
        asked = [parse_qs(urlsplit(call.request.url).query)["markets"][0] for call in rsps.calls]
    assert len(asked) > 1 and all(len(chunk) <= 100 for chunk in asked)
    assert ",".join(asked) == answer["params"]["markets"]
    assert values.to_dict() == {m: row["acc_trade_price_24h"] for m, row in rows.items()}


def test_a_ticker_far_from_as_of_is_refused_not_passed_off_as_that_day() -> None:
    markets = fixture("ticker_all_at_2024-01-01")["params"]["markets"].split(",")
    with responses.RequestsMock() as rsps:
        recorded(rsps, "ticker_all_at_2024-01-01")
        with pytest.raises(QuoteNotAsOf, match="2024-01-01"):
            live(FakeClock()).trade_values_24h(markets, partition_close("2023-12-20"))


def test_first_price_after_is_the_last_trade_and_agrees_with_the_replay() -> None:
    after = pd.Timestamp("2023-12-31")
    replay = SAMPLE
    with responses.RequestsMock() as rsps:
        for _ in range(3):
            recorded(rsps, "ticker_KRW-ETH_at_2023-12-31")
        market_data = live(FakeClock())
        assert market_data.first_price_after("KRW-ETH", after) == replay.first_price_after("KRW-ETH", after)
        # The last trade predates this instant: no price after it is known yet.
        assert market_data.first_price_after("KRW-ETH", after + pd.Timedelta(seconds=1)) is None
        with pytest.raises(QuoteNotAsOf, match="KRW-ETH"):
            market_data.first_price_after("KRW-ETH", pd.Timestamp("2023-12-20"))


@pytest.mark.parametrize("name", ["market_all_new_shape", "market_all_old_shape"])
def test_market_list_in_the_old_and_the_new_shape(name: str) -> None:
    with responses.RequestsMock() as rsps:
        recorded(rsps, name)  # only answers ?isDetails=true
        frame = live(FakeClock()).markets(AS_OF)
    assert frame["market"].tolist() == SAMPLE.markets(AS_OF)["market"].tolist()
    flagged = frame.loc[frame["market_warning"] != "NONE"].set_index("market")["caution_flags"].to_dict()
    if name == "market_all_new_shape":
        assert flagged == {"KRW-AERGO": "TRADING_VOLUME_SOARING", "KRW-STRIKE": "TRADING_VOLUME_SOARING"}
    else:
        assert flagged == {}


def test_default_host_is_upbit_and_the_resource_runs_inside_dagster() -> None:
    assert UpbitMarketData().base_url == "https://api.upbit.com"

    @dg.asset
    def market_count(market_data: MarketData) -> int:
        return len(market_data.markets(AS_OF))

    with responses.RequestsMock() as rsps:
        recorded(rsps, "market_all_new_shape", base="https://api.upbit.com")
        result = dg.materialize([market_count], resources={"market_data": UpbitMarketData()})
    assert result.output_for_node("market_count") == 63
    assert "https://api.upbit.com" in UpbitMarketData().describe() and "pyupbit" in UpbitMarketData().describe()


@pytest.mark.parametrize("config", [{"requests_per_second": 0}, {"timeout_s": -1}, {"max_retries": -1}])
def test_nonsense_config_is_rejected(config: dict) -> None:
    with pytest.raises(Exception, match=next(iter(config))):
        UpbitMarketData(**config)

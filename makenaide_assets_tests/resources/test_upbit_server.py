"""The local Upbit server: Upbit's shapes from a replay, "as of" its clock, Upbit's rate limit.

Expected answers come from build_fixtures (the recorded-HTTP fixtures' builder), an independent
reading of the same CSV files; rate-limit tests drive the server's clock instead of sleeping.
"""

import json
import shutil
import socket
import threading
from pathlib import Path

import dagster as dg
import pandas as pd
import pytest
import requests
from pyupbit.request_api import _parse as parse_remaining_req

from makenaide_assets.market.step import market
from makenaide_assets.resources.blacklist import Blacklist
from makenaide_assets.resources.market_data import ReplayMarketData
from makenaide_assets.resources.thresholds import UniverseThresholds
from makenaide_assets.resources.upbit_quotation import UpbitMarketData
from makenaide_assets.testing.upbit_server import UpbitServer
from makenaide_assets_tests.fixtures.upbit_http.build_fixtures import candle_answer

NOW = "2024-01-01T00:05:00Z"  # five minutes after partition 2023-12-31 closed


class FakeClock:
    def __init__(self) -> None:
        self.now = 1_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def server(sample_dir: Path, clock: FakeClock):
    with UpbitServer(sample_dir, NOW, clock=clock) as running:
        yield running


def get(server: UpbitServer, path: str, **params: object) -> requests.Response:
    return requests.get(server.url + path, params=params, timeout=10)


@pytest.mark.parametrize(
    ("interval", "path", "market", "to", "count"),
    [
        ("day", "/v1/candles/days", "KRW-BTC", "2024-01-01T00:00:00", 200),
        ("day", "/v1/candles/days", "KRW-GRT", "2023-06-10T00:00:00", 50),  # asks 50, 9 exist
        ("minute240", "/v1/candles/minutes/240", "KRW-ETH", "2023-12-31T08:00:00", 5),
    ],
)
def test_candles_are_upbits_answer_built_from_the_recording(
    server: UpbitServer, sample_dir: Path, interval: str, path: str, market: str, to: str, count: int
) -> None:
    resp = get(server, path, market=market, to=to + "Z", count=count)
    expected = candle_answer(sample_dir, interval, market, pd.Timestamp(to), count)["body"]
    assert resp.status_code == 200 and resp.json() == expected
    starts = [row["candle_date_time_utc"] for row in resp.json()]
    assert starts == sorted(starts, reverse=True) and all(s < to for s in starts)  # newest first, `to` excluded


def test_months_are_the_replays_months_newest_first(server: UpbitServer, sample_dir: Path) -> None:
    body = get(server, "/v1/candles/months", market="KRW-BTC", count=200).json()
    replay = ReplayMarketData(replay_dir=str(sample_dir)).candles("KRW-BTC", "month", pd.Timestamp(NOW[:-1]), 200)
    assert [row["candle_date_time_utc"] for row in reversed(body)] == [
        f"{t:%Y-%m-%dT%H:%M:%S}" for t in replay["candle_date_time_utc"]
    ]
    assert [row["trade_price"] for row in reversed(body)] == replay["trade_price"].tolist()


def test_answers_are_as_of_the_servers_clock(server: UpbitServer) -> None:
    server.set_now("2023-12-20T10:30:00Z")
    latest = get(server, "/v1/candles/days", market="KRW-BTC").json()
    assert [row["candle_date_time_utc"] for row in latest] == ["2023-12-19T00:00:00"]  # the 20th is still open
    later = get(server, "/v1/candles/minutes/240", market="KRW-ETH", to="2024-06-01T00:00:00Z", count=2).json()
    assert [row["candle_date_time_utc"] for row in later] == ["2023-12-20T04:00:00", "2023-12-20T00:00:00"]
    kst = get(server, "/v1/candles/days", market="KRW-BTC", to="2023-12-19T09:00:00+09:00").json()
    assert kst[0]["candle_date_time_utc"] == "2023-12-18T00:00:00"


def test_ticker_24h_value_is_the_day_that_just_closed(server: UpbitServer, sample_dir: Path) -> None:
    server.set_now("2023-12-20T00:05:00Z")
    markets = ["KRW-BTC", "KRW-GRT", "KRW-ETH"]
    rows = get(server, "/v1/ticker", markets=",".join(markets)).json()
    replay = ReplayMarketData(replay_dir=str(sample_dir))
    expected = replay.trade_values_24h(markets, pd.Timestamp("2023-12-20"))
    assert [r["market"] for r in rows] == markets
    assert {r["market"]: r["acc_trade_price_24h"] for r in rows} == expected.to_dict()
    assert all(r["timestamp"] == pd.Timestamp("2023-12-20T00:05").value // 10**6 for r in rows)
    eth = rows[2]  # the first trade of the 4h candle opened at 00:00, as the replay's fill price
    at, price = replay.first_price_after("KRW-ETH", pd.Timestamp("2023-12-20"))
    assert (pd.Timestamp(eth["trade_timestamp"], unit="ms"), eth["trade_price"]) == (at, price)


def test_market_list_in_both_shapes_and_without_markets_listed_later(server: UpbitServer, sample_dir: Path) -> None:
    recorded = json.loads((sample_dir / "markets.json").read_text(encoding="utf-8"))
    assert get(server, "/v1/market/all", isDetails="true").json() == recorded
    short = get(server, "/v1/market/all", isDetails="false").json()
    assert short == [{k: m[k] for k in ("market", "korean_name", "english_name")} for m in recorded]
    server.set_now("2023-05-01T00:05:00Z")  # KRW-GRT's first recorded candle is 2023-06-01
    listed = [m["market"] for m in get(server, "/v1/market/all").json()]
    assert "KRW-GRT" not in listed and "KRW-BTC" in listed
    assert get(server, "/v1/ticker", markets="KRW-GRT").status_code == 404


@pytest.mark.parametrize(
    ("path", "params", "status"),
    [
        ("/v1/candles/days", {"market": "KRW-LUNA"}, 404),
        ("/v1/ticker", {"markets": "KRW-BTC,KRW-LUNA"}, 404),
        ("/v1/candles/days", {"market": "KRW-BTC", "count": 201}, 400),
        ("/v1/candles/days", {"market": "KRW-BTC", "count": 0}, 400),
        ("/v1/candles/days", {"market": "KRW-BTC", "to": "yesterday"}, 400),
        ("/v1/candles/days", {}, 400),
    ],
)
def test_bad_requests_get_upbits_error_shape(server: UpbitServer, path: str, params: dict, status: int) -> None:
    resp = get(server, path, **params)
    assert resp.status_code == status
    assert set(resp.json()["error"]) == {"name", "message"}
    assert parse_remaining_req(resp.headers["Remaining-Req"])["group"] in ("candles", "ticker")


def test_ten_per_second_per_group_then_429_then_a_new_second(server: UpbitServer, clock: FakeClock) -> None:
    answers = [get(server, "/v1/candles/days", market="KRW-BTC") for _ in range(11)]
    assert [r.status_code for r in answers] == [200] * 10 + [429]
    assert [parse_remaining_req(r.headers["Remaining-Req"])["sec"] for r in answers] == [*range(9, -1, -1), 0]
    assert answers[-1].text == "Too many API requests."
    assert get(server, "/v1/ticker", markets="KRW-BTC").status_code == 200  # another group, its own budget
    clock.now += 1.0
    assert get(server, "/v1/candles/days", market="KRW-BTC").status_code == 200
    assert server.stats() | {"by_group": None} == {
        "requests": 13, "by_group": None, "429": 1, "418": 0, "now": "2024-01-01T00:05:00",
    }  # fmt: skip


def test_a_client_that_keeps_going_after_429s_is_blocked_with_418(server: UpbitServer, clock: FakeClock) -> None:
    codes = [get(server, "/v1/candles/days", market="KRW-BTC").status_code for _ in range(17)]
    assert codes == [200] * 10 + [429] * 5 + [418] * 2
    clock.now += 5.0  # a new second, but the block lasts 30 s and covers every group
    assert get(server, "/v1/candles/days", market="KRW-BTC").status_code == 418
    blocked = get(server, "/v1/market/all")
    assert blocked.status_code == 418 and "blocked" in blocked.json()["error"]["message"]
    clock.now += 30.0
    assert get(server, "/v1/candles/days", market="KRW-BTC").status_code == 200


def test_binds_loopback_only_caps_connections_and_stops_cleanly(sample_dir: Path) -> None:
    before = set(threading.enumerate())
    server = UpbitServer(sample_dir, NOW, max_connections=1).start()
    host, port = server.url.removeprefix("http://").split(":")
    assert host == "127.0.0.1"
    session = requests.Session()  # holds the one allowed connection open (keep-alive)
    assert session.get(server.url + "/v1/market/all", timeout=10).status_code == 200
    with socket.create_connection((host, int(port)), timeout=10) as second:
        second.sendall(b"GET /v1/market/all HTTP/1.1\r\nHost: x\r\n\r\n")
        assert second.recv(100).startswith(b"HTTP/1.1 503")
    server.stop()  # ends the idle keep-alive connection instead of waiting for its timeout
    assert set(threading.enumerate()) <= before
    with pytest.raises(requests.ConnectionError):
        requests.get(server.url + "/v1/market/all", timeout=10)


# ---- the live client (UpbitMarketData, pyupbit's URL map and header parser) against the server ----


def test_the_live_client_reads_the_server_as_the_replay_pages_past_200(long_dir: Path) -> None:
    as_of = pd.Timestamp("2024-06-01")
    replay = ReplayMarketData(replay_dir=str(long_dir))
    with UpbitServer(long_dir, "2024-06-01T00:05:00Z") as server:
        live = UpbitMarketData(base_url=server.url)
        for interval, count in (("day", 450), ("minute240", 200), ("month", 30)):
            pd.testing.assert_frame_equal(
                live.candles("KRW-BTC", interval, as_of, count), replay.candles("KRW-BTC", interval, as_of, count)
            )
        markets = live.markets(as_of)["market"].tolist()
        assert markets == replay.markets(as_of)["market"].tolist()
        pd.testing.assert_series_equal(live.trade_values_24h(markets, as_of), replay.trade_values_24h(markets, as_of))
        assert live.first_price_after("KRW-ETH", as_of) == replay.first_price_after("KRW-ETH", as_of)
        stats = server.stats()
    assert stats["by_group"]["candles"] == 3 + 1 + 1  # 450 days = 200 + 200 + 50
    assert (stats["429"], stats["418"]) == (0, 0)


def test_the_clients_own_pace_never_meets_a_429(long_dir: Path) -> None:
    with UpbitServer(long_dir, "2024-06-01T00:05:00Z") as server:
        live = UpbitMarketData(base_url=server.url)
        for day in pd.date_range("2024-05-01", periods=25, freq="D"):
            live.candles("KRW-ETH", "day", day, 3)
        stats = server.stats()
    assert (stats["requests"], stats["429"], stats["418"]) == (25, 0, 0)


def test_a_429_is_waited_out_not_hammered_into_a_418(long_dir: Path) -> None:
    with UpbitServer(long_dir, "2024-06-01T00:05:00Z", per_second=2) as server:
        for _ in range(2):  # another client on this IP spends the second's budget
            assert get(server, "/v1/candles/days", market="KRW-BTC").status_code == 200
        frame = UpbitMarketData(base_url=server.url, backoff_base_s=0.05).candles(
            "KRW-ETH", "day", pd.Timestamp("2024-05-01"), 3
        )
        stats = server.stats()
    assert len(frame) == 3
    assert (stats["requests"], stats["429"], stats["418"]) == (4, 1, 0)


def test_indicators_through_the_live_client_equal_the_replays(sample_dir: Path, tmp_path: Path) -> None:
    small = _subset(sample_dir, tmp_path / "small", ["KRW-BTC", "KRW-ETH", "KRW-DOGE", "KRW-GRT", "KRW-XRP"])
    assets = [market]  # tickers → universe → daily_candles → daily_indicators
    common = {"blacklist": Blacklist(), "universe_thresholds": UniverseThresholds(min_months=6)}
    replayed = dg.materialize(assets, partition_key="2023-12-20", resources={
        **common, "market_data": ReplayMarketData(replay_dir=str(small)),
        "io_manager": dg.FilesystemIOManager(base_dir=str(tmp_path / "replay")),
    })  # fmt: skip
    with UpbitServer(small, "2023-12-21T00:05:00Z") as server:
        served = dg.materialize(assets, partition_key="2023-12-20", resources={
            **common, "market_data": UpbitMarketData(base_url=server.url),
            "io_manager": dg.FilesystemIOManager(base_dir=str(tmp_path / "served")),
        })  # fmt: skip
    frames = [result.asset_value("daily_indicators") for result in (replayed, served)]
    assert len(frames[0]) >= 3  # the markets that passed the universe
    pd.testing.assert_frame_equal(*frames)


def _subset(src: Path, dst: Path, markets: list[str]) -> Path:
    listed = json.loads((src / "markets.json").read_text(encoding="utf-8"))
    dst.mkdir(parents=True)
    (dst / "markets.json").write_text(json.dumps([m for m in listed if m["market"] in markets]), encoding="utf-8")
    for path in (src / "candles").glob("*/*.csv.gz"):
        if path.name.split(".")[0] in markets:
            (dst / "candles" / path.parent.name).mkdir(parents=True, exist_ok=True)
            shutil.copyfile(path, dst / "candles" / path.parent.name / path.name)
    return dst

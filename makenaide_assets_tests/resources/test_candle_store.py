"""The incremental candle store: requests counted at the local Upbit server, answers checked
against the replay of the same recording (so no lookahead), refresh and crash safety."""

from pathlib import Path
from typing import BinaryIO

import pandas as pd
import pytest

from makenaide_assets.resources.candle_store import CandleStore
from makenaide_assets.resources.market_data import ReplayMarketData
from makenaide_assets.resources.upbit_quotation import UpbitMarketData
from makenaide_assets.strategy.calendar import partition_close
from makenaide_assets.strategy.candles import normalise_candles
from makenaide_assets.testing.upbit_server import UpbitServer
from makenaide_assets_tests.fixtures.upbit_http.build_fixtures import recording

LAST_NOW = "2025-01-01T00:05:00Z"  # the server may know more than any as_of asked below


@pytest.fixture
def server(long_dir: Path):
    with UpbitServer(long_dir, LAST_NOW) as running:
        yield running


@pytest.fixture
def replay(long_dir: Path) -> ReplayMarketData:
    return ReplayMarketData(replay_dir=str(long_dir))


class Counted:
    """UpbitMarketData with a store, and how many requests each call cost at the server."""

    def __init__(self, server: UpbitServer, store: Path) -> None:
        self.server = server
        self.live = UpbitMarketData(base_url=server.url, store_dir=str(store))

    def candles(self, market: str, interval: str, as_of: pd.Timestamp, count: int) -> tuple[pd.DataFrame, int]:
        before = self.server.stats()["requests"]
        frame = self.live.candles(market, interval, as_of, count)  # type: ignore[arg-type]
        return frame, self.server.stats()["requests"] - before


@pytest.mark.parametrize(
    ("interval", "count", "cold", "warm"),
    [("day", 400, 2, 1), ("minute240", 200, 1, 1), ("month", 200, 1, 0)],  # months: same month, nothing new
)
def test_a_daily_run_costs_one_request_per_market_or_none(
    server: UpbitServer, replay: ReplayMarketData, tmp_path: Path, interval: str, count: int, cold: int, warm: int
) -> None:
    client = Counted(server, tmp_path / "candles")
    for day, expected_requests in (("2024-03-10", cold), ("2024-03-11", warm), ("2024-03-11", 0)):
        as_of = partition_close(day)
        frame, requests = client.candles("KRW-ETH", interval, as_of, count)
        pd.testing.assert_frame_equal(frame, replay.candles("KRW-ETH", interval, as_of, count))
        assert requests == expected_requests, day


def test_a_new_month_costs_one_request(server: UpbitServer, replay: ReplayMarketData, tmp_path: Path) -> None:
    client = Counted(server, tmp_path / "candles")
    client.candles("KRW-BTC", "month", partition_close("2024-03-30"), 200)
    frame, requests = client.candles("KRW-BTC", "month", partition_close("2024-03-31"), 200)  # closes March
    assert requests == 1 and frame["candle_date_time_utc"].iloc[-1] == pd.Timestamp("2024-03-01")
    pd.testing.assert_frame_equal(frame, replay.candles("KRW-BTC", "month", partition_close("2024-03-31"), 200))


@pytest.mark.parametrize("interval", ["day", "minute240", "month"])
def test_an_earlier_day_after_a_later_one_sees_nothing_after_its_close(
    server: UpbitServer, replay: ReplayMarketData, tmp_path: Path, interval: str
) -> None:
    client = Counted(server, tmp_path / "candles")
    client.candles("KRW-LINK", interval, partition_close("2024-09-30"), 600)  # 4h: back to late June
    for as_of in (partition_close("2024-09-10"), pd.Timestamp("2024-09-10T10:30"), partition_close("2024-09-29")):
        frame, requests = client.candles("KRW-LINK", interval, as_of, 100)
        pd.testing.assert_frame_equal(frame, replay.candles("KRW-LINK", interval, as_of, 100))
        assert requests == 0, as_of


def test_more_history_than_stored_is_fetched_older_and_kept(
    server: UpbitServer, replay: ReplayMarketData, tmp_path: Path
) -> None:
    client = Counted(server, tmp_path / "candles")
    as_of = partition_close("2024-03-10")
    client.candles("KRW-BTC", "day", as_of, 5)
    frame, requests = client.candles("KRW-BTC", "day", as_of, 400)
    assert requests == 2  # 395 older candles: 200 + 195
    pd.testing.assert_frame_equal(frame, replay.candles("KRW-BTC", "day", as_of, 400))
    assert client.candles("KRW-BTC", "day", as_of, 400)[1] == 0


class FakeFetch:
    """Upbit as a list of candles; records what it was asked, (end, count)."""

    def __init__(self, candles: pd.DataFrame) -> None:
        self.candles = candles
        self.asked: list[tuple[pd.Timestamp, int]] = []

    def __call__(self, end: pd.Timestamp, count: int) -> tuple[pd.DataFrame, bool]:
        self.asked.append((end, count))
        before = self.candles[self.candles["candle_date_time_utc"] < end]
        return before.tail(count).reset_index(drop=True), len(before) < count


def eth_days(long_dir: Path) -> pd.DataFrame:
    return normalise_candles(recording(long_dir, "day", "KRW-ETH"), source="KRW-ETH")


def test_the_last_stored_candle_is_fetched_again_and_replaced(long_dir: Path, tmp_path: Path) -> None:
    truth = eth_days(long_dir)
    day = pd.Timestamp("2024-03-10")
    # As first published, before trades that reached Upbit late: lower volume and close.
    early = truth.copy()
    early.loc[early["candle_date_time_utc"] == day, ["trade_price", "candle_acc_trade_volume"]] *= 0.99
    store = CandleStore(tmp_path)
    store.candles("KRW-ETH", "day", day + pd.Timedelta(days=1), 400, FakeFetch(early))
    later = FakeFetch(truth)
    frame = store.candles("KRW-ETH", "day", day + pd.Timedelta(days=2), 400, later)
    assert later.asked == [(day + pd.Timedelta(days=2), 2)]  # the stored last candle and the new one
    expected = truth[truth["candle_date_time_utc"] < day + pd.Timedelta(days=2)].tail(400).reset_index(drop=True)
    pd.testing.assert_frame_equal(frame, expected)
    pd.testing.assert_frame_equal(store.read("KRW-ETH", "day")[0].tail(400).reset_index(drop=True), expected)


def test_a_run_killed_mid_write_leaves_the_previous_file_whole(
    long_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = CandleStore(tmp_path)
    end = pd.Timestamp("2024-03-11")
    first = store.candles("KRW-ETH", "day", end, 400, FakeFetch(eth_days(long_dir)))

    def dies_half_way(self: pd.DataFrame, handle: BinaryIO, **kwargs: object) -> None:
        handle.write(b"PAR1 half a file")
        raise KeyboardInterrupt("killed")

    monkeypatch.setattr(pd.DataFrame, "to_parquet", dies_half_way)
    with pytest.raises(KeyboardInterrupt):
        store.candles("KRW-ETH", "day", end + pd.Timedelta(days=1), 400, FakeFetch(eth_days(long_dir)))
    monkeypatch.undo()
    frame, span = store.read("KRW-ETH", "day")
    pd.testing.assert_frame_equal(frame.tail(400).reset_index(drop=True), first)
    assert span.end == end
    assert [p.name for p in (tmp_path / "day").iterdir()] == ["KRW-ETH.parquet"]


def test_an_unreadable_file_is_fetched_again(long_dir: Path, tmp_path: Path) -> None:
    store = CandleStore(tmp_path)
    end = pd.Timestamp("2024-03-11")
    store.candles("KRW-ETH", "day", end, 10, FakeFetch(eth_days(long_dir)))
    path = store.path("KRW-ETH", "day")
    path.write_bytes(path.read_bytes()[:100])  # e.g. a copy cut short
    fetch = FakeFetch(eth_days(long_dir))
    frame = store.candles("KRW-ETH", "day", end, 10, fetch)
    assert fetch.asked == [(end, 10)] and len(frame) == 10
    assert store.read("KRW-ETH", "day") is not None


def test_only_market_codes_name_files(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="market code"):
        CandleStore(tmp_path).path("../../etc/KRW-BTC", "day")

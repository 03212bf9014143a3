"""The indicator snapshot on real recorded Upbit candles, against TA-Lib and by hand."""

import numpy as np
import pandas as pd
import pytest
import talib

from makenaide_assets.resources.market_data import ReplayMarketData
from makenaide_assets.settings import SAMPLE_REPLAY_DIR
from makenaide_assets.strategy.indicators import (
    HISTORY_NEEDED,
    REQUIRED_COLUMNS,
    SNAPSHOT_COLUMNS,
    indicator_snapshot,
)

MARKETS = ["KRW-BTC", "KRW-ETH", "KRW-DOGE", "KRW-IQ", "KRW-GRT", "KRW-ARB"]


@pytest.fixture(scope="module")
def replay() -> ReplayMarketData:
    return ReplayMarketData(replay_dir=str(SAMPLE_REPLAY_DIR))


def cut(replay: ReplayMarketData, day: str, markets: list[str] | None = None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Candles closed by the close of partition `day`, as the daily asset reads them."""
    as_of = pd.Timestamp(day) + pd.Timedelta(days=1)
    markets = markets or replay.markets(as_of)["market"].tolist()
    return replay.candles_many(markets, "day", as_of, 400), replay.candles("KRW-BTC", "day", as_of, 400)


def snapshot(replay: ReplayMarketData, day: str, markets: list[str] | None = None) -> pd.DataFrame:
    candles, btc = cut(replay, day, markets)
    return indicator_snapshot(candles, btc).set_index("market")


@pytest.mark.parametrize("day", ["2023-03-01", "2023-06-22", "2023-12-31"])
def test_matches_talib_on_real_candles(replay: ReplayMarketData, day: str) -> None:
    candles, btc = cut(replay, day, MARKETS)
    frame = indicator_snapshot(candles, btc).set_index("market")
    assert list(frame.index) == sorted(candles["market"].unique())  # ARB, GRT not listed on 2023-03-01
    for market, one in candles.groupby("market"):
        high, low, close = (one[c].to_numpy() for c in ("high_price", "low_price", "trade_price"))
        expected = {
            "rsi14": talib.RSI(close, 14)[-1],
            "atr14": talib.ATR(high, low, close, 14)[-1],
            **{f"ma{n}": talib.SMA(close, n)[-1] if len(close) >= n else np.nan for n in (20, 50, 150, 200)},
        }
        for column, value in expected.items():
            got = frame.loc[market, column]
            if np.isnan(value):
                assert np.isnan(got) and column in frame.loc[market, "insufficient_history"].split(","), (
                    market,
                    column,
                )
            else:
                assert got == pytest.approx(value, rel=1e-9), (market, day, column)


def test_hand_checked_btc_values_on_2023_12_31(replay: ReplayMarketData) -> None:
    row = snapshot(replay, "2023-12-31", ["KRW-BTC", "KRW-ETH"]).loc["KRW-BTC"]
    # From the recorded CSV: the 20 closes 2023-12-12..31 sum to 1,159,695,000 KRW; the
    # 365 candles 2023-01-01..12-31 reach 61,312,000 (high) and 21,002,000 (low).
    assert row["ma20"] == pytest.approx(1_159_695_000 / 20, rel=1e-12)
    assert row["high_52w"] == 61_312_000 and row["low_52w"] == 21_002_000
    assert row["close"] == 57_047_000 and row["date"] == pd.Timestamp("2023-12-31")
    assert row["rs_vs_btc"] == 0.0
    assert row["history_days"] == 392 and row["insufficient_history"] == ""


def test_windows_agree_with_the_sample_dates(replay: ReplayMarketData) -> None:
    """The sample starts 2022-12-05: MA200 from 2023-06-22, 52-week range from 2023-12-04."""
    for day, column in [("2023-06-22", "ma200"), ("2023-07-12", "ma200_slope"), ("2023-12-04", "high_52w")]:
        before = snapshot(replay, str(pd.Timestamp(day) - pd.Timedelta(days=1)).split()[0], ["KRW-BTC"]).iloc[0]
        on = snapshot(replay, day, ["KRW-BTC"]).iloc[0]
        assert np.isnan(before[column]) and column in before["insufficient_history"].split(",")
        assert not np.isnan(on[column]) and column not in on["insufficient_history"].split(",")
        assert on["history_days"] == HISTORY_NEEDED[column]


def test_volume_ratio_and_rs_by_hand(replay: ReplayMarketData) -> None:
    candles, btc = cut(replay, "2023-10-31", ["KRW-ETH"])
    row = indicator_snapshot(candles, btc).iloc[0]
    volume = candles["candle_acc_trade_volume"].to_numpy()
    assert row["volume_ratio"] == pytest.approx(volume[-1] / volume[-21:-1].mean(), rel=1e-12)
    assert row["volume_ma20"] == pytest.approx(volume[-20:].mean(), rel=1e-12)
    eth = candles.set_index("candle_date_time_utc")["trade_price"]
    btc_close = btc.set_index("candle_date_time_utc")["trade_price"]
    start, end = pd.Timestamp("2023-08-29"), pd.Timestamp("2023-10-31")  # 63 candles apart
    expected = (eth[end] / eth[start]) / (btc_close[end] / btc_close[start]) - 1
    assert row["rs_vs_btc"] == pytest.approx(expected, rel=1e-12)
    assert row["change_1d"] == pytest.approx(eth.iloc[-1] / eth.iloc[-2] - 1, rel=1e-12)


def test_stale_market_keeps_its_own_date(replay: ReplayMarketData) -> None:
    candles, btc = cut(replay, "2023-12-31", ["KRW-BTC", "KRW-ETH"])
    stale = candles[~((candles["market"] == "KRW-ETH") & (candles["candle_date_time_utc"] > "2023-12-28"))]
    frame = indicator_snapshot(stale, btc).set_index("market")
    assert frame.loc["KRW-ETH", "date"] == pd.Timestamp("2023-12-28")
    assert frame.loc["KRW-BTC", "date"] == pd.Timestamp("2023-12-31")
    # RS compares both on the stale market's own dates, not on D.
    alone = indicator_snapshot(stale[stale["market"] == "KRW-ETH"], btc).iloc[0]
    assert alone["rs_vs_btc"] == frame.loc["KRW-ETH", "rs_vs_btc"]


def test_nan_from_bad_data_is_not_excused(replay: ReplayMarketData) -> None:
    candles, btc = cut(replay, "2023-12-31", ["KRW-DOGE"])
    broken = candles.copy()
    broken.loc[broken.index[-5], "trade_price"] = np.nan
    row = indicator_snapshot(broken, btc).iloc[0]
    assert np.isnan(row["ma20"]) and np.isnan(row["rsi14"])
    assert row["insufficient_history"] == ""  # so the data-quality check fails it


def test_required_nan_only_where_history_is_short(replay: ReplayMarketData) -> None:
    """Over the whole sample: a required column is NaN exactly when it is listed as short."""
    for day in pd.date_range("2022-12-05", "2023-12-31", freq="17D"):
        frame = snapshot(replay, day.strftime("%Y-%m-%d"))
        for market, row in frame.iterrows():
            listed = set(filter(None, row["insufficient_history"].split(",")))
            assert listed <= set(HISTORY_NEEDED)
            for column in REQUIRED_COLUMNS:
                assert np.isnan(row[column]) == (column in listed), (day, market, column)


def test_late_listing_lists_every_short_column(replay: ReplayMarketData) -> None:
    row = snapshot(replay, "2023-08-01", ["KRW-GRT"]).iloc[0]  # listed 2023-06-01: 62 candles
    assert row["history_days"] == 62
    assert row["insufficient_history"].split(",") == [c for c, n in HISTORY_NEEDED.items() if n > 62]
    assert not np.isnan(row["ma50"]) and not np.isnan(row["rsi14"])


def test_empty_input_gives_empty_snapshot(replay: ReplayMarketData) -> None:
    candles, btc = cut(replay, "2023-12-31", ["KRW-BTC"])
    frame = indicator_snapshot(candles.iloc[0:0], btc)
    assert frame.empty and list(frame.columns) == SNAPSHOT_COLUMNS

"""The market thermometer on real recorded days of both recordings."""

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from makenaide_assets.resources.market_data import ReplayMarketData
from makenaide_assets.settings import SAMPLE_REPLAY_DIR
from makenaide_assets.strategy.breadth import BreadthParams, market_breadth
from makenaide_assets.strategy.indicators import indicator_snapshot


def indicators_on(replay_dir: Path, day: str) -> pd.DataFrame:
    replay = ReplayMarketData(replay_dir=str(replay_dir))
    as_of = pd.Timestamp(day) + pd.Timedelta(days=1)
    markets = replay.markets(as_of)["market"].tolist()
    candles = replay.candles_many(markets, "day", as_of, 400)
    return indicator_snapshot(candles, replay.candles("KRW-BTC", "day", as_of, 400))


def btc(indicators: pd.DataFrame) -> pd.Series:
    return indicators.set_index("market").loc["KRW-BTC"]


def test_end_of_2023_is_a_bull_market() -> None:
    indicators = indicators_on(SAMPLE_REPLAY_DIR, "2023-12-31")
    reading = market_breadth(indicators, btc(indicators))
    assert reading["markets_with_ma200"] == 63
    assert reading["share_above_ma200"] == (indicators["close"] > indicators["ma200"]).mean() == 1.0
    assert reading["share_above_ma50"] == pytest.approx((indicators["close"] > indicators["ma50"]).mean())
    assert reading["advancers"] == (indicators["change_1d"] > 0).sum() == 36
    assert reading["advancers"] + reading["decliners"] + reading["unchanged"] == 63
    assert reading["btc_trend"] == "up" and reading["btc_above_ma200"] and reading["btc_above_ma50"]
    assert (reading["regime"], reading["allow_new_buys"]) == ("bull", True)
    assert reading["reason"] == "bull: KRW-BTC trend up, breadth strong (100% of 63 markets above MA200)"


def test_september_2023_alt_weakness_blocks_buys() -> None:
    indicators = indicators_on(SAMPLE_REPLAY_DIR, "2023-09-15")
    reading = market_breadth(indicators, btc(indicators))
    # BTC below a still-rising MA200 (flat vote), only 7 of 60 markets above their MA200.
    assert reading["btc_trend"] == "flat" and reading["breadth"] == "weak"
    assert reading["share_above_ma200"] == pytest.approx(7 / 60)
    assert reading["regime"] == "bear" and not reading["allow_new_buys"]
    assert reading["advancers"] == 56  # a broad up day does not overrule the trend


def test_2022_bear_market_in_the_long_recording(long_dir: Path) -> None:
    indicators = indicators_on(long_dir, "2022-06-20")
    reading = market_breadth(indicators, btc(indicators))
    assert reading["btc_trend"] == "down" and not reading["btc_above_ma200"]
    assert reading["regime"] == "bear" and not reading["allow_new_buys"]
    later = indicators_on(long_dir, "2024-03-14")
    assert market_breadth(later, btc(later))["regime"] == "bull"


def test_without_history_nothing_is_assumed() -> None:
    indicators = indicators_on(SAMPLE_REPLAY_DIR, "2023-01-15")  # 42 candles: no MA200 anywhere
    reading = market_breadth(indicators, btc(indicators))
    assert np.isnan(reading["share_above_ma200"]) and reading["markets_with_ma200"] == 0
    assert reading["regime"] == "neutral" and not reading["allow_new_buys"]
    assert "insufficient history" in reading["reason"]
    no_btc = market_breadth(indicators_on(SAMPLE_REPLAY_DIR, "2023-12-31"), None)
    assert no_btc["btc_trend"] == "unknown" and not no_btc["allow_new_buys"]


def test_share_boundary_on_real_rows() -> None:
    indicators = indicators_on(SAMPLE_REPLAY_DIR, "2023-12-31").head(10).copy()
    below = indicators.index[:5]
    indicators.loc[below, "close"] = indicators.loc[below, "ma200"]  # on the MA is not above it
    reading = market_breadth(indicators, btc(indicators_on(SAMPLE_REPLAY_DIR, "2023-12-31")))
    assert reading["share_above_ma200"] == 0.5 and reading["breadth"] == "strong"
    stricter = market_breadth(indicators, None, BreadthParams(strong_share=0.51))
    assert stricter["breadth"] == "mixed"

"""4-hour timing on real recorded 4-hour candles."""

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import talib

from makenaide_assets.resources.market_data import ReplayMarketData
from makenaide_assets.settings import SAMPLE_REPLAY_DIR
from makenaide_assets.strategy.exits import ExitParams
from makenaide_assets.strategy.timing import TimingParams, evaluate_4h


@pytest.fixture(scope="module")
def replay() -> ReplayMarketData:
    return ReplayMarketData(replay_dir=str(SAMPLE_REPLAY_DIR))


def closed_4h(replay: ReplayMarketData, market: str, day: str, count: int = 200) -> tuple[pd.DataFrame, pd.Timestamp]:
    as_of = pd.Timestamp(day) + pd.Timedelta(days=1)
    return replay.candles(market, "minute240", as_of, count), as_of


def test_no_candles_is_a_visible_skip(replay: ReplayMarketData) -> None:
    candles, as_of = closed_4h(replay, "KRW-XRP", "2023-12-31")  # no 4h recording for it
    result = evaluate_4h(candles, as_of=as_of)
    assert candles.empty and result["entry_ok"] is False and result["reason"] == "no 4h candles"
    assert result["last_candle_utc"] is None and np.isnan(result["suggested_entry"])


def test_too_few_candles(replay: ReplayMarketData) -> None:
    candles, as_of = closed_4h(replay, "KRW-BTC", "2022-12-20")  # the recording starts 2022-12-05
    result = evaluate_4h(candles, as_of=as_of)
    assert len(candles) == 96 and not result["entry_ok"]
    assert result["reason"] == "too few 4h candles: 96 < 120"


def test_entry_on_a_real_uptrend(replay: ReplayMarketData) -> None:
    candles, as_of = closed_4h(replay, "KRW-DOGE", "2023-11-11")
    result = evaluate_4h(candles, as_of=as_of)
    assert result["entry_ok"] and result["trend_up"] and result["momentum_up"] and result["rsi_ok"]
    assert result["last_candle_utc"] == pd.Timestamp("2023-11-11T20:00:00")
    assert result["suggested_entry"] == candles["trade_price"].iloc[-1]
    assert result["suggested_stop"] < result["suggested_entry"]
    assert result["suggested_stop"] >= result["suggested_entry"] * (1 - TimingParams().max_stop_distance)
    assert result["reason"].startswith("entry ok")


def test_no_entry_after_the_august_2023_crash(replay: ReplayMarketData) -> None:
    candles, as_of = closed_4h(replay, "KRW-BTC", "2023-08-17")
    result = evaluate_4h(candles, as_of=as_of)
    assert not result["entry_ok"] and not result["trend_up"] and not result["momentum_up"]
    assert result["rsi14"] < 50 and "4h trend not up" in result["reason"]


def test_blow_off_is_not_chased(replay: ReplayMarketData) -> None:
    candles, as_of = closed_4h(replay, "KRW-BTC", "2023-12-04")
    result = evaluate_4h(candles, as_of=as_of)
    assert result["trend_up"] and result["rsi14"] > 80 and not result["entry_ok"]
    assert result["reason"] == f"no entry: RSI {result['rsi14']:.0f} outside 50-80"
    assert evaluate_4h(candles, TimingParams(rsi_max=100), as_of=as_of)["rsi_ok"]


def test_rsi_and_atr_equal_talib(replay: ReplayMarketData) -> None:
    for market in ("KRW-BTC", "KRW-ETH", "KRW-DOGE"):
        candles, as_of = closed_4h(replay, market, "2023-10-01")
        result = evaluate_4h(candles, as_of=as_of)
        high, low, close = (candles[c].to_numpy() for c in ("high_price", "low_price", "trade_price"))
        assert result["rsi14"] == pytest.approx(talib.RSI(close, 14)[-1], rel=1e-9)
        assert result["atr14"] == pytest.approx(talib.ATR(high, low, close, 14)[-1], rel=1e-9)


def test_lookahead_raises_and_stale_is_refused(replay: ReplayMarketData) -> None:
    candles, as_of = closed_4h(replay, "KRW-ETH", "2023-11-11")
    with pytest.raises(ValueError, match="lookahead"):
        evaluate_4h(candles, as_of=as_of - pd.Timedelta(hours=1))
    stale = evaluate_4h(candles, as_of=as_of + pd.Timedelta(days=2))
    assert not stale["entry_ok"] and stale["reason"].startswith("stale 4h candles")


def test_missing_price_is_refused(replay: ReplayMarketData) -> None:
    candles, as_of = closed_4h(replay, "KRW-DOGE", "2023-11-11")
    broken = candles.copy()
    broken.loc[broken.index[-2], "low_price"] = np.nan
    result = evaluate_4h(broken, as_of=as_of)
    assert not result["entry_ok"] and result["reason"] == "4h candles have missing prices in 1 rows"


def test_long_recording_works_unchanged(long_dir: Path) -> None:
    replay = ReplayMarketData(replay_dir=str(long_dir))
    candles, as_of = closed_4h(replay, "KRW-LINK", "2024-03-10")
    result = evaluate_4h(candles, as_of=as_of)
    assert result["entry_ok"] and result["candles"] == 200
    shuffled = evaluate_4h(candles.sample(frac=1.0, random_state=0), as_of=as_of)
    assert shuffled["close"] == result["close"] and shuffled["suggested_stop"] == result["suggested_stop"]


def test_the_suggested_stop_is_capped_at_the_exit_rules_loss_limit() -> None:
    # The close is the suggested entry: a stop farther than the hard stop would never be the one that fires.
    assert TimingParams().max_stop_distance == ExitParams().stop_loss_pct

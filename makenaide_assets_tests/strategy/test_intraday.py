"""The intraday stop rule (strategy/intraday.py): levels fixed at P's close, fills per candle."""

import pandas as pd
import pytest

from makenaide_assets.strategy.exits import ExitParams
from makenaide_assets.strategy.intraday import (
    WatchLevels,
    crossings,
    first_crossing,
    watch_book,
    watch_levels,
    watch_window,
)

LEVELS = WatchLevels("KRW-X", 2.0, avg_price=1000.0, stop_price=920.0, stop_rule="stop-loss", take_profit_price=1250.0)


def candles(*rows: tuple[str, float, float, float]) -> pd.DataFrame:
    return pd.DataFrame([{"at": pd.Timestamp(at), "open": o, "high": h, "low": low} for at, o, h, low in rows])


def test_a_low_through_the_stop_fills_at_the_stop() -> None:
    found = first_crossing(LEVELS, candles(("2023-01-02 00:00", 990, 1010, 960), ("2023-01-02 04:00", 950, 960, 900)))
    assert found is not None
    assert (found.at, found.price, found.rule) == (pd.Timestamp("2023-01-02 04:00"), 920.0, "stop-loss")
    assert "low 900 crossed the stop-loss 920" in found.reason


def test_a_candle_that_opens_below_the_stop_fills_at_its_open() -> None:
    found = first_crossing(LEVELS, candles(("2023-01-02 08:00", 880, 930, 870)))
    assert found is not None and found.price == 880.0 and "opened at 880" in found.reason


def test_a_high_through_the_take_profit_fills_at_the_take_profit_and_a_gap_up_at_the_open() -> None:
    assert first_crossing(LEVELS, candles(("2023-01-02 00:00", 1100, 1300, 1050))).price == 1250.0  # type: ignore[union-attr]
    assert first_crossing(LEVELS, candles(("2023-01-02 00:00", 1300, 1320, 1290))).price == 1300.0  # type: ignore[union-attr]


def test_both_levels_inside_one_candle_assume_the_worse() -> None:
    found = first_crossing(LEVELS, candles(("2023-01-02 00:00", 1000, 1300, 900)))
    assert found is not None and found.rule == "stop-loss" and found.price == 920.0


def test_the_first_crossing_in_time_wins_whatever_the_row_order() -> None:
    prices = candles(("2023-01-02 08:00", 1000, 1300, 990), ("2023-01-02 04:00", 1000, 1010, 900))
    assert first_crossing(LEVELS, prices).at == pd.Timestamp("2023-01-02 04:00")  # type: ignore[union-attr]


def test_nothing_crossed_or_unknown_prices_hold() -> None:
    assert first_crossing(LEVELS, candles(("2023-01-02 00:00", 1000, 1200, 930))) is None
    assert first_crossing(LEVELS, candles(("2023-01-02 00:00", float("nan"), 0.0, -1.0))) is None


def test_a_level_fills_on_the_tick_at_or_below_it() -> None:
    levels = WatchLevels("KRW-Y", 1.0, 60_000_000.0, 55_567_337.45, "trailing stop", 75_000_000.0)
    found = first_crossing(levels, candles(("2023-12-11 16:00", 56_000_000, 56_100_000, 55_460_000)))
    assert found is not None and found.price == 55_567_000.0


def test_levels_are_the_daily_rules_levels_the_higher_stop_protects() -> None:
    params = ExitParams()
    fresh = watch_levels("KRW-X", 1.0, avg_price=1000.0, highest_close=1000.0, close=1000.0, atr=10.0, params=params)
    # 3×ATR below a high of 1000 is 970: above the -8 % stop-loss of 920.
    assert (fresh.stop_price, fresh.stop_rule, fresh.take_profit_price) == (970.0, "trailing stop", 1250.0)
    wide = watch_levels("KRW-X", 1.0, avg_price=1000.0, highest_close=1000.0, close=990.0, atr=50.0, params=params)
    assert (wide.stop_price, wide.stop_rule) == (920.0, "stop-loss")
    # Without an ATR the trailing stop is 10 % below the highest close (today's close included).
    assert watch_levels("KRW-X", 1.0, 1000.0, 1100.0, 1200.0, None, params).stop_price == pytest.approx(1080.0)


def test_a_position_that_left_the_indicators_is_still_watched() -> None:
    positions = pd.DataFrame(
        [{"market": "KRW-X", "volume": 1.0, "avg_price": 1000.0, "highest_price": 1000.0},
         {"market": "KRW-GONE", "volume": 3.0, "avg_price": 50.0, "highest_price": 60.0}]
    )  # fmt: skip
    indicators = pd.DataFrame([{"market": "KRW-X", "close": 1000.0, "atr14": 10.0}])
    levels = {level.market: level for level in watch_book(positions, indicators)}
    assert levels["KRW-X"].stop_price == 970.0
    assert levels["KRW-GONE"].stop_price == pytest.approx(54.0)  # 10 % below 60: the percentage fallback
    prices = pd.DataFrame([{"market": "KRW-GONE", "at": pd.Timestamp("2023-01-02"), "open": 55, "high": 56, "low": 53}])
    assert [e.market for e in crossings(list(levels.values()), prices)] == ["KRW-GONE"]


def test_the_watch_runs_from_p_close_to_the_next_close() -> None:
    assert watch_window("2023-12-10") == (pd.Timestamp("2023-12-11"), pd.Timestamp("2023-12-12"))

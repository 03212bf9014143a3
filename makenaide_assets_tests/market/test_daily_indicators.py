"""daily_candles and daily_indicators on real recordings: values, checks, and no lookahead."""

from collections.abc import Sequence
from pathlib import Path

import dagster as dg
import numpy as np
import pandas as pd
import pytest

from makenaide_assets.market.quality import (
    duplicated_keys,
    ohlc_violations,
    stale_markets,
    unexplained_nans,
    volume_collapses,
)
from makenaide_assets.market.step import market
from makenaide_assets.resources.blacklist import Blacklist
from makenaide_assets.resources.io_manager import ParquetIOManager
from makenaide_assets.resources.market_data import MarketData, ReplayMarketData
from makenaide_assets.resources.thresholds import UniverseThresholds
from makenaide_assets.strategy.candles import Interval
from makenaide_assets.strategy.indicators import REQUIRED_COLUMNS
from makenaide_assets_tests.replay_tools import copy_replay, truncate_after

ASSETS = [market]  # tickers → universe → daily_candles → daily_indicators, one step


class FaultyDailyCandles(ReplayMarketData):
    """The daily-candle endpoint misbehaving for one market while the 24h ticker stays right: its
    candles stop `lag_days` early, one day is missing, or D's candle is cut to a fraction."""

    market: str
    lag_days: int = 0
    missing_day: str = ""
    d_value_share: float = 1.0

    def candles_many(self, markets: Sequence[str], interval: Interval, as_of: pd.Timestamp, count: int) -> pd.DataFrame:
        frame = super().candles_many(markets, interval, as_of, count)
        if interval != "day":
            return frame
        mine, when = frame["market"] == self.market, frame["candle_date_time_utc"]
        dropped = mine & (when >= as_of - pd.Timedelta(days=self.lag_days)) if self.lag_days else mine & False
        if self.missing_day:
            dropped |= mine & (when == pd.Timestamp(self.missing_day))
        d = mine & (when == as_of - pd.Timedelta(days=1))
        for column in ("candle_acc_trade_price", "candle_acc_trade_volume"):
            frame[column] = frame[column].where(~d, frame[column] * self.d_value_share)
        return frame[~dropped].reset_index(drop=True)


def run_market(
    replay: Path,
    storage: Path,
    partition: str,
    raise_on_error: bool = True,
    market_data: MarketData | None = None,
    selection: list[str] | None = None,
) -> dg.ExecuteInProcessResult:
    return dg.materialize(
        ASSETS,
        selection=selection,
        partition_key=partition,
        resources={
            "market_data": market_data or ReplayMarketData(replay_dir=str(replay)),
            "universe_thresholds": UniverseThresholds(min_months=6),
            "io_manager": ParquetIOManager(base_path=str(storage)),
            "blacklist": Blacklist(),
        },
        raise_on_error=raise_on_error,
    )


def materialized(result: dg.ExecuteInProcessResult) -> set[str]:
    return {e.asset_key.to_user_string() for e in result.get_asset_materialization_events()}


def failed_checks(result: dg.ExecuteInProcessResult) -> set[str]:
    return {e.check_name for e in result.get_asset_check_evaluations() if not e.passed}


def evaluation(result: dg.ExecuteInProcessResult, name: str) -> dg.AssetCheckEvaluation:
    return next(e for e in result.get_asset_check_evaluations() if e.check_name == name)


def test_snapshot_on_sample_matches_the_recorded_candles(sample_dir: Path, tmp_path: Path) -> None:
    result = run_market(sample_dir, tmp_path, "2023-12-20")
    assert result.success and not failed_checks(result)
    frame = result.asset_value("daily_indicators").set_index("market")
    eth = pd.read_csv(sample_dir / "candles/day/KRW-ETH.csv.gz")
    eth = eth[eth["candle_date_time_utc"] <= "2023-12-20T00:00:00"]
    assert frame.loc["KRW-ETH", "close"] == eth["trade_price"].iloc[-1]
    assert frame.loc["KRW-ETH", "ma200"] == pytest.approx(eth["trade_price"].tail(200).mean(), rel=1e-12)
    assert frame.loc["KRW-ETH", "high_52w"] == eth["high_price"].tail(365).max()
    assert (pd.to_datetime(frame["date"]) == pd.Timestamp("2023-12-20")).all()
    # KRW-GRT listed 2023-06-01: in the universe by December but without a 52-week range; it
    # is listed as short, not dropped and not filled.
    assert np.isnan(frame.loc["KRW-GRT", "high_52w"]) and "high_52w" in frame.loc["KRW-GRT", "insufficient_history"]


def test_one_asset_of_the_step_alone_reads_its_upstream_as_stored(sample_dir: Path, tmp_path: Path) -> None:
    # What the UI does when a person materialises daily_indicators alone: the step computes only it,
    # from the daily_candles stored for the day, and runs only its check.
    full = run_market(sample_dir, tmp_path, "2023-12-20")
    alone = run_market(sample_dir, tmp_path, "2023-12-20", selection=["daily_indicators"])
    assert alone.success and materialized(alone) == {"daily_indicators"}
    assert [e.check_name for e in alone.get_asset_check_evaluations()] == ["daily_indicators_no_unexplained_nan"]
    pd.testing.assert_frame_equal(alone.asset_value("daily_indicators"), full.asset_value("daily_indicators"))


def test_long_recording_works_unchanged(long_dir: Path, tmp_path: Path) -> None:
    result = run_market(long_dir, tmp_path, "2024-05-01")
    assert result.success and not failed_checks(result)
    assert sorted(result.asset_value("daily_indicators")["market"]) == ["KRW-BTC", "KRW-DOGE", "KRW-ETH", "KRW-LINK"]


@pytest.mark.parametrize("partition", ["2023-06-22", "2023-12-04"])
def test_no_lookahead_deleting_later_candles_changes_nothing(sample_dir: Path, tmp_path: Path, partition: str) -> None:
    full = run_market(sample_dir, tmp_path / "full", partition)
    cut = run_market(truncate_after(sample_dir, tmp_path / "cut", partition), tmp_path / "cut_storage", partition)
    for key in ("tickers", "universe", "daily_candles", "daily_indicators"):
        pd.testing.assert_frame_equal(full.asset_value(key), cut.asset_value(key), check_exact=True)


def _corrupt(market: str, date: str, column: str, value: float):
    def edit(interval: str, name: str, frame: pd.DataFrame) -> pd.DataFrame:
        if interval == "day" and name == market:
            frame = frame.copy()
            frame.loc[frame["candle_date_time_utc"] == f"{date}T00:00:00", column] = value
        return frame

    return edit


def test_high_below_low_fails_blocking_check_and_stops_the_run(sample_dir: Path, tmp_path: Path) -> None:
    replay = copy_replay(sample_dir, tmp_path / "bad", _corrupt("KRW-ETH", "2023-12-10", "high_price", 1.0))
    result = run_market(replay, tmp_path / "s", "2023-12-20", raise_on_error=False)
    assert not result.success
    assert failed_checks(result) == {"daily_candles_ohlc_sane"}
    ohlc = evaluation(result, "daily_candles_ohlc_sane")
    assert (ohlc.metadata["markets"].value, ohlc.metadata["count"].value) == ("KRW-ETH", 1)
    assert ohlc.metadata["violations"].value.startswith("KRW-ETH 2023-12-10: high < low, high < open/close (O ")
    # Blocking: the indicators were never computed from the bad candle.
    assert "daily_indicators" not in materialized(result)


def test_nan_price_in_a_recording_is_a_clear_error(sample_dir: Path, tmp_path: Path) -> None:
    replay = copy_replay(sample_dir, tmp_path / "nan", _corrupt("KRW-ETH", "2023-12-10", "trade_price", float("nan")))
    result = run_market(replay, tmp_path / "s", "2023-12-20", raise_on_error=False)
    assert not result.success
    failure = next(e for e in result.all_events if e.event_type_value == "STEP_FAILURE")
    assert "trade_price is missing or not a number" in str(failure.event_specific_data.error)


def test_stale_market_fails_freshness_and_blocks(sample_dir: Path, tmp_path: Path) -> None:
    # Upbit's ticker can say a market traded while its candle endpoint lags: the universe then
    # keeps a market whose last daily candle is older than D, and the freshness check must stop it.
    lagging = FaultyDailyCandles(replay_dir=str(sample_dir), market="KRW-ETH", lag_days=2)
    result = run_market(sample_dir, tmp_path, "2023-12-19", raise_on_error=False, market_data=lagging)
    assert failed_checks(result) == {"daily_candles_fresh"}
    fresh = evaluation(result, "daily_candles_fresh")
    assert fresh.blocking and fresh.metadata["markets"].value == "KRW-ETH"
    assert fresh.metadata["stale"].value == "KRW-ETH (last 2023-12-17)"
    assert "daily_indicators" not in materialized(result)


def test_a_hole_in_btc_history_is_unexplained_nan_and_blocks(sample_dir: Path, tmp_path: Path) -> None:
    # rs_vs_btc reads KRW-BTC's close 63 candles back; a recording that lost that candle leaves it NaN
    # for every market whose own history is long enough, which no short history explains.
    holed = FaultyDailyCandles(replay_dir=str(sample_dir), market="KRW-BTC", missing_day="2023-10-18")
    result = run_market(sample_dir, tmp_path, "2023-12-20", raise_on_error=False, market_data=holed)
    assert failed_checks(result) == {"daily_indicators_no_unexplained_nan"}
    nan = evaluation(result, "daily_indicators_no_unexplained_nan")
    assert nan.blocking and nan.metadata["count"].value >= 50 and "KRW-ETH" in nan.metadata["markets"].value
    assert "KRW-ETH: rs_vs_btc" in nan.metadata["unexplained_nan"].value
    assert "KRW-BTC" not in nan.metadata["markets"].value.split(", ")
    assert not result.success


def test_a_truncated_day_candle_warns_and_names_the_market(sample_dir: Path, tmp_path: Path) -> None:
    cut = FaultyDailyCandles(replay_dir=str(sample_dir), market="KRW-DOGE", d_value_share=0.001)
    result = run_market(sample_dir, tmp_path, "2023-12-20", market_data=cut)
    assert result.success  # a warning: the indicators are computed and the day goes on
    assert failed_checks(result) == {"daily_candles_volume_plausible"}
    volume = evaluation(result, "daily_candles_volume_plausible")
    assert volume.severity == dg.AssetCheckSeverity.WARN and volume.metadata["markets"].value == "KRW-DOGE"
    assert volume.metadata["collapsed"].value.startswith("KRW-DOGE: ")


def test_quality_rules_on_corrupted_frames() -> None:
    day = pd.Timestamp("2023-12-20")
    candles = pd.DataFrame(
        {
            "market": ["KRW-A", "KRW-A", "KRW-B", "KRW-B", "KRW-A"],
            "candle_date_time_utc": [
                day - pd.Timedelta(days=1),
                day,
                day - pd.Timedelta(days=2),
                day - pd.Timedelta(days=1),
                day,
            ],
            "opening_price": [10.0, 10.0, 10.0, 10.0, 10.0],
            "high_price": [12.0, 12.0, 9.0, 12.0, 12.0],
            "low_price": [9.0, 9.0, 8.0, 9.0, 9.0],
            "trade_price": [11.0, 11.0, 8.5, 11.0, 11.0],
            "candle_acc_trade_price": [1e9] * 5,
        }
    )
    markets, found = ohlc_violations(candles, open_="opening_price", high="high_price", low="low_price",
                                     close="trade_price", date="candle_date_time_utc")  # fmt: skip
    assert markets == ["KRW-B"] and found["violations"] == "KRW-B 2023-12-18: high < open/close (O 10 H 9 L 8 C 8.5)"
    assert stale_markets(candles, ["KRW-A", "KRW-B", "KRW-C"], "2023-12-20") == (
        ["KRW-B", "KRW-C"],
        {"expected_date": "2023-12-20", "stale": "KRW-B (last 2023-12-19)", "without_candles": "KRW-C"},
    )
    markets, found = duplicated_keys(candles, ["market", "candle_date_time_utc"])
    assert markets == ["KRW-A"] and found["duplicates"] == "KRW-A 2023-12-20 00:00:00"
    assert duplicated_keys(candles.drop_duplicates(), ["market", "candle_date_time_utc"])[0] == []
    history = pd.DataFrame(
        {
            "market": "KRW-A",
            "candle_date_time_utc": pd.date_range(end=day, periods=21),
            "candle_acc_trade_price": [1e9] * 20 + [0.0],
        }
    )
    assert volume_collapses(history, "2023-12-20")[0] == ["KRW-A"]
    assert volume_collapses(history.assign(candle_acc_trade_price=[1e9] * 20 + [2e7]), "2023-12-20")[0] == []
    assert volume_collapses(history.assign(candle_acc_trade_price=[1e9] * 20 + [9e6]), "2023-12-20")[0] == ["KRW-A"]

    frame = pd.DataFrame(
        {
            "market": ["KRW-A", "KRW-B"],
            **{c: [1.0, 1.0] for c in REQUIRED_COLUMNS if c != "market"},
            "insufficient_history": ["", ""],
        }
    )
    assert unexplained_nans(frame, REQUIRED_COLUMNS)[0] == []
    frame.loc[0, "ma200"] = np.nan
    markets, details = unexplained_nans(frame, REQUIRED_COLUMNS)
    assert markets == ["KRW-A"] and details["unexplained_nan"] == "KRW-A: ma200"
    frame.loc[0, "insufficient_history"] = "ma200"
    assert unexplained_nans(frame, REQUIRED_COLUMNS)[0] == []

"""daily_candles and daily_indicators on real recordings: values, checks, and no lookahead."""

from pathlib import Path

import dagster as dg
import numpy as np
import pandas as pd
import pytest

from makenaide_assets.market import indicators, tickers, universe
from makenaide_assets.market.quality import duplicated_keys, ohlc_violations, stale_rows, unexplained_nans
from makenaide_assets.resources.blacklist import Blacklist
from makenaide_assets.resources.io_manager import ParquetIOManager
from makenaide_assets.resources.market_data import ReplayMarketData
from makenaide_assets.resources.thresholds import UniverseThresholds
from makenaide_assets.strategy.indicators import REQUIRED_COLUMNS
from makenaide_assets_tests.replay_tools import copy_replay, truncate_after

MODULES = [tickers, universe, indicators]
ASSETS = dg.load_assets_from_modules(MODULES)
CHECKS = dg.load_asset_checks_from_modules(MODULES)


def run_market(replay: Path, storage: Path, partition: str, raise_on_error: bool = True) -> dg.ExecuteInProcessResult:
    return dg.materialize(
        [*ASSETS, *CHECKS],
        partition_key=partition,
        resources={
            "market_data": ReplayMarketData(replay_dir=str(replay)),
            "universe_thresholds": UniverseThresholds(min_months=6),
            "io_manager": ParquetIOManager(base_path=str(storage)),
            "blacklist": Blacklist(),
        },
        raise_on_error=raise_on_error,
    )


def failed_checks(result: dg.ExecuteInProcessResult) -> set[str]:
    return {e.check_name for e in result.get_asset_check_evaluations() if not e.passed}


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
    assert "daily_candles_ohlc_sane" in failed_checks(result)
    # Blocking: the indicators were never computed from the bad candle.
    assert not result.asset_materializations_for_node("daily_indicators")


def test_nan_price_in_a_recording_is_a_clear_error(sample_dir: Path, tmp_path: Path) -> None:
    replay = copy_replay(sample_dir, tmp_path / "nan", _corrupt("KRW-ETH", "2023-12-10", "trade_price", float("nan")))
    result = run_market(replay, tmp_path / "s", "2023-12-20", raise_on_error=False)
    assert not result.success
    failure = next(e for e in result.all_events if e.event_type_value == "STEP_FAILURE")
    assert "trade_price is missing or not a number" in str(failure.event_specific_data.error)


def test_stale_market_fails_freshness_and_blocks(sample_dir: Path, tmp_path: Path) -> None:
    # Upbit's ticker can say a market traded while its candle endpoint lags: the universe then
    # keeps a market whose last daily candle is older than D, and the freshness check must stop it.
    market_data = ReplayMarketData(replay_dir=str(sample_dir))
    as_of = pd.Timestamp("2023-12-20")
    fresh = market_data.candles_many(["KRW-BTC", "KRW-DOGE"], "day", as_of, 400)
    stale = market_data.candles_many(["KRW-ETH"], "day", pd.Timestamp("2023-12-18"), 400)
    candles = pd.concat([fresh, stale], ignore_index=True).assign(in_universe=True)

    @dg.asset(key="daily_candles", partitions_def=indicators.daily)
    def stand_in() -> pd.DataFrame:
        return candles

    @dg.asset(partitions_def=indicators.daily, ins={"daily_indicators": dg.AssetIn()})
    def downstream(daily_indicators: pd.DataFrame) -> pd.DataFrame:
        return daily_indicators

    result = dg.materialize(
        [stand_in, indicators.daily_indicators, indicators.daily_indicators_fresh, downstream],
        partition_key="2023-12-19",
        resources={"io_manager": ParquetIOManager(base_path=str(tmp_path))},
        raise_on_error=False,
    )
    [evaluation] = result.get_asset_check_evaluations()
    assert not evaluation.passed and evaluation.metadata["stale"].value == "KRW-ETH (2023-12-17)"
    assert not result.asset_materializations_for_node("downstream")


def test_quality_rules_on_corrupted_frames() -> None:
    frame = pd.DataFrame(
        {
            "market": ["KRW-A", "KRW-B", "KRW-A"],
            "date": ["2023-12-20", "2023-12-19", "2023-12-20"],
            "open": [10.0, 10.0, 10.0],
            "high": [12.0, 9.0, 12.0],
            "low": [9.0, 8.0, 9.0],
            "close": [11.0, 8.5, 11.0],
            **{c: [1.0, 1.0, 1.0] for c in REQUIRED_COLUMNS if c not in ("market", "date", "close")},
            "insufficient_history": ["", "", ""],
        }
    )
    assert not ohlc_violations(frame, open_="open", high="high", low="low", close="close", label=["market"])[0]
    assert stale_rows(frame, "2023-12-20")[1]["stale"] == "KRW-B (2023-12-19)"
    unique, found = duplicated_keys(frame, ["market"])
    assert not unique and found["duplicates"] == "KRW-A"
    assert duplicated_keys(frame.drop_duplicates("market"), ["market"])[0]
    frame.loc[0, "ma200"] = np.nan
    ok, details = unexplained_nans(frame, REQUIRED_COLUMNS)
    assert not ok and "KRW-A: ma200" in details["unexplained_nan"]
    frame.loc[0, "insufficient_history"] = "ma200"
    assert unexplained_nans(frame, REQUIRED_COLUMNS)[0]

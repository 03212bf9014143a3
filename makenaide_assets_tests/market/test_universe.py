"""tickers and universe on the recorded sample, and their pure screens."""

import json
from pathlib import Path

import dagster as dg
import pandas as pd
import pytest

from makenaide_assets.strategy.candles import MalformedMarketData, parse_market_list
from makenaide_assets.market.tickers import (
    mark_exclusions,
    tickers,
    tickers_blacklist_honoured,
    tickers_well_formed,
)
from makenaide_assets.market.universe import (
    screen_universe,
    universe,
    universe_subset_of_tickers,
    universe_thresholds_met,
)
from makenaide_assets.resources.blacklist import Blacklist
from makenaide_assets.resources.io_manager import ParquetIOManager
from makenaide_assets.resources.market_data import ReplayMarketData
from makenaide_assets.resources.thresholds import UniverseThresholds


def _resources(replay: Path, storage: Path, min_months: int = 6, blacklist: Path | None = None) -> dict:
    return {
        "market_data": ReplayMarketData(replay_dir=str(replay)),
        "universe_thresholds": UniverseThresholds(min_months=min_months),
        "io_manager": ParquetIOManager(base_path=str(storage)),
        "blacklist": Blacklist(**({"path": str(blacklist)} if blacklist else {})),
    }


def test_market_list_shapes_old_and_new() -> None:
    records = [
        {"market": "KRW-A", "korean_name": "a", "english_name": "A", "market_warning": "CAUTION"},
        {"market": "KRW-B", "korean_name": "b", "english_name": "B", "market_warning": "NONE"},
        {"market": "KRW-C", "market_event": {"warning": True, "caution": {"PRICE_FLUCTUATIONS": False}}},
        {"market": "KRW-D", "market_event": {"warning": False, "caution": {"TRADING_VOLUME_SOARING": True}}},
        {"market": "BTC-E", "market_warning": "NONE"},
    ]
    frame = parse_market_list(records, source="test")
    assert frame["market"].tolist() == ["KRW-A", "KRW-B", "KRW-C", "KRW-D"]
    assert frame["market_warning"].tolist() == ["CAUTION", "NONE", "WARNING", "CAUTION"]
    assert frame.loc[3, "caution_flags"] == "TRADING_VOLUME_SOARING"
    with pytest.raises(MalformedMarketData):
        parse_market_list({"error": "x"}, source="test")
    with pytest.raises(MalformedMarketData):
        parse_market_list([{"market": "KRW-X", "market_warning": "BANANA"}], source="test")


def test_exclusions_keep_rows_with_reasons() -> None:
    markets = parse_market_list(
        [
            {"market": "KRW-A", "market_warning": "NONE"},
            {"market": "KRW-B", "market_warning": "CAUTION"},
            {"market": "KRW-C", "market_warning": "NONE"},
        ],
        source="t",
    )
    out = mark_exclusions(markets, {"KRW-C": "thin book"})
    assert out["excluded_reason"].tolist() == ["", "market caution", "blacklisted: thin book"]


def test_screen_universe_reasons() -> None:
    tick = pd.DataFrame(
        {
            "market": ["KRW-A", "KRW-B", "KRW-C", "KRW-D", "KRW-E"],
            "korean_name": "",
            "english_name": "",
            "excluded_reason": ["", "", "", "", "blacklisted: x"],
        }
    )
    months = pd.Series({"KRW-A": 14, "KRW-B": 3, "KRW-C": 20})
    values = pd.Series({"KRW-A": 3e8, "KRW-B": 9e9, "KRW-C": 2.99e8})
    out = screen_universe(tick, months, values, UniverseThresholds()).set_index("market")
    assert out["passed"].to_dict() == {"KRW-A": True, "KRW-B": False, "KRW-C": False, "KRW-D": False, "KRW-E": False}
    assert out.loc["KRW-B", "rejected_rule"] == "months_listed"
    assert out.loc["KRW-C", "rejected_rule"] == "trade_value"
    assert out.loc["KRW-D", "rejected_rule"] == "not_listed"
    assert out.loc["KRW-E", "rejected_rule"] == "excluded"


def test_tickers_and_universe_on_sample(sample_dir: Path, tmp_path: Path) -> None:
    result = dg.materialize(
        [
            tickers,
            tickers_well_formed,
            tickers_blacklist_honoured,
            universe,
            universe_subset_of_tickers,
            universe_thresholds_met,
        ],
        partition_key="2023-07-03",
        resources=_resources(sample_dir, tmp_path),
    )
    assert result.success
    assert all(e.passed for e in result.get_asset_check_evaluations())
    tick = result.asset_value("tickers")
    assert len(tick) == 63 and tick["market"].is_unique
    assert tick.set_index("market").loc["KRW-BTT", "excluded_reason"].startswith("blacklisted")
    uni = result.asset_value("universe").set_index("market")
    # KRW-GRT was listed on 2023-06-01: one closed month by early July, below the demo's 6.
    assert uni.loc["KRW-GRT", "rejected_rule"] == "months_listed"
    assert uni.loc["KRW-BTC", "passed"]
    btc_value = pd.read_csv(sample_dir / "candles/day/KRW-BTC.csv.gz").set_index("candle_date_time_utc")
    assert uni.loc["KRW-BTC", "trade_value_krw"] == pytest.approx(
        btc_value.loc["2023-07-03T00:00:00", "candle_acc_trade_price"]
    )
    assert 0 < uni["passed"].sum() < len(uni)
    meta = result.asset_materializations_for_node("universe")[0].metadata
    assert meta["min_months"].value == 6 and "months_listed" in meta["rejected_by_rule"].value


def test_blacklist_check_fails_when_blacklist_leaks(sample_dir: Path, tmp_path: Path) -> None:
    blacklist = tmp_path / "blacklist.yaml"
    blacklist.write_text("blacklist:\n  KRW-ETH: test\n")

    @dg.asset(key="tickers", partitions_def=tickers.partitions_def)
    def leaky_tickers() -> pd.DataFrame:
        return pd.DataFrame({"market": ["KRW-ETH", "KRW-BTC"], "excluded_reason": ["", ""]})

    result = dg.materialize(
        [leaky_tickers, tickers_blacklist_honoured],
        partition_key="2023-07-03",
        resources=_resources(sample_dir, tmp_path, blacklist=blacklist),
        raise_on_error=False,
    )
    [evaluation] = result.get_asset_check_evaluations()
    assert not evaluation.passed and evaluation.metadata["leaked"].value == "KRW-ETH"


def test_malformed_markets_json_is_an_error(tmp_path: Path) -> None:
    (tmp_path / "markets.json").write_text(json.dumps({"not": "a list"}))
    with pytest.raises(MalformedMarketData):
        ReplayMarketData(replay_dir=str(tmp_path)).markets(pd.Timestamp("2023-07-04"))


def test_partition_outside_the_recording_is_a_clear_error(sample_dir: Path, tmp_path: Path) -> None:
    from makenaide_assets.resources.market_data import ReplayOutOfRange

    replay = ReplayMarketData(replay_dir=str(sample_dir))
    with pytest.raises(ReplayOutOfRange, match="outside the recording"):
        replay.markets(pd.Timestamp("2026-11-23"))
    with pytest.raises(ReplayOutOfRange):
        replay.markets(pd.Timestamp("2022-06-01"))
    assert len(replay.markets(pd.Timestamp("2024-01-01"))) == 63  # the last recorded day, 2023-12-31

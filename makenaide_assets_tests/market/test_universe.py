"""tickers and universe on the recorded sample, and their pure screens."""

import json
from collections.abc import Callable, Sequence
from pathlib import Path

import dagster as dg
import pandas as pd
import pytest

from makenaide_assets.market.step import market
from makenaide_assets.market.tickers import mark_exclusions
from makenaide_assets.market.universe import screen_universe
from makenaide_assets.resources.blacklist import Blacklist
from makenaide_assets.resources.io_manager import ParquetIOManager
from makenaide_assets.resources.market_data import MarketData, ReplayMarketData
from makenaide_assets.resources.thresholds import UniverseThresholds
from makenaide_assets.strategy.candles import MalformedMarketData, parse_market_list

DAY_BEFORE, DAY = "2023-07-02", "2023-07-03"
# The first two assets of the `market` step, with their checks; the step computes only these.
TICKERS_AND_UNIVERSE = ["tickers", "universe"]


class TradeValuesInMillions(ReplayMarketData):
    """A 24h traded-value feed that answers in millions of KRW (a unit change upstream)."""

    def trade_values_24h(self, markets: Sequence[str], as_of: pd.Timestamp) -> pd.Series:
        return super().trade_values_24h(markets, as_of) / 1e6


def _resources(
    replay: Path,
    storage: Path,
    min_months: int = 6,
    blacklist: Path | None = None,
    market_data: MarketData | None = None,
) -> dict:
    return {
        "market_data": market_data or ReplayMarketData(replay_dir=str(replay)),
        "universe_thresholds": UniverseThresholds(min_months=min_months),
        "io_manager": ParquetIOManager(base_path=str(storage)),
        "blacklist": Blacklist(**({"path": str(blacklist)} if blacklist else {})),
    }


def _replay_with_markets(sample: Path, dst: Path, edit: Callable[[list[dict]], list[dict]]) -> Path:
    """The sample's candles (linked) under a market list passed through `edit`."""
    dst.mkdir(parents=True)
    (dst / "candles").symlink_to(sample / "candles", target_is_directory=True)
    records = json.loads((sample / "markets.json").read_text())
    (dst / "markets.json").write_text(json.dumps(edit(records)))
    return dst


def _checks(result: dg.ExecuteInProcessResult) -> dict[str, dg.AssetCheckEvaluation]:
    return {e.check_name: e for e in result.get_asset_check_evaluations()}


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
        [market], selection=TICKERS_AND_UNIVERSE, partition_key=DAY, resources=_resources(sample_dir, tmp_path)
    )
    assert result.success
    assert {name: e.passed for name, e in _checks(result).items()} == {
        "tickers_well_formed": True, "tickers_none_disappeared": True, "universe_stable": True}  # fmt: skip
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
    [meta] = [
        e.materialization.metadata
        for e in result.get_asset_materialization_events()
        if e.asset_key.path == ["universe"]
    ]
    assert meta["min_months"].value == 6
    assert any("months_listed" in r.data["reason"] for r in meta["rejected_by_rule"].value.records)


def test_a_market_missing_from_the_list_is_named(sample_dir: Path, tmp_path: Path) -> None:
    instance = dg.DagsterInstance.ephemeral()
    before = dg.materialize([market], selection=["tickers"], partition_key=DAY_BEFORE, instance=instance,
                            resources=_resources(sample_dir, tmp_path / "s"))  # fmt: skip
    assert before.success
    partial = _replay_with_markets(
        sample_dir, tmp_path / "partial", lambda r: [m for m in r if m["market"] != "KRW-DOT"]
    )
    result = dg.materialize([market], selection=["tickers"], partition_key=DAY, instance=instance,
                            resources=_resources(partial, tmp_path / "s"))  # fmt: skip
    assert result.success  # a warning: the day goes on without it
    gone = _checks(result)["tickers_none_disappeared"]
    assert not gone.passed and gone.severity == dg.AssetCheckSeverity.WARN
    assert (gone.metadata["markets"].value, gone.metadata["count"].value) == ("KRW-DOT", 1)


def test_a_market_listed_twice_blocks_the_universe(sample_dir: Path, tmp_path: Path) -> None:
    doubled = _replay_with_markets(sample_dir, tmp_path / "doubled", lambda r: [*r, r[0]])
    result = dg.materialize([market], selection=TICKERS_AND_UNIVERSE, partition_key=DAY,
                            resources=_resources(doubled, tmp_path / "s"), raise_on_error=False)  # fmt: skip
    check = _checks(result)["tickers_well_formed"]
    assert not check.passed and check.blocking and check.metadata["markets"].value == "KRW-1INCH"
    # Blocking: universe was never computed from the doubled list.
    assert {e.asset_key.path[0] for e in result.get_asset_materialization_events()} == {"tickers"}


def test_a_collapsed_universe_warns_and_names_the_markets_that_dropped_out(sample_dir: Path, tmp_path: Path) -> None:
    instance = dg.DagsterInstance.ephemeral()
    storage = tmp_path / "s"
    before = dg.materialize([market], selection=TICKERS_AND_UNIVERSE, partition_key=DAY_BEFORE, instance=instance,
                            resources=_resources(sample_dir, storage))  # fmt: skip
    passed_before = set(before.asset_value("universe").query("passed")["market"])
    assert _checks(before)["universe_stable"].passed and len(passed_before) > 10
    millions = TradeValuesInMillions(replay_dir=str(sample_dir))
    result = dg.materialize([market], selection=TICKERS_AND_UNIVERSE, partition_key=DAY, instance=instance,
                            resources=_resources(sample_dir, storage, market_data=millions))  # fmt: skip
    assert result.success and not result.asset_value("universe")["passed"].any()
    stable = _checks(result)["universe_stable"]
    assert not stable.passed and stable.severity == dg.AssetCheckSeverity.WARN
    assert stable.metadata["count"].value == len(passed_before)
    dropped = sorted(passed_before)  # all named; the metadata shows 50 and counts the rest
    assert stable.metadata["markets"].value == ", ".join(dropped[:50]) + f" … (+{len(dropped) - 50})"
    assert stable.metadata["passed_now"].value == 0
    # The same day with an honest feed is churn at most, not a collapse.
    again = dg.materialize([market], selection=TICKERS_AND_UNIVERSE, partition_key=DAY, instance=instance,
                           resources=_resources(sample_dir, storage))  # fmt: skip
    assert _checks(again)["universe_stable"].passed


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

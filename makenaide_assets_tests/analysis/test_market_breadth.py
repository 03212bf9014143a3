"""`market_breadth` on recorded candles, and its warning when a vote cannot be taken."""

from pathlib import Path

import dagster as dg
import pandas as pd

from makenaide_assets.analysis.breadth_candidates import breadth_and_candidates
from makenaide_assets.partitions import daily
from makenaide_assets.resources.io_manager import ParquetIOManager
from makenaide_assets.resources.market_data import ReplayMarketData
from makenaide_assets.strategy.calendar import partition_close
from makenaide_assets.strategy.indicators import indicator_snapshot

DAY = "2023-12-20"
MARKETS = ["KRW-BTC", "KRW-ETH", "KRW-DOGE", "KRW-DOT", "KRW-SAND", "KRW-TRX"]


def stand_in(name: str, frame: pd.DataFrame) -> dg.AssetsDefinition:
    @dg.asset(name=name, partitions_def=daily)
    def _asset() -> pd.DataFrame:
        return frame

    return _asset


def breadth(sample_dir: Path, storage: Path, markets: list[str]) -> dg.ExecuteInProcessResult:
    candles = ReplayMarketData(replay_dir=str(sample_dir)).candles_many(markets, "day", partition_close(DAY), 400)
    btc = candles[candles["market"] == "KRW-BTC"].drop(columns="market").reset_index(drop=True)
    frames = {"daily_candles": candles.assign(in_universe=True), "daily_indicators": indicator_snapshot(candles, btc)}
    return dg.materialize(
        [*(stand_in(k, f) for k, f in frames.items()), breadth_and_candidates],
        selection=[*frames, "market_breadth"],  # the step's other asset, candidates, is not asked for
        partition_key=DAY,
        resources={"io_manager": ParquetIOManager(base_path=str(storage))},
    )


def test_both_votes_taken(sample_dir: Path, tmp_path: Path) -> None:
    result = breadth(sample_dir, tmp_path, MARKETS)
    [check] = result.get_asset_check_evaluations()
    assert check.passed and check.metadata["btc_trend"].value == "up"
    assert check.metadata["markets_with_ma200"].value == len(MARKETS)


def test_without_krw_btc_the_reading_warns_and_names_it(sample_dir: Path, tmp_path: Path) -> None:
    result = breadth(sample_dir, tmp_path, [m for m in MARKETS if m != "KRW-BTC"])  # its candles did not come
    assert result.success  # a warning: the reading itself already blocks new buys
    [check] = result.get_asset_check_evaluations()
    assert not check.passed and check.severity == dg.AssetCheckSeverity.WARN
    assert (check.metadata["markets"].value, check.metadata["btc_trend"].value) == ("KRW-BTC", "unknown")
    assert check.metadata["allow_new_buys"].value is False
    assert not bool(result.asset_value("market_breadth").iloc[0]["allow_new_buys"])

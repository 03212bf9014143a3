"""`timing_4h` on recorded 4-hour candles, and its warning when a BUY could not be timed."""

from pathlib import Path

import dagster as dg
import pandas as pd

from makenaide_assets.analysis.verdicts_and_timing import verdicts_and_timing
from makenaide_assets.partitions import daily
from makenaide_assets.resources.analyst import RulesAnalyst
from makenaide_assets.resources.io_manager import ParquetIOManager
from makenaide_assets.resources.market_data import MarketData, ReplayMarketData
from makenaide_assets.strategy.candles import Interval

DAY = "2023-10-24"
VERDICTS = pd.DataFrame(
    {"market": ["KRW-BTC", "KRW-ETH", "KRW-DOGE"], "verdict": ["BUY", "BUY", "HOLD"], "source": "rules"}
)


class Lagging4h(ReplayMarketData):
    """A 4-hour candle endpoint a day behind for one market (the daily one is fine)."""

    market: str

    def candles(self, market: str, interval: Interval, as_of: pd.Timestamp, count: int) -> pd.DataFrame:
        if interval == "minute240" and market == self.market:
            as_of = as_of - pd.Timedelta(days=1)
        return super().candles(market, interval, as_of, count)


def run(market_data: MarketData, storage: Path) -> dg.ExecuteInProcessResult:
    """timing_4h alone from its step (`verdicts_and_timing`), on VERDICTS stored as D's gpt_verdicts."""

    @dg.asset(name="gpt_verdicts", partitions_def=daily)
    def verdicts() -> pd.DataFrame:
        return VERDICTS

    io_manager = ParquetIOManager(base_path=str(storage))
    dg.materialize([verdicts], partition_key=DAY, resources={"io_manager": io_manager})
    return dg.materialize(
        [verdicts_and_timing],
        selection=["timing_4h"],
        partition_key=DAY,
        resources={"market_data": market_data, "analyst": RulesAnalyst(), "io_manager": io_manager},
    )


def test_every_buy_is_timed_on_fresh_candles(sample_dir: Path, tmp_path: Path) -> None:
    result = run(ReplayMarketData(replay_dir=str(sample_dir)), tmp_path)
    assert result.asset_value("timing_4h")["market"].tolist() == ["KRW-BTC", "KRW-ETH"]
    [check] = result.get_asset_check_evaluations()
    assert check.passed and check.metadata["buy_verdicts"].value == 2


def test_stale_4h_candles_warn_and_name_the_market(sample_dir: Path, tmp_path: Path) -> None:
    result = run(Lagging4h(replay_dir=str(sample_dir), market="KRW-ETH"), tmp_path)
    assert result.success  # a warning: no entry is taken on stale candles
    [check] = result.get_asset_check_evaluations()
    assert not check.passed and check.severity == dg.AssetCheckSeverity.WARN
    assert check.metadata["markets"].value == "KRW-ETH"
    assert check.metadata["reasons"].value.startswith("KRW-ETH: stale 4h candles")
    timing = result.asset_value("timing_4h").set_index("market")
    assert not timing.at["KRW-ETH", "entry_ok"]

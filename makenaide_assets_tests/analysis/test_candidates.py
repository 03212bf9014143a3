"""`candidates` on the recorded sample, and its check on a market whose volume history was lost."""

from pathlib import Path

import dagster as dg
import pandas as pd
import pytest

from makenaide_assets.analysis.breadth_candidates import breadth_and_candidates
from makenaide_assets.market.step import market
from makenaide_assets.resources.blacklist import Blacklist
from makenaide_assets.resources.io_manager import ParquetIOManager
from makenaide_assets.resources.market_data import MarketData, ReplayMarketData
from makenaide_assets.resources.thresholds import UniverseThresholds
from makenaide_assets.strategy.candles import Interval

DAY = "2023-12-06"  # five markets pass on the sample, KRW-DOGE on stage 2 and its volume surge


class VolumeHistoryLost(ReplayMarketData):
    """Daily candles whose 20 days before D were stored with zero volume (a candle store that
    wrote its rows before the volume arrived); D's own candle and the 24h ticker are right."""

    market: str

    def candles_many(self, markets: list[str], interval: Interval, as_of: pd.Timestamp, count: int) -> pd.DataFrame:
        frame = super().candles_many(markets, interval, as_of, count)
        if interval == "day":
            when = frame["candle_date_time_utc"]
            lost = (frame["market"] == self.market) & (when < as_of - pd.Timedelta(days=1))
            lost &= when >= as_of - pd.Timedelta(days=21)
            frame.loc[lost, ["candle_acc_trade_volume", "candle_acc_trade_price"]] = 0.0
        return frame


def run(market_data: MarketData, storage: Path, min_score: int | None = None) -> dg.ExecuteInProcessResult:
    config = {"ops": {"breadth_and_candidates": {"config": {"min_score": min_score}}}} if min_score else None
    return dg.materialize(
        [market, breadth_and_candidates],
        selection=["tickers", "universe", "daily_candles", "daily_indicators", "candidates"],
        partition_key=DAY,
        run_config=config,
        resources={
            "market_data": market_data,
            "universe_thresholds": UniverseThresholds(min_months=6),
            "io_manager": ParquetIOManager(base_path=str(storage)),
            "blacklist": Blacklist(),
        },
        raise_on_error=False,
    )


def test_candidates_pass_on_finite_inputs(sample_dir: Path, tmp_path: Path) -> None:
    result = run(ReplayMarketData(replay_dir=str(sample_dir)), tmp_path)
    assert result.success
    frame = result.asset_value("candidates")
    assert sorted(frame.loc[frame["passed"], "market"]) == ["KRW-DOGE", "KRW-DOT", "KRW-META", "KRW-SHIB", "KRW-XEC"]
    [check] = [e for e in result.get_asset_check_evaluations() if e.asset_key == dg.AssetKey("candidates")]
    assert check.passed and check.metadata["passed_rows"].value == 5


def test_the_score_threshold_is_run_config(sample_dir: Path, tmp_path: Path) -> None:
    """min_score 2 (a walk-forward grid cell): every market that passed at 4 still passes, and the
    ones added are uptrends scoring 2 or 3 (on this day six trend templates alone: 2), said so in
    their reason."""
    default = run(ReplayMarketData(replay_dir=str(sample_dir)), tmp_path / "4").asset_value("candidates")
    lower = run(ReplayMarketData(replay_dir=str(sample_dir)), tmp_path / "2", min_score=2).asset_value("candidates")
    at_4, at_3 = set(default.loc[default["passed"], "market"]), set(lower.loc[lower["passed"], "market"])
    added = lower[lower["market"].isin(at_3 - at_4)]
    assert at_4 < at_3 and not added.empty
    assert added["score"].isin([2, 3]).all()
    assert (added["weinstein_stage2"] | added["minervini_trend_template"]).all()
    assert added["reason"].str.match(r"passed with score [23]:").all()
    pd.testing.assert_frame_equal(  # the rules themselves do not move
        default.drop(columns=["passed", "reason"]), lower.drop(columns=["passed", "reason"])
    )


# The strategy divides D's volume by a zero average on purpose here; numpy says so.
@pytest.mark.filterwarnings("ignore:divide by zero:RuntimeWarning")
def test_an_infinite_volume_ratio_fails_the_blocking_check_naming_the_market(sample_dir: Path, tmp_path: Path) -> None:
    result = run(VolumeHistoryLost(replay_dir=str(sample_dir), market="KRW-DOGE"), tmp_path)
    failed = [e for e in result.get_asset_check_evaluations() if not e.passed]
    assert [(e.check_name, e.blocking) for e in failed] == [("candidates_inputs_sane", True)]
    assert failed[0].metadata["markets"].value == "KRW-DOGE"
    assert failed[0].metadata["not_finite"].value == "KRW-DOGE: volume_ratio"
    assert result.get_failed_step_keys() == {"breadth_and_candidates"}  # downstream of candidates never starts

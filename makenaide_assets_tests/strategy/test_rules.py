"""The comprehensive filter on real recorded candles: policy, self-evident rows, boundaries."""

from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from makenaide_assets.resources.market_data import ReplayMarketData
from makenaide_assets.settings import SAMPLE_REPLAY_DIR
from makenaide_assets.strategy.indicators import indicator_snapshot
from makenaide_assets.strategy.rules import (
    RULES,
    CandidateParams,
    PivotParams,
    TrendTemplateParams,
    evaluate_candidates,
    minervini_trend_template,
    oneil_pivot,
    rule_holds,
    vcp,
)


def all_candles(replay_dir: Path) -> pd.DataFrame:
    replay = ReplayMarketData(replay_dir=str(replay_dir))
    markets = sorted(path.name.split(".")[0] for path in (replay_dir / "candles" / "day").glob("*.csv*"))
    return replay.candles_many(markets, "day", pd.Timestamp("2030-01-01"), 100_000)


def evaluate_day(full: pd.DataFrame, day: str) -> pd.DataFrame:
    closed = full[full["candle_date_time_utc"] < pd.Timestamp(day) + pd.Timedelta(days=1)]
    candles = closed.groupby("market").tail(400)
    indicators = indicator_snapshot(candles, candles[candles["market"] == "KRW-BTC"])
    return evaluate_candidates(candles, indicators).assign(day=pd.Timestamp(day))


@pytest.fixture(scope="module")
def sample() -> pd.DataFrame:
    return all_candles(SAMPLE_REPLAY_DIR)


@pytest.fixture(scope="module")
def demo_window(sample: pd.DataFrame) -> pd.DataFrame:
    """Every other day of the demo's meaningful range, 2023-06-22 → 2023-12-31."""
    days = pd.date_range("2023-06-22", "2023-12-31", freq="2D")
    return pd.concat([evaluate_day(sample, d.strftime("%Y-%m-%d")) for d in days], ignore_index=True)


def test_policy_passes_some_days_and_none_on_others(demo_window: pd.DataFrame) -> None:
    evaluable = demo_window[demo_window["day"] >= "2023-07-12"]  # MA200 slope needs 220 candles
    per_day = evaluable.groupby("day")["passed"].sum()
    assert (per_day > 0).sum() >= 20 and (per_day == 0).sum() >= 20
    assert per_day.max() <= 10  # a filter, not a pass-through: at most a handful of 63 markets
    early = demo_window[demo_window["day"] < "2023-07-12"]
    assert not early["passed"].any()
    assert early["reason"].str.startswith("insufficient history: ").all()
    assert early["reason"].str.contains("ma200_slope").all()


def test_every_row_is_self_evident(demo_window: pd.DataFrame) -> None:
    params = CandidateParams()
    evaluated = ~demo_window["reason"].str.startswith(("insufficient history", "missing data"))
    for rule, (func, attr) in RULES.items():
        again = func(demo_window, getattr(params, attr)).fillna(False).astype(bool) & evaluated
        assert (demo_window[rule] == again).all(), rule
    weights = pd.Series({r: getattr(params.weights, r) for r in RULES})
    assert (demo_window["score"] == demo_window[list(RULES)].astype(int).mul(weights).sum(axis=1)).all()
    trend = demo_window["minervini_trend_template"] | demo_window["weinstein_stage2"]
    assert (demo_window["passed"] == (trend & (demo_window["score"] >= params.min_score))).all()
    assert (demo_window["reason"].str.startswith("passed") == demo_window["passed"]).all()
    for row in demo_window[demo_window["passed"]].to_dict("records"):
        claimed = [r for r in RULES if row[r]]
        assert claimed and all(rule_holds(row, r, params) for r in claimed), (row["day"], row["market"])
        assert row["failed_rules"] == ",".join(r for r in RULES if r not in claimed)


def test_each_rule_both_fires_and_fails(demo_window: pd.DataFrame) -> None:
    for rule in RULES:
        assert demo_window[rule].any() and not demo_window[rule].all(), rule


def test_known_day_end_of_2023(sample: pd.DataFrame) -> None:
    frame = evaluate_day(sample, "2023-12-31").set_index("market")
    assert frame.index.is_unique and len(frame) == 63
    assert sorted(frame.index[frame["passed"]]) == ["KRW-CRO", "KRW-QTUM"]
    assert frame.loc["KRW-CRO", "reason"] == "passed with score 4: minervini_trend_template, vcp"
    assert frame.loc["KRW-GRT", "reason"] == "insufficient history: ma200_slope"
    assert not frame.loc["KRW-GRT", list(RULES)].any()
    assert "52-week range" not in frame.loc["KRW-BTC", "reason"]  # 392 candles: the real 52-week range


def test_short_range_is_said_in_the_reason(sample: pd.DataFrame) -> None:
    frame = evaluate_day(sample, "2023-11-01").set_index("market")
    assert frame.loc["KRW-BTC", "range_candles"] == 332
    assert frame.loc["KRW-BTC", "reason"].endswith("; 52-week range from 332 of 365 candles")


def test_bad_candle_is_missing_data_not_a_pass(sample: pd.DataFrame) -> None:
    candles = sample[sample["candle_date_time_utc"] <= "2023-12-31"].copy()
    candles.loc[candles[candles["market"] == "KRW-CRO"].index[-3], "trade_price"] = np.nan
    indicators = indicator_snapshot(candles, candles[candles["market"] == "KRW-BTC"])
    row = evaluate_candidates(candles, indicators).set_index("market").loc["KRW-CRO"]
    assert row["reason"].startswith("missing data: ") and "ma50" in row["reason"]
    assert not row["passed"] and row["score"] == 0


def test_trend_template_boundaries_on_a_real_row(sample: pd.DataFrame) -> None:
    row = evaluate_day(sample, "2023-12-31").set_index("market").loc[["KRW-CRO"]]
    assert minervini_trend_template(row).iloc[0]
    at_low = row.assign(range_low=row["close"] / 2)  # exactly 100 % above the low
    params = TrendTemplateParams(min_above_low=1.0)
    assert minervini_trend_template(at_low, params).iloc[0]
    nudged = at_low.assign(range_low=np.nextafter(at_low["range_low"], np.inf))
    assert not minervini_trend_template(nudged, params).iloc[0]
    assert not minervini_trend_template(row.assign(ma200_slope=0.0)).iloc[0]  # flat is not rising
    assert not minervini_trend_template(row.assign(rs_rank=69.9)).iloc[0]


def test_vcp_and_pivot_boundaries_on_a_real_row(sample: pd.DataFrame) -> None:
    row = evaluate_day(sample, "2023-12-31").set_index("market").loc[["KRW-CRO"]]
    assert vcp(row).iloc[0]
    assert not vcp(row.assign(vcp_depth_3=row["vcp_depth_2"])).iloc[0]  # equal is not tighter
    assert not vcp(row.assign(vcp_volume_ratio=0.81)).iloc[0]
    pivot = row.assign(base_high=row["close"] / 2, base_depth=0.2)  # exactly 100 % above the pivot
    assert oneil_pivot(pivot, PivotParams(max_above_pivot=1.0)).iloc[0]
    assert not oneil_pivot(pivot.assign(base_high=np.nextafter(pivot["base_high"], 0)), PivotParams(1.0)).iloc[0]


def test_stricter_policy_passes_fewer(sample: pd.DataFrame) -> None:
    candles = sample[sample["candle_date_time_utc"] <= "2023-12-28"]
    indicators = indicator_snapshot(candles, candles[candles["market"] == "KRW-BTC"])
    default = evaluate_candidates(candles, indicators)
    strict = evaluate_candidates(candles, indicators, replace(CandidateParams(), min_score=6))
    assert default["passed"].sum() > strict["passed"].sum() >= 0
    assert (strict["passed"] <= default["passed"]).all()
    assert list(default["market"]) == list(indicators["market"])


def test_long_recording_bear_market_passes_nothing(long_dir: Path) -> None:
    full = all_candles(long_dir)
    bear = [evaluate_day(full, d.strftime("%Y-%m-%d")) for d in pd.date_range("2022-08-15", "2022-12-31", freq="9D")]
    assert not pd.concat(bear)["passed"].any()
    bull = evaluate_day(full, "2024-02-27")
    assert bull["passed"].any()

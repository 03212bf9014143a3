"""The comprehensive filter: six textbook rules, a score and a pass policy (pure pandas).

Each rule reads only columns of one frame (the indicator snapshot joined with the pattern
features below), so `evaluate_candidates` writes every input next to its verdict and
`rule_holds` can re-check any row on its own.

Policy: a market passes when it is in an uptrend by the book (Minervini's trend template or
Weinstein's stage 2) AND its score reaches `min_score`, i.e. the trend comes with a setup
(VCP or O'Neil pivot, each worth 2) or, for stage 2, with its own breakout volume. A row
whose indicators lack the history a rule reads is rejected with that reason, never guessed.

52-week range: the sample has it only from 2023-12-04 (365 candles). The rules use
`range_high`/`range_low` over the last min(365, available) candles once a market has at
least `range_min_candles` (200, when MA200 exists too) and say so in `reason`. A shorter
window makes "within 25 % of the high" easier and "30 % above the low" harder, and a
market with less than 200 candles is rejected by its missing MA200 anyway.
"""

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from makenaide_assets.strategy.indicators import RANGE_CANDLES, PatternParams, pattern_features


@dataclass(frozen=True)
class Stage2Params:
    """Weinstein: above a rising 30-week (150-day) MA, breaking out of its base on volume
    at least twice the recent average."""

    min_ma150_slope: float = 0.0
    min_volume_ratio: float = 2.0


@dataclass(frozen=True)
class TrendTemplateParams:
    """Minervini, Trade Like a Stock Market Wizard, ch. 5 (the eight criteria)."""

    min_ma200_slope: float = 0.0
    min_above_low: float = 0.30
    max_below_high: float = 0.25
    min_rs_rank: float = 70.0


@dataclass(frozen=True)
class VcpParams:
    """Minervini's volatility contraction: each pullback shallower than the one before, the
    last one tight, volume drying up in it."""

    max_final_depth: float = 0.15  # crypto swings about twice a stock's; Minervini's ~10 %
    max_volume_ratio: float = 0.8


@dataclass(frozen=True)
class PivotParams:
    """O'Neil: a proper base no deeper than a third, price near its pivot, never more than
    5 % above it."""

    max_base_depth: float = 0.33
    max_below_pivot: float = 0.03
    max_above_pivot: float = 0.05


@dataclass(frozen=True)
class Ma200BreakoutParams:
    max_age: int = 5  # crossed above MA200 within the last 5 candles and still above


@dataclass(frozen=True)
class VolumeSurgeParams:
    min_volume_ratio: float = 2.0
    min_change: float = 0.0  # a surge on a down day is distribution, not demand


@dataclass(frozen=True)
class ScoreWeights:
    weinstein_stage2: int = 3
    minervini_trend_template: int = 2
    vcp: int = 2
    oneil_pivot: int = 2
    ma200_breakout: int = 1
    volume_surge: int = 1


# Every rule holding: the highest score a market can reach (11).
MAX_SCORE = sum(vars(ScoreWeights()).values())


@dataclass(frozen=True)
class CandidateParams:
    stage2: Stage2Params = field(default_factory=Stage2Params)
    trend_template: TrendTemplateParams = field(default_factory=TrendTemplateParams)
    vcp: VcpParams = field(default_factory=VcpParams)
    pivot: PivotParams = field(default_factory=PivotParams)
    ma200_breakout: Ma200BreakoutParams = field(default_factory=Ma200BreakoutParams)
    volume_surge: VolumeSurgeParams = field(default_factory=VolumeSurgeParams)
    patterns: PatternParams = field(default_factory=PatternParams)
    weights: ScoreWeights = field(default_factory=ScoreWeights)
    min_score: int = 4
    trend_rules: tuple[str, ...] = ("minervini_trend_template", "weinstein_stage2")


def weinstein_stage2(f: pd.DataFrame, p: Stage2Params = Stage2Params()) -> pd.Series:
    return (
        (f["close"] > f["ma150"])
        & (f["ma150_slope"] > p.min_ma150_slope)
        & (f["close"] > f["base_high"])
        & (f["volume_ratio"] >= p.min_volume_ratio)
    )


def minervini_trend_template(f: pd.DataFrame, p: TrendTemplateParams = TrendTemplateParams()) -> pd.Series:
    return (
        (f["close"] > f["ma50"])
        & (f["ma50"] > f["ma150"])
        & (f["ma150"] > f["ma200"])
        & (f["ma200_slope"] > p.min_ma200_slope)
        & (f["close"] >= f["range_low"] * (1 + p.min_above_low))
        & (f["close"] >= f["range_high"] * (1 - p.max_below_high))
        & (f["rs_rank"] >= p.min_rs_rank)
    )


def vcp(f: pd.DataFrame, p: VcpParams = VcpParams()) -> pd.Series:
    depths = f.filter(regex=r"^vcp_depth_\d+$").to_numpy(dtype="float64")
    # NaN compares False, as it does in pandas: a missing depth is never a tightening.
    with np.errstate(invalid="ignore"):
        tightening = (np.diff(depths, axis=1) < 0).all(axis=1) & ~np.isnan(depths).any(axis=1)
        tight_last = depths[:, -1] <= p.max_final_depth
    return pd.Series(tightening & tight_last, index=f.index) & (f["vcp_volume_ratio"] <= p.max_volume_ratio)


def oneil_pivot(f: pd.DataFrame, p: PivotParams = PivotParams()) -> pd.Series:
    distance = f["close"] / f["base_high"] - 1
    return (f["base_depth"] <= p.max_base_depth) & (distance >= -p.max_below_pivot) & (distance <= p.max_above_pivot)


def ma200_breakout(f: pd.DataFrame, p: Ma200BreakoutParams = Ma200BreakoutParams()) -> pd.Series:
    return f["ma200_cross_age"].between(0, p.max_age)


def volume_surge(f: pd.DataFrame, p: VolumeSurgeParams = VolumeSurgeParams()) -> pd.Series:
    return (f["volume_ratio"] >= p.min_volume_ratio) & (f["change_1d"] > p.min_change)


# rule name -> (function, CandidateParams attribute with its parameters)
RULES = {
    "weinstein_stage2": (weinstein_stage2, "stage2"),
    "minervini_trend_template": (minervini_trend_template, "trend_template"),
    "vcp": (vcp, "vcp"),
    "oneil_pivot": (oneil_pivot, "pivot"),
    "ma200_breakout": (ma200_breakout, "ma200_breakout"),
    "volume_surge": (volume_surge, "volume_surge"),
}
# Indicator columns the rules read; their absence for lack of history rejects the row.
RULE_INPUTS = [
    "close", "change_1d", "ma50", "ma150", "ma200", "ma150_slope", "ma200_slope",
    "volume_ratio", "rs_vs_btc",
]  # fmt: skip

# Pattern features every market with enough history has; NaN means its candles were not given.
FEATURE_INPUTS = ["range_high", "range_low", "base_high", "base_depth"]


def rule_holds(row: Mapping | pd.Series, rule: str, params: CandidateParams = CandidateParams()) -> bool:
    """Re-evaluate one rule on one candidates row (it carries every input the rules read)."""
    func, attr = RULES[rule]
    frame = pd.DataFrame([dict(row)])
    return bool(func(frame, getattr(params, attr)).iloc[0])


def evaluate_candidates(
    candles: pd.DataFrame, indicators: pd.DataFrame, params: CandidateParams = CandidateParams()
) -> pd.DataFrame:
    """One row per indicators row: inputs, one boolean per rule, score, passed, failed_rules, reason."""
    rs_rank = indicators["rs_vs_btc"].rank(pct=True) * 100
    return judge_candidates(indicators, rs_rank, pattern_features(candles, params.patterns), params)


def judge_candidates(
    indicators: pd.DataFrame, rs_rank: pd.Series, features: pd.DataFrame, params: CandidateParams = CandidateParams()
) -> pd.DataFrame:
    """`evaluate_candidates` from its parts: the day's indicators, each row's relative-strength
    percentile among the day's markets, and the pattern features by market (index). Rows of several
    days at once give each day's rows as that day's call would (the fast backtest)."""
    columns = _rule_inputs(indicators, rs_rank, features)
    frame = pd.DataFrame(columns)
    short = [[c for c in s.split(",") if c in RULE_INPUTS] for s in frame["insufficient_history"].fillna("").tolist()]
    needed = [*RULE_INPUTS, *FEATURE_INPUTS]
    missing = [[c for c, bad in zip(needed, row, strict=True) if bad] for row in frame[needed].isna().to_numpy()]
    missing = [sorted(set(m) - set(s)) for m, s in zip(missing, short, strict=True)]
    usable = np.array([not s and not m for s, m in zip(short, missing, strict=True)], dtype=bool)
    held = {
        name: func(frame, getattr(params, attr)).fillna(False).astype(bool).to_numpy() & usable
        for name, (func, attr) in RULES.items()
    }
    score = np.zeros(len(frame), dtype="int64")
    trend = np.zeros(len(frame), dtype=bool)
    for name in RULES:
        score += held[name].astype("int64") * getattr(params.weights, name)
    for name in params.trend_rules:
        trend |= held[name]
    passed = trend & (score >= params.min_score)
    # Rows as plain Python values (what `to_dict("records")` gives `_reason`), without the frame's per-row cost.
    rows = [dict(zip(RULES, flags, strict=True)) for flags in zip(*(held[n].tolist() for n in RULES), strict=True)]
    for row, s, ok, candles in zip(rows, score.tolist(), passed.tolist(), frame["range_candles"].tolist(), strict=True):
        row.update(score=s, passed=ok, range_candles=candles)
    del columns["insufficient_history"]
    return pd.DataFrame(
        {
            **columns,
            **held,
            "score": score,
            "passed": passed,
            "failed_rules": [",".join(n for n in RULES if not row[n]) for row in rows],
            "reason": [_reason(row, s, m, params) for row, s, m in zip(rows, short, missing, strict=True)],
        }
    )


def _rule_inputs(indicators: pd.DataFrame, rs_rank: pd.Series, features: pd.DataFrame) -> dict[str, Any]:
    """The columns the rules read, by name: the indicators' inputs, `rs_rank` (aligned on the
    indicators' index) and the row's market's pattern features (NaN for a market without)."""
    columns: dict[str, Any] = {c: indicators[c].array for c in ["market", "date", *RULE_INPUTS, "insufficient_history"]}
    same_rows = rs_rank.index.equals(indicators.index)
    columns["rs_rank"] = (rs_rank if same_rows else rs_rank.reindex(indicators.index)).array
    aligned = features.reindex(indicators["market"].to_numpy())
    columns.update({c: aligned[c].array for c in features.columns})
    return columns


def _reason(row: dict, short: list[str], missing: list[str], params: CandidateParams) -> str:
    if short:
        return "insufficient history: " + ", ".join(short)
    if missing:
        return "missing data: " + ", ".join(missing)
    held = [n for n in RULES if row[n]]
    if row["passed"]:
        text = f"passed with score {row['score']}: " + ", ".join(held)
    elif not any(row[n] for n in params.trend_rules):
        text = "no uptrend (" + " or ".join(params.trend_rules) + ")"
    else:
        text = f"score {row['score']} below {params.min_score}: " + ", ".join(held)
    if row["range_candles"] < RANGE_CANDLES:
        text += f"; 52-week range from {int(row['range_candles'])} of {RANGE_CANDLES} candles"
    return text

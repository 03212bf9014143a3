"""`candidates`: the comprehensive filter, one boolean per rule, a score and `passed`."""

from dataclasses import replace

import dagster as dg
import numpy as np
import pandas as pd
from pydantic import Field

from makenaide_assets.market.metadata import (
    COLUMN_SCHEMA,
    catalog,
    check_result,
    check_spec,
    preview,
    reasons_table,
    table,
    table_schema,
)
from makenaide_assets.strategy.rules import (
    FEATURE_INPUTS,
    MAX_SCORE,
    RULE_INPUTS,
    RULES,
    CandidateParams,
    evaluate_candidates,
)

# Blocking: a candidate is one GPT verdict and one 4h check away from a buy.
INPUTS_SANE = check_spec(
    "candidates",
    "candidates_inputs_sane",
    "No passed candidate has a missing or infinite value among the inputs the rules read",
    blocking=True,
)


SCHEMA = table_schema(
    ("market", "string", "Upbit market code, KRW-<coin>"),
    ("date", "datetime", "The day of the indicator snapshot the rules read (D)"),
    ("close", "float", "D's close, KRW"),
    ("weinstein_stage2", "bool", "Weinstein stage 2: above a rising MA150, out of its base on twice the volume"),
    ("minervini_trend_template", "bool", "Minervini's trend template: MAs stacked and rising, near the high, RS >= 70"),
    ("vcp", "bool", "Minervini's volatility contraction: each pullback shallower, the last tight, volume drying"),
    ("oneil_pivot", "bool", "O'Neil: a base no deeper than a third, the close within -3 % / +5 % of its pivot"),
    ("ma200_breakout", "bool", "Crossed above the MA200 within the last 5 candles and still above"),
    ("volume_surge", "bool", "Volume at least twice its 20-day average on an up day"),
    ("score", "int", "The weights of the rules that hold (stage 2: 3; trend template, VCP, pivot: 2; others: 1)"),
    ("passed", "bool", "In an uptrend (trend template or stage 2) with a score of min_score (4) or more: asked"),
    ("failed_rules", "string", "The rules that did not hold, comma-separated"),
    ("reason", "string", "Why it passed or was rejected, in words"),
)

# An output of the `breadth_and_candidates` step (analysis/breadth_candidates.py).
CANDIDATES = dg.AssetOut(
    group_name="analysis",
    kinds={"pandas"},
    dagster_type=pd.DataFrame,
    is_required=False,
    description="Weinstein stage 2, Minervini trend template and VCP, O'Neil pivot, MA200 breakout, volume surge.",
    metadata={COLUMN_SCHEMA: SCHEMA},
)
CHECKS = [INPUTS_SANE]
DEFAULT_PARAMS = CandidateParams()


class CandidatesConfig(dg.Config):
    """Run config of the `breadth_and_candidates` step: how high a score an uptrend needs to be asked."""

    min_score: int = Field(
        DEFAULT_PARAMS.min_score,
        ge=1,
        le=MAX_SCORE,
        description=f"the rules' weighted score a market in an uptrend needs to pass (of {MAX_SCORE})",
    )

    def params(self) -> CandidateParams:
        return replace(DEFAULT_PARAMS, min_score=self.min_score)


def candidates_of(
    daily_candles: pd.DataFrame, daily_indicators: pd.DataFrame, params: CandidateParams = DEFAULT_PARAMS
) -> pd.DataFrame:
    """The `candidates` value from D's candles and indicators, without Dagster."""
    universe_candles = daily_candles[daily_candles["in_universe"]].drop(columns=["in_universe"])
    return evaluate_candidates(universe_candles, daily_indicators, params)


def candidates(
    context: dg.AssetExecutionContext,
    daily_candles: pd.DataFrame,
    daily_indicators: pd.DataFrame,
    params: CandidateParams = DEFAULT_PARAMS,
) -> dg.MaterializeResult:
    """The `candidates` value for D, its metadata and its check's result."""
    frame = candidates_of(daily_candles, daily_indicators, params)
    passed = frame[frame["passed"]]
    rule_counts = pd.DataFrame({"rule": list(RULES), "markets": [int(frame[r].sum()) for r in RULES]})
    context.log.info(f"candidates {context.partition_key}: {len(passed)} of {len(frame)} passed")
    rejected = frame[~frame["passed"]]
    return dg.MaterializeResult(
        asset_key="candidates",
        value=frame,
        metadata={
            **catalog(frame, SCHEMA),
            "passed": dg.MetadataValue.int(len(passed)),
            "passed_markets": ", ".join(passed["market"]) or "none",
            "rule_counts": table(rule_counts, rows=len(rule_counts)),
            "rejected_reasons": reasons_table(
                rejected.assign(why=rejected["reason"].str.split(":").str[0].str.split(" \\(").str[0]), "why"
            ),
            "preview": preview(frame.sort_values("score", ascending=False)[["market", "score", "passed", "reason"]]),
        },
        check_results=[inputs_sane(frame)],
    )


def inputs_sane(frame: pd.DataFrame) -> dg.AssetCheckResult:
    """Passed rows whose rule inputs are not finite numbers. The rules reject a NaN they see, but an
    infinity compares as a huge number: a market whose 20 days before D were booked with zero volume
    gets an infinite `volume_ratio` and passes every volume rule on nothing."""
    columns = [*RULE_INPUTS, *FEATURE_INPUTS]
    passed = frame[frame["passed"]]
    bad = ~np.isfinite(passed[columns].to_numpy(dtype="float64"))
    rows = [
        f"{market}: {', '.join(c for c, b in zip(columns, flags, strict=True) if b)}"
        for market, flags in zip(passed["market"], bad, strict=True)
        if flags.any()
    ]
    return check_result(
        INPUTS_SANE,
        passed.loc[bad.any(axis=1), "market"],
        not_finite="; ".join(rows) or "none",
        passed_rows=dg.MetadataValue.int(len(passed)),
    )

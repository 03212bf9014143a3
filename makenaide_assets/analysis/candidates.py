"""`candidates`: the comprehensive filter, one boolean per rule, a score and `passed`."""

import dagster as dg
import pandas as pd

from makenaide_assets.market.metadata import preview, reasons_table
from makenaide_assets.partitions import daily
from makenaide_assets.strategy.rules import RULES, evaluate_candidates, rule_holds


@dg.asset(partitions_def=daily, group_name="analysis", kinds={"pandas"})
def candidates(
    context: dg.AssetExecutionContext, daily_candles: pd.DataFrame, daily_indicators: pd.DataFrame
) -> dg.MaterializeResult:
    """Weinstein stage 2, Minervini trend template and VCP, O'Neil pivot, MA200 breakout, volume surge."""
    universe_candles = daily_candles[daily_candles["in_universe"]].drop(columns=["in_universe"])
    frame = evaluate_candidates(universe_candles, daily_indicators)
    passed = frame[frame["passed"]]
    rule_counts = pd.DataFrame({"rule": list(RULES), "markets": [int(frame[r].sum()) for r in RULES]})
    context.log.info(f"candidates {context.partition_key}: {len(passed)} of {len(frame)} passed")
    rejected = frame[~frame["passed"]]
    return dg.MaterializeResult(
        value=frame,
        metadata={
            "row_count": dg.MetadataValue.int(len(frame)),
            "passed": dg.MetadataValue.int(len(passed)),
            "passed_markets": ", ".join(passed["market"]) or "none",
            "rule_counts": dg.MetadataValue.md(rule_counts.to_markdown(index=False)),
            "rejected_reasons": reasons_table(
                rejected.assign(why=rejected["reason"].str.split(":").str[0].str.split(" \\(").str[0]), "why"
            ),
            "preview": preview(frame.sort_values("score", ascending=False)[["market", "score", "passed", "reason"]]),
        },
    )


@dg.asset_check(
    asset=candidates, partitions_def=daily, blocking=True, additional_ins={"universe": dg.AssetIn("universe")}
)
def candidates_subset_of_universe(candidates: pd.DataFrame, universe: pd.DataFrame) -> dg.AssetCheckResult:
    """Every candidate row is a market that passed the day's universe, once."""
    allowed = set(universe.loc[universe["passed"], "market"])
    extra = sorted(set(candidates["market"]) - allowed)
    dupes = sorted(candidates.loc[candidates["market"].duplicated(), "market"])
    return dg.AssetCheckResult(
        passed=not extra and not dupes,
        metadata={"not_in_universe": ", ".join(extra) or "none", "duplicates": ", ".join(dupes) or "none"},
    )


@dg.asset_check(asset=candidates, partitions_def=daily, blocking=True)
def candidates_rules_hold(candidates: pd.DataFrame) -> dg.AssetCheckResult:
    """Every passed row satisfies each rule it claims, re-evaluated from the row's own inputs."""
    violations = [
        f"{row['market']}: {rule}"
        for row in candidates[candidates["passed"]].to_dict("records")
        for rule in RULES
        if row[rule] and not rule_holds(row, rule)
    ]
    return dg.AssetCheckResult(
        passed=not violations,
        metadata={"passed_rows": int(candidates["passed"].sum()), "violations": "; ".join(violations) or "none"},
    )

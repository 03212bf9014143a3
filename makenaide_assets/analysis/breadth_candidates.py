"""The `breadth_and_candidates` step: `market_breadth` and `candidates`, which read the same two frames.

One step loads `daily_candles` and `daily_indicators` once for both assets; each asset keeps its
own key, group, metadata and checks (market/step.py says how a grouped step runs).
"""

from collections.abc import Iterator

import dagster as dg
import pandas as pd

from makenaide_assets.analysis import breadth, candidates
from makenaide_assets.market.step import GroupedStep
from makenaide_assets.partitions import daily

# Neither reads the other: both read only the step's inputs.
READS: dict[str, list[str]] = {"market_breadth": [], "candidates": []}


@dg.multi_asset(
    name="breadth_and_candidates",
    outs={"market_breadth": breadth.MARKET_BREADTH, "candidates": candidates.CANDIDATES},
    check_specs=[*breadth.CHECKS, *candidates.CHECKS],
    partitions_def=daily,
    can_subset=True,
    description="market_breadth and candidates for one day, from one read of the candles and indicators.",
)
def breadth_and_candidates(
    context: dg.AssetExecutionContext,
    config: candidates.CandidatesConfig,
    daily_candles: pd.DataFrame,
    daily_indicators: pd.DataFrame,
) -> Iterator[dg.MaterializeResult]:
    step = GroupedStep(context, READS)
    yield from step.produce("market_breadth", lambda: breadth.market_breadth(context, daily_indicators, daily_candles))
    yield from step.produce(
        "candidates", lambda: candidates.candidates(context, daily_candles, daily_indicators, config.params())
    )

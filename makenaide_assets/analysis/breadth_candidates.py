"""The `breadth_and_candidates` step: `market_breadth` and `candidates`, which read the same two frames.

One step reads `daily_candles` and `daily_indicators` once for both assets; each asset keeps its
own key, group, metadata and checks (market/step.py says how a grouped step runs). The two are deps
the step reads itself (`GroupedStep.value`: the partition's stored value, as an input would load
it), as verdicts_and_timing does: the run stores no load events for them (two per input, each a
commit to the instance: docs/performance.md).
"""

from collections.abc import Iterator

import dagster as dg

from makenaide_assets.analysis import breadth, candidates
from makenaide_assets.market.step import GroupedStep
from makenaide_assets.partitions import daily

# Neither reads the other: both read only the day's candles and indicators.
UPSTREAM = ["daily_candles", "daily_indicators"]
READS: dict[str, list[str]] = {"market_breadth": UPSTREAM, "candidates": UPSTREAM}


@dg.multi_asset(
    name="breadth_and_candidates",
    outs={"market_breadth": breadth.MARKET_BREADTH, "candidates": candidates.CANDIDATES},
    deps=UPSTREAM,
    check_specs=[*breadth.CHECKS, *candidates.CHECKS],
    partitions_def=daily,
    can_subset=True,
    description="market_breadth and candidates for one day, from one read of the candles and indicators.",
)
def breadth_and_candidates(
    context: dg.AssetExecutionContext, config: candidates.CandidatesConfig
) -> Iterator[dg.MaterializeResult]:
    step = GroupedStep(context, READS)
    yield from step.produce(
        "market_breadth",
        lambda day_candles, day_indicators: breadth.market_breadth(context, day_indicators, day_candles),
    )
    yield from step.produce(
        "candidates",
        lambda day_candles, day_indicators: candidates.candidates(
            context, day_candles, day_indicators, config.params()
        ),
    )

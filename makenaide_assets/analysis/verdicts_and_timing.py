"""The `verdicts_and_timing` step: `gpt_verdicts` and `timing_4h`, which reads it.

One step asks the analyst about each passed candidate and times the BUY answers on 4-hour candles;
each asset keeps its own key, group, metadata, lineage and checks (market/step.py says how a grouped
step runs). The coverage check (`gpt_verdicts_one_per_candidate`) still reads both values as stored:
it runs once the step has stored the verdicts, so a storage that lost or doubled a row is caught.

The three upstream values are deps the step reads itself (`GroupedStep.value`: the partition's
stored value, as an input would load it), and only when `gpt_verdicts` or its coverage check is
selected: `timing_4h` alone reads nothing but the verdicts, and the run stores no load events
(two per input, each a commit to the instance: docs/performance.md).
"""

from collections.abc import Iterator

import dagster as dg

from makenaide_assets.analysis import timing, verdicts
from makenaide_assets.market.retry import NETWORK_RETRY
from makenaide_assets.market.step import GroupedStep, stored_value
from makenaide_assets.partitions import daily
from makenaide_assets.resources.analyst import Analyst
from makenaide_assets.resources.market_data import MarketData

UPSTREAM = ["candidates", "daily_indicators", "daily_candles"]
READS: dict[str, list[str]] = {"gpt_verdicts": UPSTREAM, "timing_4h": ["gpt_verdicts"]}
COVERAGE = dg.AssetCheckKey(dg.AssetKey("gpt_verdicts"), verdicts.ONE_PER_CANDIDATE.name)


@dg.multi_asset(
    name="verdicts_and_timing",
    outs={"gpt_verdicts": verdicts.GPT_VERDICTS, "timing_4h": timing.TIMING_4H},
    deps=UPSTREAM,
    internal_asset_deps={asset: {dg.AssetKey(upstream) for upstream in reads} for asset, reads in READS.items()},
    check_specs=[*verdicts.CHECKS, *timing.CHECKS],
    partitions_def=daily,
    can_subset=True,
    # The analyst turns its own failures (OpenAI, the cache) into error rows; what is left to retry
    # is the step's IO (the values it loads and stores) and the 4-hour candles.
    retry_policy=NETWORK_RETRY,
    description="gpt_verdicts and timing_4h for one day, in one step.",
)
def verdicts_and_timing(
    context: dg.AssetExecutionContext, analyst: Analyst, market_data: MarketData
) -> Iterator[dg.MaterializeResult | dg.AssetCheckResult]:
    step = GroupedStep(context, READS)
    yield from step.produce(
        "gpt_verdicts",
        lambda candidates, indicators, candles: verdicts.gpt_verdicts(
            context, analyst, candidates, indicators, candles
        ),
    )
    if COVERAGE in context.selected_asset_check_keys:
        # The verdicts as the IO manager stored them (the step has handed them over by now).
        stored = stored_value(context, dg.AssetKey("gpt_verdicts"))
        yield verdicts.one_per_candidate(stored, step.value("candidates"))
    yield from step.produce("timing_4h", lambda gpt_verdicts: timing.timing_4h(context, market_data, gpt_verdicts))

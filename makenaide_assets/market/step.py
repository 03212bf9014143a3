"""Several contract assets in one Dagster step: the `market` step, and the helper every grouped step uses.

Each asset keeps what it had as an `@asset`: its key, group, kinds, description, partitions, its
in-asset checks and its lineage (an `AssetOut` and check specs declared beside its code, the deps
below). Only the step is shared. On the in-process executor a step costs a run more than its
work: a start and a success event, two events per upstream value it loads (each event one commit
to the SQLite instance), those Parquet reads, and Dagster's own bookkeeping per step — most of
what analysis_job cost above the computation (docs/performance.md). Inside a step, an asset reads
the value the step just built.

`can_subset=True`: the UI and `dagster asset materialize --select` still materialise any one of
these assets. An asset whose upstream in the step is not selected reads that upstream's stored
value for the partition, as its own step would have loaded it. A failed blocking check stops the
assets of the step that read the checked asset, as it stops downstream steps: they are not
computed, and Dagster fails the step for the failed check.
"""

from collections.abc import Callable, Iterator, Mapping, Sequence

import dagster as dg
import pandas as pd

from makenaide_assets.market import indicators, tickers, universe
from makenaide_assets.market.retry import NETWORK_RETRY, retried_unless_permanent
from makenaide_assets.partitions import daily
from makenaide_assets.resources.blacklist import Blacklist
from makenaide_assets.resources.io_manager import ParquetIOManager
from makenaide_assets.resources.market_data import MarketData
from makenaide_assets.resources.thresholds import UniverseThresholds


class GroupedStep:
    """Runs a step's assets in order; `reads` maps each asset to the assets of the same step it reads."""

    def __init__(self, context: dg.AssetExecutionContext, reads: Mapping[str, Sequence[str]]) -> None:
        self.context = context
        self.reads = reads
        self.blocking = {spec.key for spec in context.assets_def.check_specs if spec.blocking}
        self.values: dict[str, pd.DataFrame] = {}
        self.stopped: set[str] = set()  # failed a blocking check, or read one that did

    def produce(self, asset: str, build: Callable[..., dg.MaterializeResult]) -> Iterator[dg.MaterializeResult]:
        """`asset`'s result if it is selected; `build` gets the values of `reads[asset]`, in order."""
        if dg.AssetKey(asset) not in self.context.selected_asset_keys:
            return
        stopped = [upstream for upstream in self.reads[asset] if upstream in self.stopped]
        if stopped:
            self.stopped.add(asset)
            self.context.log.error(f"{asset} not computed: a blocking check of {', '.join(stopped)} failed")
            return
        result = build(*(self.value(upstream) for upstream in self.reads[asset]))
        # Only the selected checks are reported (a run may select an asset without its checks).
        selected = self.context.selected_asset_check_keys
        checks = [c for c in result.check_results if dg.AssetCheckKey(dg.AssetKey(asset), c.check_name) in selected]
        if any(not c.passed and dg.AssetCheckKey(dg.AssetKey(asset), c.check_name) in self.blocking for c in checks):
            self.stopped.add(asset)
        self.values[asset] = result.value
        yield dg.MaterializeResult(
            asset_key=asset,
            value=result.value,
            metadata=result.metadata,
            check_results=checks,
            data_version=result.data_version,
            tags=result.tags,
        )

    def value(self, asset: str) -> pd.DataFrame:
        """The value built in this step, else the one stored for the partition (a subset run)."""
        if asset not in self.values:
            self.values[asset] = stored_value(self.context, dg.AssetKey(asset))
        return self.values[asset]


def stored_value(context: dg.AssetExecutionContext, key: dg.AssetKey) -> pd.DataFrame:
    """`key`'s stored value for the step's partition, read by the IO manager that stored it.

    `context.load_asset_value` would build its input and output contexts on an ephemeral Dagster
    instance of their own (two in-memory storages, each stamped by Alembic: ~0.25 s per value read,
    a tenth of the daily run; docs/performance.md). The project's IO manager reads the file directly;
    any other IO manager (a test's) goes through Dagster's loader.
    """
    io_manager = context.resources.io_manager
    if isinstance(io_manager, ParquetIOManager):
        return io_manager.load_partition(key, context.partition_key)
    return context.load_asset_value(key, partition_key=context.partition_key)


def internal_deps(reads: Mapping[str, Sequence[str]]) -> dict[str, set[dg.AssetKey]]:
    """The lineage `reads` describes, as `@multi_asset(internal_asset_deps=...)` takes it."""
    return {asset: {dg.AssetKey(upstream) for upstream in upstreams} for asset, upstreams in reads.items()}


MARKET_READS = {
    "tickers": [],
    "universe": ["tickers"],
    "daily_candles": ["universe"],
    "daily_indicators": ["daily_candles"],
}


@dg.multi_asset(
    name="market",
    outs={
        "tickers": tickers.TICKERS,
        "universe": universe.UNIVERSE,
        "daily_candles": indicators.DAILY_CANDLES,
        "daily_indicators": indicators.DAILY_INDICATORS,
    },
    internal_asset_deps=internal_deps(MARKET_READS),
    check_specs=[*tickers.CHECKS, *universe.CHECKS, *indicators.CANDLES_CHECKS, *indicators.INDICATORS_CHECKS],
    partitions_def=daily,
    can_subset=True,
    retry_policy=NETWORK_RETRY,
    description="tickers → universe → daily_candles → daily_indicators for one day, in one step.",
)
def market(
    context: dg.AssetExecutionContext,
    blacklist: Blacklist,
    market_data: MarketData,
    universe_thresholds: UniverseThresholds,
) -> Iterator[dg.MaterializeResult]:
    step = GroupedStep(context, MARKET_READS)
    with retried_unless_permanent():
        yield from step.produce("tickers", lambda: tickers.tickers(context, blacklist, market_data))
        yield from step.produce("universe", lambda t: universe.universe(context, market_data, universe_thresholds, t))
        yield from step.produce(
            "daily_candles", lambda u: indicators.daily_candles(context, market_data, universe_thresholds, u)
        )
        yield from step.produce("daily_indicators", indicators.daily_indicators)

"""Ten partitioned assets in a chain, two in-asset checks each, computing nothing.

What any ten-step asset job costs through the CLI before any work: compare
`dagster job execute -m benchmarks.chain_defs -j chain --tags '{"dagster/partition": "2023-12-06"}'`
with the same command on `benchmarks.one_asset_defs -j one_asset_job` (docs/performance.md).
"""

from collections.abc import Iterator

import dagster as dg

daily = dg.DailyPartitionsDefinition(start_date="2022-01-01", timezone="UTC", end_offset=0)


def _link(index: int) -> dg.AssetsDefinition:
    specs = [dg.AssetCheckSpec(f"link{index}_check{n}", asset=f"link{index}") for n in range(2)]
    ins = {"upstream": dg.AssetIn(f"link{index - 1}")} if index else {}

    def results() -> Iterator[dg.Output | dg.AssetCheckResult]:
        yield dg.Output(index)
        for spec in specs:
            yield dg.AssetCheckResult(check_name=spec.name, passed=True)

    if not index:

        @dg.asset(name="link0", partitions_def=daily, check_specs=specs)
        def first() -> Iterator[dg.Output | dg.AssetCheckResult]:
            yield from results()

        return first

    # Each link reads the one before it, as the analysis assets read their upstream values.
    @dg.asset(name=f"link{index}", partitions_def=daily, ins=ins, check_specs=specs)
    def link(upstream: int) -> Iterator[dg.Output | dg.AssetCheckResult]:
        yield from results()

    return link


links = [_link(i) for i in range(10)]
defs = dg.Definitions(
    assets=links,
    jobs=[dg.define_asset_job("chain", selection=[link.key for link in links])],
    executor=dg.in_process_executor,
)

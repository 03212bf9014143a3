"""The cheapest partitioned Dagster job: one daily-partitioned asset that returns a number.

benchmarks/analysis_job.py runs it through the same CLI as analysis_job, so the difference
between the two is what the project adds on top of Dagster's own fixed cost per run.

With MAKENAIDE_BENCH_GC_FREEZE=1 it also freezes the garbage collector's view of what it imported,
as makenaide_assets/definitions.py does: the same process tuning, so the benchmark can say how much
of the analysis job's lead over stock Dagster that tuning is.
"""

import gc
import os

import dagster as dg

daily = dg.DailyPartitionsDefinition(start_date="2022-01-01", timezone="UTC", end_offset=0)


@dg.asset(partitions_def=daily)
def one_number(context: dg.AssetExecutionContext) -> int:
    """A constant, so the run is nothing but Dagster's own overhead."""
    return len(context.partition_key)


defs = dg.Definitions(
    assets=[one_number],
    jobs=[dg.define_asset_job("one_asset_job", selection=[one_number])],
    executor=dg.in_process_executor,
)

if os.environ.get("MAKENAIDE_BENCH_GC_FREEZE") == "1":
    gc.freeze()

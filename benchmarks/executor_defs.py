"""The project's definitions plus the same analysis job on the multiprocess executor, for benchmarks/executor.py."""

import dagster as dg

from makenaide_assets.definitions import build_defs
from makenaide_assets.jobs import ANALYSIS_ASSETS
from makenaide_assets.partitions import daily

defs = dg.Definitions.merge(
    build_defs(),
    dg.Definitions(
        jobs=[
            dg.define_asset_job(
                "analysis_job_multiprocess",
                selection=dg.AssetSelection.assets(*ANALYSIS_ASSETS),
                partitions_def=daily,
                executor_def=dg.multiprocess_executor,
            )
        ]
    ),
)

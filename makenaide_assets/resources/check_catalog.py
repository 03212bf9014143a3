"""Which asset checks the project defines, handed to `daily_report` as a resource.

The report lists every check for D, also those that never ran; a run's context carries only its
own job's checks, so the full list is injected by whoever builds the Definitions (pipeline.py)
instead of the report importing the definitions from inside a run.
"""

import dagster as dg
from pydantic import Field


class CheckCatalog(dg.ConfigurableResource):
    """Every asset check of the pipeline, as `asset_key:check_name` strings."""

    checks: list[str] = Field(default_factory=list)

    # Not `keys`: pydantic models are turned into dicts through a `keys` attribute.
    def check_keys(self) -> set[dg.AssetCheckKey]:
        keys = set()
        for entry in self.checks:
            asset, _, name = entry.rpartition(":")
            keys.add(dg.AssetCheckKey(dg.AssetKey.from_user_string(asset), name))
        return keys

"""The one Definitions object: `dagster dev` and `dagster asset materialize -m makenaide_assets.definitions`."""

import gc
import os

import dagster as dg

from makenaide_assets import settings
from makenaide_assets.backtest import asset as backtest
from makenaide_assets.backtest import walk_forward_asset as walk_forward
from makenaide_assets.pipeline import pipeline_definitions
from makenaide_assets.resources.modes import resources_for


def build_defs() -> dg.Definitions:
    """The project's definitions with resources for the current environment (tests call it
    after setting theirs; the code location loads `defs` once)."""
    resources = resources_for(settings.mode(), has_openai_key=bool(os.environ.get("OPENAI_API_KEY")))
    return pipeline_definitions(resources, extra_modules=[backtest, walk_forward])


defs = build_defs()

# Everything imported and built above lives as long as the process. Moved out of the cyclic
# garbage collector's sight, the ~250,000 objects are no longer walked by each full collection of
# a run, nor by the interpreter's collections at exit: ~1.3 s of a daily `dagster job execute`, most
# of it after the run ended (docs/performance.md). Objects made later are collected as before.
gc.freeze()

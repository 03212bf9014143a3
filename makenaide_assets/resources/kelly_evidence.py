"""`KellyEvidence`: the out-of-sample trades of a walk-forward run, for Kelly while the ledger is short of trades.

The file is the `oos_trades.csv` that `python -m makenaide_assets.backtest.walk_forward` (or the
`walk_forward_report` asset) wrote: one row per closed trade of a test window, with the instant it
closed. `strategy_stats(D)` reads it whole and keeps only what had closed before D
(`strategy.stats.evidence_before`): a file written later, holding trades after D, changes nothing
about D. Set by MAKENAIDE_KELLY_EVIDENCE (resources/modes.py); unset: no evidence, as before.
"""

from functools import lru_cache
from pathlib import Path

import dagster as dg
import pandas as pd

EVIDENCE_COLUMNS = ["exit_partition", "executed_at", "pnl_krw", "return_pct"]


class KellyEvidence(dg.ConfigurableResource):
    """Walk-forward out-of-sample trades (`oos_trades.csv`); `path` None: no evidence."""

    path: str | None = None

    def trades(self) -> pd.DataFrame | None:
        """Every trade of the file (a copy), or None without a file configured. A configured file that
        is missing or lacks a column fails: sizing would otherwise fall back without a word."""
        if not self.path:
            return None
        file = Path(self.path)
        if not file.is_file():
            raise FileNotFoundError(f"Kelly evidence {file} does not exist (MAKENAIDE_KELLY_EVIDENCE)")
        return _read(str(file), file.stat().st_mtime_ns).copy()

    def describe(self) -> str:
        return self.path or "none"


@lru_cache(maxsize=4)
def _read(path: str, mtime_ns: int) -> pd.DataFrame:
    """Read once per version of the file: the fast engine asks every day of a backtest."""
    frame = pd.read_csv(path, dtype={"exit_partition": str})
    missing = [c for c in EVIDENCE_COLUMNS if c not in frame.columns]
    if missing:
        raise ValueError(f"Kelly evidence {path} lacks {missing}: not a walk-forward oos_trades.csv")
    return frame

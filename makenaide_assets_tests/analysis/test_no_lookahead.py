"""The whole analysis for D is unchanged when every candle after D is deleted from the recording."""

from pathlib import Path

import dagster as dg
import pandas as pd
import pytest

from makenaide_assets.definitions import build_defs
from makenaide_assets_tests.replay_tools import truncate_after

COMPARED = ["daily_indicators", "market_breadth", "candidates", "gpt_verdicts", "timing_4h", "signals"]


def analyse(replay: Path, var: Path, partition: str, monkeypatch: pytest.MonkeyPatch) -> dict[str, pd.DataFrame]:
    monkeypatch.setenv("MAKENAIDE_REPLAY_DIR", str(replay))
    monkeypatch.setenv("MAKENAIDE_VAR", str(var))
    defs = build_defs()
    result = defs.resolve_job_def("analysis_job").execute_in_process(
        partition_key=partition, instance=dg.DagsterInstance.ephemeral()
    )
    assert result.success
    return {key: pd.read_parquet(var / "storage" / key / f"{partition}.parquet") for key in COMPARED}


# Days with candidates, BUY verdicts and 4h timing in play (12-06 buys KRW-DOGE).
@pytest.mark.parametrize("partition", ["2023-09-15", "2023-11-02", "2023-12-06"])
def test_analysis_for_d_ignores_everything_after_d(
    sample_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, partition: str
) -> None:
    full = analyse(sample_dir, tmp_path / "full", partition, monkeypatch)
    cut = analyse(truncate_after(sample_dir, tmp_path / "cut", partition), tmp_path / "cutvar", partition, monkeypatch)
    for key in COMPARED:
        pd.testing.assert_frame_equal(full[key], cut[key], check_exact=True, obj=key)
    if partition == "2023-12-06":
        assert len(full["signals"]) >= 1 and len(full["timing_4h"]) >= 1

"""The operator's day: hung runs end and are told."""

from pathlib import Path

import dagster as dg
import pytest
import yaml

from makenaide_assets.definitions import build_defs

REPO = Path(__file__).resolve().parents[1]


# ---- hung runs ------------------------------------------------------------------------------


def test_analysis_and_trading_runs_end_after_30_minutes() -> None:
    defs = build_defs()
    for name in ("analysis_job", "trading_job"):
        assert defs.resolve_job_def(name).tags["dagster/max_runtime"] == "1800"


@pytest.mark.parametrize("path", ["dagster.yaml", "deploy/production/dagster.yaml"])
def test_both_instances_monitor_runs(path: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Each file, loaded by Dagster itself (its storage swapped for a local one), runs the monitoring
    daemon that enforces `dagster/max_runtime`."""
    config = yaml.safe_load((REPO / path).read_text())
    assert config["run_monitoring"]["enabled"] is True
    config["storage"] = {"sqlite": {"base_dir": str(tmp_path / "storage")}}
    config["compute_logs"] = {
        "module": "dagster._core.storage.local_compute_log_manager",
        "class": "LocalComputeLogManager",
        "config": {"base_dir": str(tmp_path / "logs")},
    }
    config.pop("local_artifact_storage", None)
    home = tmp_path / "home"
    home.mkdir()
    (home / "dagster.yaml").write_text(yaml.safe_dump(config))
    monkeypatch.chdir(tmp_path)
    with dg.DagsterInstance.from_config(str(home)) as instance:
        assert instance.run_monitoring_enabled
        assert "MONITORING" in instance.get_required_daemon_types()

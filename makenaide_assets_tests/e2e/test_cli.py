"""The market half and the whole analysis through the real `dagster` CLI, as a user types it; `dg` as well."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

REPO = Path(__file__).resolve().parents[2]
DAGSTER = str(Path(sys.executable).with_name("dagster"))
DG = str(Path(sys.executable).with_name("dg"))


def dagster(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run([DAGSTER, *args], cwd=REPO, env=env, capture_output=True, text=True, timeout=300, check=False)


def dg(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    """`dg` from the repository root: the project is pyproject.toml's [tool.dg]."""
    return subprocess.run([DG, *args], cwd=REPO, env=env, capture_output=True, text=True, timeout=300, check=False)


@pytest.fixture
def cli_env(tmp_path: Path) -> dict[str, str]:
    home = tmp_path / "dagster_home"
    home.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MAKENAIDE_", "OPENAI_", "UPBIT_"))}
    env.update(DAGSTER_HOME=str(home), MAKENAIDE_VAR=str(tmp_path / "var"))
    return env


@pytest.mark.e2e
def test_market_half_materialises_with_checks_on_the_sample(cli_env: dict[str, str], tmp_path: Path) -> None:
    select = "tickers,universe,daily_candles,daily_indicators"
    run = dagster("asset", "materialize", "-m", "makenaide_assets.definitions", "--select", select,
                  "--partition", "2023-12-20", env=cli_env)  # fmt: skip
    assert run.returncode == 0, run.stderr[-3000:]
    assert "RUN_SUCCESS" in run.stderr
    assert "ASSET_CHECK_EVALUATION" in run.stderr and "failed" not in _check_lines(run.stderr)
    frame = pd.read_parquet(tmp_path / "var/storage/daily_indicators/2023-12-20.parquet")
    assert len(frame) == 62 and (frame["date"] == pd.Timestamp("2023-12-20")).all()


@pytest.mark.e2e
def test_other_replay_directory_through_the_cli(cli_env: dict[str, str], long_dir: Path, tmp_path: Path) -> None:
    env = {**cli_env, "MAKENAIDE_REPLAY_DIR": str(long_dir)}
    run = dagster("job", "execute", "-m", "makenaide_assets.definitions", "-j", "analysis_job",
                  "--tags", '{"dagster/partition": "2024-03-05"}', env=env)  # fmt: skip
    assert run.returncode == 0, run.stderr[-3000:]
    assert "failed" not in _check_lines(run.stderr)
    indicators = pd.read_parquet(tmp_path / "var/storage/daily_indicators/2024-03-05.parquet")
    assert sorted(indicators["market"]) == ["KRW-BTC", "KRW-DOGE", "KRW-ETH", "KRW-LINK"]
    assert (tmp_path / "var/storage/signals/2024-03-05.parquet").is_file()


@pytest.mark.e2e
def test_dg_checks_and_lists_the_definitions(cli_env: dict[str, str]) -> None:
    # What `dagster definitions validate` and `dagster dev` now point to (SupersessionWarning: "Use 'dg ...'").
    (Path(cli_env["DAGSTER_HOME"]) / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    check = dg("check", "defs", env=cli_env)
    assert check.returncode == 0, (check.stdout + check.stderr)[-3000:]
    assert "All definitions loaded successfully." in check.stdout
    listed = dg("list", "defs", "--json", env=cli_env)
    assert listed.returncode == 0, listed.stderr[-3000:]
    defs = json.loads(listed.stdout)
    assert {"tickers", "signals", "fills", "stop_levels", "stop_exits"} <= {a["asset_key"] for a in defs["assets"]}
    assert {"analysis_job", "trading_job", "stop_exit_job"} <= {j["name"] for j in defs["jobs"]}
    assert "analysis_schedule" in {s["name"] for s in defs["schedules"]}
    assert {"signals_sensor", "stop_watch_sensor"} <= {s["name"] for s in defs["sensors"]}


def _check_lines(log: str) -> str:
    return "\n".join(line for line in log.splitlines() if "ASSET_CHECK_EVALUATION" in line)

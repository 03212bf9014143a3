"""The market half and the whole analysis through the real `dagster` CLI, as a user types it."""

import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

REPO = Path(__file__).resolve().parents[2]
DAGSTER = str(Path(sys.executable).with_name("dagster"))


def dagster(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run([DAGSTER, *args], cwd=REPO, env=env, capture_output=True, text=True, timeout=300, check=False)


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


def _check_lines(log: str) -> str:
    return "\n".join(line for line in log.splitlines() if "ASSET_CHECK_EVALUATION" in line)

"""Shared fixtures: every test gets its own state folder, so no test sees another's ledger."""

import os
from pathlib import Path

import pytest

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"

# Demo mode's partitions are the days of the replay the definitions were imported with
# (makenaide_assets/partitions.py), fixed once per process. Tests replay both recordings in one
# process, so the definitions are imported with the long one, whose days span the sample's;
# `isolated_state` then removes the variable, and resources default to the sample again.
os.environ["MAKENAIDE_REPLAY_DIR"] = str(SHARED_DATA / "upbit-long")


@pytest.fixture(autouse=True)
def isolated_state(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    var = tmp_path / "var"
    monkeypatch.setenv("MAKENAIDE_VAR", str(var))
    for name in (
        "MAKENAIDE_MODE",
        "MAKENAIDE_STORAGE",
        "MAKENAIDE_LEDGER_URL",
        "MAKENAIDE_REPLAY_DIR",
        "MAKENAIDE_LIVE_CONFIRM",
        "OPENAI_API_KEY",
        "UPBIT_ACCESS_KEY",
        "UPBIT_SECRET_KEY",
    ):
        monkeypatch.delenv(name, raising=False)
    return var


@pytest.fixture
def sample_dir() -> Path:
    from makenaide_assets.settings import SAMPLE_REPLAY_DIR

    return SAMPLE_REPLAY_DIR


@pytest.fixture
def long_dir() -> Path:
    path = SHARED_DATA / "upbit-long"
    if not (path / "markets.json").is_file():
        raise FileNotFoundError(f"the long recording is expected at {path} (../shared beside the checkout)")
    return path

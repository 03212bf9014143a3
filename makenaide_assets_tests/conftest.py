"""Shared fixtures: every test gets its own state folder, so no test sees another's ledger."""

import os
from pathlib import Path

import pytest

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"

# Demo mode's partitions are the days of the replay the definitions were imported with
# (makenaide_assets/partitions.py), fixed once per process. Tests replay both recordings in one
# process, so the partitions are fixed with the long recording, whose days span the sample's; the
# variable is then put back, and resources default to the sample as for a user.
_before = os.environ.get("MAKENAIDE_REPLAY_DIR")
os.environ["MAKENAIDE_REPLAY_DIR"] = str(SHARED_DATA / "upbit-long")
import makenaide_assets.partitions  # noqa: E402, F401

if _before is None:
    del os.environ["MAKENAIDE_REPLAY_DIR"]
else:
    os.environ["MAKENAIDE_REPLAY_DIR"] = _before


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

"""Shared fixtures: every test gets its own state folder, so no test sees another's ledger."""

import json
import os
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
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


@pytest.fixture
def webhook() -> Iterator[tuple[str, list[dict]]]:
    """A loopback Slack-style webhook: its URL (with a token that must never reach a log) and every
    JSON body posted to it, in order."""
    received: list[dict] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            received.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
            self.send_response(200)
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}/hooks/secret-token", received
    server.shutdown()

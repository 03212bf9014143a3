"""Runs makenaide_assets.testing.upbit_server in its own process, as a benchmark's Upbit.

Its own process, so the server's clock (when a request arrived, which decides 429s) is not
delayed by the GIL of the pipeline under test.
"""

import json
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import requests


class ServerProcess:
    def __init__(self, replay_dir: Path, now: str) -> None:
        self.replay_dir = replay_dir
        self.now = now
        self.url = ""
        self._proc: subprocess.Popen[str] | None = None

    def __enter__(self) -> "ServerProcess":
        cmd = [sys.executable, "-m", "makenaide_assets.testing.upbit_server", "--replay-dir", str(self.replay_dir)]
        self._proc = subprocess.Popen([*cmd, "--now", self.now], stdout=subprocess.PIPE, text=True)
        first = self._proc.stdout.readline() if self._proc.stdout else ""
        if not first.startswith("http://"):
            self._proc.kill()
            raise RuntimeError(f"the Upbit server did not start: {first!r}")
        self.url = first.split()[0]
        return self

    def stats(self) -> dict[str, Any]:
        return requests.get(f"{self.url}/_server/stats", timeout=10).json()

    def set_now(self, now: str) -> None:
        requests.post(f"{self.url}/_server/now", params={"now": now}, timeout=10).raise_for_status()

    def __exit__(self, *exc: object) -> None:
        if self._proc is None:
            return
        self._proc.send_signal(signal.SIGTERM)
        try:
            out, _ = self._proc.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            raise
        if self._proc.returncode != 0:
            raise RuntimeError(f"the Upbit server exited with {self._proc.returncode}")
        self.final_stats = json.loads(out.strip().splitlines()[-1])

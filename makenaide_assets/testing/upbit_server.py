"""A local Upbit-compatible quotation server over a replay directory, for tests and benchmarks.

    python -m makenaide_assets.testing.upbit_server --replay-dir DIR --now 2023-12-07T00:05:00Z

Serves `/v1/market/all`, `/v1/candles/days|minutes/240|months` and `/v1/ticker` in Upbit's
JSON shapes, as they would have read at a simulated instant `now` (upbit_answers), under
Upbit's rate limit (rate_limit): `Remaining-Req` on every answer, 429 over 10 requests per
second per group, 418 for a client that keeps going after 429s. Only 127.0.0.1 is bound,
connections are capped, and `stop()` ends every connection and thread.

Two paths outside Upbit's API serve tests and benchmarks: `GET /_server/stats` (requests,
429s, 418s, `now`) and `POST /_server/now?now=...` (move the simulated clock).
"""

import argparse
import contextlib
import json
import signal
import socket
import sys
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pandas as pd

from makenaide_assets.testing.rate_limit import RateLimiter
from makenaide_assets.testing.upbit_answers import CANDLE_PATHS, AnswerError, ReplayAnswers, to_utc

HOST = "127.0.0.1"
_GROUPS = (("/v1/market/", "market"), ("/v1/candles/", "candles"), ("/v1/ticker", "ticker"))


class UpbitServer:
    """`with UpbitServer(replay_dir, now) as server:` → `server.url` answers like api.upbit.com."""

    def __init__(
        self,
        replay_dir: str | Path,
        now: str | pd.Timestamp,
        *,
        port: int = 0,
        per_second: int = 10,
        ban_after_429s: int = 5,
        ban_s: float = 30.0,
        max_connections: int = 16,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.answers = ReplayAnswers(replay_dir, pd.Timestamp(now))
        self.limiter = RateLimiter(per_second, ban_after_429s=ban_after_429s, ban_s=ban_s, clock=clock)
        self._httpd = _HttpServer(self, port, max_connections)
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self._httpd.server_address[1]}"

    def set_now(self, now: str | pd.Timestamp) -> None:
        self.answers.now = to_utc(pd.Timestamp(now))

    def stats(self) -> dict[str, Any]:
        return {**self.limiter.counters.as_dict(), "now": self.answers.now.isoformat()}

    def start(self) -> "UpbitServer":
        # A short poll interval: stop() waits for the serving loop to notice, up to this long.
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, name="upbit-server", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop accepting, end open keep-alive connections, join every handler thread."""
        if self._thread is not None:
            self._httpd.shutdown()
            self._thread.join()
            self._thread = None
        self._httpd.close_connections()
        self._httpd.server_close()

    def __enter__(self) -> "UpbitServer":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


class _HttpServer(ThreadingHTTPServer):
    daemon_threads = False  # so server_close() joins them: nothing outlives stop()
    block_on_close = True

    def __init__(self, owner: UpbitServer, port: int, max_connections: int) -> None:
        super().__init__((HOST, port), _Handler)
        self.owner = owner
        self._slots = threading.BoundedSemaphore(max_connections)
        self._open: set[socket.socket] = set()
        self._open_lock = threading.Lock()

    def process_request(self, request: Any, client_address: Any) -> None:
        if not self._slots.acquire(blocking=False):
            # Over the cap: refuse at once rather than queue an unbounded number of threads.
            with contextlib.suppress(OSError):
                request.sendall(b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
            self.shutdown_request(request)
            return
        with self._open_lock:
            self._open.add(request)
        super().process_request(request, client_address)

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            with self._open_lock:
                self._open.discard(request)
            self._slots.release()

    def close_connections(self) -> None:
        with self._open_lock:
            for sock in self._open:
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)

    def handle_error(self, request: Any, client_address: Any) -> None:
        if not isinstance(sys.exc_info()[1], ConnectionError | TimeoutError):
            super().handle_error(request, client_address)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as a requests.Session expects
    timeout = 10  # an idle connection frees its thread
    server: _HttpServer

    def do_GET(self) -> None:
        url = urlsplit(self.path)
        query = {k: v[-1] for k, v in parse_qs(url.query).items()}
        owner = self.server.owner
        if url.path == "/_server/stats":
            return self._send(200, json.dumps(owner.stats()))
        group = next((name for prefix, name in _GROUPS if url.path.startswith(prefix)), None)
        if group is None:
            return self._send(404, "Not Found", content_type="text/plain")
        verdict = owner.limiter.admit(self.client_address[0], group)
        headers = {"Remaining-Req": verdict.header}
        if verdict.status == 429:
            return self._send(429, "Too many API requests.", content_type="text/plain", headers=headers)
        if verdict.status == 418:
            blocked = owner.limiter.banned_for_s(self.client_address[0])
            body = {"error": {"name": 418, "message": f"blocked for {blocked:.0f} s after repeated 429s"}}
            return self._send(418, json.dumps(body), headers=headers)
        try:
            text = _answer(owner.answers, url.path, query)
        except AnswerError as exc:
            return self._send(exc.status, json.dumps(exc.body), headers=headers)
        if text is None:
            return self._send(501, "not served by this replay server", content_type="text/plain", headers=headers)
        self._send(200, text, headers=headers)

    def do_POST(self) -> None:
        url = urlsplit(self.path)
        now = parse_qs(url.query).get("now")
        if url.path != "/_server/now" or not now:
            return self._send(404, "Not Found", content_type="text/plain")
        self.server.owner.set_now(now[-1])
        self._send(200, json.dumps(self.server.owner.stats()))

    def _send(
        self, status: int, body: str, *, content_type: str = "application/json", headers: dict[str, str] | None = None
    ) -> None:
        data = body.encode("utf-8")
        self.send_response(status)
        self.send_header("Content-Type", f"{content_type}; charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: Any) -> None:
        pass  # one line per request would drown a benchmark's output; stats() counts them


def _answer(answers: ReplayAnswers, path: str, query: dict[str, str]) -> str | None:
    if path == "/v1/market/all":
        return json.dumps(answers.market_all(query.get("isDetails", "false").lower() == "true"), ensure_ascii=False)
    if path in CANDLE_PATHS:
        if not query.get("market"):
            raise AnswerError(400, "market is required")
        try:
            return answers.candles(path, query["market"], query.get("to"), query.get("count"))
        except ValueError as exc:  # an unparseable `to`
            raise AnswerError(400, f"invalid to: {exc}") from None
    if path == "/v1/ticker":
        markets = [m.strip() for m in query.get("markets", "").split(",")]
        return json.dumps(answers.ticker(markets), ensure_ascii=False)
    return None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m makenaide_assets.testing.upbit_server", description=__doc__)
    parser.add_argument("--replay-dir", required=True, help="a replay directory (DESIGN §5)")
    parser.add_argument("--now", required=True, help="the simulated instant, e.g. 2023-12-07T00:05:00Z")
    parser.add_argument("--port", type=int, default=0, help="0 = any free port (printed)")
    parser.add_argument("--per-second", type=int, default=10, help="requests per second per group")
    parser.add_argument("--ban-after", type=int, default=5, help="429s within 10 s before a 418 block")
    parser.add_argument("--ban-seconds", type=float, default=30.0)
    args = parser.parse_args(argv)
    server = UpbitServer(
        args.replay_dir, args.now, port=args.port, per_second=args.per_second,
        ban_after_429s=args.ban_after, ban_s=args.ban_seconds,
    )  # fmt: skip
    server.answers.preload()
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    with server:
        print(f"{server.url} serves {args.replay_dir} as of {server.answers.now.isoformat()}Z", flush=True)
        stop.wait()
    print(json.dumps(server.stats()), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

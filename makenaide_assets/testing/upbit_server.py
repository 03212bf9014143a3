"""A local Upbit-compatible server over a replay directory, for tests, benchmarks and rehearsals.

    python -m makenaide_assets.testing.upbit_server --replay-dir DIR --now 2023-12-07T00:05:00Z
    python -m makenaide_assets.testing.upbit_server --replay-dir DIR --now ... --exchange \
        --access-key KEY --secret-key SECRET [--krw 10000000 --fault-rate 0.1 --seed 7]

Serves `/v1/market/all`, `/v1/candles/days|minutes/240|months` and `/v1/ticker` in Upbit's
JSON shapes, as they would have read at a simulated instant `now` (upbit_answers), under
Upbit's rate limit (rate_limit): `Remaining-Req` on every answer, 429 over 10 requests per
second per group, 418 for a client that keeps going after 429s. Only 127.0.0.1 is bound,
connections are capped, and `stop()` ends every connection and thread.

Two paths outside Upbit's API serve tests and benchmarks: `GET /_server/stats` (requests,
429s, 418s, `now`) and `POST /_server/now?now=...` (move the simulated clock).

Given a `LocalExchange` (exchange_book), the same server also answers Upbit's exchange API on the
same clock: `GET /v1/accounts`, `GET /v1/orders/chance`, `POST /v1/orders`, `POST /v1/orders/test`,
`GET /v1/order`, `DELETE /v1/order`, and for reconciliations `GET /v1/orders/closed`, `GET /v1/deposits`
and `GET /v1/withdraws`; each signed as Upbit requires (exchange_auth) and limited per
Upbit's exchange groups: `order` (order creation, 8/s) and `default` (everything else, 30/s; Upbit's
cancel reference puts DELETE /v1/order there). Moving the clock settles the exchange (limit orders a
recorded candle crossed, orders a fault held `wait`). Control paths, loopback only and unsigned:
`POST /_exchange/deposit`, `POST /_exchange/manual_trade`, `GET /_exchange/dump`. An injected
`accepted_then_timeout` closes the connection without an answer, after the order executed.
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
from urllib.parse import SplitResult, parse_qs, parse_qsl, urlsplit

import pandas as pd

from makenaide_assets.testing.exchange_auth import AuthError, JwtVerifier, query_of_body, query_of_url
from makenaide_assets.testing.exchange_book import FAULT_KINDS, ExchangeError, InjectedFault, LocalExchange
from makenaide_assets.testing.rate_limit import RateLimiter
from makenaide_assets.testing.upbit_answers import CANDLE_PATHS, AnswerError, ReplayAnswers, to_utc

HOST = "127.0.0.1"
_GROUPS = (("/v1/market/", "market"), ("/v1/candles/", "candles"), ("/v1/ticker", "ticker"))
# Upbit's exchange API: (method, path) -> its rate-limit group.
_EXCHANGE_PATHS = {
    ("GET", "/v1/accounts"): "default",
    ("GET", "/v1/orders/chance"): "default",
    ("GET", "/v1/order"): "default",
    ("GET", "/v1/orders/closed"): "default",
    ("GET", "/v1/deposits"): "default",
    ("GET", "/v1/withdraws"): "default",
    ("DELETE", "/v1/order"): "default",
    ("POST", "/v1/orders"): "order",
    ("POST", "/v1/orders/test"): "order",
}
# Upbit's exchange rate limits, requests per second per group.
ORDER_PER_SECOND = 8
DEFAULT_PER_SECOND = 30
_LOOPBACK = ("127.0.0.1", "::1")


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
        exchange: LocalExchange | None = None,
    ) -> None:
        self.answers = ReplayAnswers(replay_dir, pd.Timestamp(now))
        self.limiter = RateLimiter(per_second, ban_after_429s=ban_after_429s, ban_s=ban_s, clock=clock)
        self.exchange = exchange.attach(self.answers) if exchange is not None else None
        self.verifier = JwtVerifier(exchange.access_key, exchange.secret_key) if exchange is not None else None
        self.exchange_limiters = {
            group: RateLimiter(limit, ban_after_429s=ban_after_429s, ban_s=ban_s, clock=clock)
            for group, limit in (("order", ORDER_PER_SECOND), ("default", DEFAULT_PER_SECOND))
        }
        self._httpd = _HttpServer(self, port, max_connections)
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self._httpd.server_address[1]}"

    def set_now(self, now: str | pd.Timestamp) -> None:
        """Move the simulated clock; the exchange then executes what the new instant allows."""
        self.answers.now = to_utc(pd.Timestamp(now))
        if self.exchange is not None:
            self.exchange.settle()

    def stats(self) -> dict[str, Any]:
        stats = {**self.limiter.counters.as_dict(), "now": self.answers.now.isoformat()}
        if self.exchange is not None:
            counters = [limiter.counters for limiter in self.exchange_limiters.values()]
            stats["exchange"] = {
                "requests": sum(sum(c.requests.values()) for c in counters),
                "by_group": {group: n for c in counters for group, n in c.requests.items()},
                "429": sum(c.too_many for c in counters),
                "418": sum(c.banned for c in counters),
                "faults_injected": self.exchange.faults_injected(),
            }
        return stats

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
    # Headers and body go out as two writes: with Nagle's algorithm the body waits for the client's
    # delayed ACK of the headers, about 40 ms per answer on a keep-alive connection.
    disable_nagle_algorithm = True
    server: _HttpServer

    def do_GET(self) -> None:
        url = urlsplit(self.path)
        query = {k: v[-1] for k, v in parse_qs(url.query).items()}
        owner = self.server.owner
        if url.path == "/_server/stats":
            return self._send(200, json.dumps(owner.stats()))
        if self._is_exchange(url):
            return self._exchange(url)
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
        if self._is_exchange(url):
            return self._exchange(url)
        now = parse_qs(url.query).get("now")
        if url.path != "/_server/now" or not now:
            return self._send(404, "Not Found", content_type="text/plain")
        self.server.owner.set_now(now[-1])
        self._send(200, json.dumps(self.server.owner.stats()))

    def do_DELETE(self) -> None:
        url = urlsplit(self.path)
        if self._is_exchange(url):
            return self._exchange(url)
        self._send(404, "Not Found", content_type="text/plain")

    def _is_exchange(self, url: SplitResult) -> bool:
        if self.server.owner.exchange is None:
            return False
        return url.path.startswith("/_exchange/") or (self.command, url.path) in _EXCHANGE_PATHS

    def _exchange(self, url: SplitResult) -> None:
        """One exchange or control request: rate limit, signature, then the book's answer."""
        owner = self.server.owner
        exchange, verifier = owner.exchange, owner.verifier
        assert exchange is not None and verifier is not None
        raw = self.rfile.read(int(self.headers.get("Content-Length") or 0)) if self.command == "POST" else b""
        if url.path.startswith("/_exchange/"):
            return self._control(exchange, url.path, raw)
        group = _EXCHANGE_PATHS[(self.command, url.path)]
        verdict = owner.exchange_limiters[group].admit(self.client_address[0], group)
        headers = {"Remaining-Req": verdict.header}
        if verdict.status != 200:
            return self._refuse_over_limit(verdict.status, headers)
        try:
            if self.command == "POST":
                params = _json_object(raw)
                hashed = query_of_body(params)
            else:
                params = _query_params(url.query)
                hashed = query_of_url(url.query)
            verifier.verify(self.headers.get("Authorization"), hashed)
            answer = _exchange_answer(exchange, self.command, url.path, params)
        except (ExchangeError, AuthError) as refusal:
            return self._send(refusal.status, json.dumps(refusal.body, ensure_ascii=False), headers=headers)
        except InjectedFault as fault:
            return self._act_out(fault, headers)
        self._send(201 if self.command == "POST" else 200, json.dumps(answer, ensure_ascii=False), headers=headers)

    def _control(self, exchange: LocalExchange, path: str, raw: bytes) -> None:
        if self.client_address[0] not in _LOOPBACK:
            return self._send(403, "control paths answer loopback clients only", content_type="text/plain")
        try:
            if (self.command, path) == ("GET", "/_exchange/dump"):
                answer: Any = exchange.dump()
            elif (self.command, path) == ("POST", "/_exchange/deposit"):
                body = _json_object(raw)
                answer = exchange.deposit(body.get("currency", ""), body.get("amount", 0))
            elif (self.command, path) == ("POST", "/_exchange/manual_trade"):
                body = _json_object(raw)
                answer = exchange.manual_trade(
                    body.get("market", ""), body.get("side", ""), krw=body.get("krw"), volume=body.get("volume")
                )
            else:
                return self._send(404, "Not Found", content_type="text/plain")
        except ExchangeError as refusal:
            return self._send(refusal.status, json.dumps(refusal.body, ensure_ascii=False))
        self._send(200, json.dumps(answer, ensure_ascii=False))

    def _act_out(self, fault: InjectedFault, headers: dict[str, str]) -> None:
        if fault.status is None:
            # The order executed; the client must see the connection end without an answer.
            self.close_connection = True
            return None
        if fault.status == 429:
            return self._send(429, "Too many API requests.", content_type="text/plain", headers=headers)
        name = "server_error" if fault.status >= 500 else fault.status
        body = {"error": {"name": name, "message": f"injected fault: {fault.kind}"}}
        return self._send(fault.status, json.dumps(body), headers=headers)

    def _refuse_over_limit(self, status: int, headers: dict[str, str]) -> None:
        if status == 429:
            return self._send(429, "Too many API requests.", content_type="text/plain", headers=headers)
        body = {"error": {"name": 418, "message": "blocked after repeated 429s"}}
        return self._send(418, json.dumps(body), headers=headers)

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


def _exchange_answer(exchange: LocalExchange, method: str, path: str, params: dict[str, Any]) -> Any:
    if path == "/v1/accounts":
        return exchange.accounts()
    if path == "/v1/orders/chance":
        return exchange.chance(params.get("market"))
    if path == "/v1/orders/test":
        return exchange.test_order(params)
    if path == "/v1/orders":
        return exchange.create_order(params)
    if path == "/v1/orders/closed":
        return exchange.closed_orders(params)
    if path in ("/v1/deposits", "/v1/withdraws"):
        return exchange.transfers("deposit" if path == "/v1/deposits" else "withdraw", params)
    if method == "DELETE":
        return exchange.cancel(params.get("uuid"), params.get("identifier"))
    return exchange.order(params.get("uuid"), params.get("identifier"))


def _query_params(query: str) -> dict[str, Any]:
    """A query's parameters: the last value of a plain key, every value of an array key (`states[]`)."""
    params: dict[str, Any] = {}
    for key, value in parse_qsl(query, keep_blank_values=True):
        if key.endswith("[]"):
            params.setdefault(key, []).append(value)
        else:
            params[key] = value
    return params


def _json_object(raw: bytes) -> dict[str, Any]:
    """A JSON object body, keys in the order received (Upbit hashes them in that order)."""
    try:
        body = json.loads(raw.decode("utf-8")) if raw.strip() else {}
    except (UnicodeDecodeError, ValueError):
        raise ExchangeError(400, "validation_error", "the body is not JSON") from None
    if not isinstance(body, dict):
        raise ExchangeError(400, "validation_error", "the body must be a JSON object")
    return body


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.exchange and not (args.access_key and args.secret_key):
        parser.error("--exchange needs --access-key and --secret-key")
    server = server_from_args(args)
    server.answers.preload()
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    with server:
        print(f"{server.url} serves {args.replay_dir} as of {server.answers.now.isoformat()}Z", flush=True)
        if server.exchange is not None:
            print(
                f"exchange API on: {args.krw:,.0f} KRW, fault rate {args.fault_rate} (seed {args.seed}); "
                f"GET {server.url}/_exchange/dump",
                flush=True,
            )
        stop.wait()
    print(json.dumps(server.stats()), flush=True)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m makenaide_assets.testing.upbit_server", description=__doc__)
    parser.add_argument("--replay-dir", required=True, help="a replay directory (DESIGN §5)")
    parser.add_argument("--now", required=True, help="the simulated instant, e.g. 2023-12-07T00:05:00Z")
    parser.add_argument("--port", type=int, default=0, help="0 = any free port (printed)")
    parser.add_argument("--per-second", type=int, default=10, help="requests per second per group")
    parser.add_argument("--ban-after", type=int, default=5, help="429s within 10 s before a 418 block")
    parser.add_argument("--ban-seconds", type=float, default=30.0)
    exchange = parser.add_argument_group("exchange API (a LocalExchange on the same clock)")
    exchange.add_argument("--exchange", action="store_true", help="also answer Upbit's exchange API")
    exchange.add_argument("--access-key", default="", help="the access key requests must be signed for")
    exchange.add_argument("--secret-key", default="", help="its secret key")
    exchange.add_argument("--krw", type=float, default=10_000_000.0, help="initial KRW balance")
    exchange.add_argument("--fault-rate", type=float, default=0.0, help="share of order POSTs given a fault, 0..1")
    exchange.add_argument("--fault-kinds", default=",".join(FAULT_KINDS), help="comma-separated kinds to draw from")
    exchange.add_argument("--seed", type=int, default=0, help="seeds faults and uuids")
    return parser


def server_from_args(args: argparse.Namespace) -> UpbitServer:
    """The server `main` runs, from its parsed arguments."""
    exchange = None
    if args.exchange:
        kinds = [kind.strip() for kind in args.fault_kinds.split(",") if kind.strip()]
        exchange = LocalExchange(
            args.access_key, args.secret_key, krw=str(args.krw), fault_rate=args.fault_rate,
            seed=args.seed, fault_kinds=kinds,
        )  # fmt: skip
    return UpbitServer(
        args.replay_dir, args.now, port=args.port, per_second=args.per_second,
        ban_after_429s=args.ban_after, ban_s=args.ban_seconds, exchange=exchange,
    )  # fmt: skip


if __name__ == "__main__":
    sys.exit(main())

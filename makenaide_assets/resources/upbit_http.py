"""GET for Upbit's quotation REST API with a timeout, a per-group throttle and bounded retries.

pyupbit's transport (`request_api._call_public_api`) cannot be given a timeout, so the requests
are ours; pyupbit still parses the `Remaining-Req` header. Why pyupbit's own calls are not used
is explained in `upbit_quotation`.
"""

import math
import random
import time
from collections import deque
from collections.abc import Callable, Mapping
from typing import Any, Protocol

import dagster as dg
import requests
from pyupbit.errors import RemainingReqParsingError
from pyupbit.request_api import _parse as parse_remaining_req

from makenaide_assets.strategy.candles import MalformedMarketData

# Failures that say nothing about the request itself: worth another try after a pause.
_TRANSIENT_ERRORS = (requests.Timeout, requests.ConnectionError, requests.exceptions.ChunkedEncodingError)
# Upbit's documented rate-limit groups, until a `Remaining-Req` answer names the group itself.
_DEFAULT_GROUPS = (("/v1/candles/", "candles"), ("/v1/ticker", "ticker"), ("/v1/market/", "market"))
# Upbit counts requests per second: once a group has none left, its next second starts later.
_WINDOW_S = 1.0
# Clock granularity between our process and the server's.
_WINDOW_SLACK_S = 0.005


class Clock(Protocol):
    def monotonic(self) -> float: ...

    def sleep(self, seconds: float) -> None: ...


class SystemClock:
    def monotonic(self) -> float:
        return time.monotonic()

    def sleep(self, seconds: float) -> None:
        time.sleep(seconds)


class UpbitRequestError(RuntimeError):
    """A quotation call that failed for good; the message names the endpoint and what was asked."""

    def __init__(
        self, message: str, *, path: str, subject: str, status: int | None, attempts: int, error_name: str = ""
    ) -> None:
        super().__init__(message)
        self.path = path
        self.subject = subject
        self.status = status
        self.attempts = attempts
        # Upbit's `error.name` when the answer was Upbit's JSON error shape, else "".
        self.error_name = error_name


class UpbitBanned(UpbitRequestError):
    """HTTP 418: Upbit has blocked this IP for ignoring 429s. Never retried: retrying extends the ban."""


class UpbitHttp:
    """One session against `base_url`; every call waits its turn in its rate-limit group."""

    def __init__(
        self,
        base_url: str,
        *,
        timeout_s: float,
        max_retries: int,
        requests_per_second: float,
        backoff_base_s: float,
        max_backoff_s: float,
        clock: Clock | None = None,
        jitter: Callable[[], float] = random.random,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.timeout_s = timeout_s
        self.max_retries = max_retries
        self.spacing_s = 1.0 / requests_per_second
        self.backoff_base_s = backoff_base_s
        self.max_backoff_s = max_backoff_s
        self.clock = clock or SystemClock()
        self.jitter = jitter
        self._session = requests.Session()
        self._next_slot: dict[str, float] = {}
        self._group_of: dict[str, str] = {}
        # When the answers to our last `per window` requests of each group came back. The server
        # counted each request before it answered, so the oldest of these instants is no earlier
        # than the start of the server's current second, whatever the network or load delayed.
        self._per_window = max(1, math.floor(requests_per_second * _WINDOW_S))
        self._answered: dict[str, deque[float]] = {}

    def get_json(self, path: str, params: Mapping[str, Any], *, subject: str) -> Any:
        """The decoded JSON answer; raises UpbitRequestError / UpbitBanned / MalformedMarketData."""
        where = f"Upbit {path} for {subject}"
        attempts = self.max_retries + 1
        failure = ""
        for attempt in range(1, attempts + 1):
            group = self._group(path)
            self._wait_for_slot(group)
            try:
                resp = self._session.get(
                    self.base_url + path, params=params, timeout=self.timeout_s, headers={"Accept": "application/json"}
                )
            except _TRANSIENT_ERRORS as exc:
                failure = f"{type(exc).__name__}: {exc}"
            else:
                self._note_remaining(path, resp, self.clock.monotonic())
                if resp.ok:
                    return _decode(resp, where)
                error_name, detail = _upbit_error(resp)
                failure = f"HTTP {resp.status_code}: {detail}"
                if resp.status_code == 418 or (resp.status_code != 429 and resp.status_code < 500):
                    banned = resp.status_code == 418
                    raise (UpbitBanned if banned else UpbitRequestError)(
                        f"{where}: {failure}" + ("; Upbit has blocked this IP, not retrying" if banned else ""),
                        path=path,
                        subject=subject,
                        status=resp.status_code,
                        attempts=attempt,
                        error_name=error_name,
                    )
                if resp.status_code == 429:
                    self._hold(group, _WINDOW_S)
            if attempt < attempts:
                self.clock.sleep(self.backoff_s(attempt))
        raise UpbitRequestError(
            f"{where}: failed after {attempts} attempts; last: {failure}",
            path=path,
            subject=subject,
            status=None,
            attempts=attempts,
        )

    def backoff_s(self, attempt: int) -> float:
        """Exponential, capped, with jitter in [half, full] so parallel runs do not retry in step."""
        ceiling = min(self.max_backoff_s, self.backoff_base_s * 2 ** (attempt - 1))
        return ceiling / 2 + self.jitter() * ceiling / 2

    def _group(self, path: str) -> str:
        if path in self._group_of:
            return self._group_of[path]
        return next((group for prefix, group in _DEFAULT_GROUPS if path.startswith(prefix)), path)

    def _wait_for_slot(self, group: str) -> None:
        now = self.clock.monotonic()
        ready = self._next_slot.get(group, now)
        if ready > now:
            self.clock.sleep(ready - now)
            now = ready
        self._next_slot[group] = now + self.spacing_s

    def _hold(self, group: str, seconds: float) -> None:
        self._hold_until(group, self.clock.monotonic() + seconds)

    def _hold_until(self, group: str, until: float) -> None:
        self._next_slot[group] = max(self._next_slot.get(group, until), until)

    def _note_remaining(self, path: str, resp: requests.Response, answered: float) -> None:
        header = resp.headers.get("Remaining-Req")
        if header is None:
            return  # nothing to honour; the group's own spacing still applies
        try:
            info = parse_remaining_req(header)
        except RemainingReqParsingError:
            dg.get_dagster_logger(__name__).warning(f"Upbit {path}: unparseable Remaining-Req {header!r}")
            return
        group = info["group"]
        self._group_of[path] = group
        history = self._answered.setdefault(group, deque(maxlen=self._per_window))
        history.append(answered)
        # `min` is deprecated by Upbit (a fixed value); `sec` is what is left in this second.
        if info["sec"] <= 0:
            if len(history) == history.maxlen and answered - history[0] < _WINDOW_S:
                # We spent this second's budget ourselves: it ends a second after the oldest of those
                # requests reached the server. Waiting a full second from now would halve the throughput.
                self._hold_until(group, history[0] + _WINDOW_S + _WINDOW_SLACK_S)
            else:
                self._hold(group, _WINDOW_S)  # someone else shares the budget: rest a full second


def _decode(resp: requests.Response, where: str) -> Any:
    if not resp.content.strip():
        raise MalformedMarketData(f"{where}: empty body (HTTP {resp.status_code})")
    try:
        return resp.json()
    except ValueError as exc:
        raise MalformedMarketData(f"{where}: body is not JSON ({exc}): {_excerpt(resp)}") from exc


def _upbit_error(resp: requests.Response) -> tuple[str, str]:
    """(error.name, a readable detail) from Upbit's `{"error": {"name", "message"}}`, else ("", body)."""
    try:
        error = resp.json().get("error")
    except (ValueError, AttributeError):
        return "", _excerpt(resp)
    if not isinstance(error, Mapping):
        return "", _excerpt(resp)
    name = str(error.get("name", ""))
    return name, f"{name}: {error.get('message', '')}"


def _excerpt(resp: requests.Response, limit: int = 200) -> str:
    text = resp.text.strip()
    return repr(text[:limit] + ("…" if len(text) > limit else ""))

"""GET for Upbit's quotation REST API with a timeout, a per-group throttle and bounded retries.

Retries, backoff and what each answer means are `upbit_retry`'s, shared with the exchange client;
the throttle is this module's. pyupbit's transport (`request_api._call_public_api`) cannot be given
a timeout, so the requests are ours; pyupbit still parses the `Remaining-Req` header. Why pyupbit's
own calls are not used is explained in `upbit_quotation`.
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

from makenaide_assets.resources.upbit_retry import (
    Blocked,
    Refused,
    RetryPolicy,
    UpbitCallFailed,
    answer,
    call_with_retries,
    excerpt,
    raise_for_failure,
)
from makenaide_assets.strategy.candles import MalformedMarketData

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
        self.status = status  # the last HTTP status; None when no answer came
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
        requests_per_second: float,
        retry: RetryPolicy,
        clock: Clock | None = None,
        jitter: Callable[[], float] = random.random,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.timeout_s = timeout_s
        self.spacing_s = 1.0 / requests_per_second
        self.retry = retry
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
        try:
            resp = call_with_retries(
                lambda: self._get(path, params), self.retry, sleep=self.clock.sleep, jitter=self.jitter
            )
        except Blocked as failure:
            raise UpbitBanned(
                f"{where}: {failure}; Upbit has blocked this IP, not retrying", **_about(path, subject, failure)
            ) from failure
        except Refused as failure:
            raise UpbitRequestError(f"{where}: {failure}", **_about(path, subject, failure)) from failure
        except UpbitCallFailed as failure:
            raise UpbitRequestError(
                f"{where}: failed after {failure.attempts} attempts; last: {failure}", **_about(path, subject, failure)
            ) from failure
        return _decode(resp, where)

    def _get(self, path: str, params: Mapping[str, Any]) -> requests.Response:
        """One attempt: wait for the group's slot, send, note what Upbit says is left of the budget."""
        group = self._group(path)
        self._wait_for_slot(group)
        resp = answer(
            lambda: self._session.get(
                self.base_url + path, params=params, timeout=self.timeout_s, headers={"Accept": "application/json"}
            )
        )
        self._note_remaining(path, resp, self.clock.monotonic())
        if resp.status_code == 429:
            self._hold(group, _WINDOW_S)  # the whole group rests, not only this call
        return raise_for_failure(resp)

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
        raise MalformedMarketData(f"{where}: body is not JSON ({exc}): {excerpt(resp)}") from exc


def _about(path: str, subject: str, failure: UpbitCallFailed) -> dict[str, Any]:
    return dict(
        path=path, subject=subject, status=failure.status, attempts=failure.attempts, error_name=failure.error_name
    )

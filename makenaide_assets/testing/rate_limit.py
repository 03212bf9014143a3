"""Upbit's quotation rate limit, as documented: N requests per second per group and client IP.

A group's second starts with its first request and resets one second later; a request over
the limit gets 429 and is not counted. A client that keeps sending after 429s is blocked: once
`ban_after_429s` 429s fall within `strike_window_s`, every request gets 418 for `ban_s` seconds.
"""

import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

# Upbit's `min` field is deprecated and answered as a fixed value.
_MIN_FIELD = 1800


@dataclass(frozen=True)
class Verdict:
    status: int  # 200 (go on), 429 or 418
    remaining: int
    header: str


@dataclass
class _Window:
    started: float = float("-inf")
    count: int = 0


@dataclass
class Counters:
    """What the server answered, for tests and benchmarks."""

    requests: dict[str, int] = field(default_factory=dict)
    too_many: int = 0
    banned: int = 0

    def as_dict(self) -> dict[str, object]:
        return {
            "requests": sum(self.requests.values()),
            "by_group": dict(self.requests),
            "429": self.too_many,
            "418": self.banned,
        }


class RateLimiter:
    def __init__(
        self,
        per_second: int = 10,
        *,
        ban_after_429s: int = 5,
        strike_window_s: float = 10.0,
        ban_s: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if per_second < 1:
            raise ValueError(f"per_second must be at least 1, got {per_second}")
        self.per_second = per_second
        self.ban_after_429s = ban_after_429s
        self.strike_window_s = strike_window_s
        self.ban_s = ban_s
        self.clock = clock
        self.counters = Counters()
        self._windows: dict[tuple[str, str], _Window] = {}
        self._strikes: dict[str, deque[float]] = {}
        self._banned_until: dict[str, float] = {}
        self._lock = threading.Lock()

    def admit(self, client: str, group: str) -> Verdict:
        """Count one request of `client` in `group` and say whether it may be answered."""
        with self._lock:
            now = self.clock()
            self.counters.requests[group] = self.counters.requests.get(group, 0) + 1
            if self._banned_until.get(client, float("-inf")) > now:
                self.counters.banned += 1
                return Verdict(418, 0, _header(group, 0))
            window = self._windows.setdefault((client, group), _Window())
            if now >= window.started + 1.0:
                window.started, window.count = now, 0
            if window.count < self.per_second:
                window.count += 1
                left = self.per_second - window.count
                return Verdict(200, left, _header(group, left))
            return self._strike(client, group, now)

    def banned_for_s(self, client: str) -> float:
        with self._lock:
            return max(0.0, self._banned_until.get(client, 0.0) - self.clock())

    def _strike(self, client: str, group: str, now: float) -> Verdict:
        strikes = self._strikes.setdefault(client, deque())
        while strikes and strikes[0] <= now - self.strike_window_s:
            strikes.popleft()
        if len(strikes) >= self.ban_after_429s:
            self._banned_until[client] = now + self.ban_s
            strikes.clear()
            self.counters.banned += 1
            return Verdict(418, 0, _header(group, 0))
        strikes.append(now)
        self.counters.too_many += 1
        return Verdict(429, 0, _header(group, 0))


def _header(group: str, remaining: int) -> str:
    return f"group={group}; min={_MIN_FIELD}; sec={remaining}"

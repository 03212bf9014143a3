"""How every call to Upbit is made: where, how long it may take, and when it is tried again.

One retry loop for both Upbit clients (quotation: `upbit_http`, exchange: `upbit_exchange`), in the
spirit of freqtrade's `@retrier` (exchange/common.py). The client says what one attempt is and which
failures another attempt may cure; `call_with_retries` counts the attempts, waits between them with
jittered exponential backoff and gives up. Every answer is classified here, once:

- no answer (timeout, connection error, a body cut short) -> `NoAnswer`: the request may or may not
  have reached Upbit;
- 429 -> `RateLimited`: Upbit did not process the request;
- 5xx -> `ServerError`: Upbit's side failed, possibly after executing the request;
- 418 -> `Blocked`: Upbit blocks this IP for ignoring 429s; never retried, a retry extends the block;
- any other 4xx -> `Refused`: Upbit answered and did not execute the request; retrying changes nothing.

Whether a call may be repeated at all stays with the caller: an order POST whose answer was lost may
have been executed, so the exchange client retries a POST only on 429, and the broker looks the order
up by its identifier instead (`upbit_broker`).
"""

import random
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TypeVar

import requests

T = TypeVar("T")

# Defaults both clients share (quotation and exchange are the same host and the same rate limiter).
UPBIT_API_URL = "https://api.upbit.com"
TIMEOUT_S = 10.0  # connect and read timeout of one request
MAX_RETRIES = 4  # tries after the first
BACKOFF_BASE_S = 0.5  # the first retry waits up to this long
MAX_BACKOFF_S = 8.0  # cap on one retry's wait

# Failures in which no usable answer arrived.
TRANSPORT_ERRORS = (requests.Timeout, requests.ConnectionError, requests.exceptions.ChunkedEncodingError)


class UpbitCallFailed(RuntimeError):
    """One attempt's failure. The message is safe to log: the status and Upbit's own error, no request headers."""

    def __init__(
        self, message: str, *, status: int | None = None, error_name: str = "", error_message: str = ""
    ) -> None:
        super().__init__(message)
        self.status = status
        # Upbit's `error.name` / `error.message` when the body was Upbit's JSON error shape, else "".
        self.error_name = error_name
        self.error_message = error_message
        # Set by call_with_retries: how many attempts were made, this one included.
        self.attempts = 1


class NoAnswer(UpbitCallFailed):
    """Timeout or connection error: whether Upbit received the request is unknown."""


class RateLimited(UpbitCallFailed):
    """HTTP 429: Upbit did not process the request."""


class ServerError(UpbitCallFailed):
    """HTTP 5xx: Upbit's side failed; the request may have been executed."""


class Blocked(UpbitCallFailed):
    """HTTP 418: this IP is blocked for ignoring 429s. Never retried: retrying extends the block."""


class Refused(UpbitCallFailed):
    """Any other 4xx: Upbit answered and did not execute the request."""


# What a call that can be repeated without effect at the exchange retries.
RETRYABLE: tuple[type[UpbitCallFailed], ...] = (NoAnswer, RateLimited, ServerError)


@dataclass(frozen=True)
class RetryPolicy:
    max_retries: int = MAX_RETRIES
    backoff_base_s: float = BACKOFF_BASE_S
    max_backoff_s: float = MAX_BACKOFF_S

    def __post_init__(self) -> None:
        for name in ("max_retries", "backoff_base_s", "max_backoff_s"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must not be negative, got {getattr(self, name)}")

    def backoff_s(self, retry: int, jitter: float) -> float:
        """The wait before retry `retry` (1 = the first): exponential and capped, with `jitter` in [0, 1]
        placing it in [half, full] of its ceiling so parallel runs do not retry in step."""
        if not 0.0 <= jitter <= 1.0:
            raise ValueError(f"jitter must be within [0, 1], got {jitter}")
        ceiling = min(self.max_backoff_s, self.backoff_base_s * 2 ** (retry - 1))
        return ceiling / 2 + jitter * ceiling / 2


def call_with_retries(
    attempt: Callable[[], T],
    policy: RetryPolicy,
    *,
    retry_on: tuple[type[UpbitCallFailed], ...] = RETRYABLE,
    sleep: Callable[[float], None] = time.sleep,
    jitter: Callable[[], float] = random.random,
) -> T:
    """`attempt()` until it returns, at most 1 + `policy.max_retries` times.

    A failure of a type in `retry_on` is retried after `policy.backoff_s`; the last one is raised
    with `attempts` set. `Blocked` is raised at once whatever `retry_on` says, and so is any other
    exception (a refusal, a malformed answer): another attempt would get the same.
    """
    tries = policy.max_retries + 1
    for number in range(1, tries + 1):
        try:
            return attempt()
        except UpbitCallFailed as failure:
            failure.attempts = number
            if isinstance(failure, Blocked) or not isinstance(failure, retry_on) or number == tries:
                raise
        sleep(policy.backoff_s(number, jitter()))
    raise AssertionError("the loop either returns or raises")


def answer(request: Callable[[], requests.Response]) -> requests.Response:
    """`request()`, with a failure to get any answer raised as NoAnswer."""
    try:
        return request()
    except TRANSPORT_ERRORS as exc:
        raise NoAnswer(f"{type(exc).__name__}: {exc}") from exc


def raise_for_failure(response: requests.Response) -> requests.Response:
    """The response when Upbit accepted the request; otherwise the failure it is (see the module docstring)."""
    status = response.status_code
    if status < 400:
        return response
    name, message = upbit_error(response)
    detail = f"HTTP {status}: " + (f"{name}: {message}" if name else message)
    if status == 418:
        kind: type[UpbitCallFailed] = Blocked
    elif status == 429:
        kind = RateLimited
    elif status >= 500:
        kind = ServerError
    else:
        kind = Refused
    raise kind(detail, status=status, error_name=name, error_message=message)


def upbit_error(response: requests.Response) -> tuple[str, str]:
    """(error.name, error.message) from Upbit's `{"error": {"name", "message"}}`; ("", an excerpt of the body) else."""
    try:
        error = response.json().get("error")
    except (ValueError, AttributeError):
        return "", excerpt(response)
    if not isinstance(error, Mapping):
        return "", excerpt(response)
    return str(error.get("name", "")), str(error.get("message", ""))


def excerpt(response: requests.Response, limit: int = 200) -> str:
    text = response.text.strip()
    return repr(text[:limit] + ("…" if len(text) > limit else ""))

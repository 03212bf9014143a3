"""Signed calls to Upbit's exchange API behind the retrying wrapper both Upbit clients share (`upbit_retry`).

Only what the broker needs. Secrets live in this object, never in a message: errors carry the
method, the path and Upbit's own error name and message, nothing from the request headers.
"""

import hashlib
import random
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote, urlencode

import jwt
import requests

from makenaide_assets.resources.upbit_retry import (
    RETRYABLE,
    TIMEOUT_S,
    UPBIT_API_URL,
    Blocked,
    NoAnswer,
    RateLimited,
    Refused,
    RetryPolicy,
    ServerError,
    UpbitCallFailed,
    answer,
    call_with_retries,
    raise_for_failure,
)

# Upbit accepts HS256 and HS512. HS256: PyJWT warns when an HS512 key is under 64 bytes, and
# Upbit secret keys are 40 characters.
JWT_ALGORITHM = "HS256"


class UpbitApiError(RuntimeError):
    """Upbit answered and refused: the request was not executed (4xx with an error body)."""

    def __init__(self, status: int, name: str, message: str, what: str) -> None:
        super().__init__(f"{what}: HTTP {status} {name}: {message}")
        self.status, self.name, self.message = status, name, message


class UpbitUnavailable(RuntimeError):
    """No answer that can be trusted (timeout, connection error, 5xx, rate limit that did not
    clear, IP block). For an order this means: its fate is unknown until it is looked up."""


def query_string(params: dict[str, Any]) -> str:
    # Upbit hashes the unquoted form (its Python guide: unquote(urlencode(params, doseq=True))).
    return unquote(urlencode(params, doseq=True))


# Methods Upbit executes at most once whatever the number of requests: a lost answer may be asked
# again. A DELETE cancels the order it names once; a later one is refused (order not found).
IDEMPOTENT_METHODS = frozenset({"GET", "DELETE"})


@dataclass
class UpbitExchange:
    access_key: str = field(repr=False)
    secret_key: str = field(repr=False)
    base_url: str = UPBIT_API_URL
    timeout_s: float = TIMEOUT_S
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    session: requests.Session = field(default_factory=requests.Session, repr=False)
    sleep: Callable[[float], None] = field(default=time.sleep, repr=False)
    jitter: Callable[[], float] = field(default=random.random, repr=False)

    def _authorization(self, params: dict[str, Any] | None) -> str:
        payload: dict[str, Any] = {"access_key": self.access_key, "nonce": str(uuid.uuid4())}
        if params:
            payload["query_hash"] = hashlib.sha512(query_string(params).encode("utf-8")).hexdigest()
            payload["query_hash_alg"] = "SHA512"
        return "Bearer " + jwt.encode(payload, self.secret_key, algorithm=JWT_ALGORITHM)

    def get(self, path: str, params: dict[str, Any]) -> Any:
        return self._request("GET", path, params)

    def post(self, path: str, body: dict[str, Any]) -> Any:
        return self._request("POST", path, body)

    def _request(self, method: str, path: str, params: dict[str, Any]) -> Any:
        """One call, retried only where a retry cannot change anything at the exchange.

        429 means Upbit did not process the request, so it is retried for every method. Timeouts and
        5xx are retried only for idempotent methods: a POST that timed out may have been executed,
        and only the broker (by looking the identifier up) may decide to send it again.
        """
        what = f"{method} {path}"
        retry_on = RETRYABLE if method in IDEMPOTENT_METHODS else (RateLimited,)
        try:
            response = call_with_retries(
                lambda: raise_for_failure(answer(lambda: self._send(method, path, params))),
                self.retry,
                retry_on=retry_on,
                sleep=self.sleep,
                jitter=self.jitter,
            )
        # `from None` throughout: the chained exceptions would carry requests' own messages.
        except Refused as failure:
            name = failure.error_name or "unknown_error"
            raise UpbitApiError(failure.status or 0, name, failure.error_message, what) from None
        except Blocked:
            raise UpbitUnavailable(f"{what}: Upbit has blocked this IP (HTTP 418); not retrying") from None
        except NoAnswer as failure:
            # The cause's type only: requests' messages carry the URL.
            lost = type(failure.__cause__).__name__
            raise UpbitUnavailable(f"{what}: no answer ({lost}) {_after(failure)}") from None
        except RateLimited as failure:
            raise UpbitUnavailable(f"{what}: rate limited (HTTP 429) {_after(failure)}") from None
        except ServerError as failure:
            raise UpbitUnavailable(f"{what}: HTTP {failure.status} from Upbit {_after(failure)}") from None
        return response.json()

    def _send(self, method: str, path: str, params: dict[str, Any]) -> requests.Response:
        # Signed per attempt: Upbit refuses a nonce it has seen, so a retry needs a new token.
        headers = {"Authorization": self._authorization(params), "Accept": "application/json"}
        url = self.base_url.rstrip("/") + path
        if method == "POST":
            # POST bodies go as JSON; Upbit stopped supporting form bodies in 2022.
            return self.session.post(url, json=params, headers=headers, timeout=self.timeout_s)
        # GET and DELETE carry their parameters in the URL, exactly the string that was hashed.
        return self.session.request(method, f"{url}?{query_string(params)}", headers=headers, timeout=self.timeout_s)


def _after(failure: UpbitCallFailed) -> str:
    return f"after {failure.attempts} attempt{'s' if failure.attempts > 1 else ''}"

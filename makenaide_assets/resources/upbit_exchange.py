"""Signed calls to Upbit's exchange API behind one retrying wrapper (cf. freqtrade's `@retrier`).

Only what the broker needs. Secrets live in this object, never in a message: errors carry the
method, the path and Upbit's own error name and message, nothing from the request headers.
"""

import hashlib
import time
import uuid
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote, urlencode

import jwt
import requests

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


@dataclass
class UpbitExchange:
    access_key: str = field(repr=False)
    secret_key: str = field(repr=False)
    base_url: str = "https://api.upbit.com"
    timeout_s: float = 10.0
    max_retries: int = 4
    backoff_s: float = 0.5
    session: requests.Session = field(default_factory=requests.Session, repr=False)

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
        """One call with retries where a retry cannot change anything at the exchange.

        429 means Upbit did not process the request, so it is retried with backoff for every
        method. Timeouts and 5xx are retried only for GET: a POST that timed out may have been
        executed, and only the broker (by looking the identifier up) may decide to send it again.
        """
        what = f"{method} {path}"
        for attempt in range(self.max_retries + 1):
            delay = self.backoff_s * 2**attempt
            try:
                response = self._send(method, path, params)
            except (requests.Timeout, requests.ConnectionError) as exc:
                if method == "GET" and attempt < self.max_retries:
                    time.sleep(delay)
                    continue
                raise UpbitUnavailable(f"{what}: no answer ({type(exc).__name__})") from None
            status = response.status_code
            if status == 429 and attempt < self.max_retries:
                time.sleep(delay)
                continue
            if status in (418, 429):
                raise UpbitUnavailable(f"{what}: rate limited (HTTP {status}) after {attempt + 1} attempts")
            if status >= 500:
                if method == "GET" and attempt < self.max_retries:
                    time.sleep(delay)
                    continue
                raise UpbitUnavailable(f"{what}: HTTP {status} from Upbit")
            if status >= 400:
                name, message = _error_of(response)
                raise UpbitApiError(status, name, message, what)
            return response.json()
        raise AssertionError("the loop either returns or raises")

    def _send(self, method: str, path: str, params: dict[str, Any]) -> requests.Response:
        headers = {"Authorization": self._authorization(params), "Accept": "application/json"}
        url = self.base_url.rstrip("/") + path
        if method == "GET":
            # The URL carries exactly the string that was hashed.
            return self.session.get(f"{url}?{query_string(params)}", headers=headers, timeout=self.timeout_s)
        # POST bodies go as JSON; Upbit stopped supporting form bodies in 2022.
        return self.session.post(url, json=params, headers=headers, timeout=self.timeout_s)


def _error_of(response: requests.Response) -> tuple[str, str]:
    try:
        error = response.json().get("error") or {}
        return str(error.get("name") or "unknown_error"), str(error.get("message") or "")
    except (ValueError, AttributeError):
        return "unparsed_error", response.text[:200]

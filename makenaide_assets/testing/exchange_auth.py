"""Checks the JWT of an exchange API request as Upbit does, for the local exchange server.

Upbit's guide ("인증", docs.upbit.com/kr/reference/auth): `Authorization: Bearer <jwt>`, signed
HS256 or HS512 with the secret key of the access key in its payload; the payload holds
`access_key`, a `nonce` never seen before and, when the request has parameters, `query_hash`:
the SHA512 hex digest of the unquoted urlencoded parameters (GET/DELETE: the query string as
received; POST: the JSON body's keys in the order received), with `query_hash_alg` "SHA512".
Failures answer 401 with Upbit's names (its "API 주요 에러 코드 목록"): `jwt_verification`,
`invalid_access_key`, `nonce_used`, `invalid_query_payload`.

A GET/DELETE query is hashed as its parameters were decoded, joined unescaped: for every value
written plainly this is the received query string, unquoted; a raw `+` decodes to a space, so an
ISO-8601 time sent as `...+09:00` fails the check, as Upbit's changelog warns ("종료된 주문 ...
timestamp 지원", 2024-12-18: such times may get "Failed to verify the query of Jwt"; send
millisecond timestamps, or `%2B`).

Verified here with hmac rather than PyJWT, so that the client (which signs with PyJWT) is checked
by an independent reading of the format. What it cannot show: IP allow-lists, key permissions
(`out_of_scope`) and key expiry; one access key is configured and it may do everything.
"""

import base64
import binascii
import hashlib
import hmac
import json
import threading
from collections.abc import Mapping
from typing import Any
from urllib.parse import parse_qsl, unquote, urlencode

_ALGORITHMS = {"HS256": hashlib.sha256, "HS512": hashlib.sha512}


class AuthError(Exception):
    """A refused signature: HTTP 401 and Upbit's `{"error": {"name", "message"}}` body."""

    status = 401

    def __init__(self, name: str, message: str) -> None:
        super().__init__(f"{name}: {message}")
        self.name = name
        self.message = message

    @property
    def body(self) -> dict[str, dict[str, str]]:
        return {"error": {"name": self.name, "message": self.message}}


def query_of_url(raw_query: str) -> str:
    """What Upbit hashes for a GET or DELETE: the decoded parameters, in received order, unescaped."""
    return "&".join(f"{key}={value}" for key, value in parse_qsl(raw_query, keep_blank_values=True))


def query_of_body(body: Mapping[str, Any]) -> str:
    """What Upbit hashes for a POST: the JSON body's keys in received order, urlencoded, unquoted."""
    return unquote(urlencode(body, doseq=True))


class JwtVerifier:
    """One access key and its secret; remembers every nonce it accepted (thread-safe)."""

    def __init__(self, access_key: str, secret_key: str) -> None:
        if not access_key or not secret_key:
            raise ValueError("the local exchange needs an access key and a secret key")
        self._access_key = access_key
        self._secret = secret_key.encode("utf-8")
        self._nonces: set[str] = set()
        self._lock = threading.Lock()

    def verify(self, authorization: str | None, query: str) -> None:
        """Raise AuthError unless `authorization` signs a request whose hashed parameters are `query`."""
        token = _bearer(authorization)
        signing_input, header, payload, signature = _parts(token)
        digest = _ALGORITHMS.get(str(header.get("alg", "")))
        if digest is None:
            raise AuthError("jwt_verification", f"unsupported JWT alg {header.get('alg')!r}: HS256 or HS512")
        if payload.get("access_key") != self._access_key:
            # Upbit finds the secret by the access key, so an unknown key is named before the signature.
            raise AuthError("invalid_access_key", "잘못된 엑세스 키입니다.")
        expected = hmac.new(self._secret, signing_input, digest).digest()
        if not hmac.compare_digest(expected, signature):
            raise AuthError("jwt_verification", "JWT 헤더 검증에 실패했습니다: the signature does not match the key")
        nonce = payload.get("nonce")
        if not isinstance(nonce, str) or not nonce:
            raise AuthError("jwt_verification", "JWT payload has no nonce")
        with self._lock:
            if nonce in self._nonces:
                raise AuthError("nonce_used", "이미 요청한 nonce값이 다시 사용되었습니다.")
            # A correctly signed token is spent even if its query check fails below, as at Upbit.
            self._nonces.add(nonce)
        if query:
            _check_query_hash(payload, query)


def _check_query_hash(payload: Mapping[str, Any], query: str) -> None:
    alg = str(payload.get("query_hash_alg", "SHA512")).upper()
    if alg != "SHA512":
        raise AuthError("invalid_query_payload", f"query_hash_alg {alg!r} is not supported: SHA512")
    expected = hashlib.sha512(query.encode("utf-8")).hexdigest()
    given = payload.get("query_hash")
    if not isinstance(given, str) or not hmac.compare_digest(given.lower(), expected):
        raise AuthError("invalid_query_payload", "JWT의 query_hash가 요청 파라미터와 다릅니다.")


def _bearer(authorization: str | None) -> str:
    if not authorization:
        raise AuthError("jwt_verification", "Authorization header is missing")
    scheme, _, token = authorization.strip().partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise AuthError("jwt_verification", "Authorization must be 'Bearer <jwt>'")
    return token.strip()


def _parts(token: str) -> tuple[bytes, dict[str, Any], dict[str, Any], bytes]:
    pieces = token.split(".")
    if len(pieces) != 3:
        raise AuthError("jwt_verification", "not a JWT: expected header.payload.signature")
    try:
        signing_input = f"{pieces[0]}.{pieces[1]}".encode("ascii")
        header = json.loads(_b64(pieces[0]))
        payload = json.loads(_b64(pieces[1]))
        signature = _b64(pieces[2])
    except (ValueError, binascii.Error):
        raise AuthError("jwt_verification", "not a JWT: undecodable part") from None
    if not isinstance(header, dict) or not isinstance(payload, dict):
        raise AuthError("jwt_verification", "not a JWT: header and payload must be JSON objects")
    return signing_input, header, payload, signature


def _b64(part: str) -> bytes:
    return base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))

"""The one retry loop both Upbit clients use: what is retried, how long it waits, when it stops.

Time is injected: a recording `sleep` and a fixed `jitter`, never a real wait.
"""

from collections.abc import Callable

import pytest
import requests

from makenaide_assets.resources.upbit_retry import (
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
    upbit_error,
)

POLICY = RetryPolicy(max_retries=4, backoff_base_s=0.5, max_backoff_s=3.0)


class Script:
    """An attempt that fails as scripted, then answers "ok"; counts its calls."""

    def __init__(self, *failures: Exception) -> None:
        self.failures = list(failures)
        self.calls = 0

    def __call__(self) -> str:
        self.calls += 1
        if self.failures:
            raise self.failures.pop(0)
        return "ok"


def run(attempt: Callable[[], str], policy: RetryPolicy = POLICY, jitter: float = 1.0, **kwargs) -> list[float]:
    """The waits `call_with_retries` asked for; raises what it raised."""
    sleeps: list[float] = []
    assert call_with_retries(attempt, policy, sleep=sleeps.append, jitter=lambda: jitter, **kwargs) == "ok"
    return sleeps


def raised(attempt: Callable[[], str], policy: RetryPolicy = POLICY, **kwargs) -> tuple[UpbitCallFailed, list[float]]:
    sleeps: list[float] = []
    with pytest.raises(UpbitCallFailed) as failure:
        call_with_retries(attempt, policy, sleep=sleeps.append, jitter=lambda: 1.0, **kwargs)
    return failure.value, sleeps


@pytest.mark.parametrize("failure", [NoAnswer("ReadTimeout"), RateLimited("HTTP 429"), ServerError("HTTP 502")])
def test_a_retryable_failure_is_tried_again_after_a_wait(failure: UpbitCallFailed) -> None:
    attempt = Script(failure, failure)
    assert run(attempt) == [0.5, 1.0]
    assert attempt.calls == 3


def test_an_answer_at_once_waits_for_nothing() -> None:
    attempt = Script()
    assert run(attempt) == []
    assert attempt.calls == 1


@pytest.mark.parametrize("failure", [Refused("HTTP 400: invalid_parameter"), ValueError("not JSON")])
def test_a_refusal_or_any_other_error_is_raised_at_once(failure: Exception) -> None:
    attempt = Script(failure)
    sleeps: list[float] = []
    with pytest.raises(type(failure)):
        call_with_retries(attempt, POLICY, sleep=sleeps.append)
    assert attempt.calls == 1 and sleeps == []


def test_418_stops_at_once_even_when_listed_as_retryable() -> None:
    attempt = Script(Blocked("HTTP 418"))
    failure, sleeps = raised(attempt, retry_on=(NoAnswer, RateLimited, ServerError, Blocked))
    assert isinstance(failure, Blocked)
    assert (attempt.calls, failure.attempts, sleeps) == (1, 1, [])


def test_only_the_listed_failures_are_retried() -> None:
    # An order POST: a 429 was not processed and may be repeated, a lost answer may not.
    attempt = Script(RateLimited("HTTP 429"), NoAnswer("ReadTimeout"))
    failure, sleeps = raised(attempt, retry_on=(RateLimited,))
    assert isinstance(failure, NoAnswer)
    assert (attempt.calls, failure.attempts, sleeps) == (2, 2, [0.5])


def test_attempts_are_bounded_and_counted_on_the_last_failure() -> None:
    attempt = Script(*[ServerError(f"HTTP 503 #{i}") for i in range(1, 10)])
    failure, sleeps = raised(attempt)
    assert attempt.calls == failure.attempts == POLICY.max_retries + 1
    assert str(failure) == "HTTP 503 #5"  # the last one, not the first
    assert len(sleeps) == POLICY.max_retries  # no wait after the last attempt


def test_no_retries_means_one_attempt() -> None:
    attempt = Script(RateLimited("HTTP 429"))
    failure, sleeps = raised(attempt, RetryPolicy(max_retries=0))
    assert (attempt.calls, failure.attempts, sleeps) == (1, 1, [])


@pytest.mark.parametrize(
    ("jitter", "waits"),
    [(1.0, [0.5, 1.0, 2.0, 3.0, 3.0]), (0.0, [0.25, 0.5, 1.0, 1.5, 1.5]), (0.5, [0.375, 0.75, 1.5, 2.25, 2.25])],
)
def test_backoff_doubles_up_to_the_cap_and_jitter_places_it_in_half_to_full(jitter: float, waits: list[float]) -> None:
    policy = RetryPolicy(max_retries=5, backoff_base_s=0.5, max_backoff_s=3.0)
    assert run(Script(*[NoAnswer("timeout")] * 5), policy, jitter=jitter) == pytest.approx(waits)


def test_jitter_is_bounded() -> None:
    for retry in range(1, 8):
        ceiling = min(POLICY.max_backoff_s, POLICY.backoff_base_s * 2 ** (retry - 1))
        for jitter in (0.0, 0.123, 0.5, 0.999, 1.0):
            assert ceiling / 2 <= POLICY.backoff_s(retry, jitter) <= ceiling
    with pytest.raises(ValueError, match="jitter"):
        POLICY.backoff_s(1, 1.5)


def test_nonsense_policies_are_refused() -> None:
    with pytest.raises(ValueError, match="max_retries"):
        RetryPolicy(max_retries=-1)
    with pytest.raises(ValueError, match="backoff_base_s"):
        RetryPolicy(backoff_base_s=-0.1)


# ---- what an answer is: classified once, for both clients ----


def response(status: int, body: str = "", content_type: str = "application/json") -> requests.Response:
    made = requests.Response()
    made.status_code = status
    made._content = body.encode("utf-8")
    made.headers["Content-Type"] = content_type
    return made


UPBIT_ERROR = '{"error": {"name": "insufficient_funds_bid", "message": "주문가능한 금액(KRW)이 부족합니다."}}'


@pytest.mark.parametrize(
    ("status", "kind"),
    [
        (418, Blocked),
        (429, RateLimited),
        (500, ServerError),
        (502, ServerError),
        (503, ServerError),
        (400, Refused),
        (401, Refused),
        (404, Refused),
    ],
)
def test_each_failed_status_is_one_kind_of_failure(status: int, kind: type[UpbitCallFailed]) -> None:
    with pytest.raises(kind) as failure:
        raise_for_failure(response(status, UPBIT_ERROR))
    assert failure.value.status == status
    assert failure.value.error_name == "insufficient_funds_bid"
    assert str(failure.value) == f"HTTP {status}: insufficient_funds_bid: 주문가능한 금액(KRW)이 부족합니다."


def test_an_accepted_request_passes_through() -> None:
    ok = response(201, '{"uuid": "x"}')
    assert raise_for_failure(ok) is ok


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (UPBIT_ERROR, ("insufficient_funds_bid", "주문가능한 금액(KRW)이 부족합니다.")),
        ('{"error": {"name": 404, "message": "Code not found"}}', ("404", "Code not found")),
        ("<html>Bad Gateway</html>", ("", "'<html>Bad Gateway</html>'")),
        ('["not", "an", "error"]', ("", '\'["not", "an", "error"]\'')),
        ("", ("", "''")),
    ],
)
def test_upbits_error_shape_is_read_and_anything_else_is_quoted(body: str, expected: tuple[str, str]) -> None:
    assert upbit_error(response(502, body)) == expected


@pytest.mark.parametrize(
    "lost",
    [
        requests.exceptions.ReadTimeout("read timed out"),
        requests.exceptions.ConnectTimeout("connect timed out"),
        requests.exceptions.ConnectionError("connection reset"),
        requests.exceptions.ChunkedEncodingError("body cut short"),
    ],
)
def test_no_answer_is_one_failure_whatever_requests_called_it(lost: Exception) -> None:
    def send() -> requests.Response:
        raise lost

    with pytest.raises(NoAnswer, match=type(lost).__name__) as failure:
        answer(send)
    assert failure.value.status is None and failure.value.__cause__ is lost


def test_a_bug_in_the_request_is_not_mistaken_for_no_answer() -> None:
    def send() -> requests.Response:
        raise requests.exceptions.InvalidURL("no host")

    with pytest.raises(requests.exceptions.InvalidURL):
        answer(send)

"""The analysts: OpenAI through the real SDK against recorded HTTP answers; rules on real candles."""

import json
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest

from makenaide_assets.resources.analyst import BUDGET_SPENT, NO_API_KEY, OpenAIAnalyst, RulesAnalyst
from makenaide_assets.resources.market_data import ReplayMarketData
from makenaide_assets.resources.verdict_cache import VerdictCache, make_engine
from makenaide_assets.settings import SAMPLE_REPLAY_DIR
from makenaide_assets.strategy.calendar import partition_close
from makenaide_assets.strategy.indicators import indicator_snapshot
from makenaide_assets.strategy.payload import verdict_request
from makenaide_assets.strategy.verdict_schema import VerdictRequest
from makenaide_assets_tests.fixtures.openai.replay import Exchange, OpenAIReplay, recorded

DAY = "2023-12-20"
SECRET = "sk-test-analyst-0123456789abcdef1234"
MARKETS = ["KRW-BTC", "KRW-ETH", "KRW-DOGE", "KRW-SAND"]


@pytest.fixture(scope="module")
def sample() -> dict[str, tuple[pd.DataFrame, pd.DataFrame]]:
    """Real recorded candles and their indicator snapshots for two partitions."""
    market_data = ReplayMarketData(replay_dir=str(SAMPLE_REPLAY_DIR))
    out = {}
    for day in (DAY, "2023-09-10"):
        candles = market_data.candles_many(MARKETS, "day", partition_close(day), 400)
        btc = candles[candles["market"] == "KRW-BTC"].drop(columns="market").reset_index(drop=True)
        out[day] = (candles, indicator_snapshot(candles, btc))
    return out


def request_for(sample: dict, market: str, day: str = DAY) -> VerdictRequest:
    candles, snapshot = sample[day]
    row = snapshot[snapshot["market"] == market].iloc[0].to_dict()
    candidate = {"market": market, "score": 4.0, "passed": True, "stage2": True, "volume_surge": False}
    return verdict_request(market, day, candles[candles["market"] == market], row, candidate)


@pytest.fixture
def replay(monkeypatch: pytest.MonkeyPatch) -> Iterator[OpenAIReplay]:
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")
    with OpenAIReplay() as server:
        yield server


def analyst(replay: OpenAIReplay, tmp_path: Path, **config: object) -> OpenAIAnalyst:
    settings = {"api_key": SECRET, "base_url": replay.base_url, "cache_url": f"sqlite:///{tmp_path / 'cache.sqlite'}"}
    return OpenAIAnalyst(**{**settings, **config})


def test_answer_is_parsed_costed_and_cached_durably(replay: OpenAIReplay, tmp_path: Path, sample: dict) -> None:
    request = request_for(sample, "KRW-ETH")
    replay.queue(recorded("chat_completion_buy.json"))
    first = analyst(replay, tmp_path).analyse(request)
    assert (first.source, first.verdict.verdict, first.verdict.confidence) == ("openai", "BUY", 78)
    assert first.verdict.suggested_stop == 2880000
    assert (first.input_tokens, first.output_tokens) == (1893, 142)
    assert first.cost_usd == pytest.approx((1893 * 0.15 + 142 * 0.60) / 1e6)

    sent = replay.received[0]
    assert sent.path == "/v1/chat/completions"
    assert sent.headers["authorization"] == f"Bearer {SECRET}"
    assert sent.body["model"] == "gpt-4o-mini"
    assert sent.body["response_format"]["type"] == "json_schema"
    assert sent.body["response_format"]["json_schema"]["strict"] is True
    assert sent.body["messages"][0]["content"].startswith("# Makenaide chart analyst")
    assert sent.body["messages"][1]["content"] == request.payload_json

    # A new resource on the same database (a new run) answers from the cache: no HTTP at all.
    again = analyst(replay, tmp_path).analyse(request)
    assert (again.source, again.verdict, again.cost_usd) == ("cache", first.verdict, 0.0)
    assert replay.calls == 1
    # Another model is another question.
    replay.queue(recorded("chat_completion_hold.json"))
    assert analyst(replay, tmp_path, model="gpt-4.1-mini").analyse(request).source == "openai"
    assert replay.calls == 2


@pytest.mark.parametrize(
    ("fixture", "reason"),
    [
        ("chat_completion_not_json.json", "answer is not JSON"),
        ("chat_completion_schema_violation.json", "answer breaks the schema: verdict"),
        ("chat_completion_refusal.json", "refused: I'm sorry"),
        ("chat_completion_length.json", "answer cut off at max_output_tokens"),
    ],
)
def test_rejected_answer_is_an_error_that_costs_but_is_not_cached(
    replay: OpenAIReplay, tmp_path: Path, sample: dict, fixture: str, reason: str
) -> None:
    request = request_for(sample, "KRW-ETH")
    replay.queue(recorded(fixture), recorded("chat_completion_buy.json"))
    bad = analyst(replay, tmp_path).analyse(request)
    assert (bad.source, bad.verdict) == ("error", None)
    assert bad.error.startswith(reason)
    assert bad.cost_usd > 0
    assert analyst(replay, tmp_path).budget_left_usd(DAY) == pytest.approx(1.0 - bad.cost_usd)
    # Not cached: the next run asks again and gets a good answer.
    assert analyst(replay, tmp_path).analyse(request).source == "openai"
    assert replay.calls == 2


@pytest.mark.parametrize("fixture", ["rate_limit_429.json", "server_error_503.json"])
def test_429_and_5xx_are_retried_by_the_sdk(replay: OpenAIReplay, tmp_path: Path, sample: dict, fixture: str) -> None:
    replay.queue(recorded(fixture), recorded("chat_completion_buy.json"))
    answer = analyst(replay, tmp_path).analyse(request_for(sample, "KRW-ETH"))
    assert answer.source == "openai"
    assert [r.headers.get("x-stainless-retry-count") for r in replay.received] == ["0", "1"]


def test_timeout_is_retried_then_answered(replay: OpenAIReplay, tmp_path: Path, sample: dict) -> None:
    replay.queue(recorded("chat_completion_buy.json", delay_s=1.0), recorded("chat_completion_buy.json"))
    answer = analyst(replay, tmp_path, timeout_s=0.2, max_retries=1).analyse(request_for(sample, "KRW-ETH"))
    assert (answer.source, replay.calls) == ("openai", 2)


def test_timeout_after_all_retries_is_an_error_row(replay: OpenAIReplay, tmp_path: Path, sample: dict) -> None:
    slow = recorded("chat_completion_buy.json", delay_s=1.0)
    replay.queue(slow, slow)
    subject = analyst(replay, tmp_path, timeout_s=0.2, max_retries=1)
    answer = subject.analyse(request_for(sample, "KRW-ETH"))
    assert (answer.source, answer.verdict, replay.calls) == ("error", None, 2)
    assert answer.error == "timeout (0.2 s per attempt) after 1 retries"
    assert subject.budget_left_usd(DAY) == 1.0  # nothing billed, nothing recorded


def test_budget_spent_stops_calls_for_the_partition_only(replay: OpenAIReplay, tmp_path: Path, sample: dict) -> None:
    subject = analyst(replay, tmp_path, daily_budget_usd=0.0003)
    replay.queue(recorded("chat_completion_buy.json"), recorded("chat_completion_hold.json"))
    assert subject.analyse(request_for(sample, "KRW-ETH")).source == "openai"  # costs $0.000369
    refused = subject.analyse(request_for(sample, "KRW-BTC"))
    assert (refused.source, refused.error, refused.verdict) == ("error", BUDGET_SPENT, None)
    assert replay.calls == 1
    assert subject.budget_left_usd(DAY) == 0.0
    # Another partition has its own budget.
    assert subject.analyse(request_for(sample, "KRW-BTC", "2023-09-10")).source == "openai"


def api_error(status: int, message: str, code: str | None, kind: str) -> Exchange:
    """An error answer in the API's envelope, as the recorded ones are written."""
    body = {"error": {"message": message, "type": kind, "param": None, "code": code}}
    return Exchange(status, {"content-type": "application/json", "x-request-id": "req_test"}, json.dumps(body).encode())


def assert_error(answer: object, reason: str) -> None:
    assert (answer.source, answer.verdict, answer.error, answer.cost_usd) == ("error", None, reason, 0.0)


def test_missing_key_is_an_error_row_naming_the_variable_and_nothing_is_sent(
    replay: OpenAIReplay, tmp_path: Path, sample: dict
) -> None:
    # As modes builds it: no key in the configuration, OPENAI_API_KEY unset (conftest clears it).
    subject = OpenAIAnalyst(base_url=replay.base_url, cache_url=f"sqlite:///{tmp_path / 'cache.sqlite'}")
    assert NO_API_KEY == "no OpenAI API key: OPENAI_API_KEY is not set"
    for market in ("KRW-ETH", "KRW-BTC"):
        assert_error(subject.analyse(request_for(sample, market)), NO_API_KEY)
    assert replay.calls == 0
    assert subject.budget_left_usd(DAY) == 1.0


def test_the_key_is_read_from_the_environment_when_asked(
    replay: OpenAIReplay, tmp_path: Path, sample: dict, monkeypatch: pytest.MonkeyPatch
) -> None:
    subject = OpenAIAnalyst(base_url=replay.base_url, cache_url=f"sqlite:///{tmp_path / 'cache.sqlite'}")
    monkeypatch.setenv("OPENAI_API_KEY", SECRET)  # after the resource was built, as in a run's process
    replay.queue(recorded("chat_completion_buy.json"))
    assert subject.analyse(request_for(sample, "KRW-ETH")).source == "openai"
    assert replay.received[0].headers["authorization"] == f"Bearer {SECRET}"
    assert SECRET not in repr(subject) and SECRET not in str(subject.model_dump())


def test_a_cached_verdict_is_served_without_a_key(replay: OpenAIReplay, tmp_path: Path, sample: dict) -> None:
    request = request_for(sample, "KRW-ETH")
    replay.queue(recorded("chat_completion_buy.json"))
    assert analyst(replay, tmp_path).analyse(request).source == "openai"
    keyless = OpenAIAnalyst(base_url=replay.base_url, cache_url=f"sqlite:///{tmp_path / 'cache.sqlite'}")
    assert keyless.analyse(request).source == "cache"
    assert_error(keyless.analyse(request_for(sample, "KRW-BTC")), NO_API_KEY)
    assert replay.calls == 1


def test_rejected_key_is_an_error_row_without_echoing_it_and_is_not_asked_again(
    replay: OpenAIReplay, tmp_path: Path, sample: dict
) -> None:
    replay.queue(recorded("invalid_api_key_401.json"))
    subject = analyst(replay, tmp_path)
    reason = "OpenAI refused the API key (HTTP 401, invalid_api_key): check OPENAI_API_KEY"
    assert_error(subject.analyse(request_for(sample, "KRW-ETH")), reason)
    assert "sk-" not in reason
    # The key is refused for every candidate: the others are answered at once, nothing is sent.
    assert_error(subject.analyse(request_for(sample, "KRW-BTC")), reason)
    assert replay.calls == 1
    assert SECRET not in repr(subject)
    # A new run (a new resource) asks again.
    replay.queue(recorded("chat_completion_buy.json"))
    assert analyst(replay, tmp_path).analyse(request_for(sample, "KRW-BTC")).source == "openai"


@pytest.mark.parametrize(
    ("exchange", "reason"),
    [
        (
            api_error(
                403, "Project does not have access to model gpt-4o-mini", "model_not_found", "invalid_request_error"
            ),
            "OpenAI denied access to model 'gpt-4o-mini' (HTTP 403, model_not_found)",
        ),
        (
            api_error(404, "The model `gpt-4o-mini` does not exist", "model_not_found", "invalid_request_error"),
            "OpenAI does not serve model 'gpt-4o-mini' (HTTP 404): The model `gpt-4o-mini` does not exist",
        ),
    ],
)
def test_unusable_model_is_an_error_row_for_every_candidate(
    replay: OpenAIReplay, tmp_path: Path, sample: dict, exchange: Exchange, reason: str
) -> None:
    replay.queue(exchange)
    subject = analyst(replay, tmp_path)
    assert_error(subject.analyse(request_for(sample, "KRW-ETH")), reason)
    assert_error(subject.analyse(request_for(sample, "KRW-BTC")), reason)
    assert replay.calls == 1


def test_spent_quota_is_an_error_row_and_stops_the_asking(replay: OpenAIReplay, tmp_path: Path, sample: dict) -> None:
    quota = api_error(429, "You exceeded your current quota", "insufficient_quota", "insufficient_quota")
    replay.queue(quota, quota)  # retried by the SDK like any 429
    subject = analyst(replay, tmp_path, max_retries=1)
    reason = "OpenAI quota exhausted (HTTP 429, insufficient_quota) after 1 retries"
    assert_error(subject.analyse(request_for(sample, "KRW-ETH")), reason)
    assert_error(subject.analyse(request_for(sample, "KRW-BTC")), reason)
    assert replay.calls == 2


def test_an_outage_outlasting_the_retries_gives_error_rows_then_stops_asking(
    replay: OpenAIReplay, tmp_path: Path, sample: dict
) -> None:
    down = recorded("server_error_503.json")
    replay.queue(*[down] * 4)
    subject = analyst(replay, tmp_path, max_retries=1)
    reason = "HTTP 503 after 1 retries: The server is overloaded or not ready yet."
    assert_error(subject.analyse(request_for(sample, "KRW-ETH")), reason)
    assert replay.calls == 2  # the SDK retried once
    assert_error(subject.analyse(request_for(sample, "KRW-BTC")), reason)
    assert replay.calls == 4
    # Two candidates in a row failed after every retry: the rest of the run does not wait on OpenAI.
    assert_error(
        subject.analyse(request_for(sample, "KRW-DOGE")),
        f"not asked: 2 calls in a row failed in this run (last: {reason})",
    )
    assert replay.calls == 4
    assert subject.budget_left_usd(DAY) == 1.0


def test_one_failed_call_between_answers_does_not_stop_the_asking(
    replay: OpenAIReplay, tmp_path: Path, sample: dict
) -> None:
    down = recorded("server_error_503.json")
    replay.queue(down, down, recorded("chat_completion_buy.json"), down, down, recorded("chat_completion_hold.json"))
    subject = analyst(replay, tmp_path, max_retries=1)
    sources = [subject.analyse(request_for(sample, m)).source for m in ("KRW-ETH", "KRW-BTC", "KRW-DOGE", "KRW-SAND")]
    assert sources == ["error", "openai", "error", "openai"]


def test_cache_rows_never_hold_the_key(replay: OpenAIReplay, tmp_path: Path, sample: dict) -> None:
    replay.queue(recorded("chat_completion_buy.json"), recorded("chat_completion_refusal.json"))
    subject = analyst(replay, tmp_path)
    subject.analyse(request_for(sample, "KRW-ETH"))
    subject.analyse(request_for(sample, "KRW-BTC"))
    cache = VerdictCache(make_engine(f"sqlite:///{tmp_path / 'cache.sqlite'}"))
    assert cache.spent_usd(DAY) > 0
    assert SECRET.encode() not in (tmp_path / "cache.sqlite").read_bytes()


def test_rules_analyst_on_recorded_candles(sample: dict) -> None:
    rules = RulesAnalyst()
    eth = rules.analyse(request_for(sample, "KRW-ETH"))
    close = sample[DAY][1].set_index("market").loc["KRW-ETH", "close"]
    assert (eth.source, eth.verdict.verdict, eth.verdict.stage) == ("rules", "BUY", 2)
    assert eth.verdict.confidence >= 70  # signals' threshold: a rules BUY is tradable in demo mode
    assert eth.verdict.suggested_stop < eth.verdict.support < close < eth.verdict.resistance
    assert close * 0.92 <= eth.verdict.suggested_stop
    assert rules.analyse(request_for(sample, "KRW-ETH")) == eth  # deterministic
    # The late-summer 2023 decline: below a falling MA150, no stop offered for a market to avoid.
    sand = rules.analyse(request_for(sample, "KRW-SAND", "2023-09-10"))
    assert (sand.verdict.verdict, sand.verdict.stage, sand.verdict.suggested_stop) == ("AVOID", 4, None)
    assert rules.budget_left_usd(DAY) is None

"""The analyst: one interface, an OpenAI implementation and an offline rules implementation.

`OpenAIAnalyst` asks for a structured verdict (Chat Completions + a strict JSON schema, which
OpenAI-compatible servers behind `base_url` also speak), caches every accepted answer in SQL,
stops at a daily budget, and turns every failure into a visible error answer, never a guess and
never an exception: a missing or refused key, an unknown model, an outage or a spent budget leaves
candidates without a verdict (so nothing is bought), while `signals` still plans every exit.
Retries of timeouts, connection errors, 408/409/429 and 5xx are the SDK's own (`max_retries`,
exponential backoff from 0.5 s, honouring Retry-After).
"""

import json
import os
from abc import ABC, abstractmethod
from importlib import resources
from typing import TYPE_CHECKING, Any

import dagster as dg
import pydantic
from pydantic import Field, PrivateAttr

from makenaide_assets import settings
from makenaide_assets.resources.verdict_cache import CacheKey, VerdictCache, make_engine
from makenaide_assets.strategy.payload import sha256_hex
from makenaide_assets.strategy.rules_verdict import RULES_MODEL, rules_verdict
from makenaide_assets.strategy.verdict_schema import AnalystAnswer, Verdict, VerdictRequest

if TYPE_CHECKING:  # imported where used: the SDK adds ~0.6 s to every load of the definitions
    import openai

BUDGET_SPENT = "daily budget spent"
API_KEY_ENV = "OPENAI_API_KEY"
NO_API_KEY = f"no OpenAI API key: {API_KEY_ENV} is not set"


class Analyst(dg.ConfigurableResource, ABC):
    """Judges one candidate from its payload; failures come back as error answers."""

    @abstractmethod
    def describe(self) -> str:
        """Who answers, for asset metadata (never a secret)."""

    @abstractmethod
    def analyse(self, request: VerdictRequest) -> AnalystAnswer:
        """A verdict for `request`, or an answer with source "error" and the reason."""

    def budget_left_usd(self, partition_key: str) -> float | None:
        """Money left for the partition's calls; None when the analyst costs nothing."""
        return None


class RulesAnalyst(Analyst):
    """Offline and free: the deterministic rules of analysis.rules_verdict."""

    def describe(self) -> str:
        return f"offline rules analyst ({RULES_MODEL}), no API calls"

    def analyse(self, request: VerdictRequest) -> AnalystAnswer:
        return AnalystAnswer(rules_verdict(request.payload), source="rules", model=RULES_MODEL, prompt_hash="")


class OpenAIAnalyst(Analyst):
    """GPT verdicts through the OpenAI API, cached durably and capped by a daily budget."""

    # Read from the environment when the first candidate is asked, not at resource set-up: an unset
    # variable is then error rows (exits still run) rather than a run that fails before any asset,
    # and the key is never part of the configuration the UI shows.
    api_key: str | None = Field(
        default=None,
        repr=False,
        description=f"None: the {API_KEY_ENV} environment variable, read at run time (never a literal key here)",
    )
    model: str = Field(default="gpt-4o-mini", description="A model with Structured Outputs")
    base_url: str | None = Field(default=None, description="Another OpenAI-compatible endpoint; None = OpenAI")
    timeout_s: float = Field(default=60.0, description="Per attempt")
    max_retries: int = Field(default=3, description="SDK retries of timeouts, 429 and 5xx")
    max_output_tokens: int = Field(default=800, description="Caps the cost of one answer")
    temperature: float | None = Field(default=0.0, description="None for models that refuse the parameter")
    daily_budget_usd: float = Field(default=1.0, description="Spend cap per partition, recorded answers summed")
    usd_per_1m_input_tokens: float = Field(default=0.15, description="gpt-4o-mini list price")
    usd_per_1m_output_tokens: float = Field(default=0.60, description="gpt-4o-mini list price")
    stop_after_failures: int = Field(
        default=2,
        ge=1,
        description="Calls failed in a row after the SDK's retries (an outage) before the run stops asking",
    )
    cache_url: str | None = Field(
        default=None, description="SQLAlchemy URL; None = the ledger's (MAKENAIDE_LEDGER_URL, read at run time)"
    )
    prompt: str = Field(default="verdict_v1", description="makenaide_assets/prompts/<prompt>.md")

    _state: dict = PrivateAttr(default_factory=dict)

    def describe(self) -> str:
        where = self.base_url or "api.openai.com"
        return f"OpenAI {self.model} via {where}, prompt {self.prompt}, budget ${self.daily_budget_usd:g}/day"

    def prompt_text(self) -> str:
        if "prompt" not in self._state:
            path = resources.files("makenaide_assets") / "prompts" / f"{self.prompt}.md"
            self._state["prompt"] = path.read_text(encoding="utf-8")
        return self._state["prompt"]

    def prompt_hash(self) -> str:
        # The schema is part of the question: changing either must miss the cache.
        schema = json.dumps(Verdict.model_json_schema(), sort_keys=True)
        return sha256_hex(f"{self.prompt_text()}\n{schema}")

    def cache(self) -> VerdictCache:
        if "cache" not in self._state:
            self._state["cache"] = VerdictCache(make_engine(self.cache_url or settings.ledger_url()))
        return self._state["cache"]

    def _api_key(self) -> str:
        key = self.api_key if self.api_key is not None else os.environ.get(API_KEY_ENV, "")
        return key.strip()

    def _client(self, api_key: str) -> "openai.OpenAI":
        import openai

        if "client" not in self._state:
            self._state["client"] = openai.OpenAI(
                api_key=api_key, base_url=self.base_url, timeout=self.timeout_s, max_retries=self.max_retries
            )
        return self._state["client"]

    def _stop(self, reason: str, key: CacheKey) -> AnalystAnswer:
        """Ask nothing more in this run (the resource lives one run): the reason holds for every
        candidate, and asking each again would only repeat the refusal or the wait."""
        self._state["stopped"] = reason
        return AnalystAnswer.failed(reason, model=key.model, prompt_hash=key.prompt_hash)

    def budget_left_usd(self, partition_key: str) -> float | None:
        return max(0.0, self.daily_budget_usd - self.cache().spent_usd(partition_key))

    def cost_usd(self, input_tokens: int, output_tokens: int) -> float:
        return (input_tokens * self.usd_per_1m_input_tokens + output_tokens * self.usd_per_1m_output_tokens) / 1e6

    def analyse(self, request: VerdictRequest) -> AnalystAnswer:
        prompt_hash = self.prompt_hash()
        key = CacheKey(request.market, request.partition_key, self.model, prompt_hash, request.payload_hash)
        hit = self.cache().get(key)
        if hit is not None:
            return AnalystAnswer(Verdict.model_validate_json(hit.verdict_json), "cache", self.model, prompt_hash)
        if "stopped" in self._state:
            return AnalystAnswer.failed(self._state["stopped"], model=self.model, prompt_hash=prompt_hash)
        if self.cache().spent_usd(request.partition_key) >= self.daily_budget_usd:
            return AnalystAnswer.failed(BUDGET_SPENT, model=self.model, prompt_hash=prompt_hash)
        api_key = self._api_key()
        if not api_key:
            return self._stop(NO_API_KEY if self.api_key is None else "the configured OpenAI API key is empty", key)
        return self._ask(request, key, api_key)

    def _ask(self, request: VerdictRequest, key: CacheKey, api_key: str) -> AnalystAnswer:
        import openai

        try:
            raw = self._client(api_key).chat.completions.with_raw_response.parse(
                model=self.model,
                messages=[
                    {"role": "system", "content": self.prompt_text()},
                    {"role": "user", "content": request.payload_json},
                ],
                response_format=Verdict,
                max_completion_tokens=self.max_output_tokens,
                temperature=openai.omit if self.temperature is None else self.temperature,
            )
        except openai.AuthenticationError as exc:
            # Never the message: it echoes part of the key.
            return self._stop(
                f"OpenAI refused the API key (HTTP {exc.status_code}{_code(exc)}): check {API_KEY_ENV}", key
            )
        except openai.PermissionDeniedError as exc:
            return self._stop(f"OpenAI denied access to model {self.model!r} (HTTP {exc.status_code}{_code(exc)})", key)
        except openai.NotFoundError as exc:
            return self._stop(f"OpenAI does not serve model {self.model!r} (HTTP 404): {_message(exc)}", key)
        except openai.APIError as exc:
            return self._failed_call(exc, key)
        self._state["failures"] = 0
        input_tokens, output_tokens = _usage(raw.text)
        usage = {
            "input_tokens": input_tokens,
            "output_tokens": output_tokens,
            "cost_usd": self.cost_usd(input_tokens, output_tokens),
        }
        verdict, reason = _verdict_of(raw)
        self.cache().record(
            key,
            verdict_json=verdict.model_dump_json() if verdict else None,
            error=reason,
            response_id=raw.request_id or "",
            **usage,
        )
        if verdict is None:
            return AnalystAnswer.failed(reason, model=key.model, prompt_hash=key.prompt_hash, **usage)
        return AnalystAnswer(verdict, "openai", key.model, key.prompt_hash, **usage)

    def _failed_call(self, exc: "openai.APIError", key: CacheKey) -> AnalystAnswer:
        """An error row for a call that got no answer; a spent quota, or `stop_after_failures` of
        these in a row (an outage the SDK's retries did not outlast), ends the asking for the run."""
        import openai

        if isinstance(exc, openai.RateLimitError) and exc.code == "insufficient_quota":
            return self._stop(
                f"OpenAI quota exhausted (HTTP 429, insufficient_quota) after {self.max_retries} retries", key
            )
        reason = self._transport_error(exc)
        failures = self._state.get("failures", 0) + 1
        self._state["failures"] = failures
        if failures >= self.stop_after_failures:
            self._state["stopped"] = f"not asked: {failures} calls in a row failed in this run (last: {reason})"
        return AnalystAnswer.failed(reason, model=key.model, prompt_hash=key.prompt_hash)

    def _transport_error(self, exc: "openai.APIError") -> str:
        import openai

        after = f"after {self.max_retries} retries"
        if isinstance(exc, openai.APITimeoutError):
            return f"timeout ({self.timeout_s:g} s per attempt) {after}"
        if isinstance(exc, openai.APIConnectionError):
            return f"connection failed {after}"
        if isinstance(exc, openai.RateLimitError):
            return f"rate limited (HTTP 429, {exc.code or 'no code'}) {after}"
        if isinstance(exc, openai.APIStatusError):
            retried = after if exc.status_code >= 500 else "not retried"
            return f"HTTP {exc.status_code} {retried}: {_message(exc)}"
        return f"{type(exc).__name__}: {_message(exc)}"

    def teardown_after_execution(self, context: dg.InitResourceContext) -> None:
        client = self._state.pop("client", None)
        if client is not None:
            client.close()
        cache = self._state.pop("cache", None)
        if cache is not None:
            cache.engine.dispose()


def _code(exc: "openai.APIStatusError") -> str:
    return f", {exc.code}" if exc.code else ""


def _message(exc: "openai.APIError") -> str:
    """The API's own message (not the SDK's "Error code: 503 - {...}" wrapping), shortened."""
    body = exc.body
    text = body.get("message") if isinstance(body, dict) else None
    return " ".join(str(text if isinstance(text, str) and text else exc.message).split())[:200]


def _usage(body: str) -> tuple[int, int]:
    """Billed tokens from the raw body, read before parsing so a rejected answer is still counted."""
    try:
        usage = json.loads(body).get("usage") or {}
        return int(usage.get("prompt_tokens") or 0), int(usage.get("completion_tokens") or 0)
    except (ValueError, AttributeError, TypeError):
        return 0, 0


def _verdict_of(raw: Any) -> tuple[Verdict | None, str]:
    """The parsed verdict, or None and why the answer was rejected."""
    import openai

    try:
        completion = raw.parse()
    except openai.LengthFinishReasonError:
        return None, "answer cut off at max_output_tokens"
    except openai.ContentFilterFinishReasonError:
        return None, "answer withheld by the content filter"
    except pydantic.ValidationError as exc:
        errors = exc.errors()
        if errors and errors[0]["type"] == "json_invalid":
            return None, f"answer is not JSON: {errors[0]['msg']}"
        fields = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'answer'}: {e['msg']}" for e in errors[:3])
        return None, f"answer breaks the schema: {fields}"
    except (ValueError, openai.APIResponseValidationError) as exc:
        return None, f"response is not a chat completion: {str(exc)[:200]}"
    if not completion.choices:
        return None, "response has no choices"
    message = completion.choices[0].message
    if message.refusal:
        return None, f"refused: {message.refusal[:300]}"
    if message.parsed is None:
        return None, "empty answer"
    return message.parsed, ""

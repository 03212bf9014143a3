"""The analyst: one interface, an OpenAI implementation and an offline rules implementation.

`OpenAIAnalyst` asks for a structured verdict (Chat Completions + a strict JSON schema, which
OpenAI-compatible servers behind `base_url` also speak), caches every accepted answer in SQL,
stops at a daily budget, and turns every failure into a visible error answer, never a guess.
Retries of timeouts, connection errors, 408/409/429 and 5xx are the SDK's own (`max_retries`,
exponential backoff from 0.5 s, honouring Retry-After).
"""

import json
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


class AnalystConfigError(RuntimeError):
    """The analyst cannot work at all (bad key, unknown model): fail the run, not each row."""


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

    api_key: str = Field(repr=False, description="OpenAI API key; pass dg.EnvVar('OPENAI_API_KEY')")
    model: str = Field(default="gpt-4o-mini", description="A model with Structured Outputs")
    base_url: str | None = Field(default=None, description="Another OpenAI-compatible endpoint; None = OpenAI")
    timeout_s: float = Field(default=60.0, description="Per attempt")
    max_retries: int = Field(default=3, description="SDK retries of timeouts, 429 and 5xx")
    max_output_tokens: int = Field(default=800, description="Caps the cost of one answer")
    temperature: float | None = Field(default=0.0, description="None for models that refuse the parameter")
    daily_budget_usd: float = Field(default=1.0, description="Spend cap per partition, recorded answers summed")
    usd_per_1m_input_tokens: float = Field(default=0.15, description="gpt-4o-mini list price")
    usd_per_1m_output_tokens: float = Field(default=0.60, description="gpt-4o-mini list price")
    cache_url: str | None = Field(default=None, description="SQLAlchemy URL; None = the ledger's")
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

    def _client(self) -> "openai.OpenAI":
        import openai

        if "client" not in self._state:
            if not self.api_key:
                raise AnalystConfigError("the OpenAI API key is empty")
            self._state["client"] = openai.OpenAI(
                api_key=self.api_key, base_url=self.base_url, timeout=self.timeout_s, max_retries=self.max_retries
            )
        return self._state["client"]

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
        if self.cache().spent_usd(request.partition_key) >= self.daily_budget_usd:
            return AnalystAnswer.failed(BUDGET_SPENT, model=self.model, prompt_hash=prompt_hash)
        return self._ask(request, key)

    def _ask(self, request: VerdictRequest, key: CacheKey) -> AnalystAnswer:
        import openai

        try:
            raw = self._client().chat.completions.with_raw_response.parse(
                model=self.model,
                messages=[
                    {"role": "system", "content": self.prompt_text()},
                    {"role": "user", "content": request.payload_json},
                ],
                response_format=Verdict,
                max_completion_tokens=self.max_output_tokens,
                temperature=openai.omit if self.temperature is None else self.temperature,
            )
        except (openai.AuthenticationError, openai.PermissionDeniedError) as exc:
            # Not the message: it may echo part of the key.
            raise AnalystConfigError(f"OpenAI refused the API key (HTTP {exc.status_code})") from None
        except openai.NotFoundError as exc:
            raise AnalystConfigError(f"OpenAI does not serve model {self.model!r}: {exc.message}") from None
        except openai.APIError as exc:
            return AnalystAnswer.failed(self._transport_error(exc), model=key.model, prompt_hash=key.prompt_hash)
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
            return f"HTTP {exc.status_code} {retried}: {exc.message[:200]}"
        return f"{type(exc).__name__}: {exc.message[:200]}"

    def teardown_after_execution(self, context: dg.InitResourceContext) -> None:
        client = self._state.pop("client", None)
        if client is not None:
            client.close()
        cache = self._state.pop("cache", None)
        if cache is not None:
            cache.engine.dispose()


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

"""What an analyst answers for one candidate, and the columns of the `gpt_verdicts` frame.

`Verdict` is both the structured-output schema sent to OpenAI and the validator of every
answer, whichever analyst gave it: an answer that does not fit it never becomes a row.
"""

from dataclasses import dataclass
from typing import Any, Literal

import pandas as pd
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from makenaide_assets.strategy.frames import astype_columns

VERDICTS = ("BUY", "HOLD", "AVOID")
SOURCES = ("openai", "cache", "rules", "error")
Source = Literal["openai", "cache", "rules", "error"]


class Verdict(BaseModel):
    """One market's verdict as of D's close; price levels in KRW."""

    model_config = ConfigDict(extra="forbid")

    verdict: Literal["BUY", "HOLD", "AVOID"] = Field(description="BUY: enter now; HOLD: wait; AVOID: do not enter")
    confidence: int = Field(ge=0, le=100, description="How sure the verdict is, 0-100")
    pattern: str = Field(description="The chart pattern seen, e.g. 'VCP', 'cup with handle', 'stage 2 breakout'")
    # Required but nullable: the model says null when the data cannot tell, rather than guess.
    stage: int | None = Field(ge=1, le=4, description="Weinstein stage 1-4, or null if the data cannot tell")
    reasoning: str = Field(description="At most three sentences citing numbers from the payload")
    support: float | None = Field(description="Nearest support below the close, KRW, or null")
    resistance: float | None = Field(description="Nearest resistance above the close, KRW, or null")
    suggested_stop: float | None = Field(description="Stop-loss price below the close, KRW; required for BUY")

    @field_validator("support", "resistance", "suggested_stop")
    @classmethod
    def _positive_price(cls, value: float | None) -> float | None:
        if value is not None and not value > 0:
            raise ValueError("a price level must be a positive number of KRW")
        return value

    @model_validator(mode="after")
    def _buy_has_stop(self) -> "Verdict":
        # A BUY without a stop cannot be sized or protected downstream: refuse it, never patch it.
        if self.verdict == "BUY" and self.suggested_stop is None:
            raise ValueError("a BUY verdict needs a suggested_stop")
        return self


@dataclass(frozen=True)
class VerdictRequest:
    """One candidate to judge: the canonical payload text and its hash (see analysis.payload)."""

    market: str
    partition_key: str
    payload: dict
    payload_json: str
    payload_hash: str


@dataclass(frozen=True)
class AnalystAnswer:
    """An analyst's answer: a verdict, or an error reason and no verdict (never a guessed one)."""

    verdict: Verdict | None
    source: Source
    model: str
    prompt_hash: str
    input_tokens: int = 0
    output_tokens: int = 0
    cost_usd: float = 0.0
    error: str = ""

    @classmethod
    def failed(cls, reason: str, *, model: str, prompt_hash: str, **usage: Any) -> "AnalystAnswer":
        return cls(verdict=None, source="error", model=model, prompt_hash=prompt_hash, error=reason, **usage)


VERDICT_DTYPES: dict[str, str] = {
    "market": "object",
    "verdict": "object",
    # float64, NaN on an error row: readers do float(confidence), which pandas' NA (an Int64
    # column's missing value) refuses, and `signals` must plan the exits whatever a row holds.
    "confidence": "float64",
    "pattern": "object",
    "stage": "Int64",
    "reasoning": "object",
    "support": "float64",
    "resistance": "float64",
    "suggested_stop": "float64",
    "model": "object",
    "prompt_hash": "object",
    "payload_hash": "object",
    "input_tokens": "int64",
    "output_tokens": "int64",
    "cost_usd": "float64",
    "source": "object",
    "error": "object",
}
VERDICT_COLUMNS = list(VERDICT_DTYPES)


def answer_row(request: VerdictRequest, answer: AnalystAnswer) -> dict:
    """One `gpt_verdicts` row; an error row carries no verdict, confidence or levels."""
    v = answer.verdict
    return {
        "market": request.market,
        "verdict": v.verdict if v else None,
        "confidence": v.confidence if v else None,
        "pattern": v.pattern if v else "",
        "stage": v.stage if v else None,
        "reasoning": v.reasoning if v else "",
        "support": v.support if v else None,
        "resistance": v.resistance if v else None,
        "suggested_stop": v.suggested_stop if v else None,
        "model": answer.model,
        "prompt_hash": answer.prompt_hash,
        "payload_hash": request.payload_hash,
        "input_tokens": answer.input_tokens,
        "output_tokens": answer.output_tokens,
        "cost_usd": answer.cost_usd,
        "source": answer.source,
        "error": answer.error,
    }


def verdicts_frame(rows: list[dict]) -> pd.DataFrame:
    """Rows → the typed frame; no rows → an empty frame that still has every column."""
    frame = pd.DataFrame(rows, columns=VERDICT_COLUMNS)
    # None in a float column must become NaN, not an object column Parquet cannot type.
    return astype_columns(frame, VERDICT_DTYPES)

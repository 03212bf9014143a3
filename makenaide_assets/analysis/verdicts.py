"""`gpt_verdicts`: a BUY/HOLD/AVOID verdict per passed candidate, and the checks that guard it.

An output of the `verdicts_and_timing` step (analysis/verdicts_and_timing.py), with `timing_4h`.

The asset always materialises: whatever goes wrong with the analyst (no key, a refused key, an
outage, a spent budget, even a bug) becomes rows without a verdict and with the reason, counted
in the metadata and named by the `gpt_verdicts_errors` check. `signals` then buys none of those
markets and still plans every exit of the held positions, which never wait for GPT.
"""

from collections.abc import Iterator

import dagster as dg
import pandas as pd

from makenaide_assets.market.metadata import (
    COLUMN_SCHEMA,
    catalog,
    check_result,
    check_spec,
    found_metadata,
    rounded,
    table,
    table_schema,
)
from makenaide_assets.partitions import daily
from makenaide_assets.resources.analyst import Analyst
from makenaide_assets.strategy.frames import records
from makenaide_assets.strategy.payload import verdict_request
from makenaide_assets.strategy.verdict_schema import (
    SOURCES,
    VERDICT_COLUMNS,
    VERDICTS,
    AnalystAnswer,
    VerdictRequest,
    answer_row,
    verdicts_frame,
)

# Warnings: `signals` buys only a readable BUY with enough confidence and sets stops from its own
# exit rules, so a bad row costs a missed entry, not money; a person should still read it.
SCHEMA_VALID = check_spec(
    "gpt_verdicts",
    "gpt_verdicts_schema_valid",
    "Answered rows: verdict in BUY/HOLD/AVOID, confidence in [0, 100], a BUY's stop below D's close;"
    " error rows: no verdict",
)
ERRORS = check_spec(
    "gpt_verdicts", "gpt_verdicts_errors", "Candidates left without a verdict, with the reason; a later run asks again"
)
# Reads both values as stored, after the step stored the verdicts: a gap means a candidate was never
# asked (no buy, so a warning).
ONE_PER_CANDIDATE = dg.AssetCheckSpec(
    "gpt_verdicts_one_per_candidate",
    asset="gpt_verdicts",
    additional_deps=["candidates"],
    partitions_def=daily,
    description=(
        "Exactly one row per passed candidate, as the `candidates` asset stored them: none missing,\n"
        "none doubled, none extra. A gap means a candidate was never asked (no buy, so a warning)."
    ),
)
SCHEMA = table_schema(
    ("market", "string", "Upbit market code of a passed candidate"),
    ("verdict", "string", "BUY (enter now), HOLD (wait) or AVOID; empty on an error row"),
    ("confidence", "float", "How sure the verdict is, 0-100"),
    ("pattern", "string", "The chart pattern seen, e.g. VCP, stage 2 breakout"),
    ("stage", "int", "Weinstein stage 1-4, or empty when the data cannot tell"),
    ("reasoning", "string", "At most three sentences citing the payload's numbers"),
    ("support", "float", "Nearest support below the close, KRW"),
    ("resistance", "float", "Nearest resistance above the close, KRW"),
    ("suggested_stop", "float", "Stop-loss below the close, KRW; required for BUY"),
    ("model", "string", "The model that answered, or rules-v1 for the offline analyst"),
    ("prompt_hash", "string", "Hash of the prompt template: a changed prompt asks again"),
    ("input_tokens", "int", "Tokens sent"),
    ("output_tokens", "int", "Tokens received"),
    ("cost_usd", "float", "What the answer cost, USD (0 for a cache hit or the rules)"),
    ("source", "string", "openai, cache, rules or error"),
    ("error", "string", "Why there is no verdict (error rows only): that market is not bought"),
)
# A day of GPT answers costs a fraction of a cent, priced per token: 8 decimals keep every answer's
# cost exact (0.00072525) and drop only float noise.
_USD_DIGITS = 8
_PREVIEW = ["market", "verdict", "confidence", "stage", "pattern", "suggested_stop", "source", "cost_usd", "error"]


def passed_candidates(candidates: pd.DataFrame) -> pd.DataFrame:
    missing = {"market", "passed"} - set(candidates.columns)
    if missing:
        raise KeyError(f"candidates has no {sorted(missing)} column(s)")
    return candidates[candidates["passed"].fillna(False).astype(bool)].drop_duplicates("market")


def requests_for(
    partition_key: str, candidates: pd.DataFrame, indicators: pd.DataFrame, candles: pd.DataFrame
) -> Iterator[VerdictRequest | tuple[str, str]]:
    """A request per passed candidate, in the candidates' order, or (market, why not) when
    its inputs are missing: such a market becomes an error row, never a silent gap."""
    for candidate in records(passed_candidates(candidates)):
        market = candidate["market"]
        snapshot = indicators[indicators["market"] == market]
        history = candles[candles["market"] == market]
        if snapshot.empty:
            yield market, f"no daily_indicators row for {market}"
        elif history.empty:
            yield market, f"no daily candles for {market}"
        else:
            yield verdict_request(market, partition_key, history, snapshot.iloc[-1].to_dict(), candidate)


def _input_error(market: str, partition_key: str, reason: str) -> dict:
    request = VerdictRequest(market, partition_key, {}, "", "")
    return answer_row(request, AnalystAnswer.failed(reason, model="", prompt_hash=""))


def analyse(analyst: Analyst, request: VerdictRequest) -> AnalystAnswer:
    """The analyst's answer, or an error answer when it raised: no failure of the analyst may stop
    the day, since `signals` (every stop-loss included) runs after this asset."""
    try:
        return analyst.analyse(request)
    except Exception as exc:  # any failure is a row without a verdict, never a lost day
        return AnalystAnswer.failed(f"analyst failed: {_exception_text(exc)}", model="", prompt_hash="")


def _exception_text(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {' '.join(str(exc).split())[:300]}"


def _budget_left(analyst: Analyst, partition_key: str) -> dg.MetadataValue | str:
    try:
        left = analyst.budget_left_usd(partition_key)
    except Exception as exc:  # the metadata says so; the rows already carry the reasons
        return f"unknown ({_exception_text(exc)})"
    return "n/a (free analyst)" if left is None else rounded(left, _USD_DIGITS)


def error_reasons(frame: pd.DataFrame) -> pd.DataFrame:
    """One row per distinct reason for the rows without a verdict: how many, and which markets."""
    errors = frame.loc[frame["source"] == "error", ["market", "error"]].fillna({"error": "no reason given"})
    grouped = errors.groupby("error", sort=False)["market"]
    table = pd.DataFrame({"rows": grouped.size(), "markets": grouped.agg(", ".join)}).reset_index()
    return table.rename(columns={"error": "reason"}).sort_values("rows", ascending=False, kind="stable")


def verdict_metadata(frame: pd.DataFrame, analyst: Analyst, partition_key: str) -> dict:
    verdict_counts = {v: int((frame["verdict"] == v).sum()) for v in VERDICTS}
    reasons = error_reasons(frame)
    metadata = {
        **catalog(frame, SCHEMA),
        "analyst": analyst.describe(),
        "verdicts": dg.MetadataValue.json({**verdict_counts, "none (error)": int(frame["verdict"].isna().sum())}),
        "sources": dg.MetadataValue.json({s: int((frame["source"] == s).sum()) for s in SOURCES}),
        "input_tokens": dg.MetadataValue.int(int(frame["input_tokens"].sum())),
        "output_tokens": dg.MetadataValue.int(int(frame["output_tokens"].sum())),
        "cost_usd": rounded(frame["cost_usd"].sum(), _USD_DIGITS),
        "budget_left_usd": _budget_left(analyst, partition_key),
        "errors": dg.MetadataValue.int(int(reasons["rows"].sum())),
        "error_reasons": table(reasons, rows=len(reasons)),
        "preview": table(frame[_PREVIEW], rows=20),
    }
    if frame.empty:
        metadata["note"] = f"no candidates for {partition_key}"
    return metadata


def verdicts_of(
    analyst: Analyst,
    partition_key: str,
    candidates: pd.DataFrame,
    daily_indicators: pd.DataFrame,
    daily_candles: pd.DataFrame,
) -> pd.DataFrame:
    """The `gpt_verdicts` value for D from `analyst`, without Dagster (the fast backtest's rules analyst)."""
    rows = []
    for item in requests_for(partition_key, candidates, daily_indicators, daily_candles):
        if isinstance(item, tuple):
            market, reason = item
            rows.append(_input_error(market, partition_key, reason))
        else:
            rows.append(answer_row(item, analyse(analyst, item)))
    return verdicts_frame(rows)


GPT_VERDICTS = dg.AssetOut(
    group_name="analysis",
    kinds={"openai", "pandas"},
    dagster_type=pd.DataFrame,
    is_required=False,
    description="BUY/HOLD/AVOID, confidence and key levels per passed candidate, from GPT (cached, budgeted) or rules.",
    metadata={COLUMN_SCHEMA: SCHEMA},
)
CHECKS = [SCHEMA_VALID, ERRORS, ONE_PER_CANDIDATE]


def gpt_verdicts(
    context: dg.AssetExecutionContext,
    analyst: Analyst,
    candidates: pd.DataFrame,
    daily_indicators: pd.DataFrame,
    daily_candles: pd.DataFrame,
) -> dg.MaterializeResult:
    """The `gpt_verdicts` value for D, its metadata and its in-asset checks' results (the coverage
    check runs on the stored values, `one_per_candidate`)."""
    partition_key = context.partition_key
    frame = verdicts_of(analyst, partition_key, candidates, daily_indicators, daily_candles)
    for row in frame[frame["source"] == "error"].itertuples():
        context.log.warning(f"{row.market}: no verdict, so no buy ({row.error})")
    if frame.empty:
        context.log.info(f"no candidates for {partition_key}: nothing to analyse")
    return dg.MaterializeResult(
        asset_key="gpt_verdicts",
        value=frame,
        metadata=verdict_metadata(frame, analyst, partition_key),
        check_results=verdict_checks(frame, daily_indicators),
    )


def schema_violations(frame: pd.DataFrame, closes: pd.Series | None = None) -> list[tuple[str, str]]:
    """(market, problem) for every row a downstream reader could misread. `closes` (D's close by
    market) adds the one rule the answer's own validation cannot know: a BUY's stop lies below
    the price it would be bought at."""
    missing = [c for c in VERDICT_COLUMNS if c not in frame.columns]
    if missing:
        return [("*", f"missing columns: {', '.join(missing)}")]
    problems = []
    for row in frame.itertuples(index=False):
        if row.source not in SOURCES:
            problems.append((row.market, f"unknown source {row.source!r}"))
        elif row.source == "error":
            if pd.notna(row.verdict) or not row.error:
                problems.append((row.market, "an error row must have no verdict and a reason"))
        elif row.verdict not in VERDICTS:
            problems.append((row.market, f"verdict {row.verdict!r} is not one of {', '.join(VERDICTS)}"))
        elif pd.isna(row.confidence) or not 0 <= row.confidence <= 100:
            problems.append((row.market, f"confidence {row.confidence} is not in [0, 100]"))
        elif row.verdict == "BUY" and not row.suggested_stop > 0:
            problems.append((row.market, "BUY without a positive suggested_stop"))
        elif row.verdict == "BUY" and closes is not None and not row.suggested_stop < closes.get(row.market, 0.0):
            close = closes.get(row.market, float("nan"))
            problems.append((row.market, f"BUY stop {row.suggested_stop:,.8g} is not below D's close {close:,.8g}"))
    return problems


def _table(rows: list[tuple[str, str]], headers: tuple[str, str]) -> dg.MetadataValue:
    return table(pd.DataFrame(rows, columns=list(headers)), rows=len(rows))


def verdict_checks(frame: pd.DataFrame, daily_indicators: pd.DataFrame) -> list[dg.AssetCheckResult]:
    """The verdicts' own checks, against D's closes from the asset's `daily_indicators` input."""
    closes = daily_indicators.drop_duplicates("market").set_index("market")["close"]
    problems = schema_violations(frame, closes)
    errors = frame.loc[frame["source"] == "error", ["market", "error"]] if "source" in frame else frame.iloc[0:0]
    return [
        check_result(
            SCHEMA_VALID,
            [market for market, _ in problems],
            violations=dg.MetadataValue.int(len(problems)),
            problems=_table(problems, ("market", "problem")),
        ),
        check_result(
            ERRORS,
            errors["market"],
            errors=_table(list(errors.itertuples(index=False, name=None)), ("market", "error")),
        ),
    ]


def one_per_candidate(gpt_verdicts: pd.DataFrame, candidates: pd.DataFrame) -> dg.AssetCheckResult:
    """ONE_PER_CANDIDATE on the verdicts and candidates as stored."""
    expected = set(candidates.loc[candidates["passed"].eq(True), "market"])
    counts = gpt_verdicts["market"].value_counts()
    problems = [(m, "no row") for m in sorted(expected - set(counts.index))]
    problems += [(m, "not a passed candidate") for m in sorted(set(counts.index) - expected)]
    problems += [(m, f"{n} rows") for m, n in counts[counts > 1].items()]
    return dg.AssetCheckResult(
        asset_key="gpt_verdicts",
        check_name=ONE_PER_CANDIDATE.name,
        passed=not problems,
        severity=dg.AssetCheckSeverity.WARN,
        metadata={
            **found_metadata(m for m, _ in problems),
            "passed_candidates": dg.MetadataValue.int(len(expected)),
            "rows": dg.MetadataValue.int(len(gpt_verdicts)),
            "problems": _table(problems, ("market", "problem")),
        },
    )

"""The offline analyst's judgement: a deterministic verdict from the payload an LLM would read.

It follows the same frameworks as the prompt (Weinstein stages, Minervini's trend template)
using only the indicator snapshot, the recent candles and the candidate's rules, so demo mode
without an API key still produces every column of `gpt_verdicts`. A value the history is too
short for is named and lowers the confidence; it is never estimated.
"""

from collections.abc import Mapping
from typing import Any

from makenaide_assets.strategy.exits import STOP_LOSS_PCT  # Minervini: never risk more than ~8 % below the entry
from makenaide_assets.strategy.payload import number
from makenaide_assets.strategy.verdict_schema import Verdict

RULES_MODEL = "rules-v1"
SLOPE_FLAT = 0.01  # an MA that moved less than 1 % over 20 candles is flat
ATR_STOP = 2.0
BUY_SHARE = 0.75  # share of the computable trend checks a BUY needs
MIN_COVERAGE = 2 / 3  # share of the trend checks that must be computable for a BUY
RSI_EXTENDED = 85
LEVEL_CANDLES = 20


def weinstein_stage(ind: Mapping[str, Any]) -> int | None:
    close, ma50, ma150 = ind.get("close"), ind.get("ma50"), ind.get("ma150")
    if close is None or ma150 is None:
        return None
    slope = ind.get("ma150_slope")
    above = close > ma150
    if slope is not None:
        if above and slope > SLOPE_FLAT:
            return 2
        if not above and slope < -SLOPE_FLAT:
            return 4
    elif ma50 is not None and (ma50 > ma150) == above:
        # No slope in the snapshot: MA50 on the same side as the price stands in for the trend.
        return 2 if above else 4
    # Flat or contradicting: after an advance (MA50 over MA150) it is a top, else a base.
    return 3 if ma50 is not None and ma50 > ma150 else 1


def _gt(a: float | None, b: float | None, factor: float = 1.0) -> bool | None:
    return None if a is None or b is None else a > b * factor


def trend_checks(ind: Mapping[str, Any]) -> dict[str, bool | None]:
    """Minervini's trend template, as far as the snapshot allows; None = not computable."""
    close, rsi = ind.get("close"), ind.get("rsi14")
    volume, rs = ind.get("volume_ratio"), ind.get("rs_vs_btc")
    slope200 = ind.get("ma200_slope")
    return {
        "close > MA50": _gt(close, ind.get("ma50")),
        "MA50 > MA150": _gt(ind.get("ma50"), ind.get("ma150")),
        "MA150 > MA200": _gt(ind.get("ma150"), ind.get("ma200")),
        "MA200 rising": None if slope200 is None else slope200 > 0,
        "RSI14 50-80": None if rsi is None else 50 <= rsi <= 80,
        "within 25% of 52w high": _gt(close, ind.get("high_52w"), 0.75),
        "30% above 52w low": _gt(close, ind.get("low_52w"), 1.30),
        "volume above average": None if volume is None else volume >= 1.0,
        "stronger than KRW-BTC": None if rs is None else rs > 0,
    }


def _levels(payload: Mapping[str, Any], close: float) -> tuple[float | None, float | None]:
    rows = payload["daily_candles"]["rows"][-LEVEL_CANDLES:]
    fields = payload["daily_candles"]["fields"]
    highs = [r[fields.index("high")] for r in rows]
    lows = [r[fields.index("low")] for r in rows]
    ind = payload["indicators"]
    below = [v for v in (min(lows, default=None), ind.get("ma20"), ind.get("ma50")) if v is not None and v < close]
    above = [v for v in (max(highs, default=None), ind.get("high_52w")) if v is not None and v > close]
    return (max(below) if below else None), (min(above) if above else None)


def rules_verdict(payload: Mapping[str, Any]) -> Verdict:
    ind = payload["indicators"]
    close = ind.get("close")
    if close is None or not payload["daily_candles"]["rows"]:
        return Verdict(verdict="HOLD", confidence=0, pattern="no data", stage=None,
                       reasoning="Rules v1: no close price or candles to judge.",
                       support=None, resistance=None, suggested_stop=None)  # fmt: skip
    checks = trend_checks(ind)
    candidate = payload["candidate"]
    met = [name for name, ok in checks.items() if ok]
    missed = [name for name, ok in checks.items() if ok is False]
    unknown = [name for name, ok in checks.items() if ok is None]
    n_rules = len(candidate["rules_passed"]) + len(candidate["rules_failed"])
    known = len(checks) - len(unknown)
    # Judged on what is known; what is not (short history) lowers the confidence instead.
    share = len(met) / max(known, 1)
    coverage = known / len(checks)
    rule_share = len(candidate["rules_passed"]) / n_rules if n_rules else share
    stage = weinstein_stage(ind)
    rsi = ind.get("rsi14")
    core = checks["close > MA50"] and checks["MA50 > MA150"] and checks["RSI14 50-80"]
    if stage == 4 or _gt(ind.get("ma200"), close) or (rsi is not None and rsi > RSI_EXTENDED):
        verdict, confidence = "AVOID", round(35 + 45 * (1 - share) * coverage + 15 * (1 - rule_share))
    elif stage == 2 and core and share >= BUY_SHARE and coverage >= MIN_COVERAGE:
        verdict, confidence = "BUY", round(35 + 45 * share * coverage + 15 * rule_share)
    else:
        verdict, confidence = "HOLD", 50
    support, resistance = _levels(payload, close)
    stop = None
    if verdict != "AVOID":
        atr = ind.get("atr14")
        stop = number(max(close * (1 - STOP_LOSS_PCT), close - ATR_STOP * atr if atr is not None else 0.0))
    reasoning = (
        f"Rules v1: stage {stage if stage else 'unknown'}, {len(met)}/{len(checks)} trend checks met"
        f"{'; missed: ' + ', '.join(missed) if missed else ''}"
        f"{'; not computable (short history): ' + ', '.join(unknown) if unknown else ''}"
        f"; candidate score {candidate['score']}, {len(candidate['rules_passed'])}/{n_rules} screen rules passed."
    )
    pattern = {1: "stage 1 base", 2: "stage 2 uptrend", 3: "stage 3 top", 4: "stage 4 downtrend"}
    return Verdict(verdict=verdict, confidence=confidence, pattern=pattern.get(stage, "no clear stage"),
                   stage=stage, reasoning=reasoning, support=support, resistance=resistance,
                   suggested_stop=stop)  # fmt: skip

"""The compact JSON an analyst reads for one market: recent daily candles + indicator snapshot.

JSON rather than a chart image (the seeds allow both): a few thousand tokens, exact numbers,
and a canonical text whose hash keys the response cache. The text is canonical because keys
come in a fixed order, numbers are rounded to fixed significant digits and NaN becomes null,
so the same data always gives the same hash.
"""

import hashlib
import json
import math
import numbers
from collections.abc import Mapping
from datetime import datetime
from typing import Any

import numpy as np
import pandas as pd

from makenaide_assets.strategy.calendar import partition_close
from makenaide_assets.strategy.candles import closed_candles
from makenaide_assets.strategy.verdict_schema import VerdictRequest

PAYLOAD_CANDLES = 60
# The contract columns first, in this order; any other scalar columns follow, sorted.
INDICATOR_ORDER = (
    "close", "ma20", "ma50", "ma150", "ma200", "rsi14", "atr14",
    "high_52w", "low_52w", "volume_ratio", "rs_vs_btc",
)  # fmt: skip
_NOT_INDICATORS = {"market", "date"}
_CANDLE_FIELDS = ["date", "open", "high", "low", "close", "value_krw"]
_SIGNIFICANT = 7  # keeps KRW-BTC to 10 KRW and sub-1 KRW coins to their ticks


def number(value: Any, significant: int = _SIGNIFICANT) -> int | float | None:
    """A JSON number with fixed precision; None for NaN/inf/missing."""
    if value is None or isinstance(value, str):
        return None
    as_float = float(value)
    if not math.isfinite(as_float):
        return None
    rounded = float(f"{as_float:.{significant}g}")
    return int(rounded) if rounded.is_integer() and abs(rounded) < 1e15 else rounded


def _scalar(value: Any) -> Any:
    if isinstance(value, bool | np.bool_):
        return bool(value)
    if isinstance(value, str):
        return value
    if value is None or pd.isna(value):
        return None
    if isinstance(value, numbers.Number):
        return number(value)
    if isinstance(value, datetime | pd.Timestamp):
        return pd.Timestamp(value).isoformat()
    return str(value)


def indicator_snapshot(row: Mapping[str, Any]) -> dict[str, Any]:
    extra = sorted(k for k in row if k not in _NOT_INDICATORS and k not in INDICATOR_ORDER)
    return {key: _scalar(row.get(key)) for key in (*INDICATOR_ORDER, *extra)}


def candidate_summary(row: Mapping[str, Any]) -> dict[str, Any]:
    """Score and the rules a candidate passed/failed (its boolean columns other than `passed`)."""
    rules = {k: bool(v) for k, v in row.items() if k != "passed" and isinstance(v, bool | np.bool_)}
    return {
        "score": _scalar(row.get("score")),
        "rules_passed": sorted(k for k, ok in rules.items() if ok),
        "rules_failed": sorted(k for k, ok in rules.items() if not ok),
    }


def candle_rows(candles: pd.DataFrame, partition_key: str, count: int = PAYLOAD_CANDLES) -> list[list[Any]]:
    """The last `count` daily candles closed by D's close, oldest first, as compact rows."""
    closed = closed_candles(candles.sort_values("candle_date_time_utc"), "day", partition_close(partition_key))
    # Column by column as plain values (itertuples builds a row object per candle).
    names = [
        "candle_date_time_utc",
        "opening_price",
        "high_price",
        "low_price",
        "trade_price",
        "candle_acc_trade_price",
    ]
    last = closed.tail(count)
    columns = [last[name].tolist() for name in names]
    return [
        [pd.Timestamp(start).strftime("%Y-%m-%d"), number(o), number(h), number(lo), number(c), number(value, 3)]
        for start, o, h, lo, c, value in zip(*columns, strict=True)
    ]


def build_payload(
    market: str,
    partition_key: str,
    candles: pd.DataFrame,
    indicators: Mapping[str, Any],
    candidate: Mapping[str, Any],
) -> dict[str, Any]:
    return {
        "market": market,
        "as_of": f"close of the UTC daily candle dated {partition_key}",
        "indicators": indicator_snapshot(indicators),
        "candidate": candidate_summary(candidate),
        "daily_candles": {"fields": _CANDLE_FIELDS, "rows": candle_rows(candles, partition_key)},
    }


def canonical_json(payload: Mapping[str, Any]) -> str:
    return json.dumps(payload, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def sha256_hex(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def verdict_request(
    market: str,
    partition_key: str,
    candles: pd.DataFrame,
    indicators: Mapping[str, Any],
    candidate: Mapping[str, Any],
) -> VerdictRequest:
    payload = build_payload(market, partition_key, candles, indicators, candidate)
    text = canonical_json(payload)
    return VerdictRequest(market, partition_key, payload, text, sha256_hex(text))

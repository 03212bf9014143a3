"""The market thermometer (시장 체온계): is this a market to open new positions in?

Two votes, each from the day's indicator snapshot:
- KRW-BTC's trend, Weinstein-style on its 200-day MA: "up" above a rising MA200, "down"
  below a falling one (stage 4), "flat" otherwise.
- breadth, the share of markets closing above their MA200 (among those that have one):
  "strong" from 50 %, "weak" under 25 % (the seed thermometer's minimum), "mixed" between.

regime = bull when BTC is up and breadth strong; bear when BTC is down, or breadth is weak
while BTC is not up; neutral otherwise. New buys are allowed unless the regime is bear or
a vote could not be taken (too little history is reported, never assumed).

Advancers / decliners and the MA50 share are reported, not voted: a single day's advance
share swings with one red candle and would stop buying on noise.
"""

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd


@dataclass(frozen=True)
class BreadthParams:
    strong_share: float = 0.50
    weak_share: float = 0.25
    min_markets: int = 3  # fewer markets with an MA200 than this is no breadth at all


def _share_above(indicators: pd.DataFrame, ma: str) -> tuple[int, float]:
    known = indicators[["close", ma]].dropna()
    if known.empty:
        return 0, float("nan")
    return len(known), float((known["close"] > known[ma]).mean())


def _btc_trend(btc: Mapping[str, Any]) -> str | None:
    close, ma200, slope = (float(btc.get(k, np.nan)) for k in ("close", "ma200", "ma200_slope"))
    if np.isnan([close, ma200, slope]).any():
        return None
    if close > ma200 and slope > 0:
        return "up"
    if close < ma200 and slope < 0:
        return "down"
    return "flat"


def market_breadth(
    indicators: pd.DataFrame,
    btc_indicators_row: Mapping[str, Any] | pd.Series | None,
    params: BreadthParams = BreadthParams(),
) -> dict[str, Any]:
    """One day's thermometer reading from `daily_indicators` and KRW-BTC's row of it."""
    btc = dict(btc_indicators_row) if btc_indicators_row is not None else {}
    with_ma200, share200 = _share_above(indicators, "ma200")
    with_ma50, share50 = _share_above(indicators, "ma50")
    change = indicators["change_1d"]
    btc_trend = _btc_trend(btc)
    if with_ma200 < params.min_markets:
        breadth = None
    elif share200 >= params.strong_share:
        breadth = "strong"
    elif share200 < params.weak_share:
        breadth = "weak"
    else:
        breadth = "mixed"

    if btc_trend == "down" or (breadth == "weak" and btc_trend in ("flat", None)):
        regime = "bear"
    elif btc_trend == "up" and breadth == "strong":
        regime = "bull"
    else:
        regime = "neutral"
    unknown = [
        name for name, vote in (("KRW-BTC ma200 trend", btc_trend), ("breadth above ma200", breadth)) if not vote
    ]
    allow = regime != "bear" and not unknown

    reason = f"{regime}: KRW-BTC trend {btc_trend or 'unknown'}, breadth {breadth or 'unknown'}"
    if with_ma200:
        reason += f" ({share200:.0%} of {with_ma200} markets above MA200)"
    if unknown and regime != "bear":
        reason += "; new buys blocked, insufficient history for " + ", ".join(unknown)
    elif not allow:
        reason += "; new buys blocked"
    return {
        "markets": len(indicators),
        "markets_with_ma200": with_ma200,
        "share_above_ma200": share200,
        "markets_with_ma50": with_ma50,
        "share_above_ma50": share50,
        "advancers": int((change > 0).sum()),
        "decliners": int((change < 0).sum()),
        "unchanged": int((change == 0).sum()),
        "btc_close": float(btc.get("close", np.nan)),
        "btc_ma50": float(btc.get("ma50", np.nan)),
        "btc_ma200": float(btc.get("ma200", np.nan)),
        "btc_ma200_slope": float(btc.get("ma200_slope", np.nan)),
        "btc_above_ma50": bool(btc.get("close", np.nan) > btc.get("ma50", np.nan)),
        "btc_above_ma200": bool(btc.get("close", np.nan) > btc.get("ma200", np.nan)),
        "btc_trend": btc_trend or "unknown",
        "breadth": breadth or "unknown",
        "regime": regime,
        "allow_new_buys": bool(allow),
        "reason": reason,
    }

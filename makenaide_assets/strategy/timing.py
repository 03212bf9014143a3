"""4-hour market timing for one daily candidate (process_4h_for_candidates in the seeds).

The daily rules say *what* to buy; this says whether *now* is a sensible moment, from
closed 4-hour candles only:
- trend: close above the fast EMA and the fast EMA above the slow one;
- momentum: MACD (12, 26, 9) above its signal line;
- not stretched: RSI14 between 50 (buyers in control) and 80 (momentum buying accepts strength,
  but above 80 a 4-hour chart is in a blow-off and the entry would be a chase).

Suggested stop: the recent swing low or 1.5 ATR below the close, whichever is lower (a stop
inside one bar's noise only gets hit), but never farther below the close than the exit rules'
hard stop (`exits.STOP_LOSS_PCT`, O'Neil's and Minervini's loss limit): the close is the suggested
entry, so a farther stop would never be the one that fires. EMAs start at the first close, so at least
`min_candles` are needed for the slow EMA's starting weight to fade below 1 %.
"""

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from makenaide_assets.strategy.exits import STOP_LOSS_PCT
from makenaide_assets.strategy.indicators import wilder_last

FOUR_HOURS = pd.Timedelta(hours=4)


@dataclass(frozen=True)
class TimingParams:
    ema_fast: int = 20
    ema_slow: int = 50
    macd_fast: int = 12
    macd_slow: int = 26
    macd_signal: int = 9
    rsi_period: int = 14
    atr_period: int = 14
    rsi_min: float = 50.0
    rsi_max: float = 80.0
    swing_candles: int = 12  # two days of 4-hour candles
    atr_stop_multiple: float = 1.5
    # The same loss limit as the exit rules' stop-loss, measured from the close (the suggested entry).
    max_stop_distance: float = STOP_LOSS_PCT
    min_candles: int = 120
    max_staleness_hours: float = 8.0  # one missing window (Upbit maintenance) is tolerated


def _empty(reason: str, last: pd.Timestamp | None = None, count: int = 0) -> dict[str, Any]:
    nan = float("nan")
    return {
        "entry_ok": False,
        "reason": reason,
        "last_candle_utc": last,
        "candles": count,
        **dict.fromkeys(["close", "ema_fast", "ema_slow", "macd", "macd_signal", "macd_hist", "rsi14", "atr14"], nan),
        **dict.fromkeys(["trend_up", "momentum_up", "rsi_ok"], False),
        **dict.fromkeys(["suggested_entry", "pullback_entry", "suggested_stop", "stop_distance"], nan),
    }


def _ema(values: pd.Series, span: int) -> pd.Series:
    return values.ewm(span=span, adjust=False).mean()


def evaluate_4h(
    candles_4h: pd.DataFrame, params: TimingParams = TimingParams(), *, as_of: pd.Timestamp | None = None
) -> dict[str, Any]:
    """Timing verdict for one market from its closed 4-hour candles (CANDLE_COLUMNS).

    With `as_of` (the instant the decision is made), a candle not yet closed then is a
    lookahead bug and raises; candles that stopped long before it are reported as stale.
    """
    if candles_4h.empty:
        return _empty("no 4h candles")
    frame = candles_4h.sort_values("candle_date_time_utc").reset_index(drop=True)
    last = pd.Timestamp(frame["candle_date_time_utc"].iloc[-1])
    count = len(frame)
    if as_of is not None:
        if last + FOUR_HOURS > as_of:
            raise ValueError(f"4h candle {last} had not closed at {as_of}: lookahead")
        if as_of - (last + FOUR_HOURS) > pd.Timedelta(hours=params.max_staleness_hours):
            return _empty(f"stale 4h candles: the last closed at {last + FOUR_HOURS}, before {as_of}", last, count)
    if count < params.min_candles:
        return _empty(f"too few 4h candles: {count} < {params.min_candles}", last, count)
    prices = frame[["high_price", "low_price", "trade_price"]]
    if prices.isna().any().any():
        return _empty(f"4h candles have missing prices in {int(prices.isna().any(axis=1).sum())} rows", last, count)

    close, high, low = frame["trade_price"], frame["high_price"], frame["low_price"]
    ema_fast, ema_slow = _ema(close, params.ema_fast).iloc[-1], _ema(close, params.ema_slow).iloc[-1]
    macd_line = _ema(close, params.macd_fast) - _ema(close, params.macd_slow)
    macd, signal = macd_line.iloc[-1], _ema(macd_line, params.macd_signal).iloc[-1]
    diff = close.diff().to_numpy()[:, None]
    gain = wilder_last(np.where(np.isnan(diff), np.nan, np.maximum(diff, 0)), params.rsi_period, np.array([1]))[0]
    loss = wilder_last(np.where(np.isnan(diff), np.nan, np.maximum(-diff, 0)), params.rsi_period, np.array([1]))[0]
    rsi = 0.0 if gain + loss == 0 else 100.0 * gain / (gain + loss)
    prev = close.shift(1)
    true_range = pd.concat([high - low, (high - prev).abs(), (low - prev).abs()], axis=1).max(axis=1, skipna=False)
    atr = wilder_last(true_range.to_numpy()[:, None], params.atr_period, np.array([1]))[0]

    price = float(close.iloc[-1])
    swing_low = float(low.iloc[-params.swing_candles :].min())
    stop = max(min(swing_low, price - params.atr_stop_multiple * atr), price * (1 - params.max_stop_distance))
    flags = {
        "trend_up": bool(price > ema_fast > ema_slow),
        "momentum_up": bool(macd > signal),
        "rsi_ok": bool(params.rsi_min <= rsi <= params.rsi_max),
    }
    entry_ok = all(flags.values())
    failed = [name for name, ok in flags.items() if not ok]
    reason = (
        f"entry ok: close {price:,.0f} above rising EMAs, MACD above signal, RSI {rsi:.0f}"
        if entry_ok
        else "no entry: "
        + ", ".join(_WHY[name].format(rsi=rsi, lo=params.rsi_min, hi=params.rsi_max) for name in failed)
    )
    return {
        "entry_ok": entry_ok,
        "reason": reason,
        "last_candle_utc": last,
        "candles": count,
        "close": price,
        "ema_fast": float(ema_fast),
        "ema_slow": float(ema_slow),
        "macd": float(macd),
        "macd_signal": float(signal),
        "macd_hist": float(macd - signal),
        "rsi14": float(rsi),
        "atr14": float(atr),
        **flags,
        "suggested_entry": price,
        "pullback_entry": float(min(price, ema_fast)),
        "suggested_stop": float(stop),
        "stop_distance": float(1 - stop / price),
    }


_WHY = {
    "trend_up": "4h trend not up (close > EMA fast > EMA slow fails)",
    "momentum_up": "MACD below its signal",
    "rsi_ok": "RSI {rsi:.0f} outside {lo:.0f}-{hi:.0f}",
}

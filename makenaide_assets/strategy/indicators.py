"""The daily indicator snapshot: one row per market, as of its last closed day candle.

All markets are computed together on "end-aligned" matrices (row -1 is each market's last
candle, shorter histories are NaN-padded on top), so a partition of 230 markets costs a few
numpy passes instead of 230 pandas group operations. A window that reaches into the padding
sums a NaN and comes out NaN: too little history is never filled with a shorter window.

Units: prices in KRW; `change_1d`, `ma*_slope` and `rs_vs_btc` are fractions (0.05 = +5 %).
"""

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

MA_PERIODS = (20, 50, 150, 200)
SLOPE_CANDLES = 20  # about a month of 5-day weeks: Minervini's "MA200 rising for at least a month"
WILDER_PERIOD = 14
RANGE_CANDLES = 365  # 52 weeks of a market that trades every day
VOLUME_CANDLES = 20
RS_CANDLES = 63  # a quarter of trading days, the heaviest term of O'Neil's relative strength

# Candles a market needs before each column can exist (history_days >= value).
HISTORY_NEEDED: dict[str, int] = {
    "close": 1,
    "open": 1,
    "high": 1,
    "low": 1,
    "change_1d": 2,
    **{f"ma{n}": n for n in MA_PERIODS},
    **{f"ma{n}_slope": n + SLOPE_CANDLES for n in MA_PERIODS},
    "rsi14": WILDER_PERIOD + 1,
    "atr14": WILDER_PERIOD + 1,
    "high_52w": RANGE_CANDLES,
    "low_52w": RANGE_CANDLES,
    "volume_ma20": VOLUME_CANDLES,
    "volume_ratio": VOLUME_CANDLES + 1,
    "rs_vs_btc": RS_CANDLES + 1,
}
# The contract columns: NaN in one of them is acceptable only when `insufficient_history` names it.
REQUIRED_COLUMNS = [
    "close", "ma20", "ma50", "ma150", "ma200", "rsi14", "atr14",
    "high_52w", "low_52w", "volume_ratio", "rs_vs_btc",
]  # fmt: skip
SNAPSHOT_COLUMNS = [
    "market", "date", "close", "open", "high", "low", "change_1d",
    *(f"ma{n}" for n in MA_PERIODS), *(f"ma{n}_slope" for n in MA_PERIODS),
    "rsi14", "atr14", "high_52w", "low_52w", "volume_ma20", "volume_ratio", "rs_vs_btc",
    "history_days", "insufficient_history",
]  # fmt: skip


@dataclass(frozen=True)
class Aligned:
    """End-aligned (T, M) matrices of candle columns; `times` holds candle_date_time_utc."""

    markets: pd.Index
    counts: np.ndarray
    times: np.ndarray
    values: dict[str, np.ndarray]

    def col(self, name: str) -> np.ndarray:
        return self.values[name]


def align_last(candles: pd.DataFrame, columns: list[str], *, alone: bool = False) -> Aligned:
    """Long candles (`market` + columns, any order) → end-aligned matrices, markets sorted.

    `alone`: each market's column contiguous (Fortran order), so that a sum down a column adds
    as it does when that market is the only column. NumPy sums a lone column pairwise and the
    columns of a row-major matrix row by row, which can differ in the last bit; a batch of
    one-market days (the fast backtest) must give each day's own call's values."""
    codes, markets = pd.factorize(candles["market"], sort=True)
    stamps = candles["candle_date_time_utc"].to_numpy(dtype="datetime64[ns]")
    order = np.lexsort((stamps, codes))
    codes = codes[order]
    counts = np.bincount(codes, minlength=len(markets))
    length = int(counts.max()) if len(counts) else 0
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    rows = length - counts[codes] + np.arange(len(codes)) - starts[codes]
    times = np.full((length, len(markets)), np.datetime64("NaT"), dtype="datetime64[ns]")
    times[rows, codes] = stamps[order]
    values = {}
    for name in columns:
        matrix = np.full((length, len(markets)), np.nan, order="F" if alone else "C")
        matrix[rows, codes] = candles[name].to_numpy(dtype="float64")[order]
        values[name] = matrix
    return Aligned(pd.Index(markets, name="market"), counts, times, values)


def window(a: np.ndarray, n: int, back: int = 0) -> np.ndarray:
    """The n rows ending `back` rows before the last; NaN rows when the matrix is too short."""
    end = a.shape[0] - back
    if end - n < 0:
        return np.full((max(n, 1), a.shape[1]), np.nan)
    return a[end - n : end]


def sma_last(a: np.ndarray, n: int, back: int = 0) -> np.ndarray:
    # np.sum, not nansum: one missing candle must make the mean missing, not smaller.
    return window(a, n, back).sum(axis=0) / n


def wilder_last(x: np.ndarray, period: int, first: np.ndarray) -> np.ndarray:
    """Wilder's smoothing as TA-Lib does it: the mean of the first `period` values, then
    avg = (avg * (period - 1) + x) / period. `first` is each column's first valid row."""
    rows, cols = x.shape
    seed_row = first + period - 1
    clean = np.where(np.isnan(x), 0.0, x)
    sums = np.vstack([np.zeros(cols), np.cumsum(clean, axis=0)])
    holes = np.vstack([np.zeros(cols), np.cumsum(np.isnan(x), axis=0)])
    seed_end = np.minimum(seed_row + 1, rows)
    seed = (sums[seed_end, np.arange(cols)] - sums[first, np.arange(cols)]) / period
    seed[(holes[seed_end, np.arange(cols)] - holes[first, np.arange(cols)]) > 0] = np.nan
    if cols <= _FLOAT_LOOP_COLUMNS:
        return np.array([_wilder_column(x[:, c], float(seed[c]), int(seed_row[c]), period) for c in range(cols)])
    avg = np.full(cols, np.nan)
    for t in range(int(seed_row.min(initial=rows)), rows):
        avg = np.where(seed_row == t, seed, (avg * (period - 1) + x[t]) / period)
    return avg


# Up to this many columns the recursion runs on Python floats, column by column: a NumPy call per
# row costs more than the arithmetic of a few columns. The operations are the same IEEE ones in
# the same order, so both ways give the same bits.
_FLOAT_LOOP_COLUMNS = 32


def _wilder_column(x: np.ndarray, seed: float, seed_row: int, period: int) -> float:
    if seed_row >= len(x):
        return float("nan")
    avg = seed
    for value in x[seed_row + 1 :].tolist():
        avg = (avg * (period - 1) + value) / period
    return avg


def _rsi_atr(al: Aligned) -> tuple[np.ndarray, np.ndarray]:
    close, high, low = al.col("trade_price"), al.col("high_price"), al.col("low_price")
    prev = np.vstack([np.full((1, close.shape[1]), np.nan), close[:-1]])
    diff = close - prev
    first = close.shape[0] - al.counts + 1  # the first diff / true range needs a previous close
    gain = wilder_last(np.where(diff > 0, diff, np.where(np.isnan(diff), np.nan, 0.0)), WILDER_PERIOD, first)
    loss = wilder_last(np.where(diff < 0, -diff, np.where(np.isnan(diff), np.nan, 0.0)), WILDER_PERIOD, first)
    total = gain + loss
    with np.errstate(invalid="ignore", divide="ignore"):
        rsi = np.where(total == 0, 0.0, 100.0 * gain / total)  # TA-Lib answers 0 for a flat series
    true_range = np.fmax(high - low, np.fmax(np.abs(high - prev), np.abs(low - prev)))
    true_range[np.isnan(high - low + prev)] = np.nan
    return rsi, wilder_last(true_range, WILDER_PERIOD, first)


def _rs_vs_btc(al: Aligned, btc: pd.DataFrame) -> np.ndarray:
    """(1 + market's return) / (1 + KRW-BTC's return) - 1 over the market's last 63 candles,
    BTC read on the same two dates: the return of holding the coin priced in BTC."""
    close = al.col("trade_price")
    own = close[-1] / window(close, 1, RS_CANDLES)[0]
    if close.shape[0] > RS_CANDLES:
        start = al.times[-1 - RS_CANDLES]
    else:
        start = np.full(close.shape[1], np.datetime64("NaT"), dtype="datetime64[ns]")
    btc_close = pd.Series(btc["trade_price"].to_numpy(), index=pd.DatetimeIndex(btc["candle_date_time_utc"]))
    btc_close = btc_close[~btc_close.index.duplicated()]
    btc_ratio = btc_close.reindex(al.times[-1]).to_numpy() / btc_close.reindex(start).to_numpy()
    return own / btc_ratio - 1.0


def indicator_snapshot(candles: pd.DataFrame, btc: pd.DataFrame, *, alone: bool = False) -> pd.DataFrame:
    """One row per market of `candles` (long: market + CANDLE_COLUMNS, cut at D's close).

    `date` is the last candle's date (not forced to D, so a stale market shows). `ma{n}` are
    simple means of the last n closes; `ma{n}_slope` the MA's change over 20 candles;
    `rsi14`/`atr14` Wilder's, equal to TA-Lib's on the same candles; `high_52w`/`low_52w`
    the highest high / lowest low of the last 365 candles; `volume_ma20` the mean coin
    volume of the last 20 candles; `volume_ratio` the last candle's coin volume over the
    mean of the 20 before it (coin units, as the books count shares: KRW value would rise
    with the day's own price move); `rs_vs_btc` see `_rs_vs_btc`. `alone`: each market's row as a
    call with that market alone gives it (`align_last`).
    """
    if candles.empty:
        return pd.DataFrame({c: pd.Series(dtype="object") for c in SNAPSHOT_COLUMNS})
    names = ["opening_price", "high_price", "low_price", "trade_price", "candle_acc_trade_volume"]
    al = align_last(candles, names, alone=alone)
    close, volume = al.col("trade_price"), al.col("candle_acc_trade_volume")
    # Columns collected first and the frame built once: a column assignment costs more than its arithmetic.
    out: dict[str, Any] = {"market": al.markets, "date": pd.DatetimeIndex(al.times[-1]).normalize()}
    out["close"], out["open"] = close[-1], al.col("opening_price")[-1]
    out["high"], out["low"] = al.col("high_price")[-1], al.col("low_price")[-1]
    out["change_1d"] = close[-1] / window(close, 1, 1)[0] - 1.0
    for n in MA_PERIODS:
        out[f"ma{n}"] = sma_last(close, n)
    for n in MA_PERIODS:
        out[f"ma{n}_slope"] = out[f"ma{n}"] / sma_last(close, n, SLOPE_CANDLES) - 1.0
    out["rsi14"], out["atr14"] = _rsi_atr(al)
    out["high_52w"] = window(al.col("high_price"), RANGE_CANDLES).max(axis=0)
    out["low_52w"] = window(al.col("low_price"), RANGE_CANDLES).min(axis=0)
    out["volume_ma20"] = sma_last(volume, VOLUME_CANDLES)
    out["volume_ratio"] = volume[-1] / sma_last(volume, VOLUME_CANDLES, 1)
    out["rs_vs_btc"] = _rs_vs_btc(al, btc)
    out["history_days"] = al.counts
    out["insufficient_history"] = insufficient_history(al.counts)
    return pd.DataFrame({name: out[name] for name in SNAPSHOT_COLUMNS})


@dataclass(frozen=True)
class PatternParams:
    """Windows of the price-path features the rules read (see `pattern_features`)."""

    base_candles: int = 49  # O'Neil: a proper base lasts at least seven weeks
    range_min_candles: int = 200  # the shortest history a stand-in 52-week range may use
    contractions: int = 3
    contraction_candles: int = 15
    cross_lookback: int = 20


def pattern_features(
    candles: pd.DataFrame, params: PatternParams = PatternParams(), *, alone: bool = False
) -> pd.DataFrame:
    """Per market (index): the price-path facts behind the base, VCP and MA200-cross rules.

    `range_high`/`range_low`: highest high / lowest low of the last min(365, available)
    candles, `range_candles` how many (NaN below `range_min_candles`). `base_high`/`base_low`:
    the `base_candles` before the last one (the pivot is `base_high`), `base_depth` =
    1 - low / high. `vcp_depth_1..k`: deepest pullback from a running high inside each of k
    consecutive windows ending at the last candle, oldest first; `vcp_volume_ratio`: mean
    volume of the newest window over the oldest. `ma200_cross_age`: candles since the close
    crossed above MA200 (0 = on the last candle), NaN if below now or no cross in the lookback.
    `alone`: as `indicator_snapshot`'s.
    """
    al = align_last(candles, ["high_price", "low_price", "trade_price", "candle_acc_trade_volume"], alone=alone)
    high, low, close = al.col("high_price"), al.col("low_price"), al.col("trade_price")
    out: dict[str, np.ndarray] = {}
    enough = al.counts >= params.range_min_candles
    range_rows = min(RANGE_CANDLES, high.shape[0])
    with np.errstate(all="ignore"):
        out["range_high"] = np.where(enough, np.nanmax(high[-range_rows:], axis=0, initial=-np.inf), np.nan)
        out["range_low"] = np.where(enough, np.nanmin(low[-range_rows:], axis=0, initial=np.inf), np.nan)
    out["range_candles"] = np.where(enough, np.minimum(al.counts, RANGE_CANDLES), np.nan)
    out["base_high"] = window(high, params.base_candles, 1).max(axis=0)
    out["base_low"] = window(low, params.base_candles, 1).min(axis=0)
    out["base_depth"] = 1 - out["base_low"] / out["base_high"]
    size = params.contraction_candles
    for i in range(params.contractions):
        back = (params.contractions - 1 - i) * size
        highs, lows = window(high, size, back), window(low, size, back)
        out[f"vcp_depth_{i + 1}"] = (1 - lows / np.maximum.accumulate(highs, axis=0)).max(axis=0)
    volume = al.col("candle_acc_trade_volume")
    oldest = sma_last(volume, size, (params.contractions - 1) * size)
    out["vcp_volume_ratio"] = sma_last(volume, size) / oldest
    out["ma200_cross_age"] = _cross_age(close, 200, params.cross_lookback)
    return pd.DataFrame(out, index=al.markets)


def _cross_age(close: np.ndarray, period: int, lookback: int) -> np.ndarray:
    ma = np.vstack([sma_last(close, period, k) for k in range(lookback + 1)])  # row k: k candles back
    price = np.vstack([window(close, 1, k)[0] for k in range(lookback + 1)])
    above = price > ma
    streak = np.where(above.all(axis=0), lookback + 1, np.argmin(above, axis=0))
    cols = np.arange(close.shape[1])
    known = np.zeros(close.shape[1], dtype=bool)
    inside = streak <= lookback
    known[inside] = ~np.isnan(ma[streak[inside], cols[inside]])
    return np.where((streak >= 1) & inside & known, streak - 1.0, np.nan)


def insufficient_history(history_days: np.ndarray) -> list[str]:
    """Per market, the columns its history is too short for, comma-separated ('' when none)."""
    short = [(name, history_days < need) for name, need in HISTORY_NEEDED.items()]
    return [",".join(name for name, mask in short if mask[i]) for i in range(len(history_days))]

"""The recording as NumPy arrays, read once and cut per day exactly as `ReplayMarketData` cuts it.

The fast engine's inputs for every day: what `universe_frame` reads (monthly candles closed by D's
close, the KRW traded in the candle that just closed) and the long `daily_candles` frame
`universe_candles` builds (the last `history_days` daily candles closed by D's close per market).
The Dagster engine asks `ReplayMarketData` for them market by market and day by day; here every
file is read once and each day is a binary search and a slice. `test_fast_engine.py` compares
both answers day by day.
"""

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from makenaide_assets.market.indicators import BENCHMARK_MARKET
from makenaide_assets.market.universe import screen_universe
from makenaide_assets.resources.market_data import ReplayMarketData, ReplayOutOfRange
from makenaide_assets.resources.thresholds import UniverseThresholds
from makenaide_assets.strategy.calendar import partition_close
from makenaide_assets.strategy.candles import CANDLE_COLUMNS, candle_close_time

# Later than any recording: "every candle recorded", through the public `candles` method.
_EVERYTHING = pd.Timestamp("2200-01-01")
_ALL = 10**9
_ONE_DAY = np.timedelta64(1, "D")
# universe.py reads one Upbit page of monthly candles: a longer listing counts as 200 months.
MONTHS_FETCHED = 200


@dataclass(frozen=True)
class Series:
    """One market's candles of one interval: start times and every candle column, ascending."""

    starts: np.ndarray  # datetime64[ns]
    columns: dict[str, np.ndarray]

    def closed_count(self, last_start: np.datetime64) -> int:
        """How many candles started at or before `last_start` (ReplayMarketData's closed prefix)."""
        return int(np.searchsorted(self.starts, last_start, side="right"))


def _series(frame: pd.DataFrame) -> Series:
    columns = {c: frame[c].to_numpy() for c in CANDLE_COLUMNS}
    return Series(columns["candle_date_time_utc"].astype("datetime64[ns]"), columns)


def _ohlc_flags(series: Series) -> np.ndarray:
    """Per candle: would `quality.ohlc_violations` name it (a price missing, high < low, high under the
    open or close, low over them, low <= 0)?"""
    c = series.columns
    o, h, lo, cl = (c[k].astype("float64") for k in ("opening_price", "high_price", "low_price", "trade_price"))
    with np.errstate(invalid="ignore"):
        missing = np.isnan(o) | np.isnan(h) | np.isnan(lo) | np.isnan(cl)
        return missing | (h < lo) | (h < np.fmax(o, cl)) | (lo > np.fmin(o, cl)) | (lo <= 0)


class DayData:
    """Daily and monthly candles of every market of a recording, for cutting per partition."""

    def __init__(self, market_data: ReplayMarketData, markets: Sequence[str]) -> None:
        self.day = {m: _series(market_data.candles(m, "day", _EVERYTHING, _ALL)) for m in markets}
        months = {m: market_data.candles(m, "month", _EVERYTHING, _ALL) for m in markets}
        # A monthly candle has closed once the next month began (strategy/candles.py).
        self.month_closes = {
            m: candle_close_time(frame["candle_date_time_utc"], "month").to_numpy(dtype="datetime64[ns]")
            for m, frame in months.items()
        }
        self._bad = {m: _ohlc_flags(series) for m, series in self.day.items()}
        recorded = [series.starts for series in self.day.values() if len(series.starts)]
        self.first_close = pd.Timestamp(min(s[0] for s in recorded)) + pd.Timedelta(days=1) if recorded else None
        self.last_close = pd.Timestamp(max(s[-1] for s in recorded)) + pd.Timedelta(days=1) if recorded else None

    def within_recording(self, as_of: pd.Timestamp, replay_dir: str) -> None:
        """`ReplayMarketData.markets`' range check: D must close inside the recorded daily candles."""
        if not self.first_close <= as_of <= self.last_close:
            raise ReplayOutOfRange(
                f"{replay_dir} holds daily candles closing {self.first_close} → {self.last_close}; the partition "
                f"closing at {as_of} is outside the recording (pick a partition inside it, or another "
                "MAKENAIDE_REPLAY_DIR)"
            )

    def universes(self, tickers: pd.DataFrame, thresholds: UniverseThresholds, keys: Sequence[str]) -> pd.DataFrame:
        """`universe_frame` of each day D of `keys`: months listed and the KRW traded in the 24 hours
        before D's close, screened in one call of `screen_universe`. One frame, `len(tickers)` rows
        per day in the order of `keys` (day i's universe is rows i * n to (i + 1) * n)."""
        eligible = tickers.loc[tickers["excluded_reason"] == "", "market"].tolist()
        months, values = {}, {}
        for key in keys:
            as_of = np.datetime64(partition_close(key), "ns")
            for market in eligible:
                closes = self.month_closes.get(market)
                count = 0 if closes is None else int(np.searchsorted(closes, as_of, side="right"))
                months[stacked_key(key, market)] = min(count, MONTHS_FETCHED)
                series = self.day.get(market)
                n = 0 if series is None else series.closed_count(as_of - _ONE_DAY)
                recent = n > 0 and series.starts[n - 1] + _ONE_DAY == as_of  # type: ignore[union-attr]
                value = float(series.columns["candle_acc_trade_price"][n - 1]) if recent else 0.0  # type: ignore[union-attr]
                values[stacked_key(key, market)] = value
        names = tickers["market"].tolist()
        stacked = tickers.iloc[np.tile(np.arange(len(tickers)), len(keys))].reset_index(drop=True)
        stacked["market"] = [stacked_key(k, m) for k in keys for m in names]
        traded = pd.Series(values, name="trade_value_krw", dtype="float64")
        frame = screen_universe(stacked, pd.Series(months, dtype="int64"), traded, thresholds)
        frame["market"] = np.tile(tickers["market"].to_numpy(), len(keys))
        return frame

    def candles(
        self, universe: pd.DataFrame, thresholds: UniverseThresholds, partition_key: str
    ) -> tuple[pd.DataFrame, list[str]]:
        """`universe_candles` of D: the long frame of the universe's daily candles (and KRW-BTC's)."""
        markets = universe.loc[universe["passed"], "market"].tolist()
        return self.candles_of(markets, thresholds.history_days, partition_key)

    def candles_of(
        self, markets: Sequence[str], history_days: int, partition_key: str
    ) -> tuple[pd.DataFrame, list[str]]:
        """`candles` of D from the universe's passed markets."""
        last_start = np.datetime64(partition_close(partition_key), "ns") - _ONE_DAY
        fetch = [*markets, *([BENCHMARK_MARKET] if BENCHMARK_MARKET not in markets else [])]
        cuts = []
        for market in fetch:
            series = self.day.get(market)
            end = 0 if series is None else series.closed_count(last_start)
            cuts.append((market, series, max(0, end - history_days), end))
        cuts = [c for c in cuts if c[3] > c[2]]
        if not cuts:
            frame = pd.DataFrame(columns=["market", *CANDLE_COLUMNS])
        else:
            lengths = [end - start for _, _, start, end in cuts]
            data = {"market": np.repeat(np.array([m for m, *_ in cuts], dtype=object), lengths)}
            for column in CANDLE_COLUMNS:
                data[column] = np.concatenate([s.columns[column][a:b] for _, s, a, b in cuts])  # type: ignore[union-attr]
            frame = pd.DataFrame(data)
        frame["in_universe"] = frame["market"].isin(markets)
        return frame, fetch

    def stacked(self, windows: Sequence[tuple[str, Sequence[str]]], history_days: int) -> pd.DataFrame:
        """The `daily_candles` rows of many (day, markets) at once, each window under its own key
        `<day>|<market>` (see `stacked_key`): one indicator computation for a month of days."""
        cuts = []
        for key, markets in windows:
            last_start = np.datetime64(partition_close(key), "ns") - _ONE_DAY
            for market in markets:
                series = self.day[market]
                end = series.closed_count(last_start)
                if end:
                    cuts.append((stacked_key(key, market), series, max(0, end - history_days), end))
        lengths = [end - start for _, _, start, end in cuts]
        data = {"market": np.repeat(np.array([k for k, *_ in cuts], dtype=object), lengths)}
        for column in CANDLE_COLUMNS:
            data[column] = np.concatenate([s.columns[column][a:b] for _, s, a, b in cuts])
        return pd.DataFrame(data)

    def close_of(self, market: str, partition_key: str) -> float | None:
        """D's close of `market` (`portfolio`'s price), None when it has no candle dated D."""
        series = self.day.get(market)
        day = np.datetime64(pd.Timestamp(partition_key), "ns")
        end = 0 if series is None else series.closed_count(day)
        if end == 0 or series.starts[end - 1] != day:  # type: ignore[union-attr]
            return None
        return float(series.columns["trade_price"][end - 1])  # type: ignore[union-attr]

    def stale(self, fetch: Sequence[str], partition_key: str) -> list[str]:
        """`quality.stale_markets` of D's candles: fetched markets whose last closed candle is not D's."""
        day = np.datetime64(pd.Timestamp(partition_key), "ns")
        stale = []
        for market in fetch:
            series = self.day.get(market)
            end = 0 if series is None else series.closed_count(day)
            if end == 0 or series.starts[end - 1].astype("datetime64[D]") != day:  # type: ignore[union-attr]
                stale.append(market)
        return sorted(stale)

    def bad_ohlc(self, fetch: Sequence[str], partition_key: str, history_days: int) -> list[str]:
        """`quality.ohlc_violations` of D's candles, from the violations of the whole recording found once."""
        last_start = np.datetime64(partition_close(partition_key), "ns") - _ONE_DAY
        bad = []
        for market in fetch:
            flagged = self._bad.get(market)
            if flagged is None or not len(flagged):
                continue
            series = self.day[market]
            end = series.closed_count(last_start)
            window = flagged[max(0, end - history_days) : end]
            if window.any():
                bad.append(market)
        return sorted(bad)


def stacked_key(partition_key: str, market: str) -> str:
    """Sorts by day, then market: each day's rows come out in the order that day's own call gives."""
    return f"{partition_key}|{market}"

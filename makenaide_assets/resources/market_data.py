"""Market data: one interface, a live Upbit implementation and a replay of recorded answers."""

from abc import ABC, abstractmethod
from collections.abc import Sequence
from functools import lru_cache
from pathlib import Path

import dagster as dg
import numpy as np
import pandas as pd
from pydantic import PrivateAttr

from makenaide_assets.strategy.calendar import partition_close
from makenaide_assets.strategy.candles import (
    CANDLE_COLUMNS,
    Interval,
    MalformedMarketData,
    closed_candles,
    last_closed_start,
    monthly_from_daily,
    normalise_candles,
    parse_market_list,
)


class ReplayOutOfRange(LookupError):
    """The partition lies outside the recording: answering would mean inventing a market."""


class MarketData(dg.ConfigurableResource, ABC):
    """Upbit quotation data as of an instant: nothing that had not closed by `as_of` is returned."""

    @abstractmethod
    def describe(self) -> str:
        """Where the data comes from, for asset metadata."""

    @abstractmethod
    def markets(self, as_of: pd.Timestamp) -> pd.DataFrame:
        """KRW markets: market, korean_name, english_name, market_warning, caution_flags."""

    @abstractmethod
    def candles(self, market: str, interval: Interval, as_of: pd.Timestamp, count: int) -> pd.DataFrame:
        """The last `count` candles of `market` closed by `as_of`, ascending, CANDLE_COLUMNS.

        An unknown market gives an empty frame (it is not listed); a failed or malformed answer
        raises, so an empty frame always means "no candles", never "the call failed".
        """

    @abstractmethod
    def trade_values_24h(self, markets: Sequence[str], as_of: pd.Timestamp) -> pd.Series:
        """KRW traded over the 24 hours before `as_of`, indexed by market (0 for no trades)."""

    def candles_many(self, markets: Sequence[str], interval: Interval, as_of: pd.Timestamp, count: int) -> pd.DataFrame:
        """Long frame (`market` + CANDLE_COLUMNS) for many markets; subclasses may batch."""
        frames = []
        for market in markets:
            frame = self.candles(market, interval, as_of, count)
            frames.append(frame.assign(market=market))
        if not frames:
            return pd.DataFrame(columns=["market", *CANDLE_COLUMNS])
        return pd.concat(frames, ignore_index=True)[["market", *CANDLE_COLUMNS]]

    def first_price_after(self, market: str, after: pd.Timestamp) -> tuple[pd.Timestamp, float] | None:
        """The first traded price at or after `after` (for paper fills), or None if unknown.

        Live implementations answer with the current price; the replay with the open of the
        first candle starting at or after `after` (4-hour candles when recorded, else daily).
        """
        return None

    def intraday_prices(self, markets: Sequence[str], start: pd.Timestamp, now: pd.Timestamp) -> pd.DataFrame:
        """Prices seen between `start` and `now` for the stop watch: INTRADAY_COLUMNS, ascending
        per market. A market absent from the answer has no intraday prices here (the daily rule
        alone judges it); a failed or malformed answer raises."""
        raise NotImplementedError(f"{type(self).__name__} serves no intraday prices")


# What the stop watch reads (strategy/intraday.py): a candle, or a ticker as a one-price candle.
INTRADAY_COLUMNS = ["market", "at", "open", "high", "low", "close"]


class ReplayMarketData(MarketData):
    """Serves a replay directory (DESIGN §5) through the same parsing as the live client."""

    replay_dir: str

    _cache: dict = PrivateAttr(default_factory=dict)
    _starts: dict = PrivateAttr(default_factory=dict)

    def describe(self) -> str:
        return f"replay of recorded Upbit answers in {self.replay_dir}"

    def _root(self) -> Path:
        root = Path(self.replay_dir)
        if not (root / "markets.json").is_file():
            raise FileNotFoundError(f"replay directory {root} has no markets.json (see DESIGN §5)")
        return root

    def markets(self, as_of: pd.Timestamp) -> pd.DataFrame:
        markets = _read_markets(str(self._root() / "markets.json"))
        first, last = self._coverage(markets["market"].tolist())
        # A schedule tick in demo mode asks for yesterday, long after the recording ends; an empty
        # universe would look like a quiet market, so say plainly that there is no data.
        if not first <= as_of <= last:
            raise ReplayOutOfRange(
                f"{self.replay_dir} holds daily candles closing {first} → {last}; the partition closing at "
                f"{as_of} is outside the recording (pick a partition inside it, or another MAKENAIDE_REPLAY_DIR)"
            )
        return markets

    def _coverage(self, markets: list[str]) -> tuple[pd.Timestamp, pd.Timestamp]:
        starts, ends = [], []
        for market in markets:
            day = self._full(market, "day")
            if not day.empty:
                starts.append(day["candle_date_time_utc"].iloc[0] + pd.Timedelta(days=1))
                ends.append(day["candle_date_time_utc"].iloc[-1] + pd.Timedelta(days=1))
        if not starts:
            raise ReplayOutOfRange(f"{self.replay_dir} holds no daily candles at all")
        return min(starts), max(ends)

    def _full(self, market: str, interval: Interval) -> pd.DataFrame:
        key = (market, interval)
        if key not in self._cache:
            self._cache[key] = self._load(market, interval)
        return self._cache[key]

    def _load(self, market: str, interval: Interval) -> pd.DataFrame:
        root = self._root()
        path = _candle_file(root, interval, market)
        if path is not None:
            return _read_candles(str(path))
        if interval == "month":
            return monthly_from_daily(self._full(market, "day"))
        return normalise_candles(pd.DataFrame(), source=f"{root}/{interval}/{market}")

    def _ascending_starts(self, market: str, interval: Interval) -> np.ndarray | None:
        """The candles' start times as NumPy (datetime64[ns]), when ascending as normalise_candles
        leaves them; None otherwise (and for months, which close on the calendar), where the
        frame is cut as `closed_candles` cuts it."""
        key = (market, interval)
        if key not in self._starts:
            starts = self._full(market, interval)["candle_date_time_utc"]
            ascending = interval != "month" and starts.is_monotonic_increasing
            self._starts[key] = starts.to_numpy(dtype="datetime64[ns]") if ascending else None
        return self._starts[key]

    def _closed_count(self, starts: np.ndarray, interval: Interval, as_of: pd.Timestamp) -> int:
        """How many candles had closed at `as_of` (`closed_candles`' prefix: started by as_of - duration)."""
        last_start = np.datetime64(last_closed_start(as_of, interval), "ns")
        return int(np.searchsorted(starts, last_start, side="right"))

    def candles(self, market: str, interval: Interval, as_of: pd.Timestamp, count: int) -> pd.DataFrame:
        starts = self._ascending_starts(market, interval)
        if starts is None or count < 0:
            closed = closed_candles(self._full(market, interval), interval, as_of)
            return closed.tail(count).reset_index(drop=True)
        # One slice for closed_candles' prefix and its tail: per market and day, two frames fewer.
        end = self._closed_count(starts, interval, as_of)
        return self._full(market, interval).iloc[max(0, end - count) : end].reset_index(drop=True)

    def trade_values_24h(self, markets: Sequence[str], as_of: pd.Timestamp) -> pd.Series:
        values = {}
        for market in markets:
            day = self.candles(market, "day", as_of, 1)
            # The recording has daily candles, so the 24h value is the candle that just closed;
            # a market whose last candle is older traded nothing in those 24 hours.
            recent = not day.empty and day["candle_date_time_utc"].iloc[-1] + pd.Timedelta(days=1) == as_of
            values[market] = float(day["candle_acc_trade_price"].iloc[-1]) if recent else 0.0
        return pd.Series(values, name="trade_value_krw", dtype="float64")

    def first_price_after(self, market: str, after: pd.Timestamp) -> tuple[pd.Timestamp, float] | None:
        for interval in ("minute240", "day"):
            frame = self._full(market, interval)  # type: ignore[arg-type]
            later = frame[frame["candle_date_time_utc"] >= after]
            if not later.empty:
                row = later.iloc[0]
                return pd.Timestamp(row["candle_date_time_utc"]), float(row["opening_price"])
        return None

    def intraday_prices(self, markets: Sequence[str], start: pd.Timestamp, now: pd.Timestamp) -> pd.DataFrame:
        """The recorded 4-hour candles that started at or after `start` and closed by `now`; a
        market recorded without 4-hour candles is left out (daily rule only)."""
        if not markets:
            return pd.DataFrame(columns=INTRADAY_COLUMNS)
        starts = [self._ascending_starts(market, "minute240") for market in markets]
        if any(s is None for s in starts):
            return self._intraday_frames(markets, start, now)
        # Cut by bisection and built once (a frame per market and a concat cost more than the rows).
        first = np.datetime64(pd.Timestamp(start), "ns")
        cuts = []
        for market, market_starts in zip(markets, starts, strict=True):
            end = self._closed_count(market_starts, "minute240", now)  # type: ignore[arg-type]
            cuts.append((market, min(int(np.searchsorted(market_starts, first, side="left")), end), end))  # type: ignore[arg-type]
        names = np.repeat(np.array([m for m, _, _ in cuts], dtype=object), [b - a for _, a, b in cuts])
        columns = {"market": pd.array(names, dtype="str")}
        for out, column in zip(INTRADAY_COLUMNS[1:], _INTRADAY_SOURCES, strict=True):
            columns[out] = np.concatenate([self._full(m, "minute240")[column].to_numpy()[a:b] for m, a, b in cuts])
        return pd.DataFrame(columns)

    def _intraday_frames(self, markets: Sequence[str], start: pd.Timestamp, now: pd.Timestamp) -> pd.DataFrame:
        frames = []
        for market in markets:
            candles = closed_candles(self._full(market, "minute240"), "minute240", now)
            window = candles[candles["candle_date_time_utc"] >= start]
            frames.append(
                pd.DataFrame(
                    {
                        "market": market,
                        "at": window["candle_date_time_utc"],
                        "open": window["opening_price"],
                        "high": window["high_price"],
                        "low": window["low_price"],
                        "close": window["trade_price"],
                    }
                )
            )
        return pd.concat(frames, ignore_index=True)[INTRADAY_COLUMNS]


# INTRADAY_COLUMNS after `market`, from these candle columns.
_INTRADAY_SOURCES = ("candle_date_time_utc", "opening_price", "high_price", "low_price", "trade_price")


def _candle_file(root: Path, interval: Interval, market: str) -> Path | None:
    for suffix in (".csv.gz", ".csv"):
        path = root / "candles" / interval / f"{market}{suffix}"
        if path.is_file():
            return path
    return None


@lru_cache(maxsize=16)
def _read_markets(path: str) -> pd.DataFrame:
    import json

    try:
        records = json.loads(Path(path).read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise MalformedMarketData(f"{path}: not valid JSON: {exc}") from exc
    return parse_market_list(records, source=path)


@lru_cache(maxsize=4096)
def _read_candles(path: str) -> pd.DataFrame:
    # Cached per process: a backfill of many partitions reads each file once.
    return normalise_candles(pd.read_csv(path), source=path)


def daily_closes(market_data: MarketData, markets: list[str], start: str, end: str) -> pd.DataFrame:
    """Recorded daily closes, index = partition keys start..end; a day without a candle stays NaN.

    Read as of `end`'s close, so nothing later is seen (the backtest's curve, the monthly report's
    buy-and-hold).
    """
    days = pd.date_range(start, end, freq="D").strftime("%Y-%m-%d")
    columns = {}
    for market in markets:
        candles = market_data.candles(market, "day", partition_close(end), len(days))
        keys = candles["candle_date_time_utc"].dt.strftime("%Y-%m-%d")
        columns[market] = pd.Series(candles["trade_price"].to_numpy(), index=keys).reindex(days)
    return pd.DataFrame(columns, index=days)

"""Upbit's quotation answers, built from a replay directory as they would have read at `now`.

Only recorded values are served. Fields a recording does not hold are left out rather than
guessed: a candle's `timestamp` (its last tick), `prev_closing_price`/`change_*`, and most ticker
fields. The ticker is a model built from recorded candles, as test fixtures model it:
- `acc_trade_price_24h` / `acc_trade_volume_24h`: the daily candle that closed last at or before
  `now`, when it closed at the most recent 00:00 UTC (else 0: nothing traded in those 24 hours);
- `trade_price` / `trade_timestamp`: the open of the candle containing `now` (4-hour when recorded,
  else daily), stamped with its start; past the recording, the last close, stamped just before it;
- `timestamp`: `now`.
A candle still open at `now` is never served: its partial values were not recorded.
"""

import json
import threading
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from makenaide_assets.strategy.candles import (
    CANDLE_COLUMNS,
    Interval,
    candle_close_time,
    monthly_from_daily,
    normalise_candles,
)

# Upbit's candle paths and the interval each serves.
CANDLE_PATHS: dict[str, Interval] = {
    "/v1/candles/days": "day",
    "/v1/candles/minutes/240": "minute240",
    "/v1/candles/months": "month",
}
MAX_COUNT = 200
_TIME = "%Y-%m-%dT%H:%M:%S"


class AnswerError(Exception):
    """An Upbit error answer: HTTP status and Upbit's `{"error": {"name", "message"}}` body."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.body = {"error": {"name": status, "message": message}}


class _Series:
    """One market's candles of one interval: start/close instants and each row's JSON, ascending."""

    def __init__(self, frame: pd.DataFrame, interval: Interval, market: str) -> None:
        self.frame = frame
        self.starts = frame["candle_date_time_utc"].to_numpy(dtype="datetime64[ns]")
        self.closes = pd.Series(candle_close_time(frame["candle_date_time_utc"], interval)).to_numpy(
            dtype="datetime64[ns]"
        )
        extra = {"unit": 240} if interval == "minute240" else {}
        rows = frame.assign(
            candle_date_time_utc=frame["candle_date_time_utc"].dt.strftime(_TIME),
            candle_date_time_kst=frame["candle_date_time_kst"].dt.strftime(_TIME),
        )[CANDLE_COLUMNS].to_dict("records")
        self.json = [json.dumps({"market": market, **row, **extra}, ensure_ascii=False) for row in rows]

    def closed_before(self, to: pd.Timestamp, now: pd.Timestamp) -> int:
        """How many leading rows started before `to` and had closed by `now` (both ascending)."""
        started = int(np.searchsorted(self.starts, np.datetime64(to, "ns"), side="left"))
        closed = int(np.searchsorted(self.closes, np.datetime64(now, "ns"), side="right"))
        return min(started, closed)


class ReplayAnswers:
    """Answers for one replay directory; thread-safe, files read once and kept."""

    def __init__(self, replay_dir: str | Path, now: pd.Timestamp) -> None:
        self.root = Path(replay_dir)
        listed = json.loads((self.root / "markets.json").read_text(encoding="utf-8"))
        self._listing = {item["market"]: item for item in listed}
        self._series: dict[tuple[str, Interval], _Series] = {}
        self._lock = threading.Lock()
        self.now = to_utc(now)

    def preload(self) -> None:
        """Read every market's candles now, so that no answer waits for a file."""
        for market in self._listing:
            for interval in CANDLE_PATHS.values():
                self._get(market, interval)

    def market_all(self, details: bool) -> list[dict[str, Any]]:
        """The recorded market list, without markets whose first candle is still ahead of `now`."""
        out = []
        for market, item in self._listing.items():
            if self._listed(market):
                out.append(item if details else {k: item[k] for k in ("market", "korean_name", "english_name")})
        return out

    def candles(self, path: str, market: str, to: str | None, count: str | None) -> str:
        """The JSON text of Upbit's answer: up to `count` candles starting before `to`, newest first."""
        interval = CANDLE_PATHS[path]
        asked = _count(count)
        self._known(market)
        end = min(to_utc(pd.Timestamp(to)), self.now) if to else self.now
        series = self._get(market, interval)
        stop = series.closed_before(end, self.now)
        rows = series.json[max(0, stop - asked) : stop]
        return "[" + ",".join(reversed(rows)) + "]"

    def recorded(self, market: str, interval: Interval) -> pd.DataFrame:
        """Every recorded candle of `market` and `interval`, ascending, whatever `now`: the local
        exchange fills at these prices and decides itself which of them the clock has reached."""
        return self._get(market, interval).frame

    def is_listed(self, market: str) -> bool:
        """Whether `market` is in the recording and had its first candle before `now`."""
        return market in self._listing and self._listed(market)

    def ticker(self, markets: list[str]) -> list[dict[str, Any]]:
        if not markets or not all(markets):
            raise AnswerError(400, "markets is required: comma-separated market codes")
        return [self._ticker_row(self._known(market)) for market in markets]

    def _ticker_row(self, market: str) -> dict[str, Any]:
        day = self._get(market, "day")
        closed = day.closed_before(self.now, self.now)
        last = day.frame.iloc[closed - 1] if closed else None
        fresh = last is not None and day.closes[closed - 1] == np.datetime64(self.now.floor("D"), "ns")
        traded_at, price = self._last_trade(market, last)
        row: dict[str, Any] = {
            "market": market,
            "trade_date": traded_at.strftime("%Y%m%d"),
            "trade_time": traded_at.strftime("%H%M%S"),
            "trade_timestamp": _millis(traded_at),
            "trade_price": price,
            "acc_trade_price_24h": float(last["candle_acc_trade_price"]) if fresh else 0.0,
            "acc_trade_volume_24h": float(last["candle_acc_trade_volume"]) if fresh else 0.0,
            "timestamp": _millis(self.now),
        }
        if last is not None:
            row["prev_closing_price"] = float(last["trade_price"])
        return row

    def _last_trade(self, market: str, last_day: pd.Series | None) -> tuple[pd.Timestamp, float]:
        for interval in ("minute240", "day"):
            series = self._get(market, interval)  # type: ignore[arg-type]
            at = int(np.searchsorted(series.starts, np.datetime64(self.now, "ns"), side="right")) - 1
            if at >= 0 and series.closes[at] > np.datetime64(self.now, "ns"):
                row = series.frame.iloc[at]
                return pd.Timestamp(row["candle_date_time_utc"]), float(row["opening_price"])
        if last_day is None:
            raise AnswerError(404, "Code not found")
        close = candle_close_time(pd.Timestamp(last_day["candle_date_time_utc"]), "day")
        return close - pd.Timedelta(milliseconds=1), float(last_day["trade_price"])

    def _known(self, market: str) -> str:
        if market not in self._listing or not self._listed(market):
            raise AnswerError(404, "Code not found")
        return market

    def _listed(self, market: str) -> bool:
        day = self._get(market, "day")
        return len(day.starts) > 0 and day.starts[0] < np.datetime64(self.now, "ns")

    def _get(self, market: str, interval: Interval) -> _Series:
        key = (market, interval)
        with self._lock:
            if key not in self._series:
                self._series[key] = _Series(self._load(market, interval), interval, market)
            return self._series[key]

    def _load(self, market: str, interval: Interval) -> pd.DataFrame:
        for suffix in (".csv.gz", ".csv"):
            path = self.root / "candles" / interval / f"{market}{suffix}"
            if path.is_file():
                return normalise_candles(pd.read_csv(path), source=str(path))
        if interval == "month":
            return monthly_from_daily(self._load(market, "day"))
        return normalise_candles(pd.DataFrame(), source=f"{self.root}/{interval}/{market}")


def to_utc(ts: pd.Timestamp) -> pd.Timestamp:
    """Naive UTC; a naive input is read as UTC (Upbit's `to` without an offset)."""
    ts = pd.Timestamp(ts)
    return ts.tz_convert("UTC").tz_localize(None) if ts.tzinfo is not None else ts


def _count(count: str | None) -> int:
    try:
        value = int(count) if count is not None else 1
    except ValueError:
        raise AnswerError(400, f"count must be an integer, got {count!r}") from None
    if not 1 <= value <= MAX_COUNT:
        raise AnswerError(400, f"count must be between 1 and {MAX_COUNT}, got {value}")
    return value


def _millis(ts: pd.Timestamp) -> int:
    return int(ts.value // 1_000_000)

"""`UpbitMarketData`: the live Upbit quotation API behind the `MarketData` interface.

pyupbit's quotation calls cannot serve here without monkeypatching its module globals: every URL
is hard-wired to https://api.upbit.com, `_call_public_api` has no timeout and fails without a
`Remaining-Req` header, its error handler turns Upbit's plain-text 429 into a JSONDecodeError,
and `get_ohlcv` turns every failure into `None` and drops `candle_date_time_utc`. So our own small
client (`upbit_http.UpbitHttp`) does the HTTP (timeout, 10 req/s per group, bounded retries), and
pyupbit supplies what it gets right: the interval → endpoint map (`get_url_ohlcv`, rebased onto
`base_url`), the `Remaining-Req` parser and `get_ohlcv`'s paging rule (the next page ends where
the previous one began). Answers are parsed by `candle_format`, as the replay parses its recording.

Unknown markets: Upbit's 404 error JSON ("Code not found") raises `MarketNotFound`, never an empty
frame; an empty list (`[]`) means "no candles before as_of" (not listed yet): an empty frame.

With `store_dir`, candles are kept on disk (`candle_store`) and a daily run asks only for the
candles closed since the last run: about one request per market instead of three.

Live limits: Upbit serves the market list and the 24-hour ticker values as they are now, not as
of a past instant. `markets` therefore lists today's markets; `trade_values_24h` and
`first_price_after` refuse (`QuoteNotAsOf`) when the ticker is more than `max_ticker_lag_s`
away from the instant asked about, rather than pass today's numbers off as a past day's.
"""

from collections.abc import Mapping, Sequence
from importlib.metadata import version
from typing import Any
from urllib.parse import urlsplit

import numpy as np
import pandas as pd
from pydantic import Field, PrivateAttr
from pyupbit.quotation_api import get_url_ohlcv

from makenaide_assets.resources.candle_store import CandleStore
from makenaide_assets.resources.market_data import INTRADAY_COLUMNS, MarketData
from makenaide_assets.resources.upbit_http import Clock, SystemClock, UpbitHttp, UpbitRequestError
from makenaide_assets.resources.upbit_retry import (
    BACKOFF_BASE_S,
    MAX_BACKOFF_S,
    MAX_RETRIES,
    TIMEOUT_S,
    UPBIT_API_URL,
    RetryPolicy,
)
from makenaide_assets.strategy.candles import (
    INTERVALS,
    Interval,
    MalformedMarketData,
    candles_from_records,
    closed_candles,
    parse_market_list,
)

PAGE_SIZE = 200  # Upbit's maximum `count` per candle request (pyupbit's MAX_CALL_COUNT)
# Comma-joined markets per /v1/ticker call: well inside common URL limits (8 KiB).
MAX_TICKER_MARKETS_CHARS = 4000
_MARKET_ALL = "/v1/market/all"
_TICKER = "/v1/ticker"


class MarketNotFound(LookupError):
    """Upbit does not know these markets (misspelled or delisted); list them, do not read them as empty."""

    def __init__(self, markets: Sequence[str], detail: str) -> None:
        self.markets = tuple(markets)
        super().__init__(f"Upbit does not know market(s) {', '.join(self.markets)}: {detail}")


class QuoteNotAsOf(ValueError):
    """The live ticker describes a different instant than the one asked about."""


class UpbitMarketData(MarketData):
    """Live Upbit quotation data (paper and live modes); see the module docstring for its limits."""

    base_url: str = Field(default=UPBIT_API_URL, description="Upbit or an Upbit-compatible server")
    timeout_s: float = Field(default=TIMEOUT_S, gt=0, description="connect and read timeout per request")
    max_retries: int = Field(
        default=MAX_RETRIES, ge=0, description="retries after 429, 5xx, timeouts, connection errors"
    )
    requests_per_second: float = Field(default=10.0, gt=0, description="per Upbit rate-limit group")
    backoff_base_s: float = Field(default=BACKOFF_BASE_S, ge=0, description="first retry waits up to this long")
    max_backoff_s: float = Field(default=MAX_BACKOFF_S, ge=0, description="cap on one retry's wait")
    max_ticker_lag_s: float = Field(
        default=3 * 3600, gt=0, description="how far the live ticker may be from the instant asked about"
    )
    store_dir: str | None = Field(
        default=None, description="keep candles here (candle_store) and fetch only newer ones; None = no store"
    )

    _clock: Clock = PrivateAttr(default_factory=SystemClock)
    _client: UpbitHttp | None = PrivateAttr(default=None)
    _store: CandleStore | None = PrivateAttr(default=None)

    def describe(self) -> str:
        stored = f", candles kept in {self.store_dir}" if self.store_dir else ""
        return f"live Upbit quotation API at {self.base_url} (pyupbit {version('pyupbit')}){stored}"

    def markets(self, as_of: pd.Timestamp) -> pd.DataFrame:
        """Today's KRW markets (Upbit cannot list the markets of a past day)."""
        records = self._http().get_json(_MARKET_ALL, {"isDetails": "true"}, subject="all markets")
        return parse_market_list(records, source=f"{self.base_url}{_MARKET_ALL}")

    def candles(self, market: str, interval: Interval, as_of: pd.Timestamp, count: int) -> pd.DataFrame:
        """The last `count` candles closed by `as_of`, ascending; raises MarketNotFound for unknown markets."""
        if interval not in INTERVALS:
            raise ValueError(f"interval {interval!r} is not one of {', '.join(INTERVALS)}")
        if count < 1:
            raise ValueError(f"count must be at least 1, got {count}")
        as_of = _naive_utc(as_of)
        # Candles starting before the start of the candle containing as_of have all closed by as_of.
        end = _candle_start(as_of, interval)

        def fetch(before: pd.Timestamp, wanted: int) -> tuple[pd.DataFrame, bool]:
            return self._fetch_before(market, interval, before, wanted)

        if self.store_dir:
            frame = self._candle_store().candles(market, interval, end, count, fetch)
        else:
            frame = fetch(end, count)[0]
        # The guard against lookahead stays, whatever the server or the store did.
        return closed_candles(frame, interval, as_of).tail(count).reset_index(drop=True)

    def _fetch_before(
        self, market: str, interval: Interval, end: pd.Timestamp, count: int
    ) -> tuple[pd.DataFrame, bool]:
        """The last `count` candles starting before `end`, paging back 200 at a time as pyupbit's
        get_ohlcv does; True when fewer exist (the market's history begins within them)."""
        path = urlsplit(get_url_ohlcv(interval)).path
        records: list[Mapping[str, Any]] = []
        to, listed = end, False
        while len(records) < count:
            asked = min(PAGE_SIZE, count - len(records))
            page = self._candle_page(path, market, to, asked)
            records.extend(page)
            if len(page) < asked:
                listed = True  # the market's history begins here
                break
            oldest = min(pd.Timestamp(row["candle_date_time_utc"]) for row in page)
            if oldest >= to:
                raise MalformedMarketData(f"Upbit {path} for {market}: the page before {to} did not go back")
            to = oldest
        frame = candles_from_records(records, source=f"{self.base_url}{path} {market}")
        # A server that also answers the candle starting at `end` (still open) is not believed.
        return frame[frame["candle_date_time_utc"] < end].reset_index(drop=True), listed

    def trade_values_24h(self, markets: Sequence[str], as_of: pd.Timestamp) -> pd.Series:
        """`acc_trade_price_24h` from one /v1/ticker call (more only if the URL would be too long)."""
        wanted = list(dict.fromkeys(markets))
        if not wanted:
            return pd.Series(dtype="float64", name="trade_value_krw")
        rows: dict[str, Mapping[str, Any]] = {}
        for chunk in _chunks(wanted, MAX_TICKER_MARKETS_CHARS):
            rows.update(self._tickers(chunk))
        values = {market: _number(rows[market], "acc_trade_price_24h", market) for market in wanted}
        # When Upbit took the snapshot: the freshest row, since a quiet market's row can be older.
        snapshot = max(_millis(row, "timestamp", market) for market, row in rows.items())
        self._check_lag(snapshot, _naive_utc(as_of), "the 24-hour traded values")
        return pd.Series(values, name="trade_value_krw", dtype="float64")

    def first_price_after(self, market: str, after: pd.Timestamp) -> tuple[pd.Timestamp, float] | None:
        """Upbit's last trade (time, price), or None when it predates `after` (no price after it yet)."""
        row = self._tickers([market])[market]
        traded = _millis(row, "trade_timestamp", market)
        after = _naive_utc(after)
        if traded < after:
            return None
        self._check_lag(traded, after, f"a fill price for {market}")
        price = _number(row, "trade_price", market)
        if price <= 0:
            raise MalformedMarketData(f"Upbit {_TICKER} for {market}: trade_price is {price}")
        return traded, price

    def intraday_prices(self, markets: Sequence[str], start: pd.Timestamp, now: pd.Timestamp) -> pd.DataFrame:
        """Upbit's last trade of every market, from one /v1/ticker call: a one-price candle each.
        A price older than `start` (a market that has not traded since) is no evidence, and is left out."""
        wanted = list(dict.fromkeys(markets))
        rows: dict[str, Mapping[str, Any]] = {}
        for chunk in _chunks(wanted, MAX_TICKER_MARKETS_CHARS):
            rows.update(self._tickers(chunk))
        out = []
        for market in wanted:
            traded = _millis(rows[market], "trade_timestamp", market)
            price = _number(rows[market], "trade_price", market)
            if price <= 0:
                raise MalformedMarketData(f"Upbit {_TICKER} for {market}: trade_price is {price}")
            if traded >= _naive_utc(start):
                out.append({"market": market, "at": traded, "open": price, "high": price, "low": price, "close": price})
        return pd.DataFrame(out, columns=INTRADAY_COLUMNS)

    def _candle_store(self) -> CandleStore:
        if self._store is None:
            self._store = CandleStore(self.store_dir or "")
        return self._store

    def _http(self) -> UpbitHttp:
        if self._client is None:
            self._client = UpbitHttp(
                self.base_url,
                timeout_s=self.timeout_s,
                requests_per_second=self.requests_per_second,
                retry=RetryPolicy(self.max_retries, self.backoff_base_s, self.max_backoff_s),
                clock=self._clock,
            )
        return self._client

    def _get(self, path: str, params: Mapping[str, Any], markets: Sequence[str]) -> Any:
        try:
            return self._http().get_json(path, params, subject=", ".join(markets))
        except UpbitRequestError as exc:
            # Upbit's own 404 JSON means an unknown code; a bare 404 (wrong host or path) stays an HTTP error.
            if exc.status == 404 and exc.error_name:
                raise MarketNotFound(markets, str(exc)) from exc
            raise

    def _candle_page(self, path: str, market: str, end: pd.Timestamp, count: int) -> list[Mapping[str, Any]]:
        params = {"market": market, "to": end.strftime("%Y-%m-%dT%H:%M:%SZ"), "count": count}
        page = self._get(path, params, [market])
        where = f"Upbit {path} for {market} to {params['to']}"
        if not isinstance(page, list):
            raise MalformedMarketData(f"{where}: expected a list of candles, got {type(page).__name__}: {page!r:.200}")
        for row in page:
            if not isinstance(row, Mapping) or not isinstance(row.get("candle_date_time_utc"), str):
                raise MalformedMarketData(f"{where}: a candle without candle_date_time_utc: {row!r:.200}")
            if row.get("market", market) != market:
                raise MalformedMarketData(f"{where}: answered with a candle of {row['market']}")
        if len(page) > count:
            raise MalformedMarketData(f"{where}: {len(page)} candles for count={count}")
        return page

    def _tickers(self, markets: Sequence[str]) -> dict[str, Mapping[str, Any]]:
        answer = self._get(_TICKER, {"markets": ",".join(markets)}, markets)
        where = f"Upbit {_TICKER} for {', '.join(markets)}"
        if not isinstance(answer, list) or not all(isinstance(r, Mapping) and "market" in r for r in answer):
            raise MalformedMarketData(f"{where}: expected a list of tickers, got {answer!r:.200}")
        rows = {row["market"]: row for row in answer}
        missing = [m for m in markets if m not in rows]
        if missing:
            raise MarketNotFound(missing, f"{where}: no ticker in Upbit's answer")
        return rows

    def _check_lag(self, quoted: pd.Timestamp, wanted: pd.Timestamp, what: str) -> None:
        lag = abs(quoted - wanted)
        if lag > pd.Timedelta(seconds=self.max_ticker_lag_s):
            raise QuoteNotAsOf(
                f"{what}: Upbit's ticker is as of {quoted}, {lag} away from {wanted} "
                f"(max_ticker_lag_s={self.max_ticker_lag_s:g}); the live API cannot answer for a past instant"
            )


def _naive_utc(ts: pd.Timestamp) -> pd.Timestamp:
    ts = pd.Timestamp(ts)
    return ts.tz_convert("UTC").tz_localize(None) if ts.tzinfo is not None else ts


def _candle_start(as_of: pd.Timestamp, interval: Interval) -> pd.Timestamp:
    if interval == "month":
        return as_of.to_period("M").start_time
    return as_of.floor("D" if interval == "day" else "4h")


def _chunks(markets: list[str], max_chars: int) -> list[list[str]]:
    chunks: list[list[str]] = [[]]
    length = 0
    for market in markets:
        if chunks[-1] and length + 1 + len(market) > max_chars:
            chunks.append([])
            length = 0
        length += len(market) + (1 if chunks[-1] else 0)
        chunks[-1].append(market)
    return chunks


def _number(row: Mapping[str, Any], field: str, market: str) -> float:
    value = row.get(field)
    if isinstance(value, bool) or not isinstance(value, int | float) or not np.isfinite(value) or value < 0:
        raise MalformedMarketData(f"Upbit {_TICKER} for {market}: {field} is {value!r}, not a non-negative number")
    return float(value)


def _millis(row: Mapping[str, Any], field: str, market: str) -> pd.Timestamp:
    return pd.Timestamp(int(_number(row, field, market)), unit="ms")

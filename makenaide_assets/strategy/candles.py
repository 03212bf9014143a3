"""Upbit candle and market-list shapes, shared by the live client and the replay.

A replay directory is a recording of Upbit's REST answers, so both paths parse with these
functions: a malformed answer is an error here, whichever side it came from.
"""

from collections.abc import Iterable, Mapping
from typing import Any, Literal

import numpy as np
import pandas as pd

Interval = Literal["day", "minute240", "month"]
INTERVALS: tuple[Interval, ...] = ("day", "minute240", "month")

CANDLE_COLUMNS = [
    "candle_date_time_utc",
    "candle_date_time_kst",
    "opening_price",
    "high_price",
    "low_price",
    "trade_price",
    "candle_acc_trade_price",
    "candle_acc_trade_volume",
]
PRICE_COLUMNS = ["opening_price", "high_price", "low_price", "trade_price"]
NUMERIC_COLUMNS = [*PRICE_COLUMNS, "candle_acc_trade_price", "candle_acc_trade_volume"]

# How long each candle stays open: a candle stamped t has closed at t + duration.
_DURATION = {"day": pd.Timedelta(days=1), "minute240": pd.Timedelta(hours=4)}


class MalformedMarketData(ValueError):
    """An Upbit answer (live or recorded) that cannot be trusted; the message says why."""


def candle_close_time(start: pd.Series | pd.Timestamp, interval: Interval) -> Any:
    if interval == "month":
        return start + pd.offsets.MonthBegin(1)
    return start + _DURATION[interval]


def candles_from_records(records: Iterable[Mapping[str, Any]], *, source: str) -> pd.DataFrame:
    """Upbit candle JSON objects (or CSV rows with the same names) → a clean ascending frame."""
    frame = pd.DataFrame(list(records))
    return normalise_candles(frame, source=source)


def normalise_candles(frame: pd.DataFrame, *, source: str) -> pd.DataFrame:
    """Validate and type a candle frame; raise MalformedMarketData rather than guess."""
    if frame.empty:
        return pd.DataFrame({c: pd.Series(dtype="float64") for c in CANDLE_COLUMNS}).astype(
            {"candle_date_time_utc": "datetime64[ns]", "candle_date_time_kst": "datetime64[ns]"}
        )
    missing = [c for c in CANDLE_COLUMNS if c not in frame.columns]
    if missing:
        raise MalformedMarketData(f"{source}: candle fields missing: {missing}")
    # Checked and typed column by column as NumPy arrays, and the frame built once: the same
    # checks as pandas operations on a frame cost several times more, paid per market and file.
    columns: dict[str, np.ndarray] = {}
    for col in ("candle_date_time_utc", "candle_date_time_kst"):
        parsed = pd.to_datetime(frame[col], errors="coerce", format="ISO8601")
        if parsed.isna().any():
            raise MalformedMarketData(f"{source}: unparseable {col} in {int(parsed.isna().sum())} rows")
        if parsed.dt.tz is not None:
            parsed = parsed.dt.tz_localize(None)
        columns[col] = parsed.to_numpy(dtype="datetime64[ns]")
    for col in NUMERIC_COLUMNS:
        values = pd.to_numeric(frame[col], errors="coerce").to_numpy(dtype="float64", na_value=np.nan)
        bad = ~np.isfinite(values)
        if bad.any():
            raise MalformedMarketData(f"{source}: {col} is missing or not a number in {int(bad.sum())} rows")
        columns[col] = values
    if any((columns[col] <= 0).any() for col in PRICE_COLUMNS):
        raise MalformedMarketData(f"{source}: non-positive price")
    starts = columns["candle_date_time_utc"]
    if (np.diff(starts) <= np.timedelta64(0)).any():
        order = np.argsort(starts, kind="stable")
        columns = {col: values[order] for col, values in columns.items()}
        dupes = int((np.diff(columns["candle_date_time_utc"]) == np.timedelta64(0)).sum())
        if dupes:
            raise MalformedMarketData(f"{source}: {dupes} duplicate candle timestamps")
    return pd.DataFrame({col: columns[col] for col in CANDLE_COLUMNS})


def last_closed_start(as_of: pd.Timestamp, interval: Interval) -> pd.Timestamp:
    """The latest start of a day or 4-hour candle that had closed at `as_of`."""
    return pd.Timestamp(as_of) - _DURATION[interval]


def closed_candles(frame: pd.DataFrame, interval: Interval, as_of: pd.Timestamp) -> pd.DataFrame:
    """Only candles that had closed at `as_of`: the guard against lookahead."""
    starts = frame["candle_date_time_utc"]
    if interval != "month" and starts.is_monotonic_increasing:
        # Called for every market on every read: on ascending starts (what normalise_candles
        # makes) the closed ones are a prefix, found by bisection instead of a mask of the series.
        last_start = last_closed_start(as_of, interval)
        return frame.iloc[: int(starts.searchsorted(last_start, side="right"))].reset_index(drop=True)
    closes = candle_close_time(starts, interval)
    return frame.loc[closes <= as_of].reset_index(drop=True)


def monthly_from_daily(day: pd.DataFrame) -> pd.DataFrame:
    """Monthly candles aggregated from day candles (Upbit months start on the 1st, UTC).

    Upbit stamps a monthly candle with its first traded day, which for a new listing is the
    listing day; elsewhere it is the 1st. `day` is ascending (normalise_candles), so each month
    is one run of rows, reduced with NumPy (a pandas groupby costs ten times more per market).
    """
    if day.empty:
        return day.copy()
    starts = day["candle_date_time_utc"].to_numpy()
    months = starts.astype("datetime64[M]")
    first = np.flatnonzero(np.r_[True, months[1:] != months[:-1]])
    last = np.r_[first[1:] - 1, len(starts) - 1]

    def column(name: str) -> np.ndarray:
        return day[name].to_numpy()

    return pd.DataFrame(
        {
            "candle_date_time_utc": starts[first],
            "candle_date_time_kst": starts[first] + np.timedelta64(9, "h"),
            "opening_price": column("opening_price")[first],
            "high_price": np.maximum.reduceat(column("high_price"), first),
            "low_price": np.minimum.reduceat(column("low_price"), first),
            "trade_price": column("trade_price")[last],
            "candle_acc_trade_price": np.add.reduceat(column("candle_acc_trade_price"), first),
            "candle_acc_trade_volume": np.add.reduceat(column("candle_acc_trade_volume"), first),
        }
    )


def parse_market_list(records: Any, *, source: str) -> pd.DataFrame:
    """GET /v1/market/all?isDetails=true → KRW markets with one normalised `market_warning`.

    Upbit has answered in two shapes: the old string `market_warning` ("NONE"/"CAUTION") and
    the newer `market_event` object ({"warning": bool, "caution": {flag: bool}}). Both map to
    NONE / CAUTION / WARNING, with the raised caution flags listed.
    """
    if not isinstance(records, list):
        raise MalformedMarketData(f"{source}: market list is {type(records).__name__}, not a list")
    rows = []
    for i, item in enumerate(records):
        if not isinstance(item, Mapping) or not isinstance(item.get("market"), str):
            raise MalformedMarketData(f"{source}: market entry {i} has no 'market' string")
        market = item["market"]
        if not market.startswith("KRW-"):
            continue
        warning, flags = _warning_of(item, source)
        rows.append(
            {
                "market": market,
                "korean_name": str(item.get("korean_name", "")),
                "english_name": str(item.get("english_name", "")),
                "market_warning": warning,
                "caution_flags": ",".join(flags),
            }
        )
    return pd.DataFrame(rows, columns=["market", "korean_name", "english_name", "market_warning", "caution_flags"])


def _warning_of(item: Mapping[str, Any], source: str) -> tuple[str, list[str]]:
    event = item.get("market_event")
    if isinstance(event, Mapping):
        caution = event.get("caution") or {}
        if not isinstance(caution, Mapping):
            raise MalformedMarketData(f"{source}: {item['market']} market_event.caution is not an object")
        flags = sorted(k for k, v in caution.items() if v)
        if event.get("warning"):
            return "WARNING", flags
        return ("CAUTION" if flags else "NONE"), flags
    legacy = item.get("market_warning", "NONE")
    if legacy not in ("NONE", "CAUTION", "WARNING"):
        raise MalformedMarketData(f"{source}: {item['market']} has unknown market_warning {legacy!r}")
    return legacy, []

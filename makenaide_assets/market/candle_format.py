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
    out = frame[CANDLE_COLUMNS].copy()
    for col in ("candle_date_time_utc", "candle_date_time_kst"):
        parsed = pd.to_datetime(out[col], errors="coerce", format="ISO8601")
        if parsed.isna().any():
            raise MalformedMarketData(f"{source}: unparseable {col} in {int(parsed.isna().sum())} rows")
        out[col] = parsed.dt.tz_localize(None).astype("datetime64[ns]")
    for col in NUMERIC_COLUMNS:
        values = pd.to_numeric(out[col], errors="coerce").astype("float64")
        bad = values.isna() | ~np.isfinite(values)
        if bad.any():
            raise MalformedMarketData(f"{source}: {col} is missing or not a number in {int(bad.sum())} rows")
        out[col] = values
    if (out[PRICE_COLUMNS] <= 0).any().any():
        raise MalformedMarketData(f"{source}: non-positive price")
    out = out.sort_values("candle_date_time_utc")
    dupes = out["candle_date_time_utc"].duplicated()
    if dupes.any():
        raise MalformedMarketData(f"{source}: {int(dupes.sum())} duplicate candle timestamps")
    return out.reset_index(drop=True)


def closed_candles(frame: pd.DataFrame, interval: Interval, as_of: pd.Timestamp) -> pd.DataFrame:
    """Only candles that had closed at `as_of`: the guard against lookahead."""
    closes = candle_close_time(frame["candle_date_time_utc"], interval)
    return frame.loc[closes <= as_of].reset_index(drop=True)


def monthly_from_daily(day: pd.DataFrame) -> pd.DataFrame:
    """Monthly candles aggregated from day candles (Upbit months start on the 1st, UTC)."""
    if day.empty:
        return day.copy()
    keyed = day.set_index("candle_date_time_utc")
    grouped = keyed.groupby(keyed.index.to_period("M"))
    month = pd.DataFrame(
        {
            "opening_price": grouped["opening_price"].first(),
            "high_price": grouped["high_price"].max(),
            "low_price": grouped["low_price"].min(),
            "trade_price": grouped["trade_price"].last(),
            "candle_acc_trade_price": grouped["candle_acc_trade_price"].sum(),
            "candle_acc_trade_volume": grouped["candle_acc_trade_volume"].sum(),
        }
    )
    # Upbit stamps a monthly candle with its first traded day, which for a new listing is
    # the listing day; elsewhere it is the 1st.
    month["candle_date_time_utc"] = grouped.apply(lambda g: g.index.min()).values
    month["candle_date_time_kst"] = month["candle_date_time_utc"] + pd.Timedelta(hours=9)
    return month[CANDLE_COLUMNS].reset_index(drop=True)


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

"""`daily_candles` and `daily_indicators`: history as of D's close and its indicator snapshot.

Their checks are computed with the value (in-asset check specs of the `market` step): every one
reads only the frame just built and the universe the asset was given, so a separate check step
would only reload it.
"""

import dagster as dg
import pandas as pd

from makenaide_assets.market import quality
from makenaide_assets.market.metadata import (
    COLUMN_SCHEMA,
    catalog,
    check_result,
    check_spec,
    frame_metadata,
    table,
    table_schema,
)
from makenaide_assets.resources.market_data import MarketData
from makenaide_assets.resources.thresholds import UniverseThresholds
from makenaide_assets.strategy.calendar import partition_close
from makenaide_assets.strategy.indicators import REQUIRED_COLUMNS, indicator_snapshot

BENCHMARK_MARKET = "KRW-BTC"

# Blocking: every decision of the day (exits included) reads these candles.
CANDLES_OHLC_SANE = check_spec(
    "daily_candles", "daily_candles_ohlc_sane", "high >= open/close >= low > 0 on every candle", blocking=True
)
CANDLES_UNIQUE = check_spec("daily_candles", "daily_candles_unique", "One candle per market and day", blocking=True)
CANDLES_FRESH = check_spec(
    "daily_candles",
    "daily_candles_fresh",
    "Every universe market (and KRW-BTC) has a candle dated D: none missing, none stale",
    blocking=True,
)
CANDLES_VOLUME = check_spec(
    "daily_candles",
    "daily_candles_volume_plausible",
    "No market's KRW traded on D is zero or under 1% of its 20-day median (a truncated candle, a halt)",
)
INDICATORS_NO_NAN = check_spec(
    "daily_indicators",
    "daily_indicators_no_unexplained_nan",
    "No NaN in a contract column except where the market's history is too short (and listed)",
    blocking=True,
)


CANDLES_SCHEMA = table_schema(
    ("market", "string", "Upbit market code, KRW-<coin>"),
    ("candle_date_time_utc", "datetime", "The candle's day: it opens 00:00 UTC (09:00 KST) that day"),
    ("candle_date_time_kst", "datetime", "The same instant in KST"),
    ("opening_price", "float", "Open, KRW"),
    ("high_price", "float", "High, KRW"),
    ("low_price", "float", "Low, KRW"),
    ("trade_price", "float", "Close, KRW"),
    ("candle_acc_trade_price", "float", "KRW traded during the candle"),
    ("candle_acc_trade_volume", "float", "Units of the coin traded during the candle"),
    ("in_universe", "bool", "False for KRW-BTC when it is only the relative-strength yardstick"),
)
INDICATORS_SCHEMA = table_schema(
    ("market", "string", "Upbit market code, KRW-<coin>"),
    ("date", "datetime", "The last candle's day: D, unless the market's candles stopped earlier"),
    ("close", "float", "D's close, KRW"),
    ("ma20", "float", "Mean close of the last 20 daily candles ending at D"),
    ("ma50", "float", "Mean close of the last 50 daily candles ending at D"),
    ("ma150", "float", "Mean close of the last 150 daily candles ending at D"),
    ("ma200", "float", "Mean close of the last 200 daily candles ending at D"),
    ("rsi14", "float", "Wilder's 14-day RSI, as TA-Lib's"),
    ("atr14", "float", "Wilder's 14-day average true range, KRW, as TA-Lib's"),
    ("high_52w", "float", "Highest high of the last 365 daily candles"),
    ("low_52w", "float", "Lowest low of the last 365 daily candles"),
    ("volume_ratio", "float", "D's coin volume over the mean of the 20 candles before it"),
    ("rs_vs_btc", "float", "Return over 63 candles priced in KRW-BTC, a fraction (0.05 = +5 %)"),
    ("history_days", "int", "Daily candles the market has up to D"),
    ("insufficient_history", "string", "Columns left NaN for lack of history, comma-separated; empty if none"),
)

# Both are outputs of the `market` step (market/step.py), which calls the functions below.
DAILY_CANDLES = dg.AssetOut(
    group_name="market",
    kinds={"pandas", "upbit"},
    dagster_type=pd.DataFrame,
    is_required=False,
    description="Daily candles closed by D's close for the universe (and KRW-BTC, the relative-strength yardstick).",
    metadata={COLUMN_SCHEMA: CANDLES_SCHEMA},
)
CANDLES_CHECKS = [CANDLES_OHLC_SANE, CANDLES_UNIQUE, CANDLES_FRESH, CANDLES_VOLUME]
DAILY_INDICATORS = dg.AssetOut(
    group_name="market",
    kinds={"pandas"},
    dagster_type=pd.DataFrame,
    is_required=False,
    description=("Indicator snapshot as of D's close: MAs and slopes, RSI14, ATR14, 52-week range, volume, RS vs BTC."),
    metadata={COLUMN_SCHEMA: INDICATORS_SCHEMA},
)
INDICATORS_CHECKS = [INDICATORS_NO_NAN]


def universe_candles(
    market_data: MarketData, universe_thresholds: UniverseThresholds, universe: pd.DataFrame, as_of: pd.Timestamp
) -> tuple[pd.DataFrame, list[str]]:
    """The `daily_candles` value as of `as_of` (D's close) and the markets fetched, without Dagster."""
    markets = universe.loc[universe["passed"], "market"].tolist()
    fetch = [*markets, *([BENCHMARK_MARKET] if BENCHMARK_MARKET not in markets else [])]
    frame = market_data.candles_many(fetch, "day", as_of, universe_thresholds.history_days)
    frame["in_universe"] = frame["market"].isin(markets)
    return frame, fetch


def daily_candles(
    context: dg.AssetExecutionContext,
    market_data: MarketData,
    universe_thresholds: UniverseThresholds,
    universe: pd.DataFrame,
) -> dg.MaterializeResult:
    """The `daily_candles` value for D, its metadata and its checks' results."""
    key = context.partition_key
    frame, fetch = universe_candles(market_data, universe_thresholds, universe, partition_close(key))
    counts = frame.groupby("market").size()
    first, last = frame["candle_date_time_utc"].min(), frame["candle_date_time_utc"].max()
    ohlc = quality.ohlc_violations(
        frame,
        open_="opening_price",
        high="high_price",
        low="low_price",
        close="trade_price",
        date="candle_date_time_utc",
    )
    return dg.MaterializeResult(
        asset_key="daily_candles",
        value=frame,
        metadata={
            **catalog(frame, CANDLES_SCHEMA),
            "markets": dg.MetadataValue.int(int(counts.size)),
            "time_range_utc": f"{first} → {last}" if len(frame) else "empty",
            "candles_per_market_min": dg.MetadataValue.int(int(counts.min()) if len(counts) else 0),
            "source": market_data.describe(),
        },
        check_results=[
            _result(CANDLES_OHLC_SANE, ohlc),
            _result(CANDLES_UNIQUE, quality.duplicated_keys(frame, ["market", "candle_date_time_utc"])),
            _result(CANDLES_FRESH, quality.stale_markets(frame, fetch, key)),
            _result(CANDLES_VOLUME, quality.volume_collapses(frame, key)),
        ],
    )


def _result(spec: dg.AssetCheckSpec, found: quality.Found) -> dg.AssetCheckResult:
    markets, details = found
    return check_result(spec, markets, **details)


def indicators_of(daily_candles: pd.DataFrame) -> pd.DataFrame:
    """The `daily_indicators` value from D's `daily_candles`, without Dagster."""
    in_universe = daily_candles[daily_candles["in_universe"]].drop(columns=["in_universe"])
    btc = daily_candles[daily_candles["market"] == BENCHMARK_MARKET].drop(columns=["market", "in_universe"])
    return indicator_snapshot(in_universe, btc.reset_index(drop=True))


def daily_indicators(daily_candles: pd.DataFrame) -> dg.MaterializeResult:
    """The `daily_indicators` value for D, its metadata and its check's result."""
    frame = indicators_of(daily_candles)
    short = frame[frame["insufficient_history"] != ""]
    short_table = short[["market", "history_days", "insufficient_history"]]
    return dg.MaterializeResult(
        asset_key="daily_indicators",
        value=frame,
        metadata=frame_metadata(
            frame,
            INDICATORS_SCHEMA,
            short_history=dg.MetadataValue.int(len(short)),
            short_history_table=table(short_table, rows=len(short_table)),
            with_ma200=dg.MetadataValue.int(int(frame["ma200"].notna().sum())) if len(frame) else 0,
        ),
        check_results=[_result(INDICATORS_NO_NAN, quality.unexplained_nans(frame, REQUIRED_COLUMNS))],
    )

"""`market_breadth`: the market thermometer that can forbid new buys for the day."""

import dagster as dg
import pandas as pd

from makenaide_assets.market.indicators import BENCHMARK_MARKET
from makenaide_assets.market.metadata import COLUMN_SCHEMA, catalog, check_result, check_spec, rounded, table_schema
from makenaide_assets.strategy.breadth import market_breadth as read_thermometer
from makenaide_assets.strategy.indicators import indicator_snapshot

# Warn, not block: an unreadable thermometer already forbids new buys, and blocking would also stop
# the day's exits.
GROUNDED = check_spec(
    "market_breadth",
    "market_breadth_grounded",
    "Both votes were taken: KRW-BTC's MA200 trend is known and enough markets have an MA200",
)


def btc_row(daily_indicators: pd.DataFrame, daily_candles: pd.DataFrame) -> pd.Series | None:
    """KRW-BTC's indicators, computed from its candles when it is not in the day's universe."""
    rows = daily_indicators[daily_indicators["market"] == BENCHMARK_MARKET]
    if not rows.empty:
        return rows.iloc[0]
    btc = daily_candles[daily_candles["market"] == BENCHMARK_MARKET].drop(columns=["in_universe"])
    if btc.empty:
        return None
    return indicator_snapshot(btc, btc.drop(columns=["market"]).reset_index(drop=True)).iloc[0]


SCHEMA = table_schema(
    ("date", "string", "D, the day read"),
    ("regime", "string", "bull, neutral or bear, from the two votes below"),
    ("allow_new_buys", "bool", "False on a bear day or when a vote is unknown: no new buys, exits still run"),
    ("reason", "string", "The reading in words"),
    ("btc_trend", "string", "KRW-BTC against its MA200 and the MA200's slope: up, flat, down or unknown"),
    ("breadth", "string", "Share of markets above their MA200: strong, mixed, weak or unknown"),
    ("markets", "int", "Markets in the day's indicators"),
    ("markets_with_ma200", "int", "Markets with enough history for an MA200"),
    ("share_above_ma200", "float", "Share of those closing above their MA200 (0-1)"),
    ("share_above_ma50", "float", "Share of markets with an MA50 closing above it (0-1)"),
    ("advancers", "int", "Markets that closed up on D"),
    ("decliners", "int", "Markets that closed down on D"),
)

# An output of the `breadth_and_candidates` step (analysis/breadth_candidates.py).
MARKET_BREADTH = dg.AssetOut(
    group_name="analysis",
    kinds={"pandas"},
    dagster_type=pd.DataFrame,
    is_required=False,
    description="Market thermometer (시장 체온계): share above MA200/MA50, advancers/decliners, BTC trend → regime.",
    metadata={COLUMN_SCHEMA: SCHEMA},
)
CHECKS = [GROUNDED]


def market_breadth(
    context: dg.AssetExecutionContext, daily_indicators: pd.DataFrame, daily_candles: pd.DataFrame
) -> dg.MaterializeResult:
    """The `market_breadth` value for D, its metadata and its check's result."""
    reading = read_thermometer(daily_indicators, btc_row(daily_indicators, daily_candles))
    frame = pd.DataFrame([{"date": context.partition_key, **reading}])
    context.log.info(f"market breadth {context.partition_key}: {reading['reason']}")
    return dg.MaterializeResult(
        asset_key="market_breadth",
        value=frame,
        metadata={
            **catalog(frame, SCHEMA),
            "regime": reading["regime"],
            "allow_new_buys": dg.MetadataValue.bool(reading["allow_new_buys"]),
            "reason": reading["reason"],
            "share_above_ma200": rounded(reading["share_above_ma200"]),
            "share_above_ma50": rounded(reading["share_above_ma50"]),
            "advancers": dg.MetadataValue.int(reading["advancers"]),
            "decliners": dg.MetadataValue.int(reading["decliners"]),
            "btc_trend": reading["btc_trend"],
        },
        check_results=[grounded(reading)],
    )


def grounded(reading: dict) -> dg.AssetCheckResult:
    """A reading without one of its votes blocks new buys by itself; say so, naming KRW-BTC when its
    trend is the missing vote (its candles missing or too short)."""
    blind_btc = reading["btc_trend"] == "unknown"
    return check_result(
        GROUNDED,
        [BENCHMARK_MARKET] if blind_btc else [],
        passed=not blind_btc and reading["breadth"] != "unknown",
        btc_trend=reading["btc_trend"],
        breadth=reading["breadth"],
        markets_with_ma200=dg.MetadataValue.int(int(reading["markets_with_ma200"])),
        allow_new_buys=dg.MetadataValue.bool(bool(reading["allow_new_buys"])),
    )

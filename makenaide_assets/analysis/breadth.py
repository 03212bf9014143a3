"""`market_breadth`: the market thermometer that can forbid new buys for the day."""

import dagster as dg
import pandas as pd

from makenaide_assets.market.indicators import BENCHMARK_MARKET
from makenaide_assets.partitions import daily
from makenaide_assets.strategy.breadth import market_breadth as read_thermometer
from makenaide_assets.strategy.indicators import indicator_snapshot

REGIMES = ("bull", "neutral", "bear")


def btc_row(daily_indicators: pd.DataFrame, daily_candles: pd.DataFrame) -> pd.Series | None:
    """KRW-BTC's indicators, computed from its candles when it is not in the day's universe."""
    rows = daily_indicators[daily_indicators["market"] == BENCHMARK_MARKET]
    if not rows.empty:
        return rows.iloc[0]
    btc = daily_candles[daily_candles["market"] == BENCHMARK_MARKET].drop(columns=["in_universe"])
    if btc.empty:
        return None
    return indicator_snapshot(btc, btc.drop(columns=["market"]).reset_index(drop=True)).iloc[0]


@dg.asset(partitions_def=daily, group_name="analysis", kinds={"pandas"})
def market_breadth(
    context: dg.AssetExecutionContext, daily_indicators: pd.DataFrame, daily_candles: pd.DataFrame
) -> dg.MaterializeResult:
    """Market thermometer (시장 체온계): share above MA200/MA50, advancers/decliners, BTC trend → regime."""
    reading = read_thermometer(daily_indicators, btc_row(daily_indicators, daily_candles))
    frame = pd.DataFrame([{"date": context.partition_key, **reading}])
    context.log.info(f"market breadth {context.partition_key}: {reading['reason']}")
    return dg.MaterializeResult(
        value=frame,
        metadata={
            "regime": reading["regime"],
            "allow_new_buys": dg.MetadataValue.bool(reading["allow_new_buys"]),
            "reason": reading["reason"],
            "share_above_ma200": dg.MetadataValue.float(float(reading["share_above_ma200"])),
            "share_above_ma50": dg.MetadataValue.float(float(reading["share_above_ma50"])),
            "advancers": dg.MetadataValue.int(reading["advancers"]),
            "decliners": dg.MetadataValue.int(reading["decliners"]),
            "btc_trend": reading["btc_trend"],
        },
    )


@dg.asset_check(asset=market_breadth, partitions_def=daily, blocking=True)
def market_breadth_consistent(market_breadth: pd.DataFrame) -> dg.AssetCheckResult:
    """One row, a known regime, shares in [0, 1], and never a buy allowed under a bear regime."""
    row = market_breadth.iloc[0] if len(market_breadth) == 1 else None
    problems = []
    if row is None:
        problems.append(f"{len(market_breadth)} rows instead of 1")
    else:
        if row["regime"] not in REGIMES:
            problems.append(f"unknown regime {row['regime']!r}")
        for column in ("share_above_ma200", "share_above_ma50"):
            if not pd.isna(row[column]) and not 0 <= row[column] <= 1:
                problems.append(f"{column}={row[column]}")
        if row["regime"] == "bear" and bool(row["allow_new_buys"]):
            problems.append("bear regime allows new buys")
    return dg.AssetCheckResult(passed=not problems, metadata={"problems": "; ".join(problems) or "none"})

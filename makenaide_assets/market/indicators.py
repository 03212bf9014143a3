"""`daily_candles` and `daily_indicators`: history as of D's close and its indicator snapshot."""

import dagster as dg
import pandas as pd

from makenaide_assets.market import quality
from makenaide_assets.market.metadata import frame_metadata
from makenaide_assets.partitions import daily
from makenaide_assets.resources.market_data import MarketData
from makenaide_assets.resources.thresholds import UniverseThresholds
from makenaide_assets.strategy.calendar import partition_close
from makenaide_assets.strategy.indicators import REQUIRED_COLUMNS, indicator_snapshot

BENCHMARK_MARKET = "KRW-BTC"


def _check(passed_details: tuple[bool, dict[str, str]]) -> dg.AssetCheckResult:
    passed, details = passed_details
    return dg.AssetCheckResult(passed=passed, metadata=dict(details))


@dg.asset(partitions_def=daily, group_name="market", kinds={"pandas", "upbit"})
def daily_candles(
    context: dg.AssetExecutionContext,
    market_data: MarketData,
    universe_thresholds: UniverseThresholds,
    universe: pd.DataFrame,
) -> dg.MaterializeResult:
    """Daily candles closed by D's close for the universe (and KRW-BTC, the relative-strength yardstick)."""
    as_of = partition_close(context.partition_key)
    markets = universe.loc[universe["passed"], "market"].tolist()
    fetch = [*markets, *([BENCHMARK_MARKET] if BENCHMARK_MARKET not in markets else [])]
    frame = market_data.candles_many(fetch, "day", as_of, universe_thresholds.history_days)
    frame["in_universe"] = frame["market"].isin(markets)
    counts = frame.groupby("market").size()
    empty = sorted(set(fetch) - set(counts.index))
    if empty:
        context.log.warning(f"no daily candles as of {as_of} for: {', '.join(empty)}")
    first, last = frame["candle_date_time_utc"].min(), frame["candle_date_time_utc"].max()
    return dg.MaterializeResult(
        value=frame,
        metadata={
            "row_count": dg.MetadataValue.int(len(frame)),
            "markets": dg.MetadataValue.int(int(counts.size)),
            "markets_without_candles": ", ".join(empty) or "none",
            "time_range_utc": f"{first} → {last}" if len(frame) else "empty",
            "candles_per_market_min": dg.MetadataValue.int(int(counts.min()) if len(counts) else 0),
            "source": market_data.describe(),
        },
    )


@dg.asset_check(asset=daily_candles, partitions_def=daily, blocking=True)
def daily_candles_ohlc_sane(daily_candles: pd.DataFrame) -> dg.AssetCheckResult:
    """high >= open/close >= low > 0 on every candle."""
    return _check(
        quality.ohlc_violations(
            daily_candles,
            open_="opening_price",
            high="high_price",
            low="low_price",
            close="trade_price",
            label=["market", "candle_date_time_utc"],
        )
    )


@dg.asset_check(asset=daily_candles, partitions_def=daily, blocking=True)
def daily_candles_unique(daily_candles: pd.DataFrame) -> dg.AssetCheckResult:
    """One candle per market and timestamp."""
    return _check(quality.duplicated_keys(daily_candles, ["market", "candle_date_time_utc"]))


@dg.asset(partitions_def=daily, group_name="market", kinds={"pandas"})
def daily_indicators(context: dg.AssetExecutionContext, daily_candles: pd.DataFrame) -> dg.MaterializeResult:
    """Indicator snapshot as of D's close: MAs and slopes, RSI14, ATR14, 52-week range, volume, RS vs BTC."""
    universe_candles = daily_candles[daily_candles["in_universe"]].drop(columns=["in_universe"])
    btc = daily_candles[daily_candles["market"] == BENCHMARK_MARKET].drop(columns=["market", "in_universe"])
    frame = indicator_snapshot(universe_candles, btc.reset_index(drop=True))
    short = frame[frame["insufficient_history"] != ""]
    short_table = short[["market", "history_days", "insufficient_history"]]
    return dg.MaterializeResult(
        value=frame,
        metadata=frame_metadata(
            frame,
            short_history=dg.MetadataValue.int(len(short)),
            short_history_table=dg.MetadataValue.md(short_table.to_markdown(index=False) if len(short) else "_none_"),
            with_ma200=dg.MetadataValue.int(int(frame["ma200"].notna().sum())) if len(frame) else 0,
        ),
    )


@dg.asset_check(asset=daily_indicators, partitions_def=daily, blocking=True)
def daily_indicators_no_unexplained_nan(daily_indicators: pd.DataFrame) -> dg.AssetCheckResult:
    """No NaN in required columns except where the market's history is too short (listed)."""
    return _check(quality.unexplained_nans(daily_indicators, REQUIRED_COLUMNS))


@dg.asset_check(asset=daily_indicators, partitions_def=daily, blocking=True)
def daily_indicators_ohlc_sane(daily_indicators: pd.DataFrame) -> dg.AssetCheckResult:
    """The last candle of every row is a sane OHLC bar."""
    return _check(
        quality.ohlc_violations(daily_indicators, open_="open", high="high", low="low", close="close", label=["market"])
    )


@dg.asset_check(asset=daily_indicators, partitions_def=daily, blocking=True)
def daily_indicators_fresh(
    context: dg.AssetCheckExecutionContext, daily_indicators: pd.DataFrame
) -> dg.AssetCheckResult:
    """Every row's last candle is dated D: stale data is an error."""
    return _check(quality.stale_rows(daily_indicators, context.partition_key))


@dg.asset_check(asset=daily_indicators, partitions_def=daily, blocking=True)
def daily_indicators_unique(daily_indicators: pd.DataFrame) -> dg.AssetCheckResult:
    """One row per market."""
    return _check(quality.duplicated_keys(daily_indicators, ["market"]))


@dg.asset_check(
    asset=daily_indicators, partitions_def=daily, blocking=True, additional_ins={"universe": dg.AssetIn("universe")}
)
def daily_indicators_cover_universe(daily_indicators: pd.DataFrame, universe: pd.DataFrame) -> dg.AssetCheckResult:
    """Every market that passed the universe has a row: none dropped silently."""
    return _check(quality.missing_markets(universe.loc[universe["passed"], "market"], daily_indicators["market"]))

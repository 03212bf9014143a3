"""`timing_4h`: for BUY verdicts, is now a sensible entry on closed 4-hour candles?

An output of the `verdicts_and_timing` step (analysis/verdicts_and_timing.py), after `gpt_verdicts`.
"""

import dagster as dg
import pandas as pd

from makenaide_assets.market.metadata import COLUMN_SCHEMA, catalog, check_result, check_spec, preview, table_schema
from makenaide_assets.market.retry import retried_unless_permanent
from makenaide_assets.resources.market_data import MarketData
from makenaide_assets.strategy.calendar import partition_close
from makenaide_assets.strategy.frames import astype_columns
from makenaide_assets.strategy.timing import evaluate_4h

# 200 candles is one Upbit page and more than the slow EMA and MACD need to settle.
CANDLES_4H = 200
TIMING_COLUMNS = [
    "market",
    "entry_ok",
    "reason",
    "suggested_entry",
    "pullback_entry",
    "suggested_stop",
    "stop_distance",
    "trend_up",
    "momentum_up",
    "rsi_ok",
    "rsi14",
    "atr14",
    "close",
    "candles",
    "last_candle_utc",
]

SCHEMA = table_schema(
    ("market", "string", "Upbit market code of a BUY verdict"),
    ("entry_ok", "bool", "Trend, momentum and RSI all agree on closed 4h candles: enter now"),
    ("reason", "string", "Why, or why not (no 4h candles, stale, too few, which flag failed)"),
    ("suggested_entry", "float", "The last 4h close, KRW"),
    ("pullback_entry", "float", "The lower of that close and the fast EMA, KRW: a patient entry"),
    ("suggested_stop", "float", "The lower of the swing low and close - 1.5 ATR, never past the hard stop, KRW"),
    ("stop_distance", "float", "How far below the entry the stop is, a fraction (0.05 = 5 %)"),
    ("trend_up", "bool", "Close above the 20 EMA, above the 50 EMA"),
    ("momentum_up", "bool", "MACD (12, 26, 9) above its signal line"),
    ("rsi_ok", "bool", "4h RSI14 between 50 and 80"),
    ("rsi14", "float", "4h RSI14"),
    ("atr14", "float", "4h ATR14, KRW"),
    ("close", "float", "The last closed 4h candle's close, KRW; empty when it could not be judged"),
    ("candles", "int", "4h candles read"),
    ("last_candle_utc", "datetime", "Start of the last closed 4h candle"),
)

# Warn: a BUY without a timing decision is not bought, so nothing is at stake but the chance.
CANDLES_USABLE = check_spec(
    "timing_4h",
    "timing_4h_candles_usable",
    "Every BUY verdict was timed on usable 4h candles: none missing, stale, too few or with gaps in prices",
)


def buy_verdicts(gpt_verdicts: pd.DataFrame) -> pd.DataFrame:
    """BUY answers that came from a working analyst (an error row is never a BUY)."""
    return gpt_verdicts[(gpt_verdicts["verdict"] == "BUY") & (gpt_verdicts["source"] != "error")]


def timing_of(market_data: MarketData, gpt_verdicts: pd.DataFrame, as_of: pd.Timestamp) -> pd.DataFrame:
    """The `timing_4h` value as of `as_of` (D's close), without Dagster."""
    rows = []
    for market in buy_verdicts(gpt_verdicts)["market"]:
        candles = market_data.candles(market, "minute240", as_of, CANDLES_4H)
        rows.append({"market": market, **evaluate_4h(candles, as_of=as_of)})
    frame = pd.DataFrame(rows, columns=TIMING_COLUMNS)
    # Typed even when empty: an object-typed empty mask would select columns, not rows.
    frame = astype_columns(frame, {"entry_ok": bool, "trend_up": bool, "momentum_up": bool, "rsi_ok": bool})
    frame["last_candle_utc"] = pd.to_datetime(frame["last_candle_utc"])
    return frame


TIMING_4H = dg.AssetOut(
    group_name="analysis",
    kinds={"pandas", "upbit"},
    dagster_type=pd.DataFrame,
    is_required=False,
    description="4h trend/momentum flags, `entry_ok`, suggested entry and stop for each BUY verdict.",
    metadata={COLUMN_SCHEMA: SCHEMA},
)
CHECKS = [CANDLES_USABLE]


def timing_4h(
    context: dg.AssetExecutionContext, market_data: MarketData, gpt_verdicts: pd.DataFrame
) -> dg.MaterializeResult:
    """The `timing_4h` value for D, its metadata and its check's result."""
    with retried_unless_permanent():
        frame = timing_of(market_data, gpt_verdicts, partition_close(context.partition_key))
    no_candles = frame.loc[frame["reason"] == "no 4h candles", "market"].tolist()
    return dg.MaterializeResult(
        asset_key="timing_4h",
        value=frame,
        metadata={
            **catalog(frame, SCHEMA),
            "entry_ok": dg.MetadataValue.int(int(frame["entry_ok"].sum())),
            "without_4h_candles": ", ".join(no_candles) or "none",
            "note": "no BUY verdicts for this day" if frame.empty else "",
            "preview": preview(frame[["market", "entry_ok", "reason", "suggested_entry", "suggested_stop"]]),
        },
        check_results=[candles_usable(frame)],
    )


def candles_usable(frame: pd.DataFrame) -> dg.AssetCheckResult:
    """BUY verdicts the 4h rules could not judge (no close to judge from), named with the reason:
    a 4h endpoint that lags or lost a market turns every BUY into a silent "no entry"."""
    blind = frame[frame["close"].isna()]
    return check_result(
        CANDLES_USABLE,
        blind["market"],
        reasons="; ".join(f"{m}: {r}" for m, r in zip(blind["market"], blind["reason"], strict=True)) or "none",
        buy_verdicts=dg.MetadataValue.int(len(frame)),
    )

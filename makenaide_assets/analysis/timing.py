"""`timing_4h`: for BUY verdicts, is now a sensible entry on closed 4-hour candles?"""

import dagster as dg
import pandas as pd

from makenaide_assets.market.metadata import preview
from makenaide_assets.partitions import daily
from makenaide_assets.resources.market_data import MarketData
from makenaide_assets.strategy.calendar import partition_close
from makenaide_assets.strategy.timing import FOUR_HOURS, evaluate_4h

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


def buy_verdicts(gpt_verdicts: pd.DataFrame) -> pd.DataFrame:
    """BUY answers that came from a working analyst (an error row is never a BUY)."""
    return gpt_verdicts[(gpt_verdicts["verdict"] == "BUY") & (gpt_verdicts["source"] != "error")]


@dg.asset(partitions_def=daily, group_name="analysis", kinds={"pandas", "upbit"})
def timing_4h(
    context: dg.AssetExecutionContext, market_data: MarketData, gpt_verdicts: pd.DataFrame
) -> dg.MaterializeResult:
    """4h trend/momentum flags, `entry_ok`, suggested entry and stop for each BUY verdict."""
    as_of = partition_close(context.partition_key)
    rows = []
    for market in buy_verdicts(gpt_verdicts)["market"]:
        candles = market_data.candles(market, "minute240", as_of, CANDLES_4H)
        rows.append({"market": market, **evaluate_4h(candles, as_of=as_of)})
    frame = pd.DataFrame(rows, columns=TIMING_COLUMNS)
    # Typed even when empty: an object-typed empty mask would select columns, not rows.
    frame = frame.astype({"entry_ok": bool, "trend_up": bool, "momentum_up": bool, "rsi_ok": bool})
    frame["last_candle_utc"] = pd.to_datetime(frame["last_candle_utc"])
    no_candles = frame.loc[frame["reason"] == "no 4h candles", "market"].tolist()
    return dg.MaterializeResult(
        value=frame,
        metadata={
            "row_count": dg.MetadataValue.int(len(frame)),
            "entry_ok": dg.MetadataValue.int(int(frame["entry_ok"].sum())),
            "without_4h_candles": ", ".join(no_candles) or "none",
            "note": "no BUY verdicts for this day" if frame.empty else "",
            "preview": preview(frame[["market", "entry_ok", "reason", "suggested_entry", "suggested_stop"]]),
        },
    )


@dg.asset_check(
    asset=timing_4h, partitions_def=daily, blocking=True, additional_ins={"gpt_verdicts": dg.AssetIn("gpt_verdicts")}
)
def timing_4h_consistent(
    context: dg.AssetCheckExecutionContext, timing_4h: pd.DataFrame, gpt_verdicts: pd.DataFrame
) -> dg.AssetCheckResult:
    """One row per BUY verdict, no 4h candle that closed after D, stops below entries."""
    expected = set(buy_verdicts(gpt_verdicts)["market"])
    got = timing_4h["market"].tolist()
    problems = []
    if set(got) != expected or len(got) != len(set(got)):
        problems.append(f"rows {sorted(got)} != BUY verdicts {sorted(expected)}")
    close = partition_close(context.partition_key)
    late = timing_4h[timing_4h["last_candle_utc"].notna() & (timing_4h["last_candle_utc"] + FOUR_HOURS > close)]
    if not late.empty:
        problems.append("candles after D's close: " + ", ".join(late["market"]))
    ok = timing_4h.loc[timing_4h["entry_ok"].astype(bool)]
    bad_stop = ok[~(ok["suggested_stop"] < ok["suggested_entry"])]
    if not bad_stop.empty:
        problems.append("stop not below entry: " + ", ".join(bad_stop["market"]))
    return dg.AssetCheckResult(passed=not problems, metadata={"problems": "; ".join(problems) or "none"})

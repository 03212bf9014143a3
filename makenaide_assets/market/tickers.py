"""`tickers`: every KRW market, with blacklisted and warned markets kept and marked."""

import dagster as dg
import pandas as pd

from makenaide_assets.market.metadata import (
    COLUMN_SCHEMA,
    check_result,
    check_spec,
    frame_metadata,
    listed,
    market_list,
    previous_metadata,
    reasons_table,
    table_schema,
)
from makenaide_assets.resources.blacklist import Blacklist
from makenaide_assets.resources.market_data import MarketData
from makenaide_assets.strategy.calendar import partition_close


def mark_exclusions(markets: pd.DataFrame, blacklist: dict[str, str]) -> pd.DataFrame:
    out = markets.copy()
    reasons = []
    for market, warning, flags in zip(out["market"], out["market_warning"], out["caution_flags"], strict=True):
        if market in blacklist:
            reasons.append(f"blacklisted: {blacklist[market]}")
        elif warning != "NONE":
            reasons.append(f"market {warning.lower()}" + (f": {flags}" if flags else ""))
        else:
            reasons.append("")
    out["excluded_reason"] = reasons
    return out.sort_values("market").reset_index(drop=True)


# Blocking: an empty or doubled market list empties or doubles everything downstream, the
# exits of held positions included.
WELL_FORMED = check_spec("tickers", "tickers_well_formed", "At least one KRW market, none listed twice", blocking=True)
NONE_DISAPPEARED = check_spec(
    "tickers",
    "tickers_none_disappeared",
    "Every market listed for the day before is still listed (a delisting, or a partial market list)",
)


SCHEMA = table_schema(
    ("market", "string", "Upbit market code, KRW-<coin>"),
    ("korean_name", "string", "The market's Korean name on Upbit"),
    ("english_name", "string", "The market's English name on Upbit"),
    ("market_warning", "string", "Upbit's warning: NONE, or CAUTION/WARNING"),
    ("caution_flags", "string", "Upbit's caution reasons, comma-separated; empty when none"),
    ("excluded_reason", "string", "Why the market is kept out of the universe (blacklist, warning); empty if eligible"),
)

# The asset itself is an output of the `market` step (market/step.py), which calls `tickers`.
TICKERS = dg.AssetOut(
    group_name="market",
    kinds={"pandas", "upbit"},
    dagster_type=pd.DataFrame,
    is_required=False,
    description="Every Upbit KRW market; blacklisted and CAUTION/WARNING markets kept with `excluded_reason`.",
    metadata={COLUMN_SCHEMA: SCHEMA},
)
CHECKS = [WELL_FORMED, NONE_DISAPPEARED]


def tickers(context: dg.AssetExecutionContext, blacklist: Blacklist, market_data: MarketData) -> dg.MaterializeResult:
    """The `tickers` value for D, its metadata and its checks' results."""
    markets = market_data.markets(partition_close(context.partition_key))
    frame = mark_exclusions(markets, blacklist.entries())
    excluded = frame[frame["excluded_reason"] != ""]
    return dg.MaterializeResult(
        asset_key="tickers",
        value=frame,
        metadata=frame_metadata(
            frame,
            SCHEMA,
            eligible=dg.MetadataValue.int(len(frame) - len(excluded)),
            excluded=dg.MetadataValue.int(len(excluded)),
            excluded_reasons=reasons_table(frame, "excluded_reason"),
            market_list=market_list(frame["market"]),
            source=market_data.describe(),
        ),
        check_results=[well_formed(frame), disappeared(frame, previous_metadata(context, "tickers"))],
    )


def well_formed(frame: pd.DataFrame) -> dg.AssetCheckResult:
    twice = frame.loc[frame["market"].duplicated(), "market"]
    return check_result(WELL_FORMED, twice, passed=not frame.empty and twice.empty, rows=len(frame))


def disappeared(frame: pd.DataFrame, previous: dict | None) -> dg.AssetCheckResult:
    """Markets listed the day before and not today, named: a held one can no longer be sold."""
    if previous is None or "market_list" not in previous:
        return check_result(NONE_DISAPPEARED, compared_with="nothing: no market list recorded for the day before")
    gone = listed(previous["market_list"]) - set(frame["market"])
    return check_result(NONE_DISAPPEARED, gone, compared_with=f"{len(listed(previous['market_list']))} markets")

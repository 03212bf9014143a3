"""`tickers`: every KRW market, with blacklisted and warned markets kept and marked."""

import dagster as dg
import pandas as pd

from makenaide_assets.market.metadata import frame_metadata, reasons_table
from makenaide_assets.partitions import daily
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


@dg.asset(partitions_def=daily, group_name="market", kinds={"pandas", "upbit"})
def tickers(context: dg.AssetExecutionContext, blacklist: Blacklist, market_data: MarketData) -> dg.MaterializeResult:
    """Every Upbit KRW market; blacklisted and CAUTION/WARNING markets kept with `excluded_reason`."""
    markets = market_data.markets(partition_close(context.partition_key))
    frame = mark_exclusions(markets, blacklist.entries())
    excluded = frame[frame["excluded_reason"] != ""]
    return dg.MaterializeResult(
        value=frame,
        metadata=frame_metadata(
            frame,
            eligible=dg.MetadataValue.int(len(frame) - len(excluded)),
            excluded=dg.MetadataValue.int(len(excluded)),
            excluded_reasons=reasons_table(frame, "excluded_reason"),
            source=market_data.describe(),
        ),
    )


@dg.asset_check(asset=tickers, partitions_def=daily, blocking=True)
def tickers_well_formed(tickers: pd.DataFrame) -> dg.AssetCheckResult:
    """Non-empty, unique markets, every one KRW-."""
    dupes = sorted(tickers.loc[tickers["market"].duplicated(), "market"].unique())
    not_krw = sorted(m for m in tickers["market"] if not str(m).startswith("KRW-"))
    passed = not tickers.empty and not dupes and not not_krw
    return dg.AssetCheckResult(
        passed=passed,
        metadata={
            "rows": len(tickers),
            "duplicates": ", ".join(dupes) or "none",
            "not_krw": ", ".join(not_krw) or "none",
        },
    )


@dg.asset_check(asset=tickers, partitions_def=daily)
def tickers_blacklist_honoured(blacklist: Blacklist, tickers: pd.DataFrame) -> dg.AssetCheckResult:
    """Every blacklisted market present is excluded."""
    entries = blacklist.entries()
    leaked = tickers[tickers["market"].isin(entries) & (tickers["excluded_reason"] == "")]["market"].tolist()
    return dg.AssetCheckResult(
        passed=not leaked, metadata={"blacklisted": len(entries), "leaked": ", ".join(leaked) or "none"}
    )

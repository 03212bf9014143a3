"""`universe`: the seeds' Phase 1 filter — months listed and 24h traded value."""

import dagster as dg
import pandas as pd

from makenaide_assets.market.metadata import frame_metadata, reasons_table
from makenaide_assets.partitions import daily
from makenaide_assets.resources.market_data import MarketData
from makenaide_assets.resources.thresholds import UniverseThresholds
from makenaide_assets.strategy.calendar import partition_close

# A listing long enough to pass any sensible threshold; one Upbit page of monthly candles.
_MONTHS_FETCHED = 200


def screen_universe(
    tickers: pd.DataFrame, months_listed: pd.Series, trade_value: pd.Series, thresholds: UniverseThresholds
) -> pd.DataFrame:
    """One row per ticker with `passed` and the first failing reason (pure, for tests)."""
    out = tickers[["market", "korean_name", "english_name", "excluded_reason"]].copy()
    out["months_listed"] = out["market"].map(months_listed).fillna(0).astype("int64")
    out["trade_value_krw"] = out["market"].map(trade_value).fillna(0.0).astype("float64")
    rules, reasons = [], []
    for excluded, months, value in zip(
        out["excluded_reason"], out["months_listed"], out["trade_value_krw"], strict=True
    ):
        if excluded:
            rule, reason = "excluded", f"excluded in tickers: {excluded}"
        elif months == 0:
            rule, reason = "not_listed", "not listed as of D (no closed monthly candle)"
        elif months < thresholds.min_months:
            rule, reason = "months_listed", f"listed {months} months < {thresholds.min_months}"
        elif value < thresholds.min_trade_value_krw:
            rule, reason = "trade_value", f"24h traded value {value:,.0f} KRW < {thresholds.min_trade_value_krw:,.0f}"
        else:
            rule, reason = "", ""
        rules.append(rule)
        reasons.append(reason)
    out["rejected_rule"] = rules
    out["rejected_reason"] = reasons
    out["passed"] = out["rejected_reason"] == ""
    return out.drop(columns=["excluded_reason"])


@dg.asset(partitions_def=daily, group_name="market", kinds={"pandas", "upbit"})
def universe(
    context: dg.AssetExecutionContext,
    market_data: MarketData,
    universe_thresholds: UniverseThresholds,
    tickers: pd.DataFrame,
) -> dg.MaterializeResult:
    """Tickers with >= N monthly candles and >= 300M KRW traded in 24h; rejected ones keep the reason."""
    as_of = partition_close(context.partition_key)
    eligible = tickers.loc[tickers["excluded_reason"] == "", "market"].tolist()
    months = {m: len(market_data.candles(m, "month", as_of, _MONTHS_FETCHED)) for m in eligible}
    values = market_data.trade_values_24h(eligible, as_of) if eligible else pd.Series(dtype="float64")
    frame = screen_universe(tickers, pd.Series(months, dtype="int64"), values, universe_thresholds)
    passed = int(frame["passed"].sum())
    context.log.info(f"universe {context.partition_key}: {passed} of {len(frame)} tickers passed")
    return dg.MaterializeResult(
        value=frame,
        metadata=frame_metadata(
            frame,
            passed=dg.MetadataValue.int(passed),
            rejected=dg.MetadataValue.int(len(frame) - passed),
            rejected_by_rule=reasons_table(frame, "rejected_rule"),
            rejected_table=dg.MetadataValue.md(
                frame.loc[
                    ~frame["passed"], ["market", "months_listed", "trade_value_krw", "rejected_reason"]
                ].to_markdown(index=False, floatfmt=",.0f")
            ),
            min_months=dg.MetadataValue.int(universe_thresholds.min_months),
            min_trade_value_krw=dg.MetadataValue.float(universe_thresholds.min_trade_value_krw),
            source=market_data.describe(),
        ),
    )


@dg.asset_check(asset=universe, partitions_def=daily, additional_ins={"tickers": dg.AssetIn("tickers")})
def universe_subset_of_tickers(universe: pd.DataFrame, tickers: pd.DataFrame) -> dg.AssetCheckResult:
    """Every universe row is a ticker of the same day."""
    extra = sorted(set(universe["market"]) - set(tickers["market"]))
    return dg.AssetCheckResult(passed=not extra, metadata={"not_in_tickers": ", ".join(extra) or "none"})


@dg.asset_check(asset=universe, partitions_def=daily, blocking=True)
def universe_thresholds_met(universe: pd.DataFrame, universe_thresholds: UniverseThresholds) -> dg.AssetCheckResult:
    """Every passed row meets both thresholds."""
    passed = universe[universe["passed"]]
    bad = passed[
        (passed["months_listed"] < universe_thresholds.min_months)
        | (passed["trade_value_krw"] < universe_thresholds.min_trade_value_krw)
    ]
    return dg.AssetCheckResult(
        passed=bad.empty,
        metadata={"passed_rows": len(passed), "violations": ", ".join(bad["market"]) or "none"},
    )

"""`universe`: the seeds' Phase 1 filter — months listed and 24h traded value."""

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
    rounded,
    table,
    table_schema,
)
from makenaide_assets.resources.market_data import MarketData
from makenaide_assets.resources.thresholds import UniverseThresholds
from makenaide_assets.strategy.calendar import partition_close

# A listing long enough to pass any sensible threshold; one Upbit page of monthly candles.
_MONTHS_FETCHED = 200
# Fewer passing markets than this share of the day before's is a collapse, not churn.
COLLAPSE_SHARE = 0.5

STABLE = check_spec(
    "universe",
    "universe_stable",
    "At least half as many markets pass as the day before; the markets that dropped out are named",
)


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


SCHEMA = table_schema(
    ("market", "string", "Upbit market code, KRW-<coin>"),
    ("korean_name", "string", "The market's Korean name on Upbit"),
    ("english_name", "string", "The market's English name on Upbit"),
    ("months_listed", "int", "Monthly candles closed by D's close: how long the market has traded"),
    ("trade_value_krw", "float", "KRW traded in the 24 hours before D's close"),
    ("passed", "bool", "True when the market enters the day's analysis"),
    ("rejected_rule", "string", "The first rule it failed: excluded, not_listed, months_listed or trade_value"),
    ("rejected_reason", "string", "That rule's verdict in words, with the numbers; empty when passed"),
)

# An output of the `market` step (market/step.py), which calls `universe` with `tickers`' value.
UNIVERSE = dg.AssetOut(
    group_name="market",
    kinds={"pandas", "upbit"},
    dagster_type=pd.DataFrame,
    is_required=False,
    description="Tickers with >= N monthly candles and >= 300M KRW traded in 24h; rejected ones keep the reason.",
    metadata={COLUMN_SCHEMA: SCHEMA},
)
CHECKS = [STABLE]


def universe_frame(
    market_data: MarketData, universe_thresholds: UniverseThresholds, tickers: pd.DataFrame, as_of: pd.Timestamp
) -> pd.DataFrame:
    """The `universe` value as of `as_of` (D's close), without Dagster: the asset and the fast backtest."""
    eligible = tickers.loc[tickers["excluded_reason"] == "", "market"].tolist()
    months = {m: len(market_data.candles(m, "month", as_of, _MONTHS_FETCHED)) for m in eligible}
    values = market_data.trade_values_24h(eligible, as_of) if eligible else pd.Series(dtype="float64")
    return screen_universe(tickers, pd.Series(months, dtype="int64"), values, universe_thresholds)


def universe(
    context: dg.AssetExecutionContext,
    market_data: MarketData,
    universe_thresholds: UniverseThresholds,
    tickers: pd.DataFrame,
) -> dg.MaterializeResult:
    """The `universe` value for D, its metadata and its check's result."""
    frame = universe_frame(market_data, universe_thresholds, tickers, partition_close(context.partition_key))
    passed = int(frame["passed"].sum())
    traded = float(frame.loc[frame["passed"], "trade_value_krw"].sum())
    rejected = frame.loc[~frame["passed"], ["market", "months_listed", "trade_value_krw", "rejected_reason"]]
    context.log.info(f"universe {context.partition_key}: {passed} of {len(frame)} tickers passed")
    return dg.MaterializeResult(
        asset_key="universe",
        value=frame,
        metadata=frame_metadata(
            frame,
            SCHEMA,
            passed=dg.MetadataValue.int(passed),
            rejected=dg.MetadataValue.int(len(frame) - passed),
            rejected_by_rule=reasons_table(frame, "rejected_rule"),
            rejected_table=table(rejected, rows=len(rejected)),
            min_months=dg.MetadataValue.int(universe_thresholds.min_months),
            min_trade_value_krw=rounded(universe_thresholds.min_trade_value_krw),
            passed_markets=market_list(frame.loc[frame["passed"], "market"]),
            passed_trade_value_krw=rounded(traded),
            source=market_data.describe(),
        ),
        check_results=[stability(frame, previous_metadata(context, "universe"))],
    )


def stability(frame: pd.DataFrame, previous: dict | None) -> dg.AssetCheckResult:
    """D's passing markets against the day before's: a sudden collapse (a trade-value feed that
    answered zeros, a market list cut short) warns and names every market that dropped out."""
    if previous is None or "passed_markets" not in previous:
        return check_result(STABLE, compared_with="nothing: no universe recorded for the day before")
    before, now = listed(previous["passed_markets"]), set(frame.loc[frame["passed"], "market"])
    dropped = before - now
    return check_result(
        STABLE,
        dropped,
        passed=len(now) >= COLLAPSE_SHARE * len(before),
        passed_before=dg.MetadataValue.int(len(before)),
        passed_now=dg.MetadataValue.int(len(now)),
        joined=market_list(now - before),
        trade_value_krw_before=rounded(previous.get("passed_trade_value_krw") or 0.0),
        trade_value_krw_now=rounded(frame.loc[frame["passed"], "trade_value_krw"].sum()),
    )

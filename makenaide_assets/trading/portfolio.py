"""`portfolio`: positions and cash after D's fills, marked at D's close."""

import dagster as dg
import pandas as pd

from makenaide_assets.market.metadata import (
    COLUMN_SCHEMA,
    OWNERS,
    catalog,
    check_result,
    check_spec,
    krw,
    table,
    table_schema,
)
from makenaide_assets.partitions import daily
from makenaide_assets.resources.ledger import CutOff, LedgerConflict, TradingLedger
from makenaide_assets.resources.market_data import MarketData
from makenaide_assets.strategy.calendar import partition_close
from makenaide_assets.strategy.ticks import MIN_ORDER_KRW

CASH_MARKET = "KRW"
PORTFOLIO_COLUMNS = [
    "market",
    "volume",
    "avg_price",
    "cost_krw",
    "close",
    "value_krw",
    "unrealized_pnl_krw",
    "unrealized_pnl_pct",
    "entries",
    "opened_partition",
    "price_source",
]
SCHEMA = table_schema(
    ("market", "string", "Upbit market code of the position, or KRW for the cash row"),
    ("volume", "float", "Units held (KRW: the cash)"),
    ("avg_price", "float", "Average entry price, fees included, KRW"),
    ("cost_krw", "float", "What the position cost, KRW"),
    ("close", "float", "D's close the position is valued at (or its average price without one), KRW"),
    ("value_krw", "float", "volume x close, KRW"),
    ("unrealized_pnl_krw", "float", "value - cost, KRW"),
    ("unrealized_pnl_pct", "float", "value / cost - 1, %"),
    ("entries", "int", "Buys and adds since the position opened"),
    ("opened_partition", "string", "The day of its first buy"),
    ("price_source", "string", "close of D, cost (no close for D), or ledger cash"),
)


# Warnings: the report must still be written (a blocking check here would stop `daily_report`),
# and `fills_cash_never_negative` already fails the day on negative cash.
PRICED_AT_CLOSE = check_spec(
    "portfolio",
    "portfolio_priced_at_close",
    "Every holding is valued at its close of D (one without, halted or delisted, is valued at cost)",
)
# Blocking: a day whose recomputed value differs from the equity recorded for it the first time
# has a changed past (a booking or a parameter changed since); its report would be wrong.
EQUITY_AS_RECORDED = check_spec(
    "portfolio",
    "portfolio_equity_as_recorded",
    "D's equity, recomputed from the ledger as of D's cut-off, equals what D recorded the first time",
    blocking=True,
)
SELLABLE = check_spec(
    "portfolio",
    "portfolio_sellable",
    "Every holding is worth at least Upbit's 5,000 KRW minimum order, so a sell signal can close it",
)


def mark_to_market(positions: pd.DataFrame, closes: dict[str, float | None], cash_krw: float) -> pd.DataFrame:
    """Value positions at the given closes plus one `KRW` cash row (pure, for tests).

    A position with no close for D (halted or delisted) is valued at cost and says so, rather
    than dropped: a person must see every holding.
    """
    rows = []
    for pos in positions.itertuples(index=False):
        close = closes.get(pos.market)
        known = close is not None and not pd.isna(close)
        price = float(close) if known else float(pos.avg_price)
        value = float(pos.volume) * price
        rows.append(
            {
                "market": pos.market,
                "volume": float(pos.volume),
                "avg_price": float(pos.avg_price),
                "cost_krw": float(pos.cost_krw),
                "close": price,
                "value_krw": value,
                "unrealized_pnl_krw": value - float(pos.cost_krw),
                "unrealized_pnl_pct": (value / float(pos.cost_krw) - 1.0) * 100 if pos.cost_krw else 0.0,
                "entries": int(pos.entries),
                "opened_partition": pos.opened_partition,
                "price_source": "close of D" if known else "cost (no close for D)",
            }
        )
    rows.append(
        {
            "market": CASH_MARKET,
            "volume": cash_krw,
            "avg_price": 1.0,
            "cost_krw": cash_krw,
            "close": 1.0,
            "value_krw": cash_krw,
            "unrealized_pnl_krw": 0.0,
            "unrealized_pnl_pct": 0.0,
            "entries": 0,
            "opened_partition": "",
            "price_source": "ledger cash",
        }
    )
    return pd.DataFrame(rows, columns=PORTFOLIO_COLUMNS)


@dg.asset(
    partitions_def=daily,
    group_name="trading",
    kinds={"pandas", "sql"},
    deps=["fills"],
    check_specs=[PRICED_AT_CLOSE, SELLABLE, EQUITY_AS_RECORDED],
    dagster_type=pd.DataFrame,
    metadata={COLUMN_SCHEMA: SCHEMA},
    owners=OWNERS,
    code_version="1",
)
def portfolio(
    context: dg.AssetExecutionContext, ledger: TradingLedger, market_data: MarketData
) -> dg.MaterializeResult:
    """Positions and cash after D, valued at D's close; the day's equity is recorded in the ledger."""
    close = partition_close(context.partition_key)
    # D's own orders included, nothing booked for later days: a re-run of D values what D held.
    as_of = CutOff(context.partition_key, own_orders=True)
    positions = ledger.open_positions(as_of)
    closes: dict[str, float | None] = {}
    for market in positions["market"]:
        day = market_data.candles(market, "day", close, 1)
        fresh = not day.empty and day["candle_date_time_utc"].iloc[-1] == pd.Timestamp(context.partition_key)
        closes[market] = float(day["trade_price"].iloc[-1]) if fresh else None
    frame = mark_to_market(positions, closes, ledger.cash_krw(as_of))
    held = frame[frame["market"] != CASH_MARKET]
    value = float(held["value_krw"].sum())
    try:
        equity, conflict = ledger.record_equity(context.partition_key, value), None
    except LedgerConflict as exc:
        cash = float(frame.loc[frame["market"] == CASH_MARKET, "value_krw"].sum())
        equity = {"cash_krw": cash, "positions_value_krw": value, "equity_krw": cash + value}
        conflict = str(exc)
        context.log.error(conflict)
    return dg.MaterializeResult(
        value=frame,
        metadata={
            **catalog(frame, SCHEMA),
            "positions": dg.MetadataValue.int(len(held)),
            "cash_krw": krw(equity["cash_krw"]),
            "positions_value_krw": krw(equity["positions_value_krw"]),
            "equity_krw": krw(equity["equity_krw"]),
            "valued_at_cost": ", ".join(held.loc[held["price_source"] != "close of D", "market"]) or "none",
            "preview": table(frame, rows=50),
        },
        check_results=[
            *holding_checks(held),
            check_result(
                EQUITY_AS_RECORDED,
                passed=conflict is None,
                partition=context.partition_key,
                conflict=conflict or "none",
                ledger_read=as_of.describe(),
            ),
        ],
    )


def holding_checks(held: pd.DataFrame) -> list[dg.AssetCheckResult]:
    """Holdings a person must look at: valued at cost for want of D's close, or too small to sell."""
    at_cost = held[held["price_source"] != "close of D"]
    dust = held[held["value_krw"] < MIN_ORDER_KRW]
    return [
        check_result(
            PRICED_AT_CLOSE,
            at_cost["market"],
            valued_at_cost_krw=krw(at_cost["value_krw"].sum()),
        ),
        check_result(
            SELLABLE,
            dust["market"],
            below_minimum=", ".join(f"{r.market}: {r.value_krw:,.0f} KRW" for r in dust.itertuples()) or "none",
        ),
    ]

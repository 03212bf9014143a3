"""What the ledger held at a partition's cut-off (DESIGN §8), as SQL reads.

A partition's assets see the ledger as of its cut-off, never "as it is now", so re-running last
Tuesday reads what last Tuesday read:
- `signals(D)` and `strategy_stats(D)`: every event of the partitions before D (their orders are
  sent after their close, so they are effective by D's close) and the seed cash;
- `fills(D)`, `portfolio(D)`, `daily_report(D)`: the same plus D's own orders;
- the stop watch after D (`stop_levels`, `stop_exits`): everything of D, its stop exits too.
Events carry the partition they belong to (`orders`, `fills`, `cash_events.partition_key`; the
seed has none and is always visible), so a cut-off is a comparison of partition keys. A stop exit
of D (kind `stop`) is sold during the day after D's trading run: D's own assets were valued before
it and never see it; D+1's signals see it like every event of the partitions before D+1.
"""

from dataclasses import dataclass

import pandas as pd
import sqlalchemy as sa

from makenaide_assets.resources.ledger import schema as t
from makenaide_assets.strategy.accounting import positions_frame, replay_positions


@dataclass(frozen=True)
class CutOff:
    """The ledger a partition's asset may read: the partitions before D, and D's own orders too
    when `own_orders` (the trading side: fills, portfolio, daily_report), and D's stop exits too
    when `stop_exits` (the stop watch after D's trading run)."""

    partition_key: str
    own_orders: bool = False
    stop_exits: bool = False

    def admits(self, column: sa.ColumnElement, kind: sa.ColumnElement | None = None) -> sa.ColumnElement[bool]:
        """`column` a partition key; `kind` the row's order kind (or cash event kind), where it has one."""
        if self.stop_exits:
            return column <= self.partition_key
        if not self.own_orders:
            return column < self.partition_key
        own = column == self.partition_key
        if kind is not None:
            own = sa.and_(own, kind != t.STOP)
        return sa.or_(column < self.partition_key, own)

    def describe(self) -> str:
        if self.stop_exits:
            return f"partitions up to {self.partition_key}, its stop exits included"
        which = "with" if self.own_orders else "without"
        return f"partitions up to {self.partition_key} {which} its own orders"


def frame(conn: sa.Connection, query: sa.Select) -> pd.DataFrame:
    result = conn.execute(query)
    return pd.DataFrame(result.all(), columns=list(result.keys()))


# Reconciliation adjustments found while running partition D (DESIGN §8): the account D's signals
# are sized on, so `signals(D)` sees them although it does not see D's own orders.
ADJUSTMENT_KINDS = ("adjustment", "unexplained")


def _cash_visible(cut: CutOff | None) -> sa.ColumnElement[bool]:
    column = t.cash_events.c.partition_key
    if cut is None:
        return sa.true()
    adjustment = sa.and_(t.cash_events.c.kind.in_(ADJUSTMENT_KINDS), column <= cut.partition_key)
    return sa.or_(column.is_(None), cut.admits(column, t.cash_events.c.kind), adjustment)


def cash_krw(conn: sa.Connection, cut: CutOff | None) -> float:
    query = sa.select(sa.func.coalesce(sa.func.sum(t.cash_events.c.amount_krw), 0.0)).where(_cash_visible(cut))
    return float(conn.execute(query).scalar_one())


def cash_history(conn: sa.Connection, cut: CutOff | None) -> pd.DataFrame:
    """Cash events in booking order with the running balance (for the never-negative check)."""
    events = frame(conn, sa.select(t.cash_events).where(_cash_visible(cut)).order_by(t.cash_events.c.id))
    events["balance_krw"] = events["amount_krw"].astype("float64").cumsum()
    return events


def fills(conn: sa.Connection, cut: CutOff | None) -> pd.DataFrame:
    query = sa.select(t.fills).order_by(t.fills.c.id)
    if cut is not None:
        query = query.where(cut.admits(t.fills.c.partition_key, t.fills.c.kind))
    return frame(conn, query)


def open_positions(conn: sa.Connection, cut: CutOff | None) -> pd.DataFrame:
    """Positions replayed from the fills the cut-off admits, with the booking's own arithmetic."""
    return positions_frame(replay_positions(fills(conn, cut).to_dict("records")))


def closed_trades(conn: sa.Connection, cut: CutOff | None) -> pd.DataFrame:
    """Sell fills with their realised P&L, oldest first (the input of the Kelly statistics)."""
    query = sa.select(t.fills).where(t.fills.c.side == "sell").order_by(t.fills.c.executed_at, t.fills.c.id)
    if cut is not None:
        query = query.where(cut.admits(t.fills.c.partition_key, t.fills.c.kind))
    return frame(conn, query)


def equity_history(conn: sa.Connection, cut: CutOff | None) -> pd.DataFrame:
    query = sa.select(t.equity).order_by(t.equity.c.partition_key)
    if cut is not None:
        query = query.where(cut.admits(t.equity.c.partition_key))
    return frame(conn, query)


def orders_of_partition(conn: sa.Connection, partition_key: str | None, kind: str | None = t.DAILY) -> pd.DataFrame:
    """One row per order of `kind` (None: every kind) of the partition, or of every partition for
    None (done ones with their fill; others with the reason)."""
    o, f = t.orders, t.fills
    query = (
        sa.select(
            o.c.identifier,
            o.c.market,
            o.c.side,
            f.c.price,
            f.c.volume,
            f.c.fee,
            f.c.krw_value,
            o.c.status,
            o.c.reason,
            sa.func.coalesce(o.c.error_name + sa.literal(": ") + o.c.error_message, o.c.error_message).label(
                "status_reason"
            ),
            f.c.executed_at,
            f.c.realized_pnl_krw,
            o.c.ref_price,
            o.c.krw_amount.label("requested_krw"),
            o.c.volume.label("requested_volume"),
            o.c.broker,
            o.c.exchange_uuid,
            o.c.partition_key,
            o.c.kind,
            o.c.triggered_at,
        )
        .select_from(o.outerjoin(f, f.c.identifier == o.c.identifier))
        .where(sa.true() if partition_key is None else o.c.partition_key == partition_key)
        .where(sa.true() if kind is None else o.c.kind == kind)
        .order_by(o.c.id)
    )
    orders = frame(conn, query)
    for column in ("price", "volume", "fee", "krw_value", "realized_pnl_krw", "ref_price"):
        orders[column] = orders[column].astype("float64")
    orders["executed_at"] = pd.to_datetime(orders["executed_at"])
    orders["triggered_at"] = pd.to_datetime(orders["triggered_at"])
    return orders


def plan(conn: sa.Connection, partition_key: str) -> list[str] | None:
    """The order identifiers a trading run planned for the partition, or None if none ran."""
    query = sa.select(t.trading_plans.c.identifiers).where(t.trading_plans.c.partition_key == partition_key)
    found = conn.execute(query).scalar()
    return None if found is None else [i for i in str(found).split("\n") if i]


def holdings_outside(conn: sa.Connection) -> dict[str, float]:
    """Coins the account holds beyond Makenaide's positions (reconciliation's holding events)."""
    query = sa.select(t.holding_events.c.currency, sa.func.sum(t.holding_events.c.volume)).group_by(
        t.holding_events.c.currency
    )
    return {str(currency): float(volume) for currency, volume in conn.execute(query)}


def adjustments(conn: sa.Connection, partition_key: str) -> pd.DataFrame:
    """The partition's reconciliation adjustments, cash and coins, with their reasons."""
    cash = sa.select(
        t.cash_events.c.event_key,
        sa.literal("KRW").label("currency"),
        t.cash_events.c.amount_krw.label("amount"),
        (t.cash_events.c.kind == "adjustment").label("explained"),
        t.cash_events.c.reason,
    ).where(t.cash_events.c.kind.in_(ADJUSTMENT_KINDS), t.cash_events.c.partition_key == partition_key)
    coins = sa.select(
        t.holding_events.c.event_key,
        t.holding_events.c.currency,
        t.holding_events.c.volume.label("amount"),
        t.holding_events.c.explained,
        t.holding_events.c.reason,
    ).where(t.holding_events.c.partition_key == partition_key)
    found = frame(conn, sa.union_all(cash, coins))
    found["explained"] = found["explained"].astype(bool)
    return found

"""Tables of the trading ledger (SQLAlchemy Core), portable between SQLite and PostgreSQL."""

import sqlalchemy as sa

metadata = sa.MetaData()

# Order lifecycle. `pending`: intent recorded, the outcome at the exchange is not known yet (a run
# that dies here is resolved by looking the identifier up). `submitted`: the exchange acknowledged
# it. `done`: the fill, position and cash are booked. `rejected`: the exchange (or the paper
# exchange) refused it; the identifier is spent. `failed`: it reached the exchange and ended with
# nothing executed. `skipped`: deliberately never sent (no price, below the minimum, no cash), so a
# re-run may evaluate it again under the same identifier.
PENDING, SUBMITTED, DONE, REJECTED, FAILED, SKIPPED = (
    "pending",
    "submitted",
    "done",
    "rejected",
    "failed",
    "skipped",
)
ORDER_STATUSES = (PENDING, SUBMITTED, DONE, REJECTED, FAILED, SKIPPED)
UNRESOLVED = (PENDING, SUBMITTED)
SIDES = ("buy", "add", "sell")
# `daily`: from a partition's signals, sent after its close. `stop`: a stop-loss, trailing stop or
# take-profit crossed during the day after the partition's trading run (strategy/intraday.py),
# booked under that partition; its fill's cash event has kind `stop` too.
DAILY, STOP = "daily", "stop"
KINDS = (DAILY, STOP)

orders = sa.Table(
    "orders",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("identifier", sa.String(64), nullable=False, unique=True),
    sa.Column("partition_key", sa.String(10), nullable=False, index=True),
    sa.Column("market", sa.String(32), nullable=False),
    sa.Column("side", sa.String(8), nullable=False),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("ref_price", sa.Float),
    sa.Column("krw_amount", sa.Float),
    sa.Column("volume", sa.Float),
    sa.Column("reason", sa.Text),
    sa.Column("broker", sa.String(32), nullable=False),
    sa.Column("exchange_uuid", sa.String(64)),
    sa.Column("error_name", sa.String(64)),
    sa.Column("error_message", sa.Text),
    sa.Column("created_at", sa.DateTime, nullable=False),
    sa.Column("updated_at", sa.DateTime, nullable=False),
    sa.Column("kind", sa.String(8), nullable=False, server_default=DAILY),
    # A stop exit: the start of the candle (or the ticker's time) its level was crossed in.
    sa.Column("triggered_at", sa.DateTime),
    sa.CheckConstraint(f"status IN {ORDER_STATUSES!r}", name="orders_status_known"),
    sa.CheckConstraint(f"side IN {SIDES!r}", name="orders_side_known"),
    sa.CheckConstraint(f"kind IN {KINDS!r}", name="orders_kind_known"),
)

# One fill per order: Upbit market orders execute at once, and several trades of one order are
# booked as their volume-weighted average.
fills = sa.Table(
    "fills",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("identifier", sa.String(64), sa.ForeignKey("orders.identifier"), nullable=False, unique=True),
    sa.Column("partition_key", sa.String(10), nullable=False, index=True),
    sa.Column("market", sa.String(32), nullable=False),
    sa.Column("side", sa.String(8), nullable=False),
    sa.Column("price", sa.Float, nullable=False),
    sa.Column("volume", sa.Float, nullable=False),
    sa.Column("fee", sa.Float, nullable=False),
    sa.Column("krw_value", sa.Float, nullable=False),
    sa.Column("realized_pnl_krw", sa.Float),
    sa.Column("executed_at", sa.DateTime, nullable=False),
    sa.Column("kind", sa.String(8), nullable=False, server_default=DAILY),
)

positions = sa.Table(
    "positions",
    metadata,
    sa.Column("market", sa.String(32), primary_key=True),
    sa.Column("volume", sa.Float, nullable=False),
    sa.Column("avg_price", sa.Float, nullable=False),
    # KRW that left the cash for the volume still held, fees included: the basis of realised P&L.
    sa.Column("cost_krw", sa.Float, nullable=False),
    sa.Column("entries", sa.Integer, nullable=False),
    sa.Column("highest_price", sa.Float, nullable=False),
    sa.Column("opened_partition", sa.String(10), nullable=False),
    sa.Column("last_add_partition", sa.String(10), nullable=False),
    sa.Column("updated_at", sa.DateTime, nullable=False),
)

# Cash is the sum of its events. `event_key` is unique ("seed", "fill:<identifier>"), so a fill or
# the seed can never be booked twice even by two racing runs.
cash_events = sa.Table(
    "cash_events",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("event_key", sa.String(80), nullable=False, unique=True),
    sa.Column("kind", sa.String(16), nullable=False),
    sa.Column("amount_krw", sa.Float, nullable=False),
    sa.Column("partition_key", sa.String(10)),
    sa.Column("created_at", sa.DateTime, nullable=False),
    # Why an adjustment was booked (a deposit, a manual order on Upbit, a difference nobody explained).
    sa.Column("reason", sa.Text),
)

# Coins the account holds beyond Makenaide's own positions (bought or sold outside it), as dated
# events found by reconciling with /v1/accounts: a coin's ledger balance is its position's volume
# plus these. Makenaide never sells them: only positions it opened are managed.
holding_events = sa.Table(
    "holding_events",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("event_key", sa.String(80), nullable=False, unique=True),
    sa.Column("currency", sa.String(16), nullable=False),
    sa.Column("volume", sa.Float, nullable=False),
    sa.Column("kind", sa.String(16), nullable=False),
    sa.Column("reason", sa.Text),
    sa.Column("explained", sa.Boolean, nullable=False),
    sa.Column("partition_key", sa.String(10)),
    sa.Column("created_at", sa.DateTime, nullable=False),
)

# Facts about the ledger itself, e.g. `mode`: a ledger is paper or live for life, never both.
ledger_info = sa.Table(
    "ledger_info",
    metadata,
    sa.Column("key", sa.String(32), primary_key=True),
    sa.Column("value", sa.Text, nullable=False),
    sa.Column("created_at", sa.DateTime, nullable=False),
)

equity = sa.Table(
    "equity",
    metadata,
    sa.Column("partition_key", sa.String(10), primary_key=True),
    sa.Column("cash_krw", sa.Float, nullable=False),
    sa.Column("positions_value_krw", sa.Float, nullable=False),
    sa.Column("equity_krw", sa.Float, nullable=False),
    sa.Column("recorded_at", sa.DateTime, nullable=False),
)

# What each partition's trading run planned: its order identifiers, newline-separated and sorted.
# Written once, before the first order of the partition; a later run of the same partition must
# plan exactly the same orders (a re-run), or it is a conflict and orders nothing.
trading_plans = sa.Table(
    "trading_plans",
    metadata,
    sa.Column("partition_key", sa.String(10), primary_key=True),
    sa.Column("identifiers", sa.Text, nullable=False),
    sa.Column("signal_count", sa.Integer, nullable=False),
    sa.Column("created_at", sa.DateTime, nullable=False),
)

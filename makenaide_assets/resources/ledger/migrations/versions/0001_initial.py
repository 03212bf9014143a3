"""The first schema: ledger tables and the GPT verdict cache, exactly as `create_all` made them.

Frozen here on purpose (no import of schema.py): a revision states what the database looked like
at that point, however the models change later.

Revision ID: 0001_initial
Revises: (none)
"""

from collections.abc import Callable

import sqlalchemy as sa
from alembic import op

revision: str = "0001_initial"
down_revision: str | None = None
branch_labels: str | None = None
depends_on: str | None = None

ORDER_STATUSES = "('pending', 'submitted', 'done', 'rejected', 'failed', 'skipped')"
SIDES = "('buy', 'add', 'sell')"


def _orders() -> None:
    op.create_table(
        "orders",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("identifier", sa.String(64), nullable=False, unique=True),
        sa.Column("partition_key", sa.String(10), nullable=False),
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
        sa.CheckConstraint(f"status IN {ORDER_STATUSES}", name="orders_status_known"),
        sa.CheckConstraint(f"side IN {SIDES}", name="orders_side_known"),
    )
    op.create_index("ix_orders_partition_key", "orders", ["partition_key"])


def _fills() -> None:
    op.create_table(
        "fills",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("identifier", sa.String(64), sa.ForeignKey("orders.identifier"), nullable=False, unique=True),
        sa.Column("partition_key", sa.String(10), nullable=False),
        sa.Column("market", sa.String(32), nullable=False),
        sa.Column("side", sa.String(8), nullable=False),
        sa.Column("price", sa.Float, nullable=False),
        sa.Column("volume", sa.Float, nullable=False),
        sa.Column("fee", sa.Float, nullable=False),
        sa.Column("krw_value", sa.Float, nullable=False),
        sa.Column("realized_pnl_krw", sa.Float),
        sa.Column("executed_at", sa.DateTime, nullable=False),
    )
    op.create_index("ix_fills_partition_key", "fills", ["partition_key"])


def _positions() -> None:
    op.create_table(
        "positions",
        sa.Column("market", sa.String(32), primary_key=True),
        sa.Column("volume", sa.Float, nullable=False),
        sa.Column("avg_price", sa.Float, nullable=False),
        sa.Column("cost_krw", sa.Float, nullable=False),
        sa.Column("entries", sa.Integer, nullable=False),
        sa.Column("highest_price", sa.Float, nullable=False),
        sa.Column("opened_partition", sa.String(10), nullable=False),
        sa.Column("last_add_partition", sa.String(10), nullable=False),
        sa.Column("updated_at", sa.DateTime, nullable=False),
    )


def _cash_events() -> None:
    op.create_table(
        "cash_events",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("event_key", sa.String(80), nullable=False, unique=True),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("amount_krw", sa.Float, nullable=False),
        sa.Column("partition_key", sa.String(10)),
        sa.Column("created_at", sa.DateTime, nullable=False),
    )


def _equity() -> None:
    op.create_table(
        "equity",
        sa.Column("partition_key", sa.String(10), primary_key=True),
        sa.Column("cash_krw", sa.Float, nullable=False),
        sa.Column("positions_value_krw", sa.Float, nullable=False),
        sa.Column("equity_krw", sa.Float, nullable=False),
        sa.Column("recorded_at", sa.DateTime, nullable=False),
    )


def _gpt_verdict_cache() -> None:
    op.create_table(
        "gpt_verdict_cache",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("market", sa.String(32), nullable=False),
        sa.Column("partition_key", sa.String(10), nullable=False),
        sa.Column("model", sa.String(128), nullable=False),
        sa.Column("prompt_hash", sa.String(64), nullable=False),
        sa.Column("payload_hash", sa.String(64), nullable=False),
        sa.Column("status", sa.String(8), nullable=False),
        sa.Column("verdict_json", sa.Text, nullable=True),
        sa.Column("error", sa.Text, nullable=False),
        sa.Column("input_tokens", sa.Integer, nullable=False),
        sa.Column("output_tokens", sa.Integer, nullable=False),
        sa.Column("cost_usd", sa.Float, nullable=False),
        sa.Column("response_id", sa.String(128), nullable=False),
        sa.Column("created_at", sa.DateTime, nullable=False),
    )
    op.create_index(
        "ix_gpt_verdict_cache_key",
        "gpt_verdict_cache",
        ["market", "partition_key", "model", "prompt_hash", "payload_hash"],
    )
    op.create_index("ix_gpt_verdict_cache_partition", "gpt_verdict_cache", ["partition_key"])


# In creation order: fills refers to orders.
TABLES: dict[str, Callable[[], None]] = {
    "orders": _orders,
    "fills": _fills,
    "positions": _positions,
    "cash_events": _cash_events,
    "equity": _equity,
    "gpt_verdict_cache": _gpt_verdict_cache,
}


def upgrade() -> None:
    # A database made before migrations existed already holds some of these tables: the ledger's, the
    # cache's or both, depending on which resource opened it first. They were made by create_all from
    # these very definitions, so they are kept as they are (with their rows) and only the missing ones
    # are created: such a database ends up stamped at this revision, complete.
    existing = set(sa.inspect(op.get_bind()).get_table_names())
    for name, create in TABLES.items():
        if name not in existing:
            create()


def downgrade() -> None:
    for name in reversed(TABLES):
        op.drop_table(name)

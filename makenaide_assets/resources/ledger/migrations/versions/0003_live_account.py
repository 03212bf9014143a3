"""The live account: the ledger's mode, coins held outside Makenaide, and why cash was adjusted.

A live ledger is seeded and reconciled from Upbit's /v1/accounts: each difference becomes a dated
adjustment with its reason (cash_events.reason, holding_events), and a ledger records the mode it
belongs to (ledger_info) so paper and live history never mix (DESIGN §8).

Revision ID: 0003_live_account
Revises: 0002_trading_plans
"""

import sqlalchemy as sa
from alembic import op

revision: str = "0003_live_account"
down_revision: str | None = "0002_trading_plans"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    op.add_column("cash_events", sa.Column("reason", sa.Text))
    op.create_table(
        "holding_events",
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
    op.create_table(
        "ledger_info",
        sa.Column("key", sa.String(32), primary_key=True),
        sa.Column("value", sa.Text, nullable=False),
        sa.Column("created_at", sa.DateTime, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("ledger_info")
    op.drop_table("holding_events")
    with op.batch_alter_table("cash_events") as batch:
        batch.drop_column("reason")

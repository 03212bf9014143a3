"""Trading plans: the order identifiers each partition's trading run planned, recorded once.

A re-run of an old partition whose recomputed signals differ from what was planned for it is then
a visible conflict instead of a new order (DESIGN §8).

Revision ID: 0002_trading_plans
Revises: 0001_initial
"""

import sqlalchemy as sa
from alembic import op

revision: str = "0002_trading_plans"
down_revision: str | None = "0001_initial"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    op.create_table(
        "trading_plans",
        sa.Column("partition_key", sa.String(10), primary_key=True),
        sa.Column("identifiers", sa.Text, nullable=False),
        sa.Column("signal_count", sa.Integer, nullable=False),
        sa.Column("created_at", sa.DateTime, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("trading_plans")

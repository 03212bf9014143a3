"""Stops watched between daily runs: an order's kind, and when a stop exit's level was crossed.

A stop exit of partition P is sold during the day after P's trading run (strategy/intraday.py),
booked under P with kind "stop": P's own fills, portfolio and equity were valued before it and
must stay as they were (DESIGN §8), while P+1's signals see it like every event of the partitions
before P+1. Existing rows are daily orders.

Revision ID: 0004_stop_exits
Revises: 0003_live_account
"""

import sqlalchemy as sa
from alembic import op

revision: str = "0004_stop_exits"
down_revision: str | None = "0003_live_account"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    with op.batch_alter_table("orders") as batch:
        batch.add_column(sa.Column("kind", sa.String(8), nullable=False, server_default="daily"))
        batch.add_column(sa.Column("triggered_at", sa.DateTime))
        batch.create_check_constraint("orders_kind_known", "kind IN ('daily', 'stop')")
    with op.batch_alter_table("fills") as batch:
        batch.add_column(sa.Column("kind", sa.String(8), nullable=False, server_default="daily"))


def downgrade() -> None:
    with op.batch_alter_table("fills") as batch:
        batch.drop_column("kind")
    with op.batch_alter_table("orders") as batch:
        batch.drop_constraint("orders_kind_known", type_="check")
        batch.drop_column("triggered_at")
        batch.drop_column("kind")

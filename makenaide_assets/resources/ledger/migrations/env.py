"""Alembic runs this for every command: migrate on the connection `migrate.upgrade` passes in.

That connection is already inside the transaction holding the schema lock, so Alembic sees an
external transaction and leaves committing to the caller.
"""

import sqlalchemy as sa
from alembic import context

connection: sa.Connection = context.config.attributes["connection"]
context.configure(connection=connection)
with context.begin_transaction():
    context.run_migrations()

"""SQL engines for the ledger and the GPT answer cache: one URL rule, one way to change the schema."""

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import sqlalchemy as sa

from makenaide_assets.settings import sql_url

# Any constant shared by every Makenaide process: it names the schema lock.
_SCHEMA_LOCK_KEY = 0x4D4B4E4C  # "MKNL"


def make_engine(url: str) -> sa.Engine:
    """An engine for `url`; a SQLite file gets its folder made first."""
    parsed = sa.make_url(sql_url(url))
    if parsed.get_backend_name() == "sqlite" and parsed.database not in (None, "", ":memory:"):
        Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
    return sa.create_engine(parsed)


@contextmanager
def schema_transaction(engine: sa.Engine) -> Iterator[sa.Connection]:
    """A transaction in which to migrate the schema (and seed rows) once, however many runs start together.

    Two processes racing through CREATE TABLE collide in PostgreSQL's catalog (a unique
    violation on pg_type); a transaction-scoped advisory lock makes them take turns. SQLite
    serialises writers on its file lock, but Python's sqlite3 opens a transaction only before
    INSERT/UPDATE/DELETE, so DDL would run outside it: BEGIN IMMEDIATE takes the write lock at
    once and keeps the DDL inside the transaction.
    """
    with engine.begin() as conn:
        if conn.dialect.name == "postgresql":
            conn.execute(sa.text("SELECT pg_advisory_xact_lock(:key)"), {"key": _SCHEMA_LOCK_KEY})
        elif conn.dialect.name == "sqlite":
            conn.exec_driver_sql("BEGIN IMMEDIATE")
        yield conn


def shown_url(url: str) -> str:
    """`url` as it may be printed or shown: a PostgreSQL password masked."""
    return sa.make_url(url).render_as_string(hide_password=True)

"""The ledger database's schema (ledger tables and GPT verdict cache) brought to the newest revision.

Alembic driven from code: the revisions live in `migrations/versions`, and there is no alembic.ini.
By hand: `python -m makenaide_assets.resources.ledger.migrations [URL]` (default: MAKENAIDE_LEDGER_URL).
"""

import threading
from pathlib import Path

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory

from makenaide_assets import sql

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"
# Alembic's `context` and `op` are module globals, one migration at a time per process; threads on
# the same database already queue on the schema lock, threads on different ones would not.
_ALEMBIC = threading.Lock()


def alembic_config(connection: sa.Connection | None = None) -> Config:
    """Alembic's configuration: the revisions, and the connection migrations/env.py migrates on."""
    config = Config()
    # The value goes through ConfigParser, which would read a "%" in the install path as interpolation.
    config.set_main_option("script_location", str(MIGRATIONS_DIR).replace("%", "%%"))
    if connection is not None:
        config.attributes["connection"] = connection
    return config


def head_revision() -> str | None:
    return ScriptDirectory.from_config(alembic_config()).get_current_head()


def upgrade(engine: sa.Engine) -> None:
    """`alembic upgrade head`, in one transaction holding the schema lock.

    Runs that open a new database together take turns: the first migrates and commits, the next
    finds the head already there. A database made before migrations existed (tables, no
    alembic_version) is taken over by revision 0001_initial, which keeps the tables it finds and
    their rows, creates the missing ones, and so stamps it; later revisions then apply as usual.
    """
    with _ALEMBIC, sql.schema_transaction(engine) as conn:
        command.upgrade(alembic_config(conn), "head")


def current_revision(engine: sa.Engine) -> str | None:
    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()

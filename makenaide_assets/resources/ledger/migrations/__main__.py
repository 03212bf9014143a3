"""`python -m makenaide_assets.resources.ledger.migrations [URL]`: upgrade a ledger database by hand.

Runs themselves upgrade on first use; this is for doing it ahead of a deployment, or checking
where a database stands. It lives here rather than in migrate.py, which the ledger package
imports, because `python -m` warns about running a module already imported by its package.
"""

import argparse

import sqlalchemy as sa

from makenaide_assets import settings, sql
from makenaide_assets.resources.ledger import migrate


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Upgrade the ledger database to the newest schema revision.")
    parser.add_argument(
        "url", nargs="?", help="SQLAlchemy URL (default: MAKENAIDE_LEDGER_URL, else the mode's file under var/)"
    )
    url = parser.parse_args(argv).url or settings.ledger_url()
    try:
        shown = sql.shown_url(url)
    except sa.exc.ArgumentError:
        # SQLAlchemy's message would quote the URL, password and all.
        parser.error("the URL is not a SQLAlchemy URL (not shown: it may hold a password)")
    engine = sql.make_engine(url)
    try:
        before = migrate.current_revision(engine)
        migrate.upgrade(engine)
        print(f"{shown}: {before or 'no revision'} -> {migrate.current_revision(engine)}")
    finally:
        engine.dispose()


if __name__ == "__main__":
    main()

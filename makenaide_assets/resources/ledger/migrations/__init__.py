"""Alembic environment of the ledger database (ledger tables and the GPT verdict cache).

Run through `makenaide_assets.resources.ledger.migrate`, never with the `alembic` command: there is
no alembic.ini, the configuration is built in code.
"""

"""Revisions of the ledger database, oldest first; every schema change is a new one."""

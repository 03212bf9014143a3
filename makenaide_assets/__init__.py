"""Makenaide: an Upbit KRW trading pipeline as a Dagster asset graph."""

"""Makenaide: an Upbit KRW trading pipeline as a Dagster asset graph.

Importing the package imports nothing else: `makenaide_assets.strategy` stays usable without
Dagster (see README, "How the code is laid out").
"""

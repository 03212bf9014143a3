"""Backtests: the real assets run over a range of partitions in a sandbox, and the `backtest_report` asset."""

"""The live rehearsal: live mode end to end against the local Upbit exchange, with faults injected.

    python -m makenaide_assets.rehearsal --replay-dir DIR --start D1 --end D2 --seed N \\
        --fault-rate R --manual-events M --out FILE.json

Before real money, the live path runs here exactly as it will run for real — `MAKENAIDE_MODE=live`,
the real `UpbitBroker` and HTTP client, the real jobs and `signals_sensor` through the one day
runner — against `makenaide_assets.testing`'s Upbit (quotation and exchange on one simulated
clock, Upbit's JWT checks and errors, seeded faults) and a person's manual deposits, withdrawals
and trades. Every day the invariants of DESIGN §8 are asserted (invariants.py); the JSON report
puts the exchange and the ledger side by side, and the exit code is non-zero when one fails.
"""

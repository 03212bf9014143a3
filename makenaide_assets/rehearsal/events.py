"""A person's hand on the account: deposits, withdrawals and trades made outside Makenaide.

Seeded, so a rehearsal is repeatable. Each event is applied before a day's run, and the
reconciliation of that run must explain it (DESIGN §8). Manual sells only sell coins bought by
hand: selling Makenaide's own positions by hand is the operator's business, and the rehearsal
does not pretend to know what Makenaide should then do with the rest of them.
"""

import random
from dataclasses import dataclass

KINDS = ("deposit", "withdrawal", "manual_buy", "manual_sell")


@dataclass(frozen=True)
class ManualEvent:
    day: str  # applied before this partition's run (at 00:02 UTC of the next day)
    kind: str
    market: str | None = None
    krw: float | None = None
    fraction: float | None = None  # withdrawals and manual sells: a share of what is held


def plan_events(days: list[str], count: int, markets: list[str], seed: int) -> list[ManualEvent]:
    """`count` events on days after the first (the first day opens the ledger), in day order."""
    if count <= 0 or len(days) < 2:
        return []
    rng = random.Random(f"manual-events:{seed}")
    chosen = sorted(rng.choices(days[1:], k=count))
    events = []
    for day in chosen:
        kind = rng.choice(KINDS)
        if kind == "deposit":
            events.append(ManualEvent(day, kind, krw=float(rng.randrange(100_000, 2_000_000, 10_000))))
        elif kind == "withdrawal":
            events.append(ManualEvent(day, kind, fraction=rng.uniform(0.01, 0.05)))
        elif kind == "manual_buy":
            events.append(
                ManualEvent(day, kind, market=rng.choice(markets), krw=float(rng.randrange(50_000, 500_000, 10_000)))
            )
        else:
            events.append(ManualEvent(day, kind, fraction=rng.uniform(0.3, 1.0)))
    return events

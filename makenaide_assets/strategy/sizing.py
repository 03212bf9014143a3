"""Position sizing: the Kelly criterion, halved and capped, turned into KRW amounts.

Full Kelly maximises long-run growth only if the win rate and payoff ratio are exactly right;
they are estimates, and over-betting costs far more than under-betting, hence half-Kelly and a
hard per-position cap (the seeds: Kelly sizing, with position size limited).
"""

import math
from collections.abc import Mapping
from dataclasses import dataclass

# No configuration may put more than this share of equity into one position, whatever the
# estimates say: the blocking check on `signals` holds every row to it.
MAX_POSITION_FRACTION_LIMIT = 0.25
# The sizing defaults, one definition each (position_fraction, PlanParams and the `signals` config).
KELLY_MULTIPLIER = 0.5  # half-Kelly: the estimates are estimates
MAX_POSITION_FRACTION = 0.10  # the seeds: position size limited; at most 10 % of equity per position


@dataclass(frozen=True)
class KellyInputs:
    """The estimates Kelly sizing rests on, and where they came from.

    `source` is "configured" for hand-set defaults; a backtest-derived source names itself so a
    reader of `signals` can tell guesses from measurements.
    """

    win_rate: float
    payoff_ratio: float
    source: str = "configured"

    def __post_init__(self) -> None:
        if not 0.0 <= self.win_rate <= 1.0 or math.isnan(self.win_rate):
            raise ValueError(f"win_rate must be within [0, 1], got {self.win_rate}")
        if not self.payoff_ratio > 0.0 or math.isinf(self.payoff_ratio):
            raise ValueError(f"payoff_ratio must be a positive finite number, got {self.payoff_ratio}")
        if not self.source:
            raise ValueError("source must name where the estimates came from")


def kelly_fraction(win_rate: float, payoff_ratio: float) -> float:
    """Full Kelly f* = W - (1 - W) / R, floored at 0: a strategy without an edge gets no money."""
    inputs = KellyInputs(win_rate, payoff_ratio)
    return max(0.0, inputs.win_rate - (1.0 - inputs.win_rate) / inputs.payoff_ratio)


def position_fraction(
    win_rate: float,
    payoff_ratio: float,
    *,
    kelly_multiplier: float = KELLY_MULTIPLIER,
    max_position_fraction: float = MAX_POSITION_FRACTION,
) -> float:
    """Share of equity for one new position: Kelly × multiplier (half-Kelly), capped."""
    if not 0.0 <= kelly_multiplier <= 1.0:
        raise ValueError(f"kelly_multiplier must be within [0, 1], got {kelly_multiplier}")
    if not 0.0 <= max_position_fraction <= MAX_POSITION_FRACTION_LIMIT:
        raise ValueError(
            f"max_position_fraction must be within [0, {MAX_POSITION_FRACTION_LIMIT}], got {max_position_fraction}"
        )
    return min(kelly_fraction(win_rate, payoff_ratio) * kelly_multiplier, max_position_fraction)


def position_krw(equity_krw: float, fraction: float) -> float:
    """Whole KRW to commit: Upbit takes integer KRW amounts for market buys."""
    if equity_krw <= 0 or fraction <= 0:
        return 0.0
    return float(math.floor(equity_krw * fraction))


def fit_to_budget(
    requested_krw: float, budgets_krw: Mapping[str, float], *, min_order_krw: float
) -> tuple[float, str | None]:
    """Scale an order down to its tightest budget; drop it when what is left is below the minimum.

    Returns (amount, note): note is None when the order stands whole, says which budget scaled it
    down, or (with amount 0) why it was dropped. A scaled-down order keeps its place in the queue:
    spending what is left on the best-ranked idea beats saving it for a worse one.
    """
    if requested_krw < min_order_krw:
        return 0.0, f"size {requested_krw:,.0f} KRW is below the {min_order_krw:,.0f} KRW minimum order"
    name, room = min(budgets_krw.items(), key=lambda item: item[1], default=("", requested_krw))
    amount = float(math.floor(min(requested_krw, max(room, 0.0))))
    if amount >= requested_krw:
        return float(math.floor(requested_krw)), None
    if amount < min_order_krw:
        return 0.0, f"{name} left: {max(room, 0.0):,.0f} KRW, below the {min_order_krw:,.0f} KRW minimum order"
    return amount, f"scaled down from {requested_krw:,.0f} KRW to fit {name}"

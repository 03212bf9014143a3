import math

import pytest

from makenaide_assets.strategy.sizing import (
    MAX_POSITION_FRACTION_LIMIT,
    KellyInputs,
    fit_to_budget,
    kelly_fraction,
    position_fraction,
    position_krw,
)


@pytest.mark.parametrize(
    ("win_rate", "payoff", "expected"),
    [
        (0.45, 2.0, 0.175),  # the configured defaults: 0.45 - 0.55 / 2
        (0.5, 1.0, 0.0),  # a coin flip at even odds has no edge
        (0.6, 1.0, 0.2),
        (0.3, 2.0, 0.0),  # negative edge (-0.05) is floored: never bet against yourself
        (1.0, 3.0, 1.0),
        (0.0, 5.0, 0.0),
        (0.55, 1.5, 0.55 - 0.45 / 1.5),
    ],
)
def test_kelly_fraction(win_rate: float, payoff: float, expected: float) -> None:
    assert kelly_fraction(win_rate, payoff) == pytest.approx(expected)


@pytest.mark.parametrize(
    ("win_rate", "payoff"),
    [(-0.1, 2.0), (1.1, 2.0), (math.nan, 2.0), (0.5, 0.0), (0.5, -1.0), (0.5, math.inf), (0.5, math.nan)],
)
def test_kelly_rejects_impossible_estimates(win_rate: float, payoff: float) -> None:
    with pytest.raises(ValueError):
        kelly_fraction(win_rate, payoff)


@pytest.mark.parametrize(
    ("win_rate", "payoff", "multiplier", "cap", "expected"),
    [
        (0.45, 2.0, 0.5, 0.10, 0.0875),  # half-Kelly under the cap
        (0.45, 2.0, 1.0, 0.10, 0.10),  # full Kelly 0.175 is capped
        (0.7, 3.0, 0.5, 0.10, 0.10),
        (0.3, 2.0, 0.5, 0.10, 0.0),
        (0.45, 2.0, 0.5, 0.05, 0.05),
    ],
)
def test_position_fraction_is_half_kelly_capped(
    win_rate: float, payoff: float, multiplier: float, cap: float, expected: float
) -> None:
    got = position_fraction(win_rate, payoff, kelly_multiplier=multiplier, max_position_fraction=cap)
    assert got == pytest.approx(expected)


def test_position_fraction_refuses_a_cap_above_the_hard_limit() -> None:
    with pytest.raises(ValueError, match="max_position_fraction"):
        position_fraction(0.45, 2.0, max_position_fraction=MAX_POSITION_FRACTION_LIMIT + 0.01)


def test_kelly_inputs_name_their_source() -> None:
    assert KellyInputs(0.45, 2.0).source == "configured"
    with pytest.raises(ValueError, match="source"):
        KellyInputs(0.45, 2.0, source="")


@pytest.mark.parametrize(
    ("equity", "fraction", "expected"),
    [(10_000_000, 0.0875, 875_000.0), (1_234_567, 0.1, 123_456.0), (0, 0.1, 0.0), (-5, 0.1, 0.0), (1e6, 0.0, 0.0)],
)
def test_position_krw_is_whole_krw(equity: float, fraction: float, expected: float) -> None:
    assert position_krw(equity, fraction) == expected


@pytest.mark.parametrize(
    ("requested", "budgets", "amount", "note"),
    [
        (100_000, {"cash": 500_000, "exposure cap": 300_000}, 100_000, None),
        (100_000, {"cash": 60_000.7, "exposure cap": 300_000}, 60_000, "scaled down from 100,000 KRW to fit cash"),
        (100_000, {"cash": 500_000, "exposure cap": 7_000}, 7_000, "scaled down from 100,000 KRW to fit exposure cap"),
        (100_000, {"cash": 4_999, "exposure cap": 300_000}, 0, "cash left: 4,999 KRW, below the 5,000 KRW minimum"),
        (100_000, {"cash": -10, "exposure cap": 300_000}, 0, "cash left: 0 KRW"),
        (4_000, {"cash": 500_000}, 0, "size 4,000 KRW is below the 5,000 KRW minimum"),
        (5_000, {}, 5_000, None),
    ],
)
def test_fit_to_budget(requested: float, budgets: dict[str, float], amount: float, note: str | None) -> None:
    got_amount, got_note = fit_to_budget(requested, budgets, min_order_krw=5_000)
    assert got_amount == amount
    if note is None:
        assert got_note is None
    else:
        assert got_note is not None and got_note.startswith(note)

import inspect
import math
from collections.abc import Callable

import pytest

from makenaide_assets.strategy.exits import (
    ExitParams,
    exit_reasons,
    stop_loss_hit,
    stop_loss_price,
    take_profit_hit,
    take_profit_price,
    trailing_stop_hit,
    trailing_stop_price,
    trend_broken,
)


@pytest.mark.parametrize(
    ("close", "avg", "pct", "hit"),
    [
        (92.0, 100.0, 0.08, True),  # exactly -8% is a stop
        (92.01, 100.0, 0.08, False),
        (80.0, 100.0, 0.08, True),
        (93.0, 100.0, 0.07, True),  # the seeds' -7% end of the range
        (93.1, 100.0, 0.07, False),
    ],
)
def test_stop_loss(close: float, avg: float, pct: float, hit: bool) -> None:
    assert stop_loss_hit(close, avg, pct) is hit


def test_stop_loss_default_is_minus_eight_percent() -> None:
    assert stop_loss_price(50_000.0) == pytest.approx(46_000.0)
    with pytest.raises(ValueError):
        stop_loss_price(100.0, 0.0)


@pytest.mark.parametrize(
    ("close", "highest", "atr", "multiple", "pct", "hit"),
    [
        (130.0, 150.0, 5.0, 3.0, 0.10, True),  # ATR stop 150 - 15 = 135
        (136.0, 150.0, 5.0, 3.0, 0.10, False),
        (135.0, 150.0, 5.0, 3.0, 0.10, True),
        (136.0, 150.0, math.nan, 3.0, 0.10, False),  # no ATR: 10% below 150 = 135
        (134.0, 150.0, None, 3.0, 0.10, True),
        (140.0, 150.0, 2.0, 4.0, 0.10, True),  # 150 - 8 = 142
        (160.0, 150.0, 5.0, 3.0, 0.10, False),  # the close is the new high: stop moves up to 145
    ],
)
def test_trailing_stop(close: float, highest: float, atr: float | None, multiple: float, pct: float, hit: bool) -> None:
    assert trailing_stop_hit(close, highest, atr, atr_multiple=multiple, trail_pct=pct) is hit


def test_trailing_stop_price_prefers_atr() -> None:
    assert trailing_stop_price(200.0, 10.0, atr_multiple=2.0) == 180.0
    assert trailing_stop_price(200.0, None, trail_pct=0.05) == 190.0
    assert trailing_stop_price(200.0, 0.0, trail_pct=0.05) == 190.0  # a zero ATR is unknown, not zero risk


@pytest.mark.parametrize(
    ("close", "avg", "pct", "hit"),
    [(125.0, 100.0, 0.25, True), (124.9, 100.0, 0.25, False), (120.0, 100.0, 0.20, True), (90.0, 100.0, 0.25, False)],
)
def test_take_profit(close: float, avg: float, pct: float, hit: bool) -> None:
    assert take_profit_hit(close, avg, pct) is hit
    assert take_profit_price(avg, pct) == pytest.approx(avg * (1 + pct))


@pytest.mark.parametrize(
    ("close", "ma", "tolerance", "broken"),
    [
        (99.0, 100.0, 0.0, True),
        (100.0, 100.0, 0.0, False),
        (101.0, 100.0, 0.0, False),
        (99.0, 100.0, 0.02, False),  # within the tolerance band
        (97.0, 100.0, 0.02, True),
        (50.0, math.nan, 0.0, False),  # no MA (short history) is no evidence of a break
        (50.0, None, 0.0, False),
    ],
)
def test_trend_break(close: float, ma: float | None, tolerance: float, broken: bool) -> None:
    assert trend_broken(close, ma, tolerance) is broken


def test_exit_reasons_lists_every_rule_that_fires_most_protective_first() -> None:
    # avg 100, high 120, close 90: stop-loss (-10%), trailing (120 - 3×5 = 105) and MA break all fire.
    reasons = exit_reasons(90.0, 100.0, 120.0, 5.0, 95.0, ExitParams())
    assert [r.split(":")[0] for r in reasons] == ["stop-loss", "trailing stop", "trend break"]


def test_exit_reasons_empty_for_a_healthy_position() -> None:
    assert exit_reasons(110.0, 100.0, 112.0, 3.0, 100.0) == []


def test_exit_reasons_take_profit_alone() -> None:
    reasons = exit_reasons(130.0, 100.0, 130.0, 4.0, 110.0, ExitParams(take_profit_pct=0.25))
    assert len(reasons) == 1 and reasons[0].startswith("take-profit")


@pytest.mark.parametrize(
    ("rule", "parameter"),
    [
        (stop_loss_price, "stop_loss_pct"),
        (stop_loss_hit, "stop_loss_pct"),
        (trailing_stop_price, "atr_multiple"),
        (trailing_stop_price, "trail_pct"),
        (trailing_stop_hit, "atr_multiple"),
        (trailing_stop_hit, "trail_pct"),
        (take_profit_price, "take_profit_pct"),
        (take_profit_hit, "take_profit_pct"),
    ],
)
def test_a_rule_called_alone_uses_the_same_default_as_exit_params(rule: Callable, parameter: str) -> None:
    assert inspect.signature(rule).parameters[parameter].default == getattr(ExitParams(), parameter)

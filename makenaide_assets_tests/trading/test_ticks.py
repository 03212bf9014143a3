"""Upbit's KRW price units (table in force since 2025-07-31) and volume precision."""

import pytest

from makenaide_assets.strategy.ticks import api_number, is_on_tick, round_price_to_tick, round_volume, tick_size


@pytest.mark.parametrize(
    ("price", "tick"),
    [
        (150_000_000, 1000),
        (1_500_000, 1000),  # 500 before 2025-07-31
        (999_999, 500),
        (250_000, 100),
        (75_000, 50),
        (49_999, 10),
        (9_999, 5),
        (4_999, 1),
        (100, 1),
        (99.99, 0.1),
        (5.5, 0.01),
        (0.5, 0.001),
        (0.05, 0.0001),
        (0.005, 0.00001),
        (0.0005, 0.000001),
        (0.00005, 0.0000001),
        (0.000005, 0.00000001),
    ],
)
def test_tick_size_by_price_band(price: float, tick: float) -> None:
    assert tick_size(price) == pytest.approx(tick, rel=1e-12)


@pytest.mark.parametrize(
    ("price", "side", "expected"),
    [
        (41_241_234, "buy", 41_241_000),
        (41_241_234, "sell", 41_242_000),
        (2_584_582.0, "add", 2_584_000),
        (1_584_582.0, "add", 1_584_000),
        (584_582.0, "add", 584_500),
        (9_998, "buy", 9_995),
        (9_998, "sell", 10_000),  # up into the next band, still on its tick
        (0.12345, "buy", 0.123),
        (0.12345, "sell", 0.124),
        (123.0, "buy", 123.0),  # already on the tick: unchanged either way
        (123.0, "sell", 123.0),
    ],
)
def test_rounding_never_works_against_us(price: float, side: str, expected: float) -> None:
    rounded = round_price_to_tick(price, side)  # type: ignore[arg-type]
    assert rounded == pytest.approx(expected, rel=1e-12)
    assert is_on_tick(rounded)


def test_bad_inputs_are_refused() -> None:
    with pytest.raises(ValueError, match="positive"):
        tick_size(0)
    with pytest.raises(ValueError, match="side"):
        round_price_to_tick(100.0, "short")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="finite"):
        tick_size(float("nan"))


def test_volume_is_floored_to_eight_decimals_and_printed_plainly() -> None:
    assert round_volume(0.123456789) == 0.12345678
    assert round_volume(3.480254069) == 3.48025406
    assert api_number(0.00001) == "0.00001"  # str(1e-05) would be rejected by Upbit
    assert api_number(1_000_000.0, 0) == "1000000"
    assert api_number(999_999.99, 0) == "999999"
    assert api_number(0.12345678) == "0.12345678"


def test_round_volume_ignores_float_noise_of_summed_fills() -> None:
    from makenaide_assets.strategy.ticks import round_volume

    held = 0.00913895 + 0.00433082 + 0.00404112
    assert held == 0.017510889999999998
    assert round_volume(held) == 0.01751089
    assert round_volume(0.123456789) == 0.12345678

"""Upbit's KRW price units (table in force since 2025-07-31) and volume precision."""

import pytest

from makenaide_assets.strategy.ticks import api_number, round_price_to_tick, round_volume


@pytest.mark.parametrize(
    ("price", "tick"),
    [
        (150_001_234, 1000),
        (1_501_234, 1000),  # 500 before 2025-07-31
        (999_777, 500),
        (250_123, 100),
        (75_033, 50),
        (49_997, 10),
        (9_998, 5),
        (4_999.5, 1),
        (100.5, 1),
        (99.99, 0.1),
        (5.555, 0.01),
        (0.5555, 0.001),
        (0.05555, 0.0001),
        (0.005555, 0.00001),
        (0.0005555, 0.000001),
        (0.00005555, 0.0000001),
        (0.000005555, 0.00000001),
    ],
)
def test_each_band_rounds_to_its_own_tick(price: float, tick: float) -> None:
    # Each price lies between two multiples of its band's tick and on no multiple of a coarser one,
    # so the buy and sell roundings are exactly one tick apart only with the right tick.
    buy, sell = round_price_to_tick(price, "buy"), round_price_to_tick(price, "sell")
    assert buy < price < sell
    assert sell - buy == pytest.approx(tick, rel=1e-9)


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
    # On a tick: rounding it again, either way, leaves it where it is.
    assert round_price_to_tick(rounded, "buy") == rounded == round_price_to_tick(rounded, "sell")


def test_bad_inputs_are_refused() -> None:
    with pytest.raises(ValueError, match="positive"):
        round_price_to_tick(0, "buy")
    with pytest.raises(ValueError, match="side"):
        round_price_to_tick(100.0, "short")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="finite"):
        round_price_to_tick(float("nan"), "sell")


def test_volume_is_floored_to_eight_decimals_and_printed_plainly() -> None:
    assert round_volume(0.123456789) == 0.12345678
    assert round_volume(3.480254069) == 3.48025406
    assert api_number(0.00001) == "0.00001"  # str(1e-05) would be rejected by Upbit
    assert api_number(1_000_000.0, 0) == "1000000"
    assert api_number(999_999.99, 0) == "999999"
    assert api_number(0.12345678) == "0.12345678"


def test_round_volume_ignores_float_noise_of_summed_fills() -> None:
    held = 0.00913895 + 0.00433082 + 0.00404112
    assert held == 0.017510889999999998
    assert round_volume(held) == 0.01751089
    assert round_volume(0.123456789) == 0.12345678

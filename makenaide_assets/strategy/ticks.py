"""Upbit KRW-market price units (tick sizes), volume precision and the minimum order."""

from decimal import ROUND_CEILING, ROUND_FLOOR, Decimal
from typing import Literal

Side = Literal["buy", "add", "sell"]

# Upbit's KRW table in force since 2025-07-31 (changelog `krw_tick_unit_change_250731`; guide
# "원화(KRW) 마켓 주문 가격 단위"): (lower bound inclusive, tick). It coarsened 1,000,000-2,000,000
# and 10,000-100,000 and made every band below 100 KRW ten times finer than the 2024-01-29 table
# (which had introduced the sub-1-KRW ticks). Upbit's GET /v1/orderbook/instruments is the
# authority per market; USDT/USDC-KRW had their own 1,000-10,000 band, which this table ignores.
KRW_TICK_TABLE: tuple[tuple[Decimal, Decimal], ...] = tuple(
    (Decimal(lower), Decimal(tick))
    for lower, tick in (
        ("2000000", "1000"),
        ("1000000", "1000"),
        ("500000", "500"),
        ("100000", "100"),
        ("50000", "50"),
        ("10000", "10"),
        ("5000", "5"),
        ("1000", "1"),
        ("100", "1"),
        ("10", "0.1"),
        ("1", "0.01"),
        ("0.1", "0.001"),
        ("0.01", "0.0001"),
        ("0.001", "0.00001"),
        ("0.0001", "0.000001"),
        ("0.00001", "0.0000001"),
        ("0", "0.00000001"),
    )
)

# Upbit's volume precision, and the smallest KRW order it accepts (DESIGN §7).
VOLUME_DECIMALS = 8
MIN_ORDER_KRW = 5_000.0
FEE_RATE = 0.0005  # Upbit KRW market, per side (DESIGN §7), added on top of a buy's KRW amount


def _decimal(value: float | str | Decimal) -> Decimal:
    # Through str so that 0.1 stays 0.1 instead of its binary expansion.
    result = value if isinstance(value, Decimal) else Decimal(str(value))
    if not result.is_finite():
        raise ValueError(f"not a finite number: {value!r}")
    return result


def _tick(price: Decimal) -> Decimal:
    """The KRW price unit for an asset trading at `price`."""
    if price <= 0:
        raise ValueError(f"price must be positive, got {price}")
    for lower, tick in KRW_TICK_TABLE:
        if price >= lower:
            return tick
    raise AssertionError("the table ends at 0, so every positive price has a tick")


def round_price_to_tick(price: float | str | Decimal, side: Side) -> float:
    """The nearest valid price that does not work against us.

    A buy is rounded down (never pay more than decided), a sell up (never sell cheaper). Band
    boundaries are multiples of the coarser tick, so the result is valid in its own band.
    """
    value = _decimal(price)
    tick = _tick(value)
    if side in ("buy", "add"):
        rounding = ROUND_FLOOR
    elif side == "sell":
        rounding = ROUND_CEILING
    else:
        raise ValueError(f"side must be buy, add or sell, got {side!r}")
    steps = (value / tick).to_integral_value(rounding=rounding)
    return float(steps * tick)


def round_volume(volume: float | str | Decimal) -> float:
    """Floor to Upbit's 8 decimals: never more than can be paid for or is held.

    A float sum of fills carries binary noise (0.00913895 + 0.00433082 + 0.00404112 is
    0.017510889999999998): flooring that as is left 1e-8 of a coin held forever, blocking later
    buys and a position slot. Rounding to 12 decimals first removes the noise, not real volume.
    """
    value = _decimal(round(volume, 12) if isinstance(volume, float) else volume)
    if value < 0:
        raise ValueError(f"volume must not be negative, got {volume}")
    return float(value.quantize(Decimal(1).scaleb(-VOLUME_DECIMALS), rounding=ROUND_FLOOR))


def api_number(value: float | str | Decimal, decimals: int = VOLUME_DECIMALS) -> str:
    """A number as Upbit's API wants it: plain decimal notation, no exponent, no trailing zeros.

    Floored at `decimals`, so a KRW amount or a volume is never rounded up past what was decided.
    """
    quantised = _decimal(value).quantize(Decimal(1).scaleb(-decimals), rounding=ROUND_FLOOR)
    text = format(quantised, "f")
    return text.rstrip("0").rstrip(".") if "." in text else text

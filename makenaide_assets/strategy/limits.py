"""Trading limits: what may be bought, how much, and when nothing new may be bought at all.

Two levels, one set of numbers (`Limits`):
- the book (`buys_halted`): no new buy once equity fell `daily_loss_pct` since the previous
  close, or sits `drawdown_halt_pct` below its peak, or the operator's halt switch is on. Sells
  are never stopped by these: a falling book must still be able to exit. Only a hard halt
  (`halt="all"`) stops sells too;
- each order (`cap_buy`, `outside_band`): KRW per order, KRW bought per day, the cash the
  account (or ledger) has, and a price band against the live quote for market orders.
Pure and without Dagster: `signals` applies the book's limits, every broker the order limits.
"""

from dataclasses import dataclass

import pandas as pd

HALT_BUYS, HALT_ALL = "buys", "all"
HALTS = ("", HALT_BUYS, HALT_ALL)


@dataclass(frozen=True)
class Limits:
    max_krw_per_order: float | None = None
    max_krw_per_day: float | None = None
    daily_loss_pct: float | None = None
    drawdown_halt_pct: float | None = None
    price_band_pct: float | None = None
    halt: str = ""  # "", "buys" (sells still go out) or "all" (nothing goes out)

    def __post_init__(self) -> None:
        if self.halt not in HALTS:
            raise ValueError(f"halt must be one of {HALTS}, got {self.halt!r}")
        for name in ("max_krw_per_order", "max_krw_per_day", "daily_loss_pct", "drawdown_halt_pct", "price_band_pct"):
            value = getattr(self, name)
            if value is not None and not value > 0:
                raise ValueError(f"{name} must be positive or None (no limit), got {value!r}")


@dataclass(frozen=True)
class Refusal:
    name: str
    reason: str


def buys_halted(limits: Limits, equity_krw: float, recorded_equity: list[float]) -> Refusal | None:
    """Why no new buy may go out today, or None. `recorded_equity`: the equity of the closes
    before today, oldest first (the previous close is the last)."""
    if limits.halt:
        return Refusal("operator_halt", f"MAKENAIDE_HALT={limits.halt}: the operator stopped new buys")
    if recorded_equity and limits.daily_loss_pct is not None:
        previous = recorded_equity[-1]
        fell = (previous - equity_krw) / previous * 100 if previous > 0 else 0.0
        if fell >= limits.daily_loss_pct:
            return Refusal(
                "daily_loss_limit",
                f"equity {equity_krw:,.0f} KRW is {fell:.1f} % below the previous close ({previous:,.0f}); "
                f"the limit is {limits.daily_loss_pct:g} %",
            )
    if recorded_equity and limits.drawdown_halt_pct is not None:
        peak = max(max(recorded_equity), equity_krw)
        down = (peak - equity_krw) / peak * 100 if peak > 0 else 0.0
        if down >= limits.drawdown_halt_pct:
            return Refusal(
                "drawdown_halt",
                f"equity {equity_krw:,.0f} KRW is {down:.1f} % below its peak ({peak:,.0f}); "
                f"the halt is at {limits.drawdown_halt_pct:g} %",
            )
    return None


def sells_halted(limits: Limits) -> Refusal | None:
    if limits.halt == HALT_ALL:
        return Refusal("operator_halt", "MAKENAIDE_HALT=all: the operator stopped every order, sells included")
    return None


@dataclass(frozen=True)
class CappedBuy:
    krw: float
    note: str | None  # why it is smaller than asked, if it is
    binding: str | None  # the last cap that bound: "per_order", "per_day" or "cash"


def cap_buy(limits: Limits, krw: float, bought_today_krw: float, cash_krw: float, fee_rate: float) -> CappedBuy:
    """The KRW a buy may spend: asked, then capped per order, per day and by the cash (fee on top)."""
    allowed, notes, binding = krw, [], None
    if limits.max_krw_per_order is not None and allowed > limits.max_krw_per_order:
        allowed, binding = limits.max_krw_per_order, "per_order"
        notes.append(f"capped at {limits.max_krw_per_order:,.0f} KRW per order")
    if limits.max_krw_per_day is not None:
        left = max(limits.max_krw_per_day - bought_today_krw, 0.0)
        if allowed > left:
            allowed, binding = left, "per_day"
            notes.append(f"{bought_today_krw:,.0f} of {limits.max_krw_per_day:,.0f} KRW per day already bought")
    affordable = max(cash_krw, 0.0) / (1 + fee_rate)
    if allowed > affordable:
        allowed, binding = affordable, "cash"
        notes.append(f"the cash ({cash_krw:,.0f} KRW) pays {affordable:,.0f} KRW with the fee")
    allowed = float(int(allowed))  # whole KRW: Upbit's market buy amount
    note = f"buy of {krw:,.0f} KRW reduced to {allowed:,.0f}: " + "; ".join(notes) if notes else None
    return CappedBuy(allowed, note, binding)


def outside_band(limits: Limits, signal_price: float | None, quote: float | None) -> Refusal | None:
    """A market order is refused when the live quote moved more than the band from the signal's price."""
    if limits.price_band_pct is None or not signal_price or not quote:
        return None
    moved = abs(quote - signal_price) / signal_price * 100
    if moved > limits.price_band_pct:
        return Refusal(
            "outside_price_band",
            f"the quote {quote:,.8g} is {moved:.1f} % from the signal's {signal_price:,.8g}; "
            f"the band is {limits.price_band_pct:g} %",
        )
    return None


def without_buys(orders: pd.DataFrame, rejected: pd.DataFrame, refusal: Refusal) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The day's orders with every buy and add moved to the rejected list, with the reason; sells stay."""
    entries = orders["side"].isin(["buy", "add"])
    held = orders.loc[entries, ["market", "side"]].assign(reason=f"{refusal.name}: {refusal.reason}")
    return orders[~entries].reset_index(drop=True), pd.concat([rejected, held], ignore_index=True)

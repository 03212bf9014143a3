"""Where a held position stands against its exits: the levels `signals`' exit rules judge a close
against (exits.py), and what the position is worth at a close. For operator tools
(`python -m makenaide_assets.status`): the same functions and parameters the planner uses, so a
level shown is the level that sells.
"""

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import pandas as pd

from makenaide_assets.strategy.exits import (
    ExitParams,
    exit_reasons,
    stop_loss_price,
    take_profit_price,
    trailing_stop_price,
)
from makenaide_assets.strategy.numbers import finite
from makenaide_assets.strategy.reconcile import KRW, currency_of

# Volumes are 8-decimal on Upbit: less than half a unit of the 8th decimal is rounding noise.
_DUST_VOLUME = 5e-9


@dataclass(frozen=True)
class PositionStops:
    stop_loss_price: float
    trailing_stop_price: float
    take_profit_price: float
    # The high the trailing stop hangs from: the highest close since entry, today's close included.
    trailing_high: float
    # "3×ATR" when the ATR is known, else the fallback percentage ("10%"), as exit_reasons says it.
    trailing_basis: str
    # Every exit rule today's close triggers (exit_reasons); empty means hold.
    exits_triggered: tuple[str, ...]


@dataclass(frozen=True)
class Valuation:
    value_krw: float
    unrealized_pnl_krw: float  # against cost_krw, fees included (as `portfolio` values a position)
    unrealized_pnl_pct: float


def _known(value: float | None) -> bool:
    return value is not None and not math.isnan(value) and value > 0


_DEFAULT_EXITS = ExitParams()


def position_stops(
    avg_price: float,
    highest_price: float,
    close: float | None,
    atr: float | None,
    moving_average: float | None = None,
    params: ExitParams = _DEFAULT_EXITS,
) -> PositionStops:
    """The stop-loss, trailing stop and take-profit of a position, as `signals` evaluates them at `close`.

    `highest_price` is the position's highest close since entry (`with_highest_close_since_entry`);
    like `exits.trailing_stop_hit`, the close itself may be the new high. Without a close (no
    price known), the levels still stand and no exit is judged.
    """
    high = float(highest_price)
    reasons: list[str] = []
    if close is not None and _known(close):
        high = max(high, close) if _known(high) else close
        reasons = exit_reasons(close, avg_price, highest_price, atr, moving_average, params)
    return PositionStops(
        stop_loss_price=stop_loss_price(avg_price, params.stop_loss_pct),
        trailing_stop_price=trailing_stop_price(
            high, atr, atr_multiple=params.atr_multiple, trail_pct=params.trail_pct
        ),
        take_profit_price=take_profit_price(avg_price, params.take_profit_pct),
        trailing_high=high,
        trailing_basis=f"{params.atr_multiple:g}×ATR" if _known(atr) else f"{params.trail_pct:.0%}",
        exits_triggered=tuple(reasons),
    )


def valuation(volume: float, cost_krw: float, price: float) -> Valuation:
    """Value and unrealised P&L of `volume` bought for `cost_krw` (fees included), at `price`."""
    value = volume * price
    pct = (value / cost_krw - 1.0) * 100 if cost_krw else 0.0
    return Valuation(value_krw=value, unrealized_pnl_krw=value - cost_krw, unrealized_pnl_pct=pct)


def position_rows(
    positions: pd.DataFrame,
    closes: Mapping[str, tuple[float, str]],
    indicators: pd.DataFrame,
    params: ExitParams = _DEFAULT_EXITS,
    trend_ma: str = "ma50",
) -> list[dict[str, Any]]:
    """One plain row per open position: value and unrealised P&L at its close, and its stops.

    `positions` as the ledger gives them, with `highest_price` raised to the highest close since
    entry; `closes` market → (close, candle date); `indicators` the day's `daily_indicators`
    indexed by market (`atr14` and the trend MA; empty when unknown). A position without a close
    is valued at cost, as `portfolio` values it.
    """
    rows = []
    for pos in positions.itertuples(index=False):
        close, close_date = closes.get(pos.market, (None, None))
        known = pos.market in indicators.index
        atr = finite(indicators.at[pos.market, "atr14"]) if known and "atr14" in indicators else None
        ma = finite(indicators.at[pos.market, trend_ma]) if known and trend_ma in indicators else None
        stops = position_stops(float(pos.avg_price), float(pos.highest_price), close, atr, ma, params)
        worth = valuation(float(pos.volume), float(pos.cost_krw), float(pos.avg_price) if close is None else close)
        rows.append(
            {
                "market": pos.market,
                "volume": float(pos.volume),
                "avg_price": float(pos.avg_price),
                "cost_krw": float(pos.cost_krw),
                "entries": int(pos.entries),
                "opened_partition": pos.opened_partition,
                "close": close,
                "close_date": close_date,
                "price_source": "cost (no close known)" if close is None else f"close of {close_date}",
                "value_krw": worth.value_krw,
                "unrealized_pnl_krw": worth.unrealized_pnl_krw,
                "unrealized_pnl_pct": worth.unrealized_pnl_pct,
                "highest_close": stops.trailing_high,
                "atr14": atr,
                "trend_ma": ma,
                "stop_loss_price": stops.stop_loss_price,
                "trailing_stop_price": stops.trailing_stop_price,
                "trailing_basis": stops.trailing_basis,
                "take_profit_price": stops.take_profit_price,
                "exits_triggered": list(stops.exits_triggered),
            }
        )
    return rows


def held_outside(balances: Mapping[str, float], positions: pd.DataFrame) -> dict[str, float]:
    """Coins the ledger says the account holds beyond Makenaide's positions (found by reconciliation)."""
    held = {currency_of(str(m)): float(v) for m, v in zip(positions["market"], positions["volume"], strict=True)}
    extra = {coin: volume - held.get(coin, 0.0) for coin, volume in balances.items() if coin != KRW}
    return {coin: volume for coin, volume in extra.items() if abs(volume) > _DUST_VOLUME}

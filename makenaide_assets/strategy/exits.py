"""When to leave a held position: stop-loss, trailing stop, take-profit and trend break.

Every rule is judged on the daily close of the partition, the only price known for certain once
the candle has closed (no lookahead into intraday highs and lows of a candle still open).
"""

import math
from dataclasses import dataclass

# The exit defaults, one definition each (ExitParams, the rule functions and the `signals` config).
STOP_LOSS_PCT = 0.08  # O'Neil's and Minervini's loss limit: never more than 7-8 % below the entry
TRAIL_ATR_MULTIPLE = 3.0  # trailing stop distance in ATRs below the highest close since entry
TRAIL_PCT = 0.10  # the trailing distance when ATR is unknown (fewer than 15 daily candles)
TAKE_PROFIT_PCT = 0.25  # O'Neil takes gains at 20-25 %; 25 % lets the trailing stop work first


def _known(value: float | None) -> bool:
    return value is not None and not math.isnan(value) and value > 0


def stop_loss_price(avg_price: float, stop_loss_pct: float = STOP_LOSS_PCT) -> float:
    """The seeds' hard stop (-7~-8%, O'Neil's rule) below the average entry price."""
    if not 0.0 < stop_loss_pct < 1.0:
        raise ValueError(f"stop_loss_pct must be within (0, 1), got {stop_loss_pct}")
    return avg_price * (1.0 - stop_loss_pct)


def stop_loss_hit(close: float, avg_price: float, stop_loss_pct: float = STOP_LOSS_PCT) -> bool:
    return close <= stop_loss_price(avg_price, stop_loss_pct)


def trailing_stop_price(
    highest_price: float,
    atr: float | None = None,
    *,
    atr_multiple: float = TRAIL_ATR_MULTIPLE,
    trail_pct: float = TRAIL_PCT,
) -> float:
    """A stop that follows the highest price since entry and never falls.

    ATR × multiple adapts the distance to each market's own volatility (a calm BTC and a wild
    small cap need different room); the percentage is the fallback when ATR is unknown, e.g. a
    market with fewer than 15 daily candles.
    """
    if _known(atr):
        return highest_price - atr_multiple * float(atr)  # type: ignore[arg-type]
    if not 0.0 < trail_pct < 1.0:
        raise ValueError(f"trail_pct must be within (0, 1), got {trail_pct}")
    return highest_price * (1.0 - trail_pct)


def trailing_stop_hit(
    close: float,
    highest_price: float,
    atr: float | None = None,
    *,
    atr_multiple: float = TRAIL_ATR_MULTIPLE,
    trail_pct: float = TRAIL_PCT,
) -> bool:
    # The close itself may be the new high; the stop is then measured from it.
    high = max(highest_price, close) if _known(highest_price) else close
    return close <= trailing_stop_price(high, atr, atr_multiple=atr_multiple, trail_pct=trail_pct)


def take_profit_price(avg_price: float, take_profit_pct: float = TAKE_PROFIT_PCT) -> float:
    """O'Neil's companion to the 7-8% stop: take gains at 20-25%."""
    if not take_profit_pct > 0.0:
        raise ValueError(f"take_profit_pct must be positive, got {take_profit_pct}")
    return avg_price * (1.0 + take_profit_pct)


def take_profit_hit(close: float, avg_price: float, take_profit_pct: float = TAKE_PROFIT_PCT) -> bool:
    return close >= take_profit_price(avg_price, take_profit_pct)


def trend_broken(close: float, moving_average: float | None, tolerance_pct: float = 0.0) -> bool:
    """Close below the moving average (MA50 by default upstream): the uptrend that justified the trade is gone.

    An unknown average (too little history) is not evidence of a break; the other rules still apply.
    """
    if not _known(moving_average):
        return False
    return close < float(moving_average) * (1.0 - tolerance_pct)  # type: ignore[arg-type]


@dataclass(frozen=True)
class ExitParams:
    stop_loss_pct: float = STOP_LOSS_PCT
    atr_multiple: float = TRAIL_ATR_MULTIPLE
    trail_pct: float = TRAIL_PCT
    take_profit_pct: float = TAKE_PROFIT_PCT
    trend_tolerance_pct: float = 0.0


def exit_reasons(
    close: float,
    avg_price: float,
    highest_price: float,
    atr: float | None,
    moving_average: float | None,
    params: ExitParams = ExitParams(),
) -> list[str]:
    """Every exit rule the close triggers, most protective first; empty means hold."""
    reasons = []
    if stop_loss_hit(close, avg_price, params.stop_loss_pct):
        reasons.append(
            f"stop-loss: close {close:,.4g} <= {stop_loss_price(avg_price, params.stop_loss_pct):,.4g}"
            f" (-{params.stop_loss_pct:.0%} from avg {avg_price:,.4g})"
        )
    if trailing_stop_hit(close, highest_price, atr, atr_multiple=params.atr_multiple, trail_pct=params.trail_pct):
        high = max(highest_price, close) if _known(highest_price) else close
        stop = trailing_stop_price(high, atr, atr_multiple=params.atr_multiple, trail_pct=params.trail_pct)
        basis = f"{params.atr_multiple:g}×ATR" if _known(atr) else f"{params.trail_pct:.0%}"
        reasons.append(f"trailing stop: close {close:,.4g} <= {stop:,.4g} ({basis} below high {high:,.4g})")
    if take_profit_hit(close, avg_price, params.take_profit_pct):
        reasons.append(f"take-profit: close {close:,.4g} >= +{params.take_profit_pct:.0%} from avg {avg_price:,.4g}")
    if trend_broken(close, moving_average, params.trend_tolerance_pct):
        reasons.append(f"trend break: close {close:,.4g} < MA {float(moving_average):,.4g}")  # type: ignore[arg-type]
    return reasons

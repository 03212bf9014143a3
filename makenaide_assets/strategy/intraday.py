"""Stops watched between daily runs: the levels a held position must not cross during the day
after its partition closed, and where a crossing inside a candle fills.

Partition P's trading run (09:05 KST of P+1) leaves a book; until the next daily run the stop-loss,
the trailing stop and the take-profit are watched against intraday prices (4-hour candles in a
replay, the ticker when live). The levels are fixed at P's close — the same functions and
parameters `signals` judges closes with (exits.py) — so the trailing stop hangs from the highest
daily close, and a re-run of an old day finds the same levels. Trend breaks are judged on daily
closes only (an MA cross inside a day means nothing).

Where a crossing fills, per candle in time order (OHLC says nothing about the order of the high
and the low inside one candle, so the worse outcome is assumed):
1. it opens at or beyond the stop: at the open (a gap jumps the stop; nobody sells at the stop);
2. it opens at or beyond the take-profit: at the open;
3. its low reaches the stop: at the stop (checked before the take-profit: the worse case);
4. its high reaches the take-profit: at the take-profit.
A level fills on Upbit's price tick at or below it.
A ticker is a candle whose open, high and low are its one price.
"""

import math
from dataclasses import dataclass

import pandas as pd

from makenaide_assets.strategy.calendar import partition_close
from makenaide_assets.strategy.exits import ExitParams
from makenaide_assets.strategy.frames import last_rows
from makenaide_assets.strategy.numbers import finite
from makenaide_assets.strategy.stops import position_stops
from makenaide_assets.strategy.ticks import round_price_to_tick

# The columns `first_crossing` reads; a ticker row has open = high = low = its price.
PRICE_COLUMNS = ("at", "open", "high", "low")


_DEFAULT_EXITS = ExitParams()


def watch_window(partition_key: str) -> tuple[pd.Timestamp, pd.Timestamp]:
    """When the stops of P's book are watched (naive UTC): from P's close until P+1's close, when
    P+1's daily run judges the book again. Both ends included."""
    start = partition_close(partition_key)
    return start, start + pd.Timedelta(days=1)


@dataclass(frozen=True)
class WatchLevels:
    market: str
    volume: float
    avg_price: float
    # The higher of the stop-loss and the trailing stop: the one a falling price meets first.
    stop_price: float
    stop_rule: str  # "stop-loss" or "trailing stop"
    take_profit_price: float


@dataclass(frozen=True)
class IntradayExit:
    market: str
    at: pd.Timestamp  # the start of the candle (or the ticker's time) the level was crossed in
    price: float  # where the rule fills it: the level, or the open when the candle gapped past it
    rule: str  # "stop-loss", "trailing stop" or "take-profit"
    reason: str


def watch_levels(
    market: str,
    volume: float,
    avg_price: float,
    highest_close: float,
    close: float | None,
    atr: float | None,
    params: ExitParams = _DEFAULT_EXITS,
) -> WatchLevels:
    """The levels watched after partition P, from the position and P's close and ATR."""
    stops = position_stops(avg_price, highest_close, close, atr, None, params)
    trailing_higher = stops.trailing_stop_price > stops.stop_loss_price
    return WatchLevels(
        market=market,
        volume=volume,
        avg_price=avg_price,
        stop_price=stops.trailing_stop_price if trailing_higher else stops.stop_loss_price,
        stop_rule="trailing stop" if trailing_higher else "stop-loss",
        take_profit_price=stops.take_profit_price,
    )


def first_crossing(levels: WatchLevels, prices: pd.DataFrame) -> IntradayExit | None:
    """The first candle (ascending `at`) that crosses a level, and where it fills; None: held.

    Rows with an unknown or non-positive price are not evidence of anything and are passed over.
    """
    stop, target = levels.stop_price, levels.take_profit_price
    ordered = prices.sort_values("at")
    # Column by column as plain values: the rows of a day's watch, without a row object each.
    for at, o, h, low in zip(*(ordered[column].tolist() for column in PRICE_COLUMNS), strict=True):
        o, h, low = float(o), float(h), float(low)
        if not all(math.isfinite(x) and x > 0 for x in (o, h, low)):
            continue
        at, rule = pd.Timestamp(at), levels.stop_rule
        if o <= stop:
            return _exit(levels, at, o, rule, f"opened at {o:,.4g}, at or below the {rule} {stop:,.4g}")
        if o >= target:
            return _exit(levels, at, o, "take-profit", f"opened at {o:,.4g}, at or above the take-profit {target:,.4g}")
        if low <= stop:
            return _exit(levels, at, stop, rule, f"low {low:,.4g} crossed the {rule} {stop:,.4g}")
        if h >= target:
            return _exit(levels, at, target, "take-profit", f"high {h:,.4g} reached the take-profit {target:,.4g}")
    return None


def _exit(levels: WatchLevels, at: pd.Timestamp, level: float, rule: str, what: str) -> IntradayExit:
    # On Upbit's tick, rounded down: a sell at the level trades at the first tick at or below it
    # (the "buy" rounding of ticks.py is the one that rounds down). Opens are on the tick already.
    price = round_price_to_tick(level, "buy")
    change = price / levels.avg_price - 1.0
    return IntradayExit(
        market=levels.market,
        at=at,
        price=price,
        rule=rule,
        reason=f"intraday {rule}: {what} ({change:+.1%} from avg {levels.avg_price:,.4g}),"
        f" candle of {at:%Y-%m-%d %H:%M} UTC",
    )


def watch_book(
    positions: pd.DataFrame, daily_indicators: pd.DataFrame, params: ExitParams = _DEFAULT_EXITS
) -> list[WatchLevels]:
    """The levels of every held position after P's trading run.

    `positions`: market, volume, avg_price and highest_price (already raised to the highest daily
    close since entry); `daily_indicators`: P's indicators, the last row per market giving its
    close and ATR14. A market without them (it left the universe) is still watched, on the
    trailing percentage instead of the ATR: a position is never left unguarded.
    """
    last = last_rows(daily_indicators, ("close", "atr14"))
    levels = []
    columns = ("market", "volume", "avg_price", "highest_price")
    for market, volume, avg_price, highest in zip(*(positions[c].tolist() for c in columns), strict=True):
        close, atr = (_positive(last.get(market, {}).get(column)) for column in ("close", "atr14"))
        levels.append(watch_levels(str(market), float(volume), float(avg_price), float(highest), close, atr, params))
    return levels


def crossings(levels: list[WatchLevels], prices: pd.DataFrame) -> list[IntradayExit]:
    """Every watched position whose level `prices` (market, at, open, high, low) crossed."""
    found = []
    for level in levels:
        # The market's rows in their order (what a group of `groupby("market")` holds).
        rows = prices[prices["market"] == level.market] if not prices.empty else prices
        if not rows.empty and (exit_ := first_crossing(level, rows)) is not None:
            found.append(exit_)
    return found


def _positive(value: object) -> float | None:
    number = finite(value)
    return number if number is not None and number > 0 else None

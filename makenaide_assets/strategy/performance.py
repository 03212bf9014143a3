"""Backtest performance from fills and daily closes: equity, return, drawdown, Sharpe, exposure, buy-and-hold.

Day D's equity follows the `portfolio` asset's convention: the ledger after D's orders (filled at
the first price after D's close), marked at D's close. Sharpe uses daily returns annualised by
√365, since crypto trades every day of the year; no risk-free rate (KRW cash earns nothing here).
"""

import math

import numpy as np
import pandas as pd

DAYS_PER_YEAR = 365
CURVE_COLUMNS = ["date", "cash_krw", "positions_value_krw", "equity_krw", "exposure", "open_positions"]


def equity_curve(fills: pd.DataFrame, closes: pd.DataFrame, initial_cash_krw: float) -> pd.DataFrame:
    """One row per day of `closes` (index: partition keys, columns: markets).

    `fills` are executed fills with partition_key, market, side, volume, fee, krw_value. A held
    market without any close up to D cannot be valued and raises: a price is never made up.
    """
    days = list(closes.index)
    if fills.empty:
        signed = pd.DataFrame(0.0, index=days, columns=closes.columns)
        cash_delta = pd.Series(0.0, index=days)
    else:
        selling = fills["side"] == "sell"
        volume = fills["volume"].where(~selling, -fills["volume"]).astype("float64")
        cash = (fills["krw_value"] - fills["fee"]).where(selling, -(fills["krw_value"] + fills["fee"]))
        frame = fills.assign(signed=volume, cash=cash.astype("float64"))
        outside = sorted(set(frame["partition_key"]) - set(days))
        if outside:
            raise ValueError(f"fills on partitions outside the curve's days: {outside[:5]}")
        signed = frame.pivot_table(index="partition_key", columns="market", values="signed", aggfunc="sum")
        signed = signed.reindex(index=days, columns=closes.columns.union(signed.columns), fill_value=0.0).fillna(0.0)
        cash_delta = frame.groupby("partition_key")["cash"].sum().reindex(days, fill_value=0.0)
    held = signed.cumsum()
    held = held.mask(held.abs() < 1e-9, 0.0)  # 8-decimal volumes sold in full leave float dust
    marks = closes.reindex(columns=held.columns).ffill()
    unpriced = (held > 0) & marks.isna()
    if unpriced.any().any():
        day, market = next((d, m) for d, row in unpriced.iterrows() for m in row.index if row[m])
        raise ValueError(f"{market} is held on {day} but has no close up to that day")
    positions = (held * marks.fillna(0.0)).sum(axis=1)
    cash_krw = initial_cash_krw + cash_delta.cumsum()
    equity = cash_krw + positions
    return pd.DataFrame(
        {
            "date": days,
            "cash_krw": cash_krw.to_numpy(),
            "positions_value_krw": positions.to_numpy(),
            "equity_krw": equity.to_numpy(),
            "exposure": (positions / equity).to_numpy(),
            "open_positions": (held > 0).sum(axis=1).to_numpy(),
        },
        columns=CURVE_COLUMNS,
    )


def buy_and_hold(closes: pd.Series, initial_cash_krw: float, fee_rate: float) -> pd.Series:
    """All cash into one market at the first day's close, buy fee paid, marked at each close."""
    known = closes.dropna()
    if known.empty:
        raise ValueError("no closes to buy and hold")
    volume = initial_cash_krw / (float(known.iloc[0]) * (1.0 + fee_rate))
    return (closes * volume).rename("benchmark_krw")


def daily_returns(equity: pd.Series, initial_cash_krw: float) -> pd.Series:
    previous = equity.shift(1).fillna(initial_cash_krw)
    return equity / previous - 1.0


def total_return(equity: pd.Series, initial_cash_krw: float) -> float:
    return float(equity.iloc[-1]) / initial_cash_krw - 1.0 if len(equity) else 0.0


def drawdown(equity: pd.Series, initial_cash_krw: float) -> pd.Series:
    """Share below the highest equity so far, the starting cash counting as the first peak."""
    peak = equity.cummax().clip(lower=initial_cash_krw)
    return equity / peak - 1.0


def max_drawdown(equity: pd.Series, initial_cash_krw: float) -> float:
    return float(drawdown(equity, initial_cash_krw).min()) if len(equity) else 0.0


def sharpe(equity: pd.Series, initial_cash_krw: float) -> float:
    """Mean over standard deviation of daily returns × √365; NaN when returns never vary."""
    returns = daily_returns(equity, initial_cash_krw)
    spread = float(returns.std(ddof=1)) if len(returns) > 1 else math.nan
    if not spread or math.isnan(spread):
        return math.nan
    return float(returns.mean()) / spread * math.sqrt(DAYS_PER_YEAR)


def cagr(equity: pd.Series, initial_cash_krw: float) -> float:
    if not len(equity):
        return math.nan
    return float((float(equity.iloc[-1]) / initial_cash_krw) ** (DAYS_PER_YEAR / len(equity)) - 1.0)


def summarise(curve: pd.DataFrame, initial_cash_krw: float) -> dict[str, float]:
    """The headline figures of one equity series (strategy or benchmark)."""
    equity = curve["equity_krw"].astype("float64")
    exposure = curve["exposure"].astype("float64") if "exposure" in curve else pd.Series(np.ones(len(curve)))
    return {
        "days": float(len(curve)),
        "final_equity_krw": float(equity.iloc[-1]) if len(equity) else initial_cash_krw,
        "total_return_pct": total_return(equity, initial_cash_krw) * 100,
        "cagr_pct": cagr(equity, initial_cash_krw) * 100,
        "max_drawdown_pct": max_drawdown(equity, initial_cash_krw) * 100,
        "sharpe": sharpe(equity, initial_cash_krw),
        "exposure_pct": float(exposure.mean()) * 100 if len(exposure) else 0.0,
        "time_in_market_pct": float((exposure > 0).mean()) * 100 if len(exposure) else 0.0,
    }

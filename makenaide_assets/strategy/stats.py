"""Closed-trade statistics, and the strategy selector that turns them into Kelly inputs.

A trade is one sell fill of the ledger: the planner always sells a whole position, and the
ledger books the sale's realised P&L against the position's cost, buy and sell fees included.
Which trades partition D may count is the subtle part (`known_by`): D's signals are planned once
D's candle has closed and before D's own orders are sent, so only sells ordered on earlier
partitions are known. Filtering by that, not by "what the ledger holds now", keeps a re-run of
an old partition from seeing trades that closed after it.
"""

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, fields
from typing import Literal

import pandas as pd

from makenaide_assets.strategy.calendar import partition_close
from makenaide_assets.strategy.sizing import KellyInputs

# The seeds' strategy selector (realtime-trading-guide): win rate >= 45 %, positive P&L, >= 20 trades.
MIN_TRADES = 20
MIN_WIN_RATE = 0.45
# The seeds' risk rule: 1-2 % of capital per position when the evidence says the strategy is losing.
FLOOR_FRACTION = 0.02
SelectorAction = Literal["floor", "stop"]
# strategy_stats' columns of the walk-forward evidence: evidence_trades, evidence_win_rate, ...
EVIDENCE_PREFIX = "evidence_"
WALK_FORWARD = "walk_forward"


def known_by(closed: pd.DataFrame, partition_key: str) -> pd.DataFrame:
    """Sells ordered on a partition before D and filled by D's close: what D's planning can know."""
    if closed.empty:
        return closed
    executed = pd.to_datetime(closed["executed_at"])
    mask = (closed["partition_key"].astype(str) < partition_key) & (executed <= partition_close(partition_key))
    return closed[mask]


def evidence_before(trades: pd.DataFrame, partition_key: str, window_days: int) -> pd.DataFrame:
    """Walk-forward out-of-sample trades (`oos_trades.csv`) that had closed before D began: sold on a
    partition before D and filled before D's candle opened (00:00 UTC of D), within the window.
    Stricter than `known_by`: nothing that closed on or after D's own day counts."""
    if trades.empty:
        return trades
    executed = pd.to_datetime(trades["executed_at"], utc=True)
    exited = trades["exit_partition"].astype(str)
    mask = (exited < partition_key) & (executed < pd.Timestamp(partition_key, tz="UTC"))
    return trades[mask & (exited >= window_start(partition_key, window_days))]


def in_window(closed: pd.DataFrame, partition_key: str, window_days: int) -> pd.DataFrame:
    """Known trades whose sell was ordered within the `window_days` partitions before D."""
    first = window_start(partition_key, window_days)
    known = known_by(closed, partition_key)
    return known[known["partition_key"].astype(str) >= first]


def window_start(partition_key: str, window_days: int) -> str:
    if window_days < 1:
        raise ValueError(f"window_days must be at least 1, got {window_days}")
    return (pd.Timestamp(partition_key) - pd.Timedelta(days=window_days)).strftime("%Y-%m-%d")


def trade_returns(closed: pd.DataFrame) -> pd.Series:
    """Each trade's P&L over the KRW it had cost: net proceeds - P&L = cost of the volume sold."""
    pnl = closed["realized_pnl_krw"].astype("float64")
    cost = closed["krw_value"].astype("float64") - closed["fee"].astype("float64") - pnl
    return pnl / cost


@dataclass(frozen=True)
class TradeStats:
    """Statistics of a set of closed trades; NaN where undefined (no trades, or no losing trade)."""

    trades: int
    wins: int
    losses: int
    win_rate: float
    avg_win_krw: float
    avg_loss_krw: float  # a magnitude: positive
    avg_win_pct: float
    avg_loss_pct: float  # a magnitude: positive
    payoff_ratio: float  # avg_win_pct / avg_loss_pct: Kelly's R, per KRW staked
    profit_factor: float  # gross profit / gross loss in KRW; inf with no losing trade
    expectancy_krw: float  # mean P&L per trade
    expectancy_pct: float
    total_pnl_krw: float

    @classmethod
    def from_row(cls, row: pd.Series, prefix: str = "") -> "TradeStats":
        values = {f.name: row[prefix + f.name] for f in fields(cls)}
        return cls(**{k: int(v) if k in ("trades", "wins", "losses") else float(v) for k, v in values.items()})

    def as_dict(self) -> dict[str, float | int]:
        return asdict(self)


def trade_stats(pnl_krw: Sequence[float], returns: Sequence[float]) -> TradeStats:
    """A win is a trade that made money after fees; breaking even is not one."""
    pnl = pd.Series(pnl_krw, dtype="float64")
    ret = pd.Series(returns, dtype="float64")
    if len(pnl) != len(ret):
        raise ValueError(f"{len(pnl)} P&L values but {len(ret)} returns")
    if pnl.isna().any() or ret.isna().any():
        raise ValueError("a closed trade without a realised P&L or return cannot be counted")
    won = pnl > 0
    gross_win, gross_loss = float(pnl[won].sum()), float(-pnl[~won].sum())
    n = len(pnl)
    avg_win_pct, avg_loss_pct = _mean(ret[won]), _mean(-ret[~won])
    return TradeStats(
        trades=n,
        wins=int(won.sum()),
        losses=int((~won).sum()),
        win_rate=float(won.mean()) if n else math.nan,
        avg_win_krw=_mean(pnl[won]),
        avg_loss_krw=_mean(-pnl[~won]),
        avg_win_pct=avg_win_pct,
        avg_loss_pct=avg_loss_pct,
        payoff_ratio=avg_win_pct / avg_loss_pct if avg_loss_pct > 0 else math.nan,
        profit_factor=(gross_win / gross_loss if gross_loss > 0 else math.inf) if n else math.nan,
        expectancy_krw=_mean(pnl),
        expectancy_pct=_mean(ret),
        total_pnl_krw=float(pnl.sum()),
    )


def stats_of(closed: pd.DataFrame) -> TradeStats:
    return trade_stats(closed["realized_pnl_krw"].astype("float64"), trade_returns(closed))


def evidence_stats(trades: pd.DataFrame) -> TradeStats:
    """Statistics of walk-forward trades: their P&L and their return in percent, as the run wrote them."""
    return trade_stats(trades["pnl_krw"].astype("float64"), trades["return_pct"].astype("float64") / 100)


def evidence_of(row: pd.Series) -> TradeStats | None:
    """The walk-forward statistics a `strategy_stats` row carries (`evidence_*`), None without evidence."""
    if EVIDENCE_PREFIX + "trades" not in row or pd.isna(row[EVIDENCE_PREFIX + "trades"]):
        return None
    return TradeStats.from_row(row, prefix=EVIDENCE_PREFIX)


def _mean(values: pd.Series) -> float:
    return float(values.mean()) if len(values) else math.nan


@dataclass(frozen=True)
class SelectorRule:
    min_trades: int = MIN_TRADES
    min_win_rate: float = MIN_WIN_RATE
    min_pnl_krw: float = 0.0  # total P&L below this over the window counts as losing
    action: SelectorAction = "floor"
    floor_fraction: float = FLOOR_FRACTION


@dataclass(frozen=True)
class KellyDecision:
    """Kelly inputs for D and what the selector did: `kelly` (measured), `fallback`, `floor`, `stop`."""

    inputs: KellyInputs
    action: Literal["kelly", "fallback", "floor", "stop"]
    reason: str
    max_fraction: float | None = None  # the floor: a cap on each new position's share of equity


def decide_kelly(
    stats: TradeStats | None, configured: KellyInputs, rule: SelectorRule, evidence: TradeStats | None = None
) -> KellyDecision:
    """Measured W and R once the window holds enough trades; the configured ones until then.

    While the ledger's window is short of `rule.min_trades`, walk-forward out-of-sample trades that
    closed before D (`evidence`, see `evidence_before`) stand in when they are enough, through the
    same selector; every such decision says `kelly_source = walk_forward`. Below the win-rate floor
    or with a losing window the selector sizes new entries at the floor (small positions keep
    producing the evidence that could lift it) or stops them.
    """
    if stats is None:
        short = "no strategy statistics for this day"
    elif stats.trades < rule.min_trades:
        short = f"{stats.trades} closed trades in the window (< {rule.min_trades})"
    else:
        return _select(stats, configured, rule, source=None, prefix="")
    if evidence is not None and evidence.trades >= rule.min_trades:
        return _select(evidence, configured, rule, source=WALK_FORWARD, prefix=f"{short}; walk-forward out of sample: ")
    if evidence is not None:
        short += f", walk-forward evidence {evidence.trades} trades before D (< {rule.min_trades})"
    return KellyDecision(configured, "fallback", f"{short}: configured Kelly inputs")


def _select(
    stats: TradeStats, configured: KellyInputs, rule: SelectorRule, source: str | None, prefix: str
) -> KellyDecision:
    """The seeds' selector on enough trades: Kelly from them, or the floor, or stop. `source` None:
    the ledger's own statistics (sources strategy_stats, floor, stop as before)."""
    summary = f"win rate {stats.win_rate:.0%}, P&L {stats.total_pnl_krw:,.0f} KRW over {stats.trades} trades"
    failing = []
    if stats.win_rate < rule.min_win_rate:
        failing.append(f"win rate below {rule.min_win_rate:.0%}")
    if stats.total_pnl_krw < rule.min_pnl_krw:
        failing.append(f"P&L below {rule.min_pnl_krw:,.0f} KRW")
    if failing:
        held = KellyInputs(configured.win_rate, configured.payoff_ratio, source=source or rule.action)
        if rule.action == "stop":
            why = f"{prefix}selector stop: {summary} ({'; '.join(failing)}): no new entries"
            return KellyDecision(held, "stop", why)
        cap = f"entries capped at {rule.floor_fraction:.1%} of equity"
        why = f"{prefix}selector floor: {summary} ({'; '.join(failing)}): {cap}"
        return KellyDecision(held, "floor", why, max_fraction=rule.floor_fraction)
    if not (math.isfinite(stats.payoff_ratio) and stats.payoff_ratio > 0):
        inputs = KellyInputs(stats.win_rate, configured.payoff_ratio, source=source or "strategy_stats+configured R")
        kept = f"no losing trade, so payoff ratio {configured.payoff_ratio:g} stays configured"
        why = f"{prefix}measured {summary}; {kept}"
        return KellyDecision(inputs, "kelly", why)
    inputs = KellyInputs(stats.win_rate, stats.payoff_ratio, source=source or "strategy_stats")
    return KellyDecision(inputs, "kelly", f"{prefix}measured {summary}, payoff ratio {stats.payoff_ratio:.2f}")


def apply_decision(
    orders: pd.DataFrame, rejected: pd.DataFrame, decision: KellyDecision
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Say on every entry how it was sized; a selector stop moves entries to the rejected list."""
    entries = orders["side"].isin(["buy", "add"])
    orders = orders.assign(kelly_action=decision.action)
    if decision.action == "stop":
        stopped = orders.loc[entries, ["market", "side"]].assign(reason=decision.reason)
        return orders[~entries].reset_index(drop=True), pd.concat([rejected, stopped], ignore_index=True)
    orders.loc[entries, "reason"] = orders.loc[entries, "reason"] + f"; sizing: {decision.reason}"
    return orders, rejected


def selector_breaches(orders: pd.DataFrame, decision: KellyDecision) -> pd.DataFrame:
    """Entries the day's evidence does not allow: any when stopped, above the floor, or sized from
    other Kelly inputs than `strategy_stats` and the selector give."""
    entries = orders[orders["side"].isin(["buy", "add"])]
    if decision.action == "stop":
        return entries
    other = ((entries["win_rate"] - decision.inputs.win_rate).abs() > 1e-12) | (
        (entries["payoff_ratio"] - decision.inputs.payoff_ratio).abs() > 1e-12
    )
    above = entries["kelly_fraction"] > (decision.max_fraction if decision.max_fraction is not None else math.inf)
    return entries[other | above]

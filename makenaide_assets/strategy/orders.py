"""Turn the day's analysis and the held positions into order intents, and say why others were not made.

Order of decisions, each a rule of the seeds' Phase 5:
1. sells: any exit rule on a held position; a sold market gets no buy or add the same day;
2. adds (pyramiding winners) before new buys, since a trend already proven beats a new idea;
3. new buys by candidate score, then GPT confidence.
Buys and adds then share three budgets: free cash (fees included; sell proceeds are not counted,
since sells and buys of one run are not ordered), room under the exposure cap, and open-position
slots. An order that does not fit is scaled down to what is left, or dropped below 5,000 KRW.
"""

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from makenaide_assets.strategy.exits import ExitParams, exit_reasons, stop_loss_price, take_profit_price
from makenaide_assets.strategy.frames import astype_columns, last_rows
from makenaide_assets.strategy.sizing import (
    KELLY_MULTIPLIER,
    MAX_POSITION_FRACTION,
    KellyInputs,
    fit_to_budget,
    position_fraction,
    position_krw,
)
from makenaide_assets.strategy.ticks import FEE_RATE, MIN_ORDER_KRW, round_price_to_tick

ORDER_DTYPES = {
    "market": "object", "side": "object", "price": "float64", "krw_amount": "float64", "volume": "float64",
    "reason": "object", "stop_price": "float64", "take_profit_price": "float64", "kelly_fraction": "float64",
    "win_rate": "float64", "payoff_ratio": "float64", "kelly_source": "object", "score": "float64",
    "confidence": "float64",
}  # fmt: skip
REJECTED_COLUMNS = ["market", "side", "reason"]

# The planning defaults, one definition each (PlanParams and the `signals` config).
MIN_CONFIDENCE = 70.0  # the seeds' signal validator: AI confidence above 70 %
MAX_OPEN_POSITIONS = 8  # the seeds: 5-10 open positions at most
MAX_EXPOSURE_FRACTION = 0.80  # at least a fifth of equity stays in cash
MAX_ENTRIES = 3  # the first buy and two pyramid adds
ADD_STEP_PCT = 0.05  # each add waits for the close this much further above the average
ADD_SIZE_RATIO = 0.5  # an add is this share of the first entry
TREND_MA = "ma50"  # the moving average whose loss ends the trend (and blocks adds)


@dataclass(frozen=True)
class PlanParams:
    min_confidence: float = MIN_CONFIDENCE
    kelly_multiplier: float = KELLY_MULTIPLIER
    max_position_fraction: float = MAX_POSITION_FRACTION
    max_open_positions: int = MAX_OPEN_POSITIONS
    max_exposure_fraction: float = MAX_EXPOSURE_FRACTION
    max_entries: int = MAX_ENTRIES
    add_step_pct: float = ADD_STEP_PCT
    add_size_ratio: float = ADD_SIZE_RATIO
    trend_ma: str = TREND_MA
    exits: ExitParams = field(default_factory=ExitParams)
    min_order_krw: float = MIN_ORDER_KRW
    fee_rate: float = FEE_RATE

    def first_entry_share(self) -> float:
        """Share of the full Kelly-sized position the first buy takes; the adds fill the rest,
        so a complete pyramid never holds more than the capped Kelly fraction of equity."""
        return 1.0 / (1.0 + self.add_size_ratio * max(self.max_entries - 1, 0))


@dataclass(frozen=True)
class SignalPlan:
    orders: pd.DataFrame
    rejected: pd.DataFrame
    cash_krw: float
    equity_krw: float
    exposure_krw: float
    regime: str
    allow_new_buys: bool


def plan_signals(
    *,
    partition_key: str,
    candidates: pd.DataFrame,
    gpt_verdicts: pd.DataFrame,
    timing_4h: pd.DataFrame,
    daily_indicators: pd.DataFrame,
    market_breadth: pd.DataFrame,
    positions: pd.DataFrame,
    cash_krw: float,
    kelly_inputs: KellyInputs,
    params: PlanParams = PlanParams(),
) -> SignalPlan:
    """Every input may be an empty frame; the plan then has fewer orders and says why."""
    snap = _snapshot(daily_indicators, params.trend_ma)
    held = positions.set_index("market") if "market" in positions else pd.DataFrame()
    values = {m: float(p["volume"]) * _mark(snap, m, p["avg_price"]) for m, p in held.iterrows()}
    equity = cash_krw + sum(values.values())
    regime, allow_buys, regime_reason = _regime(market_breadth)
    fraction = position_fraction(
        kelly_inputs.win_rate,
        kelly_inputs.payoff_ratio,
        kelly_multiplier=params.kelly_multiplier,
        max_position_fraction=params.max_position_fraction,
    )
    ranks = _ranks(candidates, gpt_verdicts)
    rejected: list[dict[str, str]] = []

    orders, exiting = _sells(held, snap, params, rejected)
    sold = {o["market"] for o in orders}
    wanted = _adds_wanted(held.drop(index=list(exiting)), snap, partition_key, params, rejected)
    wanted += _buys_wanted(candidates, gpt_verdicts, timing_4h, snap, set(held.index), sold, params, rejected)

    unit_krw = position_krw(equity, fraction)
    cash_left = cash_krw / (1.0 + params.fee_rate)
    room = params.max_exposure_fraction * equity - sum(v for m, v in values.items() if m not in sold)
    slots = params.max_open_positions - (len(held) - len(sold))
    for intent in wanted:
        market, side = intent["market"], intent["side"]
        if not allow_buys:
            rejected.append(_reject(market, side, f"no new buys: {regime_reason}"))
            continue
        if side == "buy" and slots <= 0:
            rejected.append(_reject(market, side, f"max {params.max_open_positions} open positions reached"))
            continue
        if fraction <= 0:
            edge = f"win rate {kelly_inputs.win_rate:.0%}, payoff {kelly_inputs.payoff_ratio:g}"
            rejected.append(_reject(market, side, f"Kelly fraction is 0 ({edge}): no edge, no bet"))
            continue
        share = params.first_entry_share() * (1.0 if side == "buy" else params.add_size_ratio)
        budgets = {"cash": cash_left, "exposure cap": room}
        if side == "add":
            budgets["per-position Kelly cap"] = unit_krw - float(held.at[market, "cost_krw"])
        amount, note = fit_to_budget(unit_krw * share, budgets, min_order_krw=params.min_order_krw)
        if amount <= 0:
            rejected.append(_reject(market, side, note or "no budget"))
            continue
        cash_left, room, slots = cash_left - amount, room - amount, slots - (side == "buy")
        price = round_price_to_tick(intent["price"], "buy")
        avg = price
        if side == "add":  # the stops of a pyramided position follow its new average price
            volume = float(held.at[market, "volume"])
            avg = (float(held.at[market, "avg_price"]) * volume + amount) / (volume + amount / price)
        stop = stop_loss_price(avg, params.exits.stop_loss_pct)
        target = take_profit_price(avg, params.exits.take_profit_pct)
        orders.append(
            {
                "market": market,
                "side": side,
                "price": price,
                "krw_amount": amount,
                "reason": intent["reason"] + (f"; {note}" if note else ""),
                "stop_price": round_price_to_tick(stop, "sell"),
                "take_profit_price": round_price_to_tick(target, "sell"),
            }
        )

    kelly = {"kelly_fraction": fraction, "win_rate": kelly_inputs.win_rate}
    kelly |= {"payoff_ratio": kelly_inputs.payoff_ratio, "kelly_source": kelly_inputs.source}
    rows = [{**o, **kelly, **ranks.get(o["market"], {})} for o in orders]
    return SignalPlan(
        orders=astype_columns(pd.DataFrame(rows, columns=list(ORDER_DTYPES)), ORDER_DTYPES),
        rejected=pd.DataFrame(rejected, columns=REJECTED_COLUMNS),
        cash_krw=float(cash_krw),
        equity_krw=float(equity),
        exposure_krw=float(sum(values.values())),
        regime=regime,
        allow_new_buys=allow_buys,
    )


def orders_possible(positions: pd.DataFrame, daily_indicators: pd.DataFrame, params: PlanParams = PlanParams()) -> bool:
    """False when `plan_signals` cannot order anything with no passed candidate: no held position's
    close fires an exit (`_sells`) or reaches its next pyramid step (`_adds_wanted`). The same
    tests as the planner's, for a caller that may then skip planning (the fast backtest)."""
    snap = _snapshot(daily_indicators, params.trend_ma)
    rows = dict(zip(snap.index, zip(*(snap[c].to_numpy() for c in ("close", "atr14", "ma")), strict=True), strict=True))
    columns = ("market", "avg_price", "highest_price", "entries")
    for market, avg_price, highest_price, entries in zip(*(positions[c].tolist() for c in columns), strict=True):
        if market not in rows:
            continue
        close, atr, ma = rows[market]
        if exit_reasons(close, avg_price, highest_price, atr, ma, params.exits):
            return True
        if float(close) >= float(avg_price) * (1.0 + params.add_step_pct * int(entries)):
            return True
    return False


def _sells(
    held: pd.DataFrame, snap: pd.DataFrame, params: PlanParams, rejected: list[dict[str, str]]
) -> tuple[list[dict[str, Any]], set[str]]:
    """Sell the whole position when any exit rule fires; also return every market an exit fired on,
    so that nothing is added to it even when it is too small to sell."""
    orders, exiting = [], set()
    for market, pos in held.iterrows():
        if market not in snap.index:
            rejected.append(_reject(market, "sell", "no daily close for this held market: exits not evaluated"))
            continue
        row = snap.loc[market]
        reasons = exit_reasons(
            row["close"], pos["avg_price"], pos["highest_price"], row["atr14"], row["ma"], params.exits
        )
        if not reasons:
            continue
        exiting.add(market)
        price = round_price_to_tick(row["close"], "sell")
        volume = float(pos["volume"])
        if volume * price < params.min_order_krw:
            worth = f"worth {volume * price:,.0f} KRW, under the {params.min_order_krw:,.0f} KRW minimum order"
            rejected.append(_reject(market, "sell", f"{'; '.join(reasons)}; not sold: {worth}"))
            continue
        orders.append(
            {"market": market, "side": "sell", "price": price, "volume": volume, "reason": "; ".join(reasons)}
        )
    return orders, exiting


def _adds_wanted(
    held: pd.DataFrame, snap: pd.DataFrame, partition_key: str, params: PlanParams, rejected: list[dict[str, str]]
) -> list[dict[str, Any]]:
    """Pyramiding: add to a winner each further `add_step_pct` above its average, while the trend holds.

    The ledger keeps the average, not the last fill price, so step k is measured as
    avg × (1 + step × entries): adds stay spaced apart as the average climbs behind the price.
    """
    adds = []
    for market, pos in held.iterrows():
        if market not in snap.index:
            continue
        close, ma, entries = float(snap.at[market, "close"]), snap.at[market, "ma"], int(pos["entries"])
        trigger = float(pos["avg_price"]) * (1.0 + params.add_step_pct * entries)
        if close < trigger:
            continue
        gain = close / float(pos["avg_price"]) - 1.0
        if entries >= params.max_entries:
            rejected.append(
                _reject(market, "add", f"up {gain:.1%} but already {entries} entries (max {params.max_entries})")
            )
        elif partition_key in (pos["opened_partition"], pos["last_add_partition"]):
            rejected.append(_reject(market, "add", f"already entered on {partition_key}"))
        elif not (_positive(ma) and close > ma):
            rejected.append(_reject(market, "add", f"up {gain:.1%} but close is not above {params.trend_ma}"))
        else:
            reason = f"pyramid entry {entries + 1}: close {close:,.4g} >= {trigger:,.4g} (+{gain:.1%} over avg)"
            adds.append({"market": market, "side": "add", "price": close, "reason": reason, "gain": gain})
    return sorted(adds, key=lambda a: -a["gain"])


def _buys_wanted(
    candidates: pd.DataFrame,
    verdicts: pd.DataFrame,
    timing: pd.DataFrame,
    snap: pd.DataFrame,
    held: set[str],
    sold: set[str],
    params: PlanParams,
    rejected: list[dict[str, str]],
) -> list[dict[str, Any]]:
    """Candidates that passed the rules, GPT (BUY, confident, not an error) and the 4h timing."""
    passed = candidates[candidates["passed"].fillna(False).astype(bool)]
    gpt, t4h = last_rows(verdicts), last_rows(timing)
    buys = []
    for market, score in zip(passed["market"], passed["score"], strict=True):
        v, t = gpt.get(market), t4h.get(market)
        if market in sold:
            why = "sold today: never buy and sell one market on one day"
        elif market in held:
            why = "already held: only the pyramiding rules may add to it"
        else:
            why = _verdict_refusal(v, params) or _timing_refusal(t)
            if why is None and market not in snap.index:
                why = "no daily close"
        if why:
            rejected.append(_reject(market, "buy", why))
            continue
        entry = t["suggested_entry"] if _positive(t["suggested_entry"]) else snap.at[market, "close"]
        reason = f"score {score:g}; GPT BUY {v['confidence']:g} ({v['source']}); 4h: {t['reason']}"
        rank = (-float(score) if pd.notna(score) else math.inf, -float(v["confidence"]))
        buys.append({"market": market, "side": "buy", "price": float(entry), "reason": reason, "rank": rank})
    return sorted(buys, key=lambda b: b["rank"])


def _verdict_refusal(v: Mapping[str, Any] | None, params: PlanParams) -> str | None:
    """Why the GPT verdict row `v` refuses a candidate's buy (BUY, confident, not an error); None if it does not."""
    if v is None:
        return "no GPT verdict"
    if v["source"] == "error":
        return f"GPT errored: {v['error'] if pd.notna(v.get('error')) else 'no detail'}"
    if v["verdict"] != "BUY":
        return f"GPT verdict {v['verdict']}"
    if not v["confidence"] >= params.min_confidence:
        return f"GPT confidence {v['confidence']:g} < {params.min_confidence:g}"
    return None


def _timing_refusal(t: Mapping[str, Any] | None) -> str | None:
    """Why the 4-hour timing row `t` refuses a candidate's buy; None when it says enter now."""
    if t is None or not (pd.notna(t["entry_ok"]) and bool(t["entry_ok"])):
        return f"4h timing: {'no row' if t is None else t['reason']}"
    return None


def buys_possible(
    markets: Sequence[str],
    gpt_verdicts: pd.DataFrame,
    params: PlanParams = PlanParams(),
    timing_4h: pd.DataFrame | None = None,
) -> bool:
    """False when none of `markets` (passed candidates not held) gets past the tests `_buys_wanted`
    makes of its GPT verdict and, when `timing_4h` is given, of its 4-hour timing: the planner then
    wants no buy. For a caller that may skip the rest of the day (the fast backtest)."""
    gpt = last_rows(gpt_verdicts)
    t4h = None if timing_4h is None else last_rows(timing_4h)
    for market in markets:
        if _verdict_refusal(gpt.get(market), params) is not None:
            continue
        if t4h is None or _timing_refusal(t4h.get(market)) is None:
            return True
    return False


def _snapshot(daily_indicators: pd.DataFrame, trend_ma: str) -> pd.DataFrame:
    """close, atr14 and the trend MA per market, only for markets with a usable close."""
    frame = daily_indicators.drop_duplicates("market", keep="last")
    columns = {
        out: pd.to_numeric(frame[col], errors="coerce").to_numpy(dtype="float64")
        if col in frame and col != "market"
        else np.full(len(frame), math.nan)
        for out, col in (("close", "close"), ("atr14", "atr14"), ("ma", trend_ma))
    }
    usable = columns["close"] > 0
    index = pd.Index(frame["market"].array[usable], name="market")
    return pd.DataFrame({name: values[usable] for name, values in columns.items()}, index=index)


def _mark(snap: pd.DataFrame, market: str, avg_price: float) -> float:
    """Today's close, or the entry average when there is none (visible in the rejected table)."""
    return float(snap.at[market, "close"]) if market in snap.index else float(avg_price)


def _regime(breadth: pd.DataFrame) -> tuple[str, bool, str]:
    if breadth.empty:
        return "unknown", False, "market_breadth is empty, and buying blind is not allowed"
    row = breadth.iloc[-1]
    allow = bool(row["allow_new_buys"]) if pd.notna(row["allow_new_buys"]) else False
    return str(row["regime"]), allow, f"regime {row['regime']}: {row.get('reason', '')}"


def _ranks(candidates: pd.DataFrame, verdicts: pd.DataFrame) -> dict[str, dict[str, float]]:
    # A market's last row counts, as in the rest of the plan (dict() keeps the last of a repeated key).
    score = dict(zip(candidates["market"].tolist(), candidates["score"].tolist(), strict=True))
    # Coerced: an error row has no confidence, and values stored as nullable Int64 hold pd.NA,
    # which float() refuses.
    confidence = pd.to_numeric(verdicts["confidence"], errors="coerce").astype("float64")
    conf = dict(zip(verdicts["market"].tolist(), confidence.tolist(), strict=True))
    markets = set(score) | set(conf)
    return {m: {"score": float(score.get(m, math.nan)), "confidence": float(conf.get(m, math.nan))} for m in markets}


def _positive(value: Any) -> bool:
    return value is not None and pd.notna(value) and float(value) > 0


def _reject(market: str, side: str, reason: str) -> dict[str, str]:
    return {"market": market, "side": side, "reason": reason}

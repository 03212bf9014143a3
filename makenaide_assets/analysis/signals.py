"""The `signals` asset: the day's order intents (sell / add / buy), and the checks that guard money.

The checks are computed with the orders, from the config object and the ledger cash the plan was
made with (in-asset `check_specs`, all blocking). A failing one still stores the materialisation
(Dagster records the value before it raises), then fails the step: no downstream step of the run
starts, and `signals_sensor` reads the failed evaluation from the run's event log and refuses to
start `trading_job` for the partition, so bad signals never reach `fills`.

Its six upstream values are deps it reads itself (`market.step.stored_value`: the partition's stored
value, as an input would load it), as the grouped steps do: the run stores no load events for them
(two per input, each a commit to the instance: docs/performance.md).
"""

import math
from dataclasses import dataclass, replace
from typing import Literal

import dagster as dg
import pandas as pd
from pydantic import Field

from makenaide_assets.market.metadata import check_result, check_spec, krw, table
from makenaide_assets.market.step import stored_value
from makenaide_assets.partitions import daily
from makenaide_assets.resources.broker import Broker
from makenaide_assets.resources.ledger import CutOff, TradingLedger, identifiers_for_signals, market_of
from makenaide_assets.resources.market_data import MarketData
from makenaide_assets.resources.notifier import Notifier
from makenaide_assets.strategy.calendar import partition_close
from makenaide_assets.strategy.exits import STOP_LOSS_PCT, TAKE_PROFIT_PCT, TRAIL_ATR_MULTIPLE, TRAIL_PCT, ExitParams
from makenaide_assets.strategy.limits import Limits, Refusal, buys_halted, without_buys
from makenaide_assets.strategy.orders import (
    ADD_SIZE_RATIO,
    ADD_STEP_PCT,
    MAX_ENTRIES,
    MAX_EXPOSURE_FRACTION,
    MAX_OPEN_POSITIONS,
    MIN_CONFIDENCE,
    TREND_MA,
    PlanParams,
    SignalPlan,
    plan_signals,
)
from makenaide_assets.strategy.sizing import (
    KELLY_MULTIPLIER,
    MAX_POSITION_FRACTION,
    MAX_POSITION_FRACTION_LIMIT,
    KellyInputs,
    position_fraction,
)
from makenaide_assets.strategy.stats import (
    FLOOR_FRACTION,
    MIN_TRADES,
    MIN_WIN_RATE,
    KellyDecision,
    SelectorRule,
    TradeStats,
    apply_decision,
    decide_kelly,
    evidence_of,
    selector_breaches,
)
from makenaide_assets.strategy.ticks import FEE_RATE, MIN_ORDER_KRW

# Cents of float noise must not fail a money check; a real overspend is whole KRW.
_TOLERANCE_KRW = 1e-6


class SignalsConfig(dg.Config):
    """Sizing and exit parameters. Kelly's win rate and payoff ratio come from `strategy_stats`
    once its window holds `min_trades` closed trades; until then the configured estimates below
    size positions (`kelly_source` says which)."""

    win_rate: float = Field(
        MIN_WIN_RATE, ge=0.0, le=1.0, description="configured Kelly W; the seeds' strategy filter floor"
    )
    payoff_ratio: float = Field(2.0, gt=0.0, description="configured Kelly R = avg win / avg loss (seeds' R:R 2.0)")
    min_trades: int = Field(MIN_TRADES, ge=1, description="closed trades before measured W and R are used")
    selector_min_win_rate: float = Field(MIN_WIN_RATE, ge=0.0, le=1.0, description="below it: floor or stop")
    selector_min_pnl_krw: float = Field(0.0, description="window P&L below it: floor or stop")
    selector_action: Literal["floor", "stop"] = Field("floor", description="what failing evidence does to entries")
    floor_fraction: float = Field(
        FLOOR_FRACTION, gt=0.0, le=MAX_POSITION_FRACTION_LIMIT, description="equity share at the floor"
    )
    kelly_multiplier: float = Field(KELLY_MULTIPLIER, ge=0.0, le=1.0, description="0.5 = half-Kelly")
    max_position_fraction: float = Field(MAX_POSITION_FRACTION, ge=0.0, le=MAX_POSITION_FRACTION_LIMIT)
    max_open_positions: int = Field(MAX_OPEN_POSITIONS, ge=0)
    max_exposure_fraction: float = Field(MAX_EXPOSURE_FRACTION, ge=0.0, le=1.0)
    min_confidence: float = Field(MIN_CONFIDENCE, ge=0.0, le=100.0)
    stop_loss_pct: float = Field(STOP_LOSS_PCT, gt=0.0, lt=1.0)
    trailing_atr_multiple: float = Field(TRAIL_ATR_MULTIPLE, gt=0.0)
    trailing_pct: float = Field(TRAIL_PCT, gt=0.0, lt=1.0, description="trailing distance when ATR is unknown")
    take_profit_pct: float = Field(TAKE_PROFIT_PCT, gt=0.0)
    trend_ma: str = Field(TREND_MA, description="daily_indicators column whose loss ends the trend")
    max_entries: int = Field(MAX_ENTRIES, ge=1)
    add_step_pct: float = Field(ADD_STEP_PCT, gt=0.0)
    add_size_ratio: float = Field(ADD_SIZE_RATIO, ge=0.0)

    def kelly_inputs(self) -> KellyInputs:
        return KellyInputs(self.win_rate, self.payoff_ratio, source="configured")

    def selector_rule(self) -> SelectorRule:
        return SelectorRule(
            min_trades=self.min_trades,
            min_win_rate=self.selector_min_win_rate,
            min_pnl_krw=self.selector_min_pnl_krw,
            action=self.selector_action,
            floor_fraction=self.floor_fraction,
        )

    def decide(self, strategy_stats: pd.DataFrame) -> KellyDecision:
        """The ledger's statistics, or the walk-forward evidence of the row while the ledger is short."""
        row = strategy_stats.iloc[-1] if len(strategy_stats) else None
        stats = TradeStats.from_row(row) if row is not None else None
        evidence = evidence_of(row) if row is not None else None
        return decide_kelly(stats, self.kelly_inputs(), self.selector_rule(), evidence)

    def plan_params(self) -> PlanParams:
        exits = ExitParams(
            stop_loss_pct=self.stop_loss_pct,
            atr_multiple=self.trailing_atr_multiple,
            trail_pct=self.trailing_pct,
            take_profit_pct=self.take_profit_pct,
        )
        fields = ("kelly_multiplier", "max_position_fraction", "max_open_positions", "max_exposure_fraction")
        fields += ("min_confidence", "trend_ma", "max_entries", "add_step_pct", "add_size_ratio")
        return PlanParams(exits=exits, **{name: getattr(self, name) for name in fields})


WITHIN_CASH = check_spec(
    "signals", "signals_within_cash", "Buys plus adds, fees included, fit in the ledger's cash", blocking=True
)
MIN_ORDER = check_spec(
    "signals", "signals_min_order", "Every order is worth at least Upbit's 5,000 KRW minimum", blocking=True
)
ONE_ORDER_PER_MARKET = check_spec(
    "signals",
    "signals_one_order_per_market",
    "No market is bought and sold (or ordered twice) on one day",
    blocking=True,
)
KELLY_WITHIN_CAP = check_spec(
    "signals",
    "signals_kelly_within_cap",
    "Each row's Kelly fraction is within [0, min(multiplier × Kelly(W, R), per-position cap)] of the config",
    blocking=True,
)
SELECTOR_HONOURED = check_spec(
    "signals",
    "signals_selector_honoured",
    "Entries follow the day's evidence: measured or configured Kelly inputs, floor, or stop",
    blocking=True,
)
MATCHES_TRADED_PLAN = check_spec(
    "signals",
    "signals_match_the_traded_plan",
    "A partition already traded gets the same orders again; different ones (new parameters, say) are a conflict",
    blocking=True,
)
ACCOUNT_RECONCILED = check_spec(
    "signals",
    "signals_account_reconciled",
    "Live: the ledger equals the Upbit account, every difference explained (else no buy today; sells still go)",
)
# What the day's plan is made of (`plan_day`'s keyword arguments of the same names).
UPSTREAM = ["candidates", "gpt_verdicts", "timing_4h", "daily_indicators", "market_breadth", "strategy_stats"]
SIGNAL_CHECKS = [
    WITHIN_CASH, MIN_ORDER, ONE_ORDER_PER_MARKET, KELLY_WITHIN_CAP, SELECTOR_HONOURED, MATCHES_TRADED_PLAN,
    ACCOUNT_RECONCILED,
]  # fmt: skip


@dg.asset(
    partitions_def=daily,
    group_name="analysis",
    kinds={"pandas"},
    metadata={
        "dagster/column_schema": dg.TableSchema(
            columns=[
                dg.TableColumn("market", "string", "Upbit market code, KRW-<coin>"),
                dg.TableColumn("side", "string", "buy (a new position), add (pyramiding) or sell (an exit)"),
                dg.TableColumn("price", "float", "Limit price, KRW, on Upbit's tick"),
                dg.TableColumn("krw_amount", "float", "KRW to spend, fees not included (buy and add)"),
                dg.TableColumn("volume", "float", "Units of the coin to sell (sell)"),
                dg.TableColumn("reason", "string", "Why: the exit rule that fired, or the entry's score, verdict, 4h"),
                dg.TableColumn("stop_price", "float", "Stop-loss of the position after this order, KRW"),
                dg.TableColumn("take_profit_price", "float", "Take-profit of the position after this order, KRW"),
                dg.TableColumn("kelly_fraction", "float", "Share of equity this entry was sized at"),
                dg.TableColumn("win_rate", "float", "Kelly's W behind the size"),
                dg.TableColumn("payoff_ratio", "float", "Kelly's R behind the size"),
                dg.TableColumn("kelly_source", "string", "W and R from: strategy_stats, walk_forward, configured"),
            ]
        )
    },
    check_specs=SIGNAL_CHECKS,
    deps=UPSTREAM,
    dagster_type=pd.DataFrame,
)
def signals(
    context: dg.AssetExecutionContext,
    config: SignalsConfig,
    ledger: TradingLedger,
    broker: Broker,
    notifier: Notifier,
    market_data: MarketData,
) -> dg.MaterializeResult:
    """Order intents for the day: exits on held positions, pyramiding adds and Kelly-sized buys."""
    upstream = {name: stored_value(context, dg.AssetKey(name)) for name in UPSTREAM}
    # Live: the account is the truth, reconciled before sizing (paper: nothing to do). Only for the
    # day that just closed; adjustments found for D are part of the cash D is sized on.
    reconciliation = broker.reconcile(context.partition_key, context.log)
    adjustments = reconciliation.adjustments
    for notice in broker.notices:
        notifier.send(f"Makenaide {context.partition_key}: {notice}")
    # The ledger as D's close left it: the partitions before D, never what was booked since, so a
    # re-run of an old day plans what that day planned (DESIGN §8).
    as_of = CutOff(context.partition_key)
    cash = ledger.cash_krw(as_of)
    limits, _ = broker.limits.resolve()
    unexplained = [a for a in adjustments if not a.explained]
    day = plan_day(
        config,
        partition_key=context.partition_key,
        **upstream,
        positions=with_highest_close_since_entry(ledger.open_positions(as_of), market_data, context.partition_key),
        cash_krw=cash,
        limits=limits,
        recorded_equity=ledger.equity_history(as_of)["equity_krw"].astype(float).tolist(),
        buys_held=reconciliation.buys_held,
    )
    orders, rejected, plan, decision, halt = day.orders, day.rejected, day.plan, day.decision, day.halt
    kelly = decision.inputs
    if halt is not None:
        context.log.warning(f"no new buys on {context.partition_key}: {halt.name}: {halt.reason}")
    counts = orders["side"].value_counts()
    context.log.info(f"{len(orders)} signals, {len(rejected)} rejected, regime {plan.regime}; {decision.reason}")
    return dg.MaterializeResult(
        value=orders,
        metadata={
            "dagster/row_count": dg.MetadataValue.int(len(orders)),
            "dagster/column_schema": context.assets_def.metadata_by_key[context.asset_key]["dagster/column_schema"],
            "signal_count": dg.MetadataValue.int(len(orders)),
            "buys": dg.MetadataValue.int(int(counts.get("buy", 0))),
            "adds": dg.MetadataValue.int(int(counts.get("add", 0))),
            "sells": dg.MetadataValue.int(int(counts.get("sell", 0))),
            "total_buy_krw": krw(orders["krw_amount"].sum()),
            "cash_krw": krw(plan.cash_krw),
            "equity_krw": krw(plan.equity_krw),
            "exposure_krw": krw(plan.exposure_krw),
            "regime": dg.MetadataValue.text(plan.regime),
            "allow_new_buys": dg.MetadataValue.bool(plan.allow_new_buys and halt is None),
            "buys_halted": dg.MetadataValue.text("no" if halt is None else f"{halt.name}: {halt.reason}"),
            "account_adjustments": table(pd.DataFrame([a.__dict__ for a in adjustments]), rows=len(adjustments)),
            "kelly": dg.MetadataValue.json(
                {"win_rate": round(kelly.win_rate, 2), "payoff_ratio": round(kelly.payoff_ratio, 2)}
                | {"source": kelly.source, "action": decision.action, "reason": decision.reason}
                | {"max_fraction": None if decision.max_fraction is None else round(decision.max_fraction, 4)}
            ),
            "kelly_source": dg.MetadataValue.text(kelly.source),
            "rejected": table(rejected, rows=100),
            "preview": table(orders),
        },
        check_results=[
            *signal_checks(orders, cash, config, decision),
            traded_plan_check(orders, context.partition_key, ledger.plan(context.partition_key)),
            check_result(
                ACCOUNT_RECONCILED,
                sorted({a.currency for a in unexplained}),
                passed=reconciliation.buys_held is None,
                adjustments=dg.MetadataValue.int(len(adjustments)),
                unexplained=dg.MetadataValue.int(len(unexplained)),
                buys_held=reconciliation.buys_held or "no",
            ),
        ],
    )


@dataclass(frozen=True)
class DayPlan:
    orders: pd.DataFrame
    rejected: pd.DataFrame
    plan: SignalPlan
    decision: KellyDecision
    halt: Refusal | None  # why no entry may go out today, if none may


def plan_day(
    config: SignalsConfig,
    *,
    partition_key: str,
    candidates: pd.DataFrame,
    gpt_verdicts: pd.DataFrame,
    timing_4h: pd.DataFrame,
    daily_indicators: pd.DataFrame,
    market_breadth: pd.DataFrame,
    strategy_stats: pd.DataFrame,
    positions: pd.DataFrame,
    cash_krw: float,
    limits: Limits,
    recorded_equity: list[float],
    buys_held: str | None = None,
) -> DayPlan:
    """The `signals` value for D from its inputs and the ledger as D's close left it, without Dagster
    (the asset and the fast backtest): Kelly decision, plan, sizing notes, the book's halts."""
    decision = config.decide(strategy_stats)
    params = config.plan_params()
    if decision.max_fraction is not None:
        params = replace(params, max_position_fraction=min(params.max_position_fraction, decision.max_fraction))
    plan = plan_signals(
        partition_key=partition_key,
        candidates=candidates,
        gpt_verdicts=gpt_verdicts,
        timing_4h=timing_4h,
        daily_indicators=daily_indicators,
        market_breadth=market_breadth,
        positions=positions,
        cash_krw=cash_krw,
        kelly_inputs=decision.inputs,
        params=params,
    )
    orders, rejected = apply_decision(plan.orders, plan.rejected, decision)
    halt = buys_halted(limits, plan.equity_krw, recorded_equity)
    if halt is None and buys_held:
        halt = Refusal("account_unreconciled", buys_held)
    if halt is not None:
        # Exits are never held back: a falling book, a halt or a strange account must still sell.
        orders, rejected = without_buys(orders, rejected, halt)
    return DayPlan(orders, rejected, plan, decision, halt)


def with_highest_close_since_entry(
    positions: pd.DataFrame, market_data: MarketData, partition_key: str
) -> pd.DataFrame:
    """Raise each position's `highest_price` to its highest daily close from entry to D.

    Derived from candles rather than kept up to date in the ledger: trading runs only on days
    with signals, so a stored high would miss every quiet day's rally, and it would also leak
    later prices into a re-run of an older partition.
    """
    if positions.empty:
        return positions
    as_of = partition_close(partition_key)
    out = positions.copy()
    columns = ("market", "opened_partition", "highest_price")
    for i, market, opened_partition, highest in zip(out.index, *(out[c].tolist() for c in columns), strict=True):
        opened = pd.Timestamp(opened_partition)
        candles = market_data.candles(market, "day", as_of, max((as_of - opened).days, 1))
        since = candles["trade_price"][candles["candle_date_time_utc"] >= opened]
        if not since.empty:
            out.at[i, "highest_price"] = max(float(highest), float(since.max()))
    return out


# ---- checks: each recomputes from the orders, never from a flag the planner set ----


def cash_overspend_krw(orders: pd.DataFrame, cash_krw: float, fee_rate: float = FEE_RATE) -> float:
    """KRW by which buys and adds (fees on top, as Upbit charges them) exceed the ledger's cash."""
    buys = orders[orders["side"].isin(["buy", "add"])]["krw_amount"]
    if buys.isna().any() or (buys < 0).any():
        return math.inf
    return float(buys.sum()) * (1.0 + fee_rate) - cash_krw


def below_minimum(orders: pd.DataFrame, min_order_krw: float = MIN_ORDER_KRW) -> pd.DataFrame:
    """Orders Upbit would refuse: a buy/add amount, or a sell's volume × price, under the minimum."""
    value = orders["krw_amount"].where(orders["side"] != "sell", orders["volume"] * orders["price"])
    return orders[~(value >= min_order_krw)]


def markets_ordered_twice(orders: pd.DataFrame) -> list[str]:
    """Markets with more than one order: a buy and a sell of one market on one day above all.

    One order per market also keeps the broker's (partition, market, side) identifiers distinct.
    """
    counts = orders["market"].value_counts()
    return sorted(counts[counts > 1].index)


def kelly_outside_cap(orders: pd.DataFrame, kelly_multiplier: float, max_position_fraction: float) -> pd.DataFrame:
    """Rows whose Kelly fraction is negative, unknown, or above multiplier × Kelly(W, R) or the cap."""
    allowed = [
        position_fraction(w, r, kelly_multiplier=kelly_multiplier, max_position_fraction=max_position_fraction)
        if pd.notna(w) and pd.notna(r) and 0 <= w <= 1 and r > 0
        else -math.inf
        for w, r in zip(orders["win_rate"], orders["payoff_ratio"], strict=True)
    ]
    fraction = orders["kelly_fraction"]
    ok = (fraction >= 0) & (fraction <= pd.Series(allowed, index=orders.index, dtype="float64") + 1e-12)
    return orders[~ok]


def signal_checks(
    orders: pd.DataFrame, cash_krw: float, config: SignalsConfig, decision: KellyDecision
) -> list[dg.AssetCheckResult]:
    """The money checks of one plan, against the cash, config and Kelly decision it was made with."""
    over = cash_overspend_krw(orders, cash_krw)
    entries = orders.loc[orders["side"].isin(["buy", "add"]), "market"]
    outside = kelly_outside_cap(orders, config.kelly_multiplier, config.max_position_fraction)
    return [
        check_result(
            WITHIN_CASH,
            entries if over > _TOLERANCE_KRW else [],
            cash_krw=dg.MetadataValue.float(cash_krw),
            overspend_krw=dg.MetadataValue.float(over) if math.isfinite(over) else "a missing or negative amount",
        ),
        check_result(MIN_ORDER, below_minimum(orders)["market"], min_order_krw=dg.MetadataValue.float(MIN_ORDER_KRW)),
        check_result(ONE_ORDER_PER_MARKET, markets_ordered_twice(orders)),
        check_result(
            KELLY_WITHIN_CAP,
            outside["market"],
            kelly_multiplier=dg.MetadataValue.float(config.kelly_multiplier),
            max_position_fraction=dg.MetadataValue.float(config.max_position_fraction),
        ),
        check_result(SELECTOR_HONOURED, selector_breaches(orders, decision)["market"], decision=decision.reason),
    ]


def traded_plan_check(orders: pd.DataFrame, partition_key: str, planned: list[str] | None) -> dg.AssetCheckResult:
    """Signals of a partition whose trading already ran must map to the orders it planned: the
    sensor then refuses to trade a changed past, and `fills` would order nothing anyway."""
    now = identifiers_for_signals(partition_key, orders)
    if planned is None:
        return check_result(MATCHES_TRADED_PLAN, [], traded="not yet")
    new, gone = sorted(set(now) - set(planned)), sorted(set(planned) - set(now))
    markets = [market_of(i, partition_key) for i in new + gone]
    return check_result(
        MATCHES_TRADED_PLAN,
        markets,
        traded="yes",
        new_orders=", ".join(new) or "none",
        planned_but_no_longer_signalled=", ".join(gone) or "none",
    )

"""The fast backtest engine: the pipeline's own functions over a range of days in one process.

Not a second strategy: every value a day of the Dagster engine materialises is computed here by
the function its asset calls (market/universe.py `universe_frame`, market/indicators.py
`universe_candles` and `indicators_of`, analysis/candidates.py `candidates_of`, the rules analyst
through analysis/verdicts.py `verdicts_of`, analysis/timing.py `timing_of`, analysis/
strategy_stats.py `stats_frame`, analysis/signals.py `plan_day`), from the same replay and the
same demo-mode settings; what Dagster adds per day (runs, events, Parquet round trips, SQL) is
left out. The ledger is `strategy/paper_book.py` (the SQL ledger's accounting and cut-offs), the
broker's paper fills are PaperBroker's rules (`execute`), and the stop watch between daily runs
is `strategy/intraday.py` (`watch_stops`). The blocking checks that can stop a day are evaluated
too, so a day the Dagster engine would not trade is not traded here either.

What it cannot reproduce it refuses (`FastEngineRefusal`): GPT verdicts (an answer per call, not
a function of the data), and run config of any op other than `breadth_and_candidates`, `signals`
and `strategy_stats`.
`makenaide_assets_tests/backtest/test_fast_engine.py` holds both engines' trades and equity equal.
"""

import itertools
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from makenaide_assets.analysis.breadth import btc_row
from makenaide_assets.analysis.candidates import CandidatesConfig, candidates_of, inputs_sane
from makenaide_assets.analysis.signals import SignalsConfig, plan_day, signal_checks, with_highest_close_since_entry
from makenaide_assets.analysis.strategy_stats import StrategyStatsConfig, stats_frame
from makenaide_assets.analysis.timing import timing_of
from makenaide_assets.analysis.verdicts import verdicts_of
from makenaide_assets.backtest.day_data import DayData
from makenaide_assets.backtest.runner import DAY_COLUMNS, BacktestRun, BacktestSpec, prepare_workdir
from makenaide_assets.market import quality
from makenaide_assets.market.indicators import BENCHMARK_MARKET, indicators_of
from makenaide_assets.market.tickers import mark_exclusions
from makenaide_assets.resources.analyst import RulesAnalyst
from makenaide_assets.resources.broker import PAPER_SLIPPAGE_BPS
from makenaide_assets.resources.ledger import identifier_for_signal
from makenaide_assets.resources.market_data import ReplayMarketData, ReplayOutOfRange
from makenaide_assets.resources.modes import resources_for
from makenaide_assets.resources.trading_limits import TradingLimits
from makenaide_assets.strategy.breadth import market_breadth as read_thermometer
from makenaide_assets.strategy.calendar import partition_close
from makenaide_assets.strategy.candles import MalformedMarketData
from makenaide_assets.strategy.exits import ExitParams
from makenaide_assets.strategy.indicators import REQUIRED_COLUMNS, indicator_snapshot, pattern_features
from makenaide_assets.strategy.intraday import IntradayExit, crossings, watch_book, watch_window
from makenaide_assets.strategy.limits import Limits, cap_buy, outside_band, sells_halted
from makenaide_assets.strategy.numbers import finite
from makenaide_assets.strategy.orders import buys_possible, orders_possible
from makenaide_assets.strategy.paper_book import DAILY, STOP, Cut, PaperBook, paper_fill, slipped_price
from makenaide_assets.strategy.rules import CandidateParams, judge_candidates
from makenaide_assets.strategy.ticks import FEE_RATE, MIN_ORDER_KRW, round_volume
from makenaide_assets.trading.portfolio import CASH_MARKET, mark_to_market
from makenaide_assets.trading.stop_watch import StopWatchConfig, shared_exits

# Run config the fast engine reproduces: the ops whose config is a function's parameters here.
SUPPORTED_OPS = {
    "breadth_and_candidates": CandidatesConfig,
    "signals": SignalsConfig,
    "strategy_stats": StrategyStatsConfig,
}
ORDER_COLUMNS = [
    "identifier", "market", "side", "price", "volume", "fee", "krw_value", "status", "reason", "status_reason",
    "executed_at", "realized_pnl_krw", "ref_price", "requested_krw", "requested_volume", "broker", "exchange_uuid",
    "partition_key", "kind", "triggered_at",
]  # fmt: skip
SIGNAL_COLUMNS = ["partition_key", "market", "side", "kelly_source", "kelly_action", "kelly_fraction", "stats_trades"]
EQUITY_COLUMNS = ["partition_key", "cash_krw", "positions_value_krw", "equity_krw"]
# Days whose indicators and candidates are computed together (memory: days × markets × 400 candles).
PREPARE_DAYS = 32


class FastEngineRefusal(ValueError):
    """The fast engine cannot reproduce what was asked; the message says what and what to use instead."""


def refuse_unsupported(spec: BacktestSpec) -> None:
    """Say no, clearly, to what only the Dagster engine runs, rather than approximate it."""
    if spec.analyst != "rules":
        raise FastEngineRefusal(
            f"analyst {spec.analyst!r}: GPT verdicts cannot be reproduced by the fast engine (each is an API answer, "
            "not a function of the data); use --engine dagster, or the rules analyst"
        )
    unknown = sorted(set(spec.ops_config) - set(SUPPORTED_OPS))
    if unknown:
        raise FastEngineRefusal(
            f"run config for {unknown}: the fast engine takes config only for {sorted(SUPPORTED_OPS)}; "
            "use --engine dagster for the rest"
        )
    for op, config in spec.ops_config.items():
        extra = sorted(set(config) - {"config"})
        if extra:
            raise FastEngineRefusal(f"run config of {op}: only 'config' is reproduced, not {extra}")
        _config(spec, op)  # a value the op's config refuses (pydantic) is refused before anything is written


def _config(spec: BacktestSpec, op: str) -> Any:
    return SUPPORTED_OPS[op](**dict(spec.ops_config.get(op, {}).get("config", {})))


@dataclass
class Day:
    """What the Dagster engine's runner records per partition (runner.DAY_COLUMNS)."""

    partition: str
    analysis_ok: bool = False
    signal_count: int = 0
    traded: bool = False
    trading_ok: bool | None = None
    analysis_s: float = 0.0
    trading_s: float = 0.0
    error: str | None = None
    signals: pd.DataFrame | None = None
    stats_trades: int = 0
    prepared: "Prepared | None" = None  # D's analysis up to candidates, once `analyse` read it
    reported: bool = False  # a trading or report run would have run: equity recorded, stops watched
    positions: pd.DataFrame | None = None  # held before D's orders, highest close since entry through D
    fills: int = 0  # D's daily fills
    _indicators: pd.DataFrame | None = None

    def row(self) -> dict[str, Any]:
        return {column: getattr(self, column) for column in DAY_COLUMNS}

    @property
    def indicators(self) -> pd.DataFrame | None:
        """D's `daily_indicators`, cut from the prepared days the first time it is read."""
        if self._indicators is None and self.prepared is not None:
            self._indicators = self.prepared.indicators
        return self._indicators


@dataclass(frozen=True)
class Rows:
    """Rows [start, stop) of a frame computed for many days at once: one day's frame, cut when read.
    Most days never read theirs (nothing passed, nothing held), and a cut costs more than the test."""

    frame: pd.DataFrame
    start: int
    stop: int

    def cut(self) -> pd.DataFrame:
        return self.frame.iloc[self.start : self.stop].reset_index(drop=True)


@dataclass
class Prepared:
    """A day's analysis up to `candidates`: it depends on the recording only, not on the book.
    Shared read-only (backtest/shared_analysis.py): reading a frame cuts a new one each time."""

    error: str | None = None
    markets: list[str] = field(default_factory=list)  # the universe's passed markets
    passed: list[str] = field(default_factory=list)  # the markets whose candidates passed, in their order
    frames: dict[str, Rows | pd.DataFrame] = field(default_factory=dict)  # universe, indicators, candidates

    def _frame(self, name: str) -> pd.DataFrame | None:
        held = self.frames.get(name)
        return held.cut() if isinstance(held, Rows) else held

    @property
    def universe(self) -> pd.DataFrame | None:
        return self._frame("universe")

    @property
    def indicators(self) -> pd.DataFrame | None:
        return self._frame("indicators")

    @property
    def candidates(self) -> pd.DataFrame | None:
        return self._frame("candidates")


@dataclass
class FastEngine:
    spec: BacktestSpec
    market_data: ReplayMarketData
    book: PaperBook
    limits: Limits
    signals_config: SignalsConfig
    stats_config: StrategyStatsConfig
    candidate_params: CandidateParams
    resources: dict[str, Any]
    orders: list[dict[str, Any]] = field(default_factory=list)
    equity: list[dict[str, Any]] = field(default_factory=list)
    slippage_bps: float = PAPER_SLIPPAGE_BPS
    fee_rate: float = FEE_RATE

    @classmethod
    def for_spec(cls, spec: BacktestSpec) -> "FastEngine":
        """Demo mode's settings (universe thresholds, blacklist), the replay, an empty book."""
        limits, _ = TradingLimits().resolve()
        return cls(
            spec=spec,
            market_data=ReplayMarketData(replay_dir=spec.replay_dir),
            book=PaperBook(spec.initial_cash_krw),
            limits=limits,
            signals_config=_config(spec, "signals"),
            stats_config=_config(spec, "strategy_stats"),
            candidate_params=_config(spec, "breadth_and_candidates").params(),
            resources=resources_for("demo", has_openai_key=False),
        )

    _tickers: pd.DataFrame | None = None
    _tickers_ok: bool = False
    _day_data: DayData | None = None
    _nothing_asked: tuple[pd.DataFrame, pd.DataFrame] | None = None

    def tickers(self, as_of: pd.Timestamp) -> pd.DataFrame:
        """`tickers` of D: the recording's market list with the blacklist marked, the same list every
        day of a replay; `markets` still says, per day, when D lies outside the recording."""
        if self._tickers is None:
            markets = self.market_data.markets(as_of)  # raises ReplayOutOfRange outside the recording
            self._tickers = mark_exclusions(markets, self.resources["blacklist"].entries())
            # `tickers_well_formed`: the same list every day, so the same answer every day.
            self._tickers_ok = not self._tickers.empty and not self._tickers["market"].duplicated().any()
            self._day_data = DayData(self.market_data, self._tickers["market"].tolist())
        else:
            self.day_data.within_recording(as_of, self.market_data.replay_dir)
        return self._tickers

    @property
    def day_data(self) -> DayData:
        assert self._day_data is not None, "tickers() reads the market list first"
        return self._day_data

    # ---- analysis_job: tickers … candidates, for many days at once ------------------------------
    def prepare(self, keys: list[str]) -> dict[str, Prepared]:
        """tickers → universe → daily_candles (and their blocking checks) per day, then the indicator
        snapshot and the candidates of every day in one computation: each window of candles is its
        own column of `indicator_snapshot`'s matrices, so a day's rows are its own call's. Days of a
        single universe market are computed together too, with each column summed as a lone column
        is (`alone`: NumPy adds a lone column in another order than the columns of a matrix); a day
        without one runs its own call."""
        thresholds = self.resources["universe_thresholds"]
        prepared, listed = {key: Prepared() for key in keys}, []
        for key in keys:
            try:
                self.tickers(partition_close(key))
            except (ReplayOutOfRange, MalformedMarketData) as exc:
                prepared[key].error = f"market: {exc}"
                continue
            if not self._tickers_ok:
                prepared[key].error = "failed checks: tickers_well_formed"
                continue
            listed.append(key)
        if not listed:
            return prepared
        data = self.day_data
        universe = data.universes(self._tickers, thresholds, listed)
        n = len(self._tickers)
        names, passed = universe["market"].to_numpy(), universe["passed"].to_numpy()
        together: dict[bool, list[tuple[str, list[str]]]] = {False: [], True: []}
        for i, key in enumerate(listed):
            day = prepared[key]
            day.frames["universe"] = Rows(universe, i * n, (i + 1) * n)
            day.markets = markets = names[i * n : (i + 1) * n][passed[i * n : (i + 1) * n]].tolist()
            fetch = [*markets, *([BENCHMARK_MARKET] if BENCHMARK_MARKET not in markets else [])]
            failed = [
                name
                for name, found in (
                    ("daily_candles_ohlc_sane", data.bad_ohlc(fetch, key, thresholds.history_days)),
                    ("daily_candles_fresh", data.stale(fetch, key)),
                )
                if found
            ]
            if failed:
                day.error = f"failed checks: {', '.join(failed)}"
            elif markets:
                together[len(markets) == 1].append((key, markets))
            else:
                self._prepare_alone(key, day, thresholds.history_days)
        for alone, batch in together.items():
            if batch:
                self._prepare_together(batch, prepared, thresholds.history_days, alone=alone)
        for day in prepared.values():
            if day.passed and not day.error and not inputs_sane(day.candidates).passed:
                day.error = "failed checks: candidates_inputs_sane"
        return prepared

    def _prepare_alone(self, key: str, day: Prepared, history_days: int) -> None:
        """A day without a universe market: its own calls of the assets' functions."""
        candles, _ = self.day_data.candles_of(day.markets, history_days, key)
        day.frames["indicators"] = indicators = indicators_of(candles)
        if quality.unexplained_nans(indicators, REQUIRED_COLUMNS)[0]:
            day.error = "failed checks: daily_indicators_no_unexplained_nan"
            return
        day.frames["candidates"] = candidates = candidates_of(candles, indicators, self.candidate_params)
        day.passed = candidates.loc[candidates["passed"], "market"].tolist()

    def _prepare_together(
        self, batch: list[tuple[str, list[str]]], prepared: dict[str, Prepared], history_days: int, *, alone: bool
    ) -> None:
        data = self.day_data
        stacked = data.stacked(batch, history_days)
        btc = data.day.get(BENCHMARK_MARKET)
        btc_frame = pd.DataFrame(
            {
                "candle_date_time_utc": btc.starts if btc else np.array([], dtype="datetime64[ns]"),
                "trade_price": btc.columns["trade_price"] if btc else np.array([], dtype="float64"),
            }
        )
        indicators = indicator_snapshot(stacked, btc_frame, alone=alone)
        for market in quality.unexplained_nans(indicators, REQUIRED_COLUMNS)[0]:
            prepared[market[:10]].error = "failed checks: daily_indicators_no_unexplained_nan"
        keys = indicators["market"].str.slice(0, 10)
        rs_rank = indicators.groupby(keys)["rs_vs_btc"].rank(pct=True) * 100
        params = self.candidate_params
        features = pattern_features(stacked, params.patterns, alone=alone)
        candidates = judge_candidates(indicators, rs_rank, features, params)
        markets = indicators["market"].str.slice(11)
        indicators["market"], candidates["market"] = markets, markets.to_numpy()
        names, passed = markets.to_numpy(), candidates["passed"].to_numpy()
        bounds = np.flatnonzero(np.r_[True, keys.to_numpy()[1:] != keys.to_numpy()[:-1], True])
        for a, b in itertools.pairwise(bounds):
            day = prepared[keys.iloc[a]]
            day.frames["indicators"], day.frames["candidates"] = Rows(indicators, a, b), Rows(candidates, a, b)
            if day.error is None:
                day.passed = names[a:b][passed[a:b]].tolist()

    # ---- analysis_job: … signals, on the book as D's close left it ------------------------------
    def analyse(self, day: Day, prepared: Prepared) -> None:
        key, md = day.partition, self.market_data
        if prepared.error is not None:
            day.error = prepared.error
            return
        before = Cut(key)
        positions = self.book.open_positions(before)
        day.reported, day.analysis_ok, day.prepared = True, True, prepared
        passed = prepared.passed
        if not passed and positions.empty:
            return  # nothing to buy, nothing held: no signal, whatever the book and the regime
        candidates, indicators = prepared.candidates, day.indicators
        day.positions = with_highest_close_since_entry(positions, md, key)
        # Each test below is the planner's own (strategy/orders.py); a day they all rule out would
        # plan no order, so it ends as such a day ends (no signal), without the rest of the work.
        # The planner never buys a market already held (only its pyramid rules add to one).
        held = set(day.positions["market"])
        buyable = [market for market in passed if market not in held]
        params = self.signals_config.plan_params()
        exits_or_adds = not day.positions.empty and orders_possible(day.positions, indicators, params)
        if not buyable and not exits_or_adds:
            return  # no candidate to buy, no held position at an exit or a pyramid step: no signal
        candles, _ = self.day_data.candles_of(prepared.markets, self.resources["universe_thresholds"].history_days, key)
        if not passed and self._nothing_asked is not None:
            verdicts, timing = self._nothing_asked  # no candidate: no verdict, no timing (the same empty frames)
        else:
            asked = candles[candles["market"].isin(set(passed))]
            verdicts = verdicts_of(RulesAnalyst(), key, candidates, indicators, asked)
            if not exits_or_adds and not buys_possible(buyable, verdicts, params):
                return  # every candidate refused by its verdict, nothing held to sell or add to
            timing = timing_of(md, verdicts, partition_close(key))
            if not passed:
                self._nothing_asked = (verdicts, timing)
        if not exits_or_adds and not buys_possible(buyable, verdicts, params, timing):
            return  # every candidate refused by its verdict or its 4-hour timing
        breadth = pd.DataFrame([{"date": key, **read_thermometer(indicators, btc_row(indicators, candles))}])
        # Walk-forward evidence for Kelly (KellyEvidence of the demo resources), as `strategy_stats` reads it.
        evidence = self.resources["kelly_evidence"].trades()
        stats = stats_frame(self.book.closed_trades(before), key, self.stats_config.window_days, evidence)
        cash = self.book.cash_krw(before)
        recorded = [e["equity_krw"] for e in self.equity if e["partition_key"] < key]
        plan = plan_day(
            self.signals_config,
            partition_key=key,
            candidates=candidates,
            gpt_verdicts=verdicts,
            timing_4h=timing,
            daily_indicators=indicators,
            market_breadth=breadth,
            strategy_stats=stats,
            positions=day.positions,
            cash_krw=cash,
            limits=self.limits,
            recorded_equity=recorded,
        )
        day.signals = plan.orders
        day.signal_count, day.stats_trades = len(plan.orders), int(stats["trades"].iloc[0])
        checks = signal_checks(plan.orders, cash, self.signals_config, plan.decision) if len(plan.orders) else []
        failed = [c.check_name for c in checks if not c.passed]
        day.analysis_ok = not failed
        day.error = f"failed checks: {', '.join(failed)}" if failed else None

    # ---- trading_job (fills, portfolio) or report_job (portfolio) ------------------------------
    def trade(self, day: Day) -> None:
        """PaperBroker.execute of the day's signals, sells first (the cash they free may pay a buy)."""
        key = day.partition
        bought = 0.0
        records = day.signals.to_dict("records") if day.signals is not None else []
        for signal in sorted(records, key=lambda row: 0 if row["side"] == "sell" else 1):
            fill = self._execute(signal, key, bought)
            day.fills += fill is not None
            if fill is not None and fill["side"] != "sell":
                bought += fill["krw_value"]

    def _execute(self, signal: dict[str, Any], key: str, bought_today: float) -> dict[str, Any] | None:
        market, side = str(signal["market"]), str(signal["side"])
        identifier = identifier_for_signal(key, signal)
        order = {
            "identifier": identifier, "market": market, "side": side, "status": "skipped",
            "reason": None if pd.isna(signal.get("reason")) else str(signal.get("reason")),
            "ref_price": finite(signal.get("price")), "requested_krw": finite(signal.get("krw_amount")),
            "requested_volume": finite(signal.get("volume")), "broker": "paper", "partition_key": key, "kind": DAILY,
        }  # fmt: skip
        self.orders.append(order)
        quote = self.market_data.first_price_after(market, partition_close(key))
        if side in ("buy", "add"):
            krw = finite(signal.get("krw_amount"))
            if krw is None or krw <= 0:
                return _skip(order, "no_amount", f"{side} signal without a positive krw_amount")
            if krw < MIN_ORDER_KRW:
                return _skip(order, "under_min_total", f"{krw:,.0f} KRW is below Upbit's minimum order")
            if self.limits.halt:
                return _skip(order, "operator_halt", f"halt switch: {self.limits.halt}")
            band = outside_band(self.limits, finite(signal.get("price")), None if quote is None else quote[1])
            if band is not None:
                return _skip(order, band.name, band.reason)
            cash = self.book.cash_krw(Cut(key, own_orders=True))
            capped = cap_buy(self.limits, krw, bought_today, cash, self.fee_rate)
            if capped.krw < MIN_ORDER_KRW:
                name = "insufficient_cash" if capped.binding == "cash" else "over_limit"
                return _skip(order, name, f"{capped.note}, below Upbit's minimum order")
            order["requested_krw"] = capped.krw
            if capped.note is not None:
                order["status_reason"] = capped.note
            amount: dict[str, float] = {"krw_amount": capped.krw}
        elif side == "sell":
            if (halted := sells_halted(self.limits)) is not None:
                return _skip(order, halted.name, halted.reason)
            volume = finite(signal.get("volume"))
            if volume is None or volume <= 0:
                return _skip(order, "no_volume", "sell signal without a positive volume")
            held = self.book.open_positions(Cut(key, own_orders=True)).set_index("market")
            if market not in held.index:
                return _skip(order, "no_position", f"the ledger holds no {market}")
            volume = round_volume(min(volume, float(held.at[market, "volume"])))
            if volume <= 0:
                return _skip(order, "no_volume", f"the {market} position rounds to zero volume")
            order["requested_volume"] = volume
            if quote is not None and volume * slipped_price(quote[1], side, self.slippage_bps) < MIN_ORDER_KRW:
                return _skip(order, "under_min_total", f"{volume} {market} is below the minimum")
            amount = {"volume": volume}
        else:
            order["status"] = "refused"
            return None
        if quote is None:
            return _skip(order, "no_price", f"no {market} price at or after {partition_close(key)}")
        executed_at, price = quote[0], slipped_price(quote[1], side, self.slippage_bps)
        volume, fee = paper_fill(side, price, self.fee_rate, **amount)
        fill = self.book.book(
            identifier, partition_key=key, market=market, side=side, price=price, volume=volume, fee=fee,
            executed_at=executed_at,
        )  # fmt: skip
        order.update(status="done", **{k: fill[k] for k in ("price", "volume", "fee", "krw_value", "executed_at")})
        order["realized_pnl_krw"] = fill["realized_pnl_krw"]
        return fill

    def value(self, day: Day) -> None:
        """`portfolio`: the book after D's orders valued at D's close (at cost without one); equity recorded."""
        key = day.partition
        cut = Cut(key, own_orders=True)
        if not self.book.holds_anything():
            cash = self.book.cash_krw(cut)
            self.equity.append({"partition_key": key, "cash_krw": cash, "positions_value_krw": 0.0, "equity_krw": cash})
            return
        positions = self.book.open_positions(cut)
        closes: dict[str, float | None] = {}
        for market in positions["market"]:
            closes[market] = self.day_data.close_of(market, key)  # None: no candle dated D
        cash = self.book.cash_krw(cut)
        frame = mark_to_market(positions, closes, cash)
        value = float(frame.loc[frame["market"] != CASH_MARKET, "value_krw"].sum())
        self.equity.append(
            {"partition_key": key, "cash_krw": cash, "positions_value_krw": value, "equity_krw": cash + value}
        )

    # ---- the stop watch between D's trading run and D+1's analysis ------------------------------
    def watch_stops(self, day: Day, exits: ExitParams) -> None:
        """`stop_levels` then `stop_exits` at the end of the watch (DayRunner's tick): every position
        held after D's fills, its levels fixed at D's close, against D+1's recorded 4-hour candles; a
        crossing is sold by the paper broker where the rule fills it (slippage against us), booked
        under D as a stop exit. Markets without 4-hour candles are left to the daily rule."""
        key, md = day.partition, self.market_data
        if not self.book.holds_anything():
            return
        if day.positions is not None and not day.fills:
            positions = day.positions  # nothing traded on D: the positions `signals` judged
        else:
            positions = self.book.open_positions(Cut(key, own_orders=True))
            if positions.empty:
                return
            positions = with_highest_close_since_entry(positions, md, key)
        if positions.empty:
            return
        indicators = day.indicators if day.indicators is not None else pd.DataFrame(columns=["market"])
        levels = watch_book(positions, indicators, exits)
        start, end = watch_window(key)
        prices = md.intraday_prices([level.market for level in levels], start, end)
        for crossing in crossings(levels, prices):
            volume = next(level.volume for level in levels if level.market == crossing.market)
            self._stop_exit(key, crossing, volume)

    def _stop_exit(self, key: str, crossing: IntradayExit, volume: float) -> None:
        """Broker.execute_stop_exits of one crossing (PaperBroker: the rule's price, slippage, fee)."""
        market = crossing.market
        identifier = identifier_for_signal(key, {"market": market, "side": "sell", "signal_id": STOP})
        order = {
            "identifier": identifier, "market": market, "side": "sell", "status": "skipped", "reason": crossing.reason,
            "ref_price": crossing.price, "requested_volume": volume, "broker": "paper", "partition_key": key,
            "kind": STOP, "triggered_at": crossing.at,
        }  # fmt: skip
        self.orders.append(order)
        if (halted := sells_halted(self.limits)) is not None:
            _skip(order, halted.name, halted.reason)
            return
        held = self.book.open_positions(Cut(key, own_orders=True, stop_exits=True)).set_index("market")
        if market not in held.index:
            _skip(order, "no_position", f"the ledger holds no {market}")
            return
        volume = round_volume(min(volume, float(held.at[market, "volume"])))
        price = slipped_price(crossing.price, "sell", self.slippage_bps)
        if volume <= 0 or volume * price < MIN_ORDER_KRW:
            _skip(order, "under_min_total", f"{volume} {market} is below the minimum")
            return
        order["requested_volume"] = volume
        volume, fee = paper_fill("sell", price, self.fee_rate, volume=volume)
        fill = self.book.book(
            identifier, partition_key=key, market=market, side="sell", price=price, volume=volume, fee=fee,
            executed_at=crossing.at, kind=STOP,
        )  # fmt: skip
        order.update(status="done", **{k: fill[k] for k in ("price", "volume", "fee", "krw_value", "executed_at")})
        order["realized_pnl_krw"] = fill["realized_pnl_krw"]


def _skip(order: dict[str, Any], name: str, reason: str) -> None:
    order.update(status="skipped", status_reason=f"{name}: {reason}")
    return None


# How a run gets its days prepared up to `candidates`: `engine.prepare` of a chunk of days by default;
# a walk-forward's cells take them from a cache shared across the process (backtest/shared_analysis.py).
PrepareDays = Callable[["FastEngine", list[str]], dict[str, Prepared]]


def _prepare_chunk(engine: "FastEngine", chunk: list[str]) -> dict[str, Prepared]:
    return engine.prepare(chunk)


def run_fast(
    spec: BacktestSpec, progress: Callable[[str], None] | None = None, prepare_days: PrepareDays = _prepare_chunk
) -> BacktestRun:
    """The backtest of `spec` through the fast engine: the same outputs as `runner.run_backtest`."""
    refuse_unsupported(spec)
    prepare_workdir(spec.workdir, spec)
    started = time.monotonic()
    _, warning = TradingLimits().resolve()
    if warning and progress is not None:
        progress(warning)
    engine = FastEngine.for_spec(spec)
    # The stop watch watches the exits `signals` judges with (the Dagster engine's trading runs get
    # them as `stop_levels`' run config: trading.stop_watch.stop_levels_config).
    exits = StopWatchConfig(**shared_exits(spec.ops_config.get("signals", {}).get("config", {}))).exits()
    days: list[Day] = []
    partitions = spec.partitions()
    prepared: dict[str, Prepared] = {}
    for i, partition in enumerate(partitions, 1):
        day = Day(partition)
        t0 = time.monotonic()
        if partition not in prepared:
            chunk = partitions[i - 1 : i - 1 + PREPARE_DAYS]
            prepared = prepare_days(engine, chunk)
            share = (time.monotonic() - t0) / len(chunk)  # each day's part of the shared computation
            t0 = time.monotonic()
        engine.analyse(day, prepared[partition])
        t1 = time.monotonic()
        day.analysis_s = share + t1 - t0
        if day.reported:
            day.traded = day.analysis_ok and day.signal_count > 0
            if day.traded:
                engine.trade(day)
            engine.value(day)
            engine.watch_stops(day, exits)
            day.trading_ok = True
            day.trading_s = time.monotonic() - t1
        days.append(day)
        if progress is not None and (partition.endswith("-01") or i == len(partitions)):
            progress(_month_line(days, engine, i, len(partitions), time.monotonic() - started))
    return _run_of(spec, days, engine, time.monotonic() - started)


def _month_line(days: list[Day], engine: FastEngine, i: int, n: int, seconds: float) -> str:
    done = [o for o in engine.orders if o["status"] == "done"]
    equity = engine.equity[-1]["equity_krw"] if engine.equity else engine.spec.initial_cash_krw
    failed = sum(not d.analysis_ok for d in days)
    return (
        f"[{i}/{n}] {days[-1].partition}: equity {equity:,.0f} KRW, {len(done)} fills so far"
        + (f", {failed} days not analysed" if failed else "")
        + f" ({seconds:.1f}s)"
    )


def _run_of(spec: BacktestSpec, days: list[Day], engine: FastEngine, seconds: float) -> BacktestRun:
    frame = pd.DataFrame([d.row() for d in days], columns=DAY_COLUMNS)
    frame.to_csv(spec.workdir / "days.csv", index=False)
    orders = pd.DataFrame(engine.orders, columns=ORDER_COLUMNS)
    for column in ("price", "volume", "fee", "krw_value", "realized_pnl_krw", "ref_price"):
        orders[column] = orders[column].astype("float64")
    orders["executed_at"] = pd.to_datetime(orders["executed_at"])
    orders["triggered_at"] = pd.to_datetime(orders["triggered_at"])
    orders.to_csv(spec.workdir / "orders.csv", index=False)
    signals = [
        d.signals.assign(partition_key=d.partition, stats_trades=d.stats_trades)
        for d in days
        if d.signals is not None and len(d.signals)
    ]
    sized = pd.concat(signals, ignore_index=True)[SIGNAL_COLUMNS] if signals else None
    return BacktestRun(
        spec,
        frame,
        orders,
        pd.DataFrame(engine.equity, columns=EQUITY_COLUMNS),
        seconds,
        signals=sized if sized is not None else pd.DataFrame(columns=SIGNAL_COLUMNS),
        engine="fast",
    )

"""`strategy_stats` through Dagster on a real ledger, and `signals` sizing from it.

The fills here are ledger bookings written by hand (the ledger tests do the same); no candle is
made up: `signals` runs on the recorded sample's prices through test_signals' upstream frames.
"""

from dataclasses import replace
from pathlib import Path
from typing import Any

import dagster as dg
import pandas as pd
import pytest

from makenaide_assets.analysis import signals as signals_module
from makenaide_assets.analysis import strategy_stats as stats_module
from makenaide_assets.analysis.signals import signals
from makenaide_assets.analysis.strategy_stats import matches_ledger, stats_frame, strategy_stats
from makenaide_assets.resources.broker import PaperBroker
from makenaide_assets.resources.io_manager import ParquetIOManager
from makenaide_assets.resources.kelly_evidence import KellyEvidence
from makenaide_assets.resources.ledger import TradingLedger
from makenaide_assets.resources.market_data import ReplayMarketData
from makenaide_assets.resources.notifier import Notifier
from makenaide_assets.settings import SAMPLE_REPLAY_DIR
from makenaide_assets.strategy.stats import in_window
from makenaide_assets_tests.analysis.test_signals import DAY, stand_in, upstream


def book(ledger: TradingLedger, ident: str, day: str, market: str, side: str, price: float, volume: float) -> None:
    """A paper fill of partition `day`: executed as the next day opens."""
    ledger.record_intent(ident, partition_key=day, market=market, side=side, broker="paper", ref_price=price,
                         krw_amount=None, volume=None, reason="test")  # fmt: skip
    executed = pd.Timestamp(day) + pd.Timedelta(days=1)
    ledger.record_fill(ident, price=price, volume=volume, fee=price * volume * 0.0005, executed_at=executed)


def round_trip(ledger: TradingLedger, n: int, bought: str, sold: str, exit_price: float) -> None:
    book(ledger, f"b{n}", bought, f"KRW-T{n}", "buy", 100.0, 10.0)
    book(ledger, f"s{n}", sold, f"KRW-T{n}", "sell", exit_price, 10.0)


@pytest.fixture
def ledger(tmp_path: Path) -> TradingLedger:
    return TradingLedger(url=f"sqlite:///{tmp_path / 'ledger.sqlite'}", initial_cash_krw=10_000_000.0)


def materialise(
    assets: list, ledger: TradingLedger, tmp_path: Path, day: str, **kw: object
) -> dg.ExecuteInProcessResult:
    resources = {
        "io_manager": ParquetIOManager(base_path=str(tmp_path / "storage")),
        "ledger": ledger,
        "market_data": ReplayMarketData(replay_dir=str(SAMPLE_REPLAY_DIR)),
        "broker": PaperBroker(ledger=ledger, market_data=ReplayMarketData(replay_dir=str(SAMPLE_REPLAY_DIR))),
        "notifier": Notifier(),
        "kelly_evidence": KellyEvidence(),  # none: the ledger's own trades only
    }
    return dg.materialize(assets, resources=resources, partition_key=day, **kw)


def test_counts_only_what_d_could_know_and_a_rerun_after_later_trades_agrees(
    ledger: TradingLedger, tmp_path: Path
) -> None:
    round_trip(ledger, 1, "2023-10-01", "2023-10-05", 110.0)  # +10 %, known long before
    round_trip(ledger, 2, "2023-10-02", "2023-10-09", 95.0)  # -5 %, ordered D-1, filled as D opens
    first = materialise([strategy_stats], ledger, tmp_path, "2023-10-10")
    [evaluation] = first.get_asset_check_evaluations()
    assert evaluation.passed and evaluation.metadata["trades_in_ledger"].value == 2
    row = first.asset_value("strategy_stats").iloc[0]
    assert (row["trades"], row["wins"], row["losses"]) == (2, 1, 1)
    assert row["payoff_ratio"] == pytest.approx((1100 - 0.55 - 1000.5) / 1000.5 / ((1000.5 - 950 + 0.475) / 1000.5))
    assert row["last_trade_partition"] == "2023-10-09"

    # Later trading: D's own sell (filled at D's close) and a later one. A re-run of D is unchanged.
    round_trip(ledger, 3, "2023-10-03", "2023-10-10", 130.0)
    round_trip(ledger, 4, "2023-10-11", "2023-10-15", 80.0)
    again = materialise([strategy_stats], ledger, tmp_path, "2023-10-10")
    assert all(e.passed for e in again.get_asset_check_evaluations())
    pd.testing.assert_frame_equal(again.asset_value("strategy_stats"), first.asset_value("strategy_stats"))
    day_before = stats_frame(ledger.closed_trades(None), "2023-10-09", 365).iloc[0]
    assert day_before["trades"] == 1 and day_before["trades_known"] == 1


def test_the_ledger_check_names_trades_the_statistics_should_not_have_counted(
    ledger: TradingLedger, tmp_path: Path
) -> None:
    round_trip(ledger, 1, "2023-10-01", "2023-10-05", 110.0)
    round_trip(ledger, 2, "2023-10-02", "2023-10-12", 90.0)  # sold after D: D cannot know it
    closed = ledger.closed_trades(None)
    honest_window = in_window(closed, "2023-10-10", 365)
    honest = stats_frame(closed, "2023-10-10", 365)
    assert matches_ledger(honest, honest_window, ledger, "2023-10-10", 365).passed
    # A filter that let the later sale through, and one that lost the earlier one.
    leaked = in_window(closed, "2023-10-13", 365)
    result = matches_ledger(stats_frame(closed, "2023-10-13", 365), leaked, ledger, "2023-10-10", 365)
    assert not result.passed and result.severity == dg.AssetCheckSeverity.ERROR
    assert result.metadata["markets"].value == "KRW-T2"
    assert result.metadata["counted_but_not_in_ledger"].value == "KRW-T2 sold 2023-10-12"
    lost = matches_ledger(honest.assign(trades=0), honest_window.iloc[0:0], ledger, "2023-10-10", 365)
    assert not lost.passed and lost.metadata["not_counted"].value == "KRW-T1 sold 2023-10-05"
    # Right trades, wrong totals (the row and the trades disagree).
    assert not matches_ledger(honest.assign(total_pnl_krw=1.0), honest_window, ledger, "2023-10-10", 365).passed


def test_an_off_by_one_filter_fails_the_blocking_check_and_signals_never_run(
    ledger: TradingLedger, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The ledger read stops at D's cut-off, so a trade sold on D can no longer leak in; the slip
    # left to catch is at the window's other end: a trade sold on its first day, lost by `>`.
    first_day = (pd.Timestamp(DAY) - pd.Timedelta(days=365)).strftime("%Y-%m-%d")
    round_trip(ledger, 1, "2022-10-01", first_day, 110.0)
    round_trip(ledger, 2, "2023-10-03", "2023-10-05", 130.0)

    def window_from_the_day_after(closed: pd.DataFrame, partition_key: str, window_days: int) -> pd.DataFrame:
        known = stats_module.known_by(closed, partition_key)
        return known[known["partition_key"].astype(str) > first_day]  # `>` where `>=` belongs

    monkeypatch.setattr(stats_module, "in_window", window_from_the_day_after)
    frames = [stand_in(k, f) for k, f in upstream().items() if k != "strategy_stats"]
    result = materialise([*frames, strategy_stats, signals], ledger, tmp_path, DAY, raise_on_error=False)
    [evaluation] = result.get_asset_check_evaluations()
    assert not evaluation.passed and evaluation.metadata["markets"].value == "KRW-T1"
    assert result.get_failed_step_keys() == {"strategy_stats"}
    assert not result.asset_materializations_for_node("signals")


def closed_history(ledger: TradingLedger, wins: int, losses: int) -> None:
    """wins + losses round trips, all sold before DAY (2023-10-24)."""
    for n in range(wins + losses):
        bought = (pd.Timestamp("2023-08-01") + pd.Timedelta(days=n)).strftime("%Y-%m-%d")
        sold = (pd.Timestamp("2023-09-01") + pd.Timedelta(days=n)).strftime("%Y-%m-%d")
        round_trip(ledger, n, bought, sold, 112.0 if n < wins else 96.0)


def plan(ledger: TradingLedger, tmp_path: Path, config: dict | None = None) -> dg.ExecuteInProcessResult:
    frames = [stand_in(k, f) for k, f in upstream().items() if k != "strategy_stats"]
    run_config = {"ops": {"signals": {"config": config}}} if config else None
    assets = [*frames, strategy_stats, signals]
    result = materialise(assets, ledger, tmp_path, DAY, run_config=run_config)
    assert all(e.passed for e in result.get_asset_check_evaluations())
    return result


def test_too_few_trades_fall_back_to_the_configured_inputs(ledger: TradingLedger, tmp_path: Path) -> None:
    closed_history(ledger, wins=19, losses=0)  # 19 straight wins are still not evidence enough
    buy = plan(ledger, tmp_path).asset_value("signals").set_index("market").loc["KRW-BTC"]
    assert (buy["kelly_source"], buy["kelly_action"], buy["win_rate"], buy["payoff_ratio"]) == (
        "configured", "fallback", 0.45, 2.0)  # fmt: skip
    assert buy["kelly_fraction"] == pytest.approx(0.0875)
    assert "19 closed trades in the window (< 20)" in buy["reason"]


def test_enough_trades_size_from_the_measured_win_rate_and_payoff(ledger: TradingLedger, tmp_path: Path) -> None:
    closed_history(ledger, wins=14, losses=10)
    result = plan(ledger, tmp_path)
    buy = result.asset_value("signals").set_index("market").loc["KRW-BTC"]
    win, loss = (1120 - 0.56 - 1000.5) / 1000.5, (1000.5 - 960 + 0.48) / 1000.5
    assert (buy["kelly_source"], buy["win_rate"]) == ("strategy_stats", 14 / 24)
    assert buy["payoff_ratio"] == pytest.approx(win / loss)
    w, r = 14 / 24, win / loss
    assert buy["kelly_fraction"] == pytest.approx(min(0.5 * (w - (1 - w) / r), 0.10))
    assert result.asset_materializations_for_node("signals")[0].metadata["kelly_source"].value == "strategy_stats"


def test_a_losing_record_sizes_entries_at_the_floor_or_stops_them(ledger: TradingLedger, tmp_path: Path) -> None:
    closed_history(ledger, wins=8, losses=14)  # 36 % won
    floor = plan(ledger, tmp_path).asset_value("signals").set_index("market")
    assert floor.at["KRW-BTC", "kelly_fraction"] == 0.02 and floor.at["KRW-BTC", "kelly_action"] == "floor"
    assert "selector floor: win rate 36%" in floor.at["KRW-BTC", "reason"]

    stopped = plan(ledger, tmp_path / "stop", {"selector_action": "stop"})
    assert stopped.asset_value("signals").empty
    rejected = stopped.asset_materializations_for_node("signals")[0].metadata["rejected"].records
    rows = [(r.data["market"], r.data["side"], r.data["reason"]) for r in rejected]
    assert ("KRW-BTC", "buy") in {row[:2] for row in rows if row[2].startswith("selector stop: win rate 36%")}


def test_the_selector_check_catches_a_plan_that_ignores_the_floor(
    ledger: TradingLedger, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    closed_history(ledger, wins=8, losses=14)  # the evidence says: floor at 2 %
    planner = signals_module.plan_signals

    def unfloored_planner(**kwargs: Any) -> Any:  # a planner that forgot the selector's cap
        return planner(**{**kwargs, "params": replace(kwargs["params"], max_position_fraction=0.10)})

    monkeypatch.setattr(signals_module, "plan_signals", unfloored_planner)
    frames = [stand_in(k, f) for k, f in upstream().items() if k != "strategy_stats"]
    result = materialise([*frames, strategy_stats, signals], ledger, tmp_path, DAY, raise_on_error=False)
    evaluations = {e.check_name: e for e in result.get_asset_check_evaluations()}
    selector = evaluations["signals_selector_honoured"]
    assert not selector.passed and selector.metadata["markets"].value == "KRW-BTC"
    assert "selector floor: win rate 36%" in selector.metadata["decision"].value
    assert evaluations["strategy_stats_matches_ledger"].passed and evaluations["signals_kelly_within_cap"].passed
    assert result.get_failed_step_keys() == {"signals"}

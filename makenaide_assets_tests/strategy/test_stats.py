import math
from pathlib import Path

import pandas as pd
import pytest

from makenaide_assets.resources.ledger import TradingLedger
from makenaide_assets.strategy.sizing import KellyInputs
from makenaide_assets.strategy.stats import (
    SelectorRule,
    TradeStats,
    apply_decision,
    decide_kelly,
    in_window,
    known_by,
    selector_breaches,
    stats_of,
    trade_stats,
)

CONFIGURED = KellyInputs(0.45, 2.0, source="configured")


def test_statistics_of_a_known_set_of_trades() -> None:
    stats = trade_stats([100.0, -50.0, 200.0, -50.0], [0.10, -0.05, 0.20, -0.05])
    assert (stats.trades, stats.wins, stats.losses) == (4, 2, 2)
    assert stats.win_rate == 0.5
    assert (stats.avg_win_krw, stats.avg_loss_krw) == (150.0, 50.0)
    assert stats.avg_win_pct == pytest.approx(0.15) and stats.avg_loss_pct == pytest.approx(0.05)
    assert stats.payoff_ratio == pytest.approx(3.0)  # from returns, not KRW: sizes differ between trades
    assert stats.profit_factor == pytest.approx(300.0 / 100.0)
    assert stats.expectancy_krw == 50.0 and stats.total_pnl_krw == 200.0
    assert stats.expectancy_pct == pytest.approx(0.05)


def test_undefined_statistics_are_nan_not_zero() -> None:
    none = trade_stats([], [])
    assert none.trades == 0 and math.isnan(none.win_rate) and math.isnan(none.profit_factor)
    assert none.total_pnl_krw == 0.0
    all_won = trade_stats([10.0, 20.0], [0.01, 0.02])
    assert all_won.profit_factor == math.inf and math.isnan(all_won.payoff_ratio)
    all_lost = trade_stats([-10.0], [-0.01])
    assert all_lost.win_rate == 0.0 and all_lost.profit_factor == 0.0 and math.isnan(all_lost.avg_win_krw)


def test_breaking_even_is_not_a_win() -> None:
    assert trade_stats([0.0, 5.0], [0.0, 0.01]).wins == 1


def test_a_trade_without_pnl_is_refused() -> None:
    with pytest.raises(ValueError):
        trade_stats([math.nan], [0.0])


def closed(rows: list[tuple[str, str, float]]) -> pd.DataFrame:
    """Sell fills: (partition ordered, executed_at, pnl) on a 100 KRW cost each."""
    frame = pd.DataFrame(rows, columns=["partition_key", "executed_at", "realized_pnl_krw"])
    fee = 0.05
    return frame.assign(krw_value=100.0 + frame["realized_pnl_krw"] + fee, fee=fee)


def test_only_sells_ordered_before_d_and_filled_by_its_close_are_known() -> None:
    trades = closed(
        [
            ("2023-10-01", "2023-10-02 00:00", 5.0),  # ordered and filled long before
            ("2023-10-09", "2023-10-10 00:00", -3.0),  # D-1's sell, filled as D opened
            ("2023-10-10", "2023-10-11 00:00", 7.0),  # D's own sell: ordered after D's signals
            ("2023-10-09", "2023-10-11 00:05", 9.0),  # filled after D closed
        ]
    )
    known = known_by(trades, "2023-10-10")
    assert known["realized_pnl_krw"].tolist() == [5.0, -3.0]
    assert known_by(trades.iloc[0:0], "2023-10-10").empty


def test_the_window_counts_the_partitions_before_d() -> None:
    trades = closed(
        [("2023-01-09", "2023-01-10", 1.0), ("2023-01-10", "2023-01-11", 2.0), ("2023-04-10", "2023-04-11", 3.0)]
    )
    assert in_window(trades, "2023-04-20", 100)["realized_pnl_krw"].tolist() == [2.0, 3.0]
    with pytest.raises(ValueError):
        in_window(trades, "2023-04-20", 0)


def test_pnl_and_returns_come_from_the_ledger_with_both_fees(tmp_path: Path) -> None:
    ledger = TradingLedger(url=f"sqlite:///{tmp_path / 'l.sqlite'}", initial_cash_krw=1_000.0)
    for identifier, side, price, day in (("b", "buy", 100.0, "2023-10-01"), ("s", "sell", 110.0, "2023-10-05")):
        ledger.record_intent(identifier, partition_key=day, market="KRW-X", side=side, broker="paper",
                             ref_price=price, krw_amount=None, volume=None, reason="t")  # fmt: skip
        ledger.record_fill(identifier, price=price, volume=1.0, fee=price * 0.0005, executed_at=pd.Timestamp(day))
    stats = stats_of(ledger.closed_trades(None))
    assert stats.total_pnl_krw == pytest.approx(110.0 - 0.055 - 100.05)
    assert stats.expectancy_pct == pytest.approx((110.0 - 0.055) / 100.05 - 1)


def stats(trades: int, win_rate: float, pnl: float, payoff: float = 1.5) -> TradeStats:
    wins = round(trades * win_rate)
    return TradeStats(trades, wins, trades - wins, win_rate, 1.0, 1.0, 0.03, 0.02, payoff, 1.2, 1.0, 0.01, pnl)


@pytest.mark.parametrize(
    ("evidence", "rule", "action", "source"),
    [
        (None, SelectorRule(), "fallback", "configured"),
        (stats(19, 0.9, 1e6), SelectorRule(), "fallback", "configured"),  # 19 < 20: too few, however good
        (stats(20, 0.55, 1e5), SelectorRule(), "kelly", "strategy_stats"),
        (stats(20, 0.40, 1e5), SelectorRule(), "floor", "floor"),  # the seeds' 45 % win-rate floor
        (stats(30, 0.60, -1.0), SelectorRule(), "floor", "floor"),  # a losing window
        (stats(30, 0.40, 1e5), SelectorRule(action="stop"), "stop", "stop"),
        (stats(30, 0.60, 50.0), SelectorRule(min_pnl_krw=100.0), "floor", "floor"),
        (stats(5, 0.60, 1e5), SelectorRule(min_trades=5), "kelly", "strategy_stats"),
    ],
)
def test_selector(evidence: TradeStats | None, rule: SelectorRule, action: str, source: str) -> None:
    decision = decide_kelly(evidence, CONFIGURED, rule)
    assert (decision.action, decision.inputs.source) == (action, source)
    if action == "kelly":
        assert (decision.inputs.win_rate, decision.inputs.payoff_ratio) == (evidence.win_rate, evidence.payoff_ratio)
    else:
        assert (decision.inputs.win_rate, decision.inputs.payoff_ratio) == (0.45, 2.0)
    assert (decision.max_fraction == rule.floor_fraction) is (action == "floor")


def test_without_a_losing_trade_the_payoff_ratio_stays_configured() -> None:
    decision = decide_kelly(stats(25, 1.0, 1e5, payoff=math.nan), CONFIGURED, SelectorRule())
    assert (decision.action, decision.inputs.win_rate, decision.inputs.payoff_ratio) == ("kelly", 1.0, 2.0)


def orders() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "market": ["KRW-A", "KRW-B", "KRW-C"],
            "side": ["sell", "buy", "add"],
            "reason": ["stop-loss", "score 6", "pyramid"],
            "kelly_fraction": [0.02, 0.02, 0.02],
            "win_rate": [0.45] * 3,
            "payoff_ratio": [2.0] * 3,
        }
    )


def test_a_stop_moves_every_entry_to_rejected_and_keeps_the_sells() -> None:
    decision = decide_kelly(stats(30, 0.3, -5.0), CONFIGURED, SelectorRule(action="stop"))
    kept, rejected = apply_decision(orders(), pd.DataFrame(columns=["market", "side", "reason"]), decision)
    assert kept["side"].tolist() == ["sell"]
    assert (
        rejected["market"].tolist() == ["KRW-B", "KRW-C"] and rejected["reason"].str.startswith("selector stop").all()
    )
    assert selector_breaches(kept, decision).empty and len(selector_breaches(orders(), decision)) == 2


def test_every_entry_says_how_it_was_sized_and_breaches_are_found() -> None:
    floor = decide_kelly(stats(30, 0.3, -5.0), CONFIGURED, SelectorRule(floor_fraction=0.02))
    kept, _ = apply_decision(orders(), pd.DataFrame(columns=["market", "side", "reason"]), floor)
    assert kept["reason"].tolist()[0] == "stop-loss" and kept["reason"].iloc[1].endswith(floor.reason)
    assert (kept["kelly_action"] == "floor").all() and selector_breaches(kept, floor).empty
    assert selector_breaches(kept.assign(kelly_fraction=0.03), floor)["market"].tolist() == ["KRW-B", "KRW-C"]
    measured = decide_kelly(stats(30, 0.6, 5.0), CONFIGURED, SelectorRule())
    assert len(selector_breaches(kept, measured)) == 2  # sized from the configured inputs, not the measured ones

"""Kelly from walk-forward evidence: which out-of-sample trades D may count, and the selector on them.

The trades are the real `oos_trades.csv` of a walk-forward run over the long recording (2022-01-01 →
2025-09-29, train 180 / test 90 days, grid stop_loss_pct 0.08/0.12 × trailing_atr_multiple 3/4.5:
every window chose cell 0, the defaults), kept in makenaide_assets_tests/backtest/fixtures/; none is
made up here.
"""

from pathlib import Path

import pandas as pd
import pytest

from makenaide_assets.strategy.sizing import KellyInputs
from makenaide_assets.strategy.stats import SelectorRule, decide_kelly, evidence_before, evidence_stats
from makenaide_assets_tests.strategy.test_stats import stats

EVIDENCE = Path(__file__).parents[1] / "backtest" / "fixtures" / "walk_forward_long_oos_trades.csv"
CONFIGURED = KellyInputs(0.45, 2.0, source="configured")


@pytest.fixture(scope="module")
def trades() -> pd.DataFrame:
    return pd.read_csv(EVIDENCE, dtype={"exit_partition": str})


def day(value: str | pd.Timestamp, days: int = 0) -> str:
    return (pd.Timestamp(value) + pd.Timedelta(days=days)).strftime("%Y-%m-%d")


def test_a_trade_counts_from_the_first_day_that_began_after_it_closed(trades: pd.DataFrame) -> None:
    for trade in trades.itertuples():
        closed = pd.Timestamp(trade.executed_at)
        first = day(closed.floor("D"), 1)  # the first partition that began after the fill
        for d, counted in ((day(trade.exit_partition), False), (day(closed.floor("D")), False), (first, True)):
            found = evidence_before(trades, d, 3650)
            assert (
                bool(((found["executed_at"] == trade.executed_at) & (found["market"] == trade.market)).any()) is counted
            ), f"{trade.market} sold {trade.exit_partition}, filled {trade.executed_at}: counted on {d}?"
    # A daily sell is filled as the next day opens (00:00 UTC): that day is already "on or after" it.
    daily = trades[trades["kind"] == "daily"].iloc[0]
    assert pd.Timestamp(daily["executed_at"]) == pd.Timestamp(daily["exit_partition"]) + pd.Timedelta(days=1)


def test_the_window_drops_trades_sold_before_it(trades: pd.DataFrame) -> None:
    last = trades["exit_partition"].max()
    after = day(last, 400)
    assert evidence_before(trades, after, 365).empty  # every trade was sold more than 365 days before
    assert len(evidence_before(trades, day(last, 365), 365)) >= 1
    assert len(evidence_before(trades, after, 3650)) == len(trades)


def test_the_selector_judges_the_evidence_while_the_ledger_is_short(trades: pd.DataFrame) -> None:
    evidence = evidence_stats(trades)
    rule = SelectorRule(min_trades=len(trades))
    decision = decide_kelly(stats(3, 0.5, 10.0), CONFIGURED, rule, evidence)
    assert decision.inputs.source == "walk_forward"
    assert (
        decision.reason.startswith("3 closed trades in the window (<")
        and "walk-forward out of sample" in decision.reason
    )
    losing = evidence.win_rate < rule.min_win_rate or evidence.total_pnl_krw < rule.min_pnl_krw
    assert decision.action == ("floor" if losing else "kelly")
    if losing:
        assert (decision.inputs.win_rate, decision.inputs.payoff_ratio) == (0.45, 2.0)
        assert decision.max_fraction == rule.floor_fraction
    stopped = decide_kelly(None, CONFIGURED, SelectorRule(min_trades=len(trades), action="stop"), evidence)
    assert (stopped.action, stopped.inputs.source) == (
        ("stop", "walk_forward") if losing else ("kelly", "walk_forward")
    )


def test_the_ledgers_own_evidence_wins_once_it_is_enough_and_too_little_evidence_is_no_evidence(
    trades: pd.DataFrame,
) -> None:
    evidence = evidence_stats(trades)
    ledger = decide_kelly(stats(20, 0.55, 1e5), CONFIGURED, SelectorRule(), evidence)
    assert (ledger.action, ledger.inputs.source) == ("kelly", "strategy_stats")
    short = decide_kelly(stats(2, 0.5, 1.0), CONFIGURED, SelectorRule(min_trades=len(trades) + 1), evidence)
    assert (short.action, short.inputs.source) == ("fallback", "configured")
    assert f"walk-forward evidence {len(trades)} trades before D" in short.reason

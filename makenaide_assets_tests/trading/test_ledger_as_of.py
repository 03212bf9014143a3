"""The ledger read as of a partition's cut-off (DESIGN §8): later bookings never change what an
earlier partition saw, and trading plans turn a changed past into a conflict, not an order."""

from pathlib import Path

import pandas as pd
import pytest

from makenaide_assets.resources.ledger import CutOff, PlanConflict, TradingLedger

SEED = 1_000_000.0


@pytest.fixture
def ledger(tmp_path: Path) -> TradingLedger:
    return TradingLedger(url=f"sqlite:///{tmp_path / 'ledger.sqlite'}", initial_cash_krw=SEED)


def _fill(ledger: TradingLedger, partition: str, market: str, side: str, price: float, volume: float) -> None:
    identifier = f"mkn-{partition}-{market}-{side}"
    ledger.record_intent(
        identifier, partition_key=partition, market=market, side=side, broker="paper", ref_price=price,
        krw_amount=None, volume=None, reason="test",
    )  # fmt: skip
    executed = pd.Timestamp(partition) + pd.Timedelta(days=1, minutes=5)
    ledger.record_fill(identifier, price=price, volume=volume, fee=price * volume * 0.0005, executed_at=executed)


def _history(ledger: TradingLedger) -> None:
    _fill(ledger, "2023-07-01", "KRW-BTC", "buy", 100.0, 1_000.0)
    _fill(ledger, "2023-07-02", "KRW-ETH", "buy", 50.0, 2_000.0)
    _fill(ledger, "2023-07-03", "KRW-BTC", "add", 120.0, 500.0)
    _fill(ledger, "2023-07-04", "KRW-BTC", "sell", 130.0, 1_500.0)


def test_a_partition_sees_the_partitions_before_it_and_its_own_orders_only_on_the_trading_side(
    ledger: TradingLedger,
) -> None:
    _history(ledger)
    before = CutOff("2023-07-03")
    assert sorted(ledger.open_positions(before)["market"]) == ["KRW-BTC", "KRW-ETH"]
    assert ledger.open_positions(before).set_index("market").at["KRW-BTC", "volume"] == 1_000.0
    assert ledger.cash_krw(before) == pytest.approx(SEED - 100_050.0 - 100_050.0)
    with_own = CutOff("2023-07-03", own_orders=True)
    assert ledger.open_positions(with_own).set_index("market").at["KRW-BTC", "volume"] == 1_500.0
    assert ledger.closed_trades(before).empty and ledger.closed_trades(CutOff("2023-07-05")).shape[0] == 1
    # The seed has no partition: every cut-off sees it.
    assert ledger.cash_krw(CutOff("2022-01-01")) == SEED


def test_what_a_partition_saw_does_not_change_when_later_days_are_booked(ledger: TradingLedger) -> None:
    _fill(ledger, "2023-07-01", "KRW-BTC", "buy", 100.0, 1_000.0)
    cut = CutOff("2023-07-02", own_orders=True)
    seen = (ledger.cash_krw(cut), ledger.open_positions(cut), ledger.cash_history(cut))
    _fill(ledger, "2023-07-03", "KRW-BTC", "sell", 90.0, 1_000.0)
    assert ledger.cash_krw(cut) == seen[0]
    pd.testing.assert_frame_equal(ledger.open_positions(cut), seen[1])
    pd.testing.assert_frame_equal(ledger.cash_history(cut), seen[2])
    assert ledger.open_positions(None).empty  # "now" is another question, asked explicitly


def test_replayed_positions_equal_the_booked_ones(ledger: TradingLedger) -> None:
    _history(ledger)
    _fill(ledger, "2023-07-05", "KRW-ETH", "sell", 55.0, 500.0)
    booked = ledger.positions_table()
    replayed = ledger.open_positions(None)
    pd.testing.assert_frame_equal(replayed, booked[replayed.columns], check_dtype=False)


def test_a_plan_is_recorded_once_and_a_changed_past_is_a_conflict(ledger: TradingLedger) -> None:
    ledger.record_plan("2023-07-01", ["mkn-b", "mkn-a"])
    ledger.record_plan("2023-07-01", ["mkn-a", "mkn-b"])  # a re-run planning the same orders
    assert ledger.plan("2023-07-01") == ["mkn-a", "mkn-b"]
    with pytest.raises(PlanConflict, match="2023-07-01") as raised:
        ledger.record_plan("2023-07-01", ["mkn-a", "mkn-c"])
    assert (raised.value.new, raised.value.missing) == (["mkn-c"], ["mkn-b"])
    assert ledger.plan("2023-07-01") == ["mkn-a", "mkn-b"] and ledger.plan("2023-07-02") is None

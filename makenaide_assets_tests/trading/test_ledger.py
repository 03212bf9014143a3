"""The ledger on a temporary SQLite file: transactions, identifiers, positions and cash."""

from pathlib import Path

import pandas as pd
import pytest
import sqlalchemy as sa

from makenaide_assets.resources.ledger import (
    MAX_IDENTIFIER_LENGTH,
    LedgerConflict,
    TradingLedger,
    identifier_for_signal,
    order_identifier,
)
from makenaide_assets.resources.ledger import schema as t
from makenaide_assets.resources.ledger.booking import BookingError

SEED = 1_000_000.0


@pytest.fixture
def ledger(tmp_path: Path) -> TradingLedger:
    return TradingLedger(url=f"sqlite:///{tmp_path / 'ledger.sqlite'}", initial_cash_krw=SEED)


def _order(ledger: TradingLedger, identifier: str, market: str, side: str, partition: str = "2023-07-01") -> None:
    ledger.record_intent(
        identifier,
        partition_key=partition,
        market=market,
        side=side,
        broker="paper",
        ref_price=None,
        krw_amount=None,
        volume=None,
        reason="test",
    )


def _fill(ledger: TradingLedger, identifier: str, market: str, side: str, price: float, volume: float, **kw) -> dict:
    _order(ledger, identifier, market, side, kw.pop("partition", "2023-07-01"))
    fee = price * volume * 0.0005
    return ledger.record_fill(identifier, price=price, volume=volume, fee=fee, executed_at=pd.Timestamp("2023-07-02"))


def test_cash_is_seeded_once_per_database(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'nested' / 'ledger.sqlite'}"
    assert TradingLedger(url=url, initial_cash_krw=SEED).cash_krw(None) == SEED
    # A second resource on the same file (another run) must not seed again, whatever it is told.
    assert TradingLedger(url=url, initial_cash_krw=5.0).cash_krw(None) == SEED


def test_default_url_comes_from_settings_at_run_time(isolated_state: Path) -> None:
    TradingLedger().cash_krw(None)
    assert (isolated_state / "ledger.sqlite").is_file()


def test_identifier_is_deterministic_and_short() -> None:
    first = order_identifier("2023-07-01", "KRW-BTC", "buy", "KRW-BTC|buy")
    assert first == order_identifier("2023-07-01", "KRW-BTC", "buy", "KRW-BTC|buy")
    assert first.startswith("mkn-2023-07-01-KRW-BTC-buy-")
    assert first != order_identifier("2023-07-02", "KRW-BTC", "buy", "KRW-BTC|buy")
    assert first != order_identifier("2023-07-01", "KRW-BTC", "add", "KRW-BTC|buy")
    assert len(order_identifier("2023-07-01", "KRW-PUNDIX", "sell", "x" * 500)) <= MAX_IDENTIFIER_LENGTH


def test_signal_identifier_ignores_amounts_that_change_after_a_fill() -> None:
    before = {"market": "KRW-ETH", "side": "buy", "krw_amount": 500_000.0, "price": 2_500_000.0}
    after = {**before, "krw_amount": 420_000.0, "price": 2_510_000.0}
    assert identifier_for_signal("2023-07-01", before) == identifier_for_signal("2023-07-01", after)
    assert identifier_for_signal("2023-07-01", before) != identifier_for_signal(
        "2023-07-01", {**before, "signal_id": "second-leg"}
    )


def test_an_identifier_is_recorded_once(ledger: TradingLedger) -> None:
    _order(ledger, "mkn-a", "KRW-BTC", "buy")
    with pytest.raises(LedgerConflict, match="already pending"):
        _order(ledger, "mkn-a", "KRW-BTC", "buy")
    # The database itself enforces it too, for any writer that bypasses record_intent.
    with pytest.raises(sa.exc.IntegrityError), ledger.transaction() as conn:
        now = pd.Timestamp("2023-07-01").to_pydatetime()
        conn.execute(
            t.orders.insert().values(
                identifier="mkn-a",
                partition_key="2023-07-01",
                market="KRW-BTC",
                side="buy",
                status="pending",
                broker="paper",
                created_at=now,
                updated_at=now,
            )
        )


def test_pyramiding_averages_price_and_counts_entries(ledger: TradingLedger) -> None:
    _fill(ledger, "mkn-buy", "KRW-BTC", "buy", price=100.0, volume=1000.0)
    _fill(ledger, "mkn-add", "KRW-BTC", "add", price=120.0, volume=1000.0, partition="2023-07-05")
    position = ledger.open_positions(None).set_index("market").loc["KRW-BTC"]
    assert position["volume"] == pytest.approx(2000.0)
    assert position["avg_price"] == pytest.approx(110.0)
    assert position["entries"] == 2
    assert position["highest_price"] == pytest.approx(120.0)
    assert (position["opened_partition"], position["last_add_partition"]) == ("2023-07-01", "2023-07-05")
    paid = 100_000 * 1.0005 + 120_000 * 1.0005
    assert position["cost_krw"] == pytest.approx(paid)
    assert ledger.cash_krw(None) == pytest.approx(SEED - paid)


def test_sells_reduce_the_position_and_add_cash_minus_fee(ledger: TradingLedger) -> None:
    _fill(ledger, "mkn-buy", "KRW-XRP", "buy", price=500.0, volume=400.0)
    cash_after_buy = ledger.cash_krw(None)
    fill = _fill(ledger, "mkn-sell-1", "KRW-XRP", "sell", price=600.0, volume=100.0)
    assert ledger.cash_krw(None) == pytest.approx(cash_after_buy + 60_000 - 30.0)
    held = ledger.open_positions(None).set_index("market").loc["KRW-XRP"]
    assert held["volume"] == pytest.approx(300.0)
    assert held["avg_price"] == pytest.approx(500.0)
    # A quarter of the cost (fees included) was sold for 60,000 - 30 fee.
    assert fill["realized_pnl_krw"] == pytest.approx(59_970 - 200_100 / 4)
    _fill(ledger, "mkn-sell-2", "KRW-XRP", "sell", price=400.0, volume=300.0, partition="2023-07-03")
    assert ledger.open_positions(None).empty
    assert len(ledger.closed_trades(None)) == 2


def test_selling_more_than_held_books_nothing(ledger: TradingLedger) -> None:
    _fill(ledger, "mkn-buy", "KRW-XRP", "buy", price=500.0, volume=10.0)
    cash = ledger.cash_krw(None)
    _order(ledger, "mkn-sell", "KRW-XRP", "sell")
    with pytest.raises(BookingError, match=r"10\.0 is held"):
        ledger.record_fill("mkn-sell", price=500.0, volume=11.0, fee=2.75, executed_at=pd.Timestamp("2023-07-02"))
    assert ledger.cash_krw(None) == cash
    assert ledger.order("mkn-sell")["status"] == t.PENDING


def test_a_fill_is_all_or_nothing(ledger: TradingLedger) -> None:
    _order(ledger, "mkn-buy", "KRW-ETH", "buy")
    # A stray fill row makes the last insert of the booking fail after position and cash were written.
    with ledger.transaction() as conn:
        conn.execute(
            t.fills.insert().values(
                identifier="mkn-buy",
                partition_key="2023-07-01",
                market="KRW-ETH",
                side="buy",
                price=1.0,
                volume=1.0,
                fee=0.0,
                krw_value=1.0,
                executed_at=pd.Timestamp("2023-07-02").to_pydatetime(),
            )
        )
    with pytest.raises(sa.exc.IntegrityError):
        ledger.record_fill("mkn-buy", price=2_000_000.0, volume=0.1, fee=100.0, executed_at=pd.Timestamp("2023-07-02"))
    assert ledger.positions_table().empty
    assert ledger.cash_krw(None) == SEED
    assert ledger.order("mkn-buy")["status"] == t.PENDING


def test_a_done_order_cannot_be_booked_twice(ledger: TradingLedger) -> None:
    _fill(ledger, "mkn-buy", "KRW-ETH", "buy", price=2_000_000.0, volume=0.1)
    cash = ledger.cash_krw(None)
    with pytest.raises(BookingError, match="already done"):
        ledger.record_fill("mkn-buy", price=2_000_000.0, volume=0.1, fee=100.0, executed_at=pd.Timestamp("2023-07-02"))
    with pytest.raises(LedgerConflict):
        ledger.close_order("mkn-buy", t.REJECTED, "x", "y")
    assert ledger.cash_krw(None) == cash


def test_skipped_orders_are_listed_with_their_reason_and_may_be_retried(ledger: TradingLedger) -> None:
    ledger.record_intent(
        "mkn-skip",
        partition_key="2023-07-01",
        market="KRW-DOGE",
        side="buy",
        broker="paper",
        ref_price=90.0,
        krw_amount=100_000.0,
        volume=None,
        reason="breakout",
        status=t.SKIPPED,
        error_name="no_price",
        error_message="no KRW-DOGE price",
    )
    day = ledger.fills_for_partition("2023-07-01")
    assert day.loc[0, ["status", "status_reason"]].tolist() == ["skipped", "no_price: no KRW-DOGE price"]
    assert pd.isna(day.loc[0, "price"])
    _order(ledger, "mkn-skip", "KRW-DOGE", "buy")  # a skipped order may become pending on a re-run
    assert ledger.order("mkn-skip")["status"] == t.PENDING


def test_equity_is_written_once_and_rewritten_only_with_the_same_value(ledger: TradingLedger) -> None:
    _fill(ledger, "mkn-buy", "KRW-BTC", "buy", price=100.0, volume=10.0)
    ledger.record_equity("2023-07-02", 1_000.0)
    ledger.record_equity("2023-07-02", 1_000.0)  # a re-run of the same partition: same value, no change
    with pytest.raises(LedgerConflict, match="equity of 2023-07-02 was recorded"):
        ledger.record_equity("2023-07-02", 1_200.0)
    history = ledger.equity_history(None)
    assert len(history) == 1
    assert history.loc[0, "equity_krw"] == pytest.approx(ledger.cash_krw(None) + 1_000.0)


def test_a_reader_without_a_mode_never_seeds_paper_cash_into_a_live_ledger(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'live.sqlite'}"
    assert TradingLedger(url=url, mode="live").cash_krw(None) == 0.0
    assert TradingLedger(url=url).cash_krw(None) == 0.0  # e.g. `python -m makenaide_assets.status`

"""The ledger's arithmetic, pure: entries average the price, sells realise P&L on the cost sold."""

import pytest

from makenaide_assets.strategy.accounting import AccountingError, Position, apply_fill, replay_positions


def _fill(side: str, price: float, volume: float, fee: float = 0.0, day: str = "2023-07-01") -> dict:
    return {"market": "KRW-BTC", "side": side, "partition_key": day, "price": price, "volume": volume, "fee": fee}


def test_entries_average_the_price_and_carry_fees_in_the_cost() -> None:
    first = apply_fill(None, **_fill("buy", 100.0, 2.0, fee=0.1))
    assert first.cash_delta_krw == pytest.approx(-200.1) and first.realized_pnl_krw is None
    added = apply_fill(first.position, **_fill("add", 130.0, 1.0, fee=0.065, day="2023-07-03"))
    position = added.position
    assert position is not None
    assert position.volume == 3.0 and position.entries == 2
    assert position.avg_price == pytest.approx(110.0)
    assert position.cost_krw == pytest.approx(200.1 + 130.065)
    assert (position.opened_partition, position.last_add_partition) == ("2023-07-01", "2023-07-03")
    assert position.highest_price == 130.0


def test_a_partial_sell_realises_the_share_of_cost_sold() -> None:
    held = Position("KRW-BTC", 4.0, 100.0, 400.0, 1, 100.0, "2023-07-01", "2023-07-01")
    effect = apply_fill(held, **_fill("sell", 120.0, 1.0, fee=0.06))
    assert effect.cash_delta_krw == pytest.approx(119.94)
    assert effect.realized_pnl_krw == pytest.approx(119.94 - 100.0)
    assert effect.position is not None and effect.position.volume == 3.0
    assert effect.position.cost_krw == pytest.approx(300.0)


def test_selling_everything_closes_the_position_and_dust_counts_as_everything() -> None:
    held = Position("KRW-BTC", 1.0, 100.0, 100.05, 1, 100.0, "2023-07-01", "2023-07-01")
    assert apply_fill(held, **_fill("sell", 90.0, 1.0 - 1e-9)).position is None


@pytest.mark.parametrize(
    ("position", "fill", "message"),
    [
        (None, _fill("sell", 100.0, 1.0), "held"),
        (Position("KRW-BTC", 1.0, 1.0, 1.0, 1, 1.0, "d", "d"), _fill("sell", 100.0, 1.1), "held"),
        (None, _fill("buy", float("nan"), 1.0), "implausible"),
        (None, _fill("buy", 100.0, 0.0), "implausible"),
        (None, _fill("short", 100.0, 1.0), "side"),
    ],
)
def test_contradicting_fills_are_refused(position: Position | None, fill: dict, message: str) -> None:
    with pytest.raises(AccountingError, match=message):
        apply_fill(position, **fill)


def test_replay_gives_the_book_of_the_fills_in_order() -> None:
    fills = [
        _fill("buy", 100.0, 2.0),
        {**_fill("buy", 10.0, 5.0), "market": "KRW-ETH"},
        _fill("sell", 110.0, 2.0, day="2023-07-02"),
        {**_fill("add", 12.0, 5.0, day="2023-07-02"), "market": "KRW-ETH"},
    ]
    book = replay_positions(fills)
    assert list(book) == ["KRW-ETH"]
    assert book["KRW-ETH"].volume == 10.0 and book["KRW-ETH"].avg_price == pytest.approx(11.0)

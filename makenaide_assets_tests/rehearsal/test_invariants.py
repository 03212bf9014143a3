"""The rehearsal's invariants catch what they promise to catch (each fed the fault it names)."""

from makenaide_assets.rehearsal import invariants

ID = "mkn-2023-12-06-KRW-BTC-buy-0123456789ab"
ORDER = {"identifier": ID, "executed_volume": "0.01", "paid_fee": "250.5"}


def test_an_order_executed_twice_is_caught() -> None:
    resent = {**ORDER, "identifier": ID[:-12] + "ffffffffffff"}  # same partition, market and side
    assert invariants.sent_twice([ORDER, {**ORDER, "identifier": None}]) == []
    assert invariants.sent_twice([ORDER, resent]) == ["mkn-2023-12-06-KRW-BTC-buy executed 2 times"]
    assert invariants.sent_twice([ORDER, {**resent, "executed_volume": "0"}]) == []


def test_an_execution_the_ledger_lacks_or_misbooks_is_caught() -> None:
    booked = {"identifier": ID, "status": "done", "volume": 0.01, "fee": 250.5}
    assert invariants.missing_from_ledger([ORDER], {ID: booked}) == []
    assert "not in the ledger" in invariants.missing_from_ledger([ORDER], {})[0]
    assert (
        "rejected in the ledger" in invariants.missing_from_ledger([ORDER], {ID: {**booked, "status": "rejected"}})[0]
    )
    assert "booked 0.009" in invariants.missing_from_ledger([ORDER], {ID: {**booked, "volume": 0.009}})[0]
    assert "fee" in invariants.missing_from_ledger([ORDER], {ID: {**booked, "fee": 251.0}})[0]
    manual = {"identifier": None, "executed_volume": "5", "paid_fee": "1"}
    assert invariants.missing_from_ledger([manual], {}) == []


def test_balances_must_match_within_a_won_and_to_the_eighth_decimal() -> None:
    account = {"KRW": 1_000_000.4, "BTC": 0.01234567}
    assert invariants.balances_differ(account, {"KRW": 1_000_000.0, "BTC": 0.01234567}) == []
    assert invariants.balances_differ(account, {"KRW": 999_998.0, "BTC": 0.01234567}) == [
        "KRW: account 1,000,000.40000000, ledger 999,998.00000000"
    ]
    assert invariants.balances_differ(account, {"KRW": 1_000_000.4, "BTC": 0.01234568})[0].startswith("BTC")
    assert invariants.balances_differ(account, {"KRW": 1_000_000.4})[0].startswith("BTC")


def test_an_order_left_open_past_the_next_run_is_caught() -> None:
    rows = [
        {"identifier": "a", "status": "submitted", "partition_key": "2023-12-06"},
        {"identifier": "b", "status": "pending", "partition_key": "2023-12-07"},
        {"identifier": "c", "status": "done", "partition_key": "2023-12-05"},
    ]
    assert invariants.unresolved_too_long(rows, "2023-12-07") == ["a still submitted"]
    assert invariants.unresolved_too_long(rows, "2023-12-06") == []


def test_what_an_unresolved_order_executed_is_allowed_for_and_nothing_else() -> None:
    # A buy left `submitted` (the exchange said `wait`) that filled before the next run looked.
    filled = {**ORDER, "market": "KRW-BTC", "side": "bid", "executed_funds": "500000", "paid_fee": "250"}
    submitted = {ID: {"identifier": ID, "status": "submitted"}}
    unbooked = invariants.in_flight([filled], submitted)
    assert unbooked == {"BTC": 0.01, "KRW": -500_250.0}
    account, ledger = {"KRW": 9_499_750.0, "BTC": 0.01}, {"KRW": 10_000_000.0}
    assert invariants.balances_differ(account, ledger, unbooked) == []
    assert len(invariants.balances_differ(account, ledger)) == 2
    # Booked already (done): nothing in flight, the ledger must match on its own.
    assert invariants.in_flight([filled], {ID: {"identifier": ID, "status": "done"}}) == {}
    sold = {**filled, "side": "ask"}
    assert invariants.in_flight([sold], submitted) == {"BTC": -0.01, "KRW": 499_750.0}

"""The trading ledger on real PostgreSQL (the server scripts/services starts): transactions, unique
identifiers, and what SQLite never shows — writers racing on separate connections."""

import functools
import threading
from collections.abc import Callable

import pandas as pd
import pytest
import sqlalchemy as sa

from makenaide_assets.resources.ledger import LedgerConflict, TradingLedger
from makenaide_assets.resources.ledger import schema as t
from makenaide_assets.resources.ledger.booking import BookingError

pytest_plugins = ["makenaide_assets_tests.e2e.servers"]
pytestmark = pytest.mark.e2e

SEED = 1_000_000.0
AT = pd.Timestamp("2023-07-02")


def _ledger(url: sa.URL) -> TradingLedger:
    return TradingLedger(url=url.render_as_string(hide_password=False), initial_cash_krw=SEED)


def _intent(ledger: TradingLedger, identifier: str, market: str = "KRW-BTC", side: str = "buy") -> None:
    ledger.record_intent(
        identifier,
        partition_key="2023-07-01",
        market=market,
        side=side,
        broker="paper",
        ref_price=None,
        krw_amount=None,
        volume=None,
        reason="test",
    )


def _race(*actions: Callable[[], object]) -> list[object]:
    """Run the actions at the same instant in threads; return each one's result or exception."""
    barrier, results = threading.Barrier(len(actions)), [None] * len(actions)

    def run(i: int, action: Callable[[], object]) -> None:
        barrier.wait()
        try:
            results[i] = action()
        except Exception as error:
            results[i] = error

    threads = [threading.Thread(target=run, args=(i, a)) for i, a in enumerate(actions)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not any(thread.is_alive() for thread in threads), "a ledger write hung (lock never released?)"
    return results


def test_the_ledger_lives_in_postgres(pg_database: sa.URL) -> None:
    ledger = _ledger(pg_database)
    assert ledger.engine().dialect.name == "postgresql"
    assert ledger.cash_krw(None) == SEED
    # A second resource on the same database (another run) does not seed again.
    assert (
        TradingLedger(url=pg_database.render_as_string(hide_password=False), initial_cash_krw=5.0).cash_krw(None)
        == SEED
    )
    tables = set(sa.inspect(ledger.engine()).get_table_names())
    assert {"orders", "fills", "positions", "cash_events", "equity"} <= tables


def test_an_identifier_is_unique_in_the_database(pg_database: sa.URL) -> None:
    ledger = _ledger(pg_database)
    _intent(ledger, "mkn-a")
    with pytest.raises(LedgerConflict, match="already pending"):
        _intent(ledger, "mkn-a")
    now = AT.to_pydatetime()
    row = dict(partition_key="2023-07-01", market="KRW-BTC", side="buy", status="pending", broker="paper")
    with pytest.raises(sa.exc.IntegrityError, match="unique"), ledger.transaction() as conn:
        conn.execute(t.orders.insert().values(identifier="mkn-a", created_at=now, updated_at=now, **row))
    unknown = {**row, "identifier": "mkn-b", "status": "lost", "created_at": now, "updated_at": now}
    with pytest.raises(sa.exc.IntegrityError, match="orders_status_known"), ledger.transaction() as conn:
        conn.execute(t.orders.insert().values(**unknown))


def test_a_fill_is_all_or_nothing(pg_database: sa.URL) -> None:
    ledger = _ledger(pg_database)
    _intent(ledger, "mkn-buy", "KRW-ETH")
    # A stray fill row makes the booking's last insert fail after position and cash were written.
    with ledger.transaction() as conn:
        stray = dict(partition_key="2023-07-01", market="KRW-ETH", side="buy", price=1.0, volume=1.0, fee=0.0)
        conn.execute(t.fills.insert().values(identifier="mkn-buy", krw_value=1.0, executed_at=AT, **stray))
    with pytest.raises(sa.exc.IntegrityError):
        ledger.record_fill("mkn-buy", price=2_000_000.0, volume=0.1, fee=100.0, executed_at=AT)
    assert ledger.positions_table().empty
    assert ledger.cash_krw(None) == SEED
    assert ledger.order("mkn-buy")["status"] == t.PENDING


def test_two_runs_recording_the_same_order_at_once_record_it_once(pg_database: sa.URL) -> None:
    first, second = _ledger(pg_database), _ledger(pg_database)
    first.cash_krw(None), second.cash_krw(None)  # tables and seed exist before the race
    results = _race(lambda: _intent(first, "mkn-race"), lambda: _intent(second, "mkn-race"))
    errors = [r for r in results if isinstance(r, Exception)]
    assert len(errors) == 1, results
    assert isinstance(errors[0], LedgerConflict | sa.exc.IntegrityError), errors
    with first.engine().connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(t.orders)).scalar() == 1


def test_two_runs_booking_the_same_fill_at_once_book_it_once(pg_database: sa.URL) -> None:
    first, second = _ledger(pg_database), _ledger(pg_database)
    _intent(first, "mkn-buy", "KRW-XRP")
    second.cash_krw(None)

    def book(ledger: TradingLedger) -> Callable[[], object]:
        return lambda: ledger.record_fill("mkn-buy", price=500.0, volume=100.0, fee=25.0, executed_at=AT)

    results = _race(book(first), book(second))
    errors = [r for r in results if isinstance(r, Exception)]
    assert len(errors) == 1 and isinstance(errors[0], BookingError), results
    assert "already done" in str(errors[0])
    assert first.cash_krw(None) == pytest.approx(SEED - 50_025.0)
    assert first.open_positions(None).loc[0, "volume"] == pytest.approx(100.0)


def test_runs_starting_together_on_a_new_database_seed_the_cash_once(pg_database: sa.URL) -> None:
    # Two runs of a fresh deployment (e.g. two analysis partitions) open the ledger at the same time.
    ledgers = [_ledger(pg_database) for _ in range(4)]
    results = _race(*(functools.partial(ledger.cash_krw, None) for ledger in ledgers))
    assert results == [SEED] * len(ledgers), results


def test_the_documented_plain_postgresql_url_works(pg_database: sa.URL) -> None:
    # People write postgresql://…; SQLAlchemy 2.1 would route that to psycopg 3, not installed.
    plain = pg_database.set(drivername="postgresql").render_as_string(hide_password=False)
    assert plain.startswith("postgresql://")
    assert TradingLedger(url=plain, initial_cash_krw=SEED).cash_krw(None) == SEED

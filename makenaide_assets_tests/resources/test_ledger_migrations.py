"""The ledger database's Alembic migrations, on SQLite and on real PostgreSQL (the server
scripts/services starts; unreachable, the PostgreSQL cases FAIL with the reason).

From an empty database, from one made before migrations existed, concurrently, and the guard
that keeps models and migrations in step: a column added to schema.py without a revision fails here.
"""

import multiprocessing
import queue
import threading
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext

from makenaide_assets import sql
from makenaide_assets.resources import verdict_cache
from makenaide_assets.resources.ledger import TradingLedger, migrate
from makenaide_assets.resources.ledger import schema as t

if TYPE_CHECKING:  # imported for real by pytest_plugins, so that pytest rewrites its asserts
    from makenaide_assets_tests.e2e.servers import PostgresServer

pytest_plugins = ["makenaide_assets_tests.e2e.servers"]

MODELS = [t.metadata, verdict_cache.metadata]
# What create_all made before migrations existed (revision 0001); later revisions add to it.
LEDGER_TABLES = {"orders", "fills", "positions", "cash_events", "equity"}
CACHE_TABLES = {"gpt_verdict_cache"}
HEAD_TABLES = set(t.metadata.tables) | CACHE_TABLES | {"alembic_version"}
AT = datetime(2023, 12, 6, 9, 0)
SEED = 10_000_000.0


# ---- the schema as the code at commit 5d6271c created it (create_all, no migrations), frozen ------------------
def legacy_metadata() -> sa.MetaData:
    """makenaide_assets/trading/ledger_schema.py and analysis/verdict_cache.py of 5d6271c, copied."""
    metadata = sa.MetaData()
    statuses = ("pending", "submitted", "done", "rejected", "failed", "skipped")
    sa.Table(
        "orders",
        metadata,
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("identifier", sa.String(64), nullable=False, unique=True),
        sa.Column("partition_key", sa.String(10), nullable=False, index=True),
        sa.Column("market", sa.String(32), nullable=False),
        sa.Column("side", sa.String(8), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("ref_price", sa.Float),
        sa.Column("krw_amount", sa.Float),
        sa.Column("volume", sa.Float),
        sa.Column("reason", sa.Text),
        sa.Column("broker", sa.String(32), nullable=False),
        sa.Column("exchange_uuid", sa.String(64)),
        sa.Column("error_name", sa.String(64)),
        sa.Column("error_message", sa.Text),
        sa.Column("created_at", sa.DateTime, nullable=False),
        sa.Column("updated_at", sa.DateTime, nullable=False),
        sa.CheckConstraint(f"status IN {statuses!r}", name="orders_status_known"),
        sa.CheckConstraint(f"side IN {('buy', 'add', 'sell')!r}", name="orders_side_known"),
    )
    sa.Table(
        "fills",
        metadata,
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("identifier", sa.String(64), sa.ForeignKey("orders.identifier"), nullable=False, unique=True),
        sa.Column("partition_key", sa.String(10), nullable=False, index=True),
        sa.Column("market", sa.String(32), nullable=False),
        sa.Column("side", sa.String(8), nullable=False),
        sa.Column("price", sa.Float, nullable=False),
        sa.Column("volume", sa.Float, nullable=False),
        sa.Column("fee", sa.Float, nullable=False),
        sa.Column("krw_value", sa.Float, nullable=False),
        sa.Column("realized_pnl_krw", sa.Float),
        sa.Column("executed_at", sa.DateTime, nullable=False),
    )
    sa.Table(
        "positions",
        metadata,
        sa.Column("market", sa.String(32), primary_key=True),
        sa.Column("volume", sa.Float, nullable=False),
        sa.Column("avg_price", sa.Float, nullable=False),
        sa.Column("cost_krw", sa.Float, nullable=False),
        sa.Column("entries", sa.Integer, nullable=False),
        sa.Column("highest_price", sa.Float, nullable=False),
        sa.Column("opened_partition", sa.String(10), nullable=False),
        sa.Column("last_add_partition", sa.String(10), nullable=False),
        sa.Column("updated_at", sa.DateTime, nullable=False),
    )
    sa.Table(
        "cash_events",
        metadata,
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("event_key", sa.String(80), nullable=False, unique=True),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("amount_krw", sa.Float, nullable=False),
        sa.Column("partition_key", sa.String(10)),
        sa.Column("created_at", sa.DateTime, nullable=False),
    )
    sa.Table(
        "equity",
        metadata,
        sa.Column("partition_key", sa.String(10), primary_key=True),
        sa.Column("cash_krw", sa.Float, nullable=False),
        sa.Column("positions_value_krw", sa.Float, nullable=False),
        sa.Column("equity_krw", sa.Float, nullable=False),
        sa.Column("recorded_at", sa.DateTime, nullable=False),
    )
    sa.Table(
        "gpt_verdict_cache",
        metadata,
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("market", sa.String(32), nullable=False),
        sa.Column("partition_key", sa.String(10), nullable=False),
        sa.Column("model", sa.String(128), nullable=False),
        sa.Column("prompt_hash", sa.String(64), nullable=False),
        sa.Column("payload_hash", sa.String(64), nullable=False),
        sa.Column("status", sa.String(8), nullable=False),
        sa.Column("verdict_json", sa.Text, nullable=True),
        sa.Column("error", sa.Text, nullable=False, default=""),
        sa.Column("input_tokens", sa.Integer, nullable=False),
        sa.Column("output_tokens", sa.Integer, nullable=False),
        sa.Column("cost_usd", sa.Float, nullable=False),
        sa.Column("response_id", sa.String(128), nullable=False, default=""),
        sa.Column("created_at", sa.DateTime, nullable=False),
        sa.Index("ix_gpt_verdict_cache_key", "market", "partition_key", "model", "prompt_hash", "payload_hash"),
        sa.Index("ix_gpt_verdict_cache_partition", "partition_key"),
    )
    return metadata


LEGACY_ROWS: dict[str, list[dict[str, Any]]] = {
    "orders": [
        dict(
            identifier="mkn-2023-12-06-KRW-BTC-buy-0123456789ab",
            partition_key="2023-12-06",
            market="KRW-BTC",
            side="buy",
            status="done",
            ref_price=50_000_000.0,
            krw_amount=1_000_000.0,
            volume=None,
            reason="breakout",
            broker="paper",
            exchange_uuid="paper-1",
            error_name=None,
            error_message=None,
            created_at=AT,
            updated_at=AT,
        )
    ],
    "fills": [
        dict(
            identifier="mkn-2023-12-06-KRW-BTC-buy-0123456789ab",
            partition_key="2023-12-06",
            market="KRW-BTC",
            side="buy",
            price=50_000_000.0,
            volume=0.02,
            fee=500.0,
            krw_value=1_000_000.0,
            realized_pnl_krw=None,
            executed_at=AT,
        )
    ],
    "cash_events": [
        dict(event_key="seed", kind="seed", amount_krw=SEED, partition_key=None, created_at=AT),
        dict(
            event_key="fill:mkn-2023-12-06-KRW-BTC-buy-0123456789ab",
            kind="buy",
            amount_krw=-1_000_500.0,
            partition_key="2023-12-06",
            created_at=AT,
        ),
    ],
    "gpt_verdict_cache": [
        dict(
            market="KRW-BTC",
            partition_key="2023-12-06",
            model="gpt-test",
            prompt_hash="p" * 64,
            payload_hash="q" * 64,
            status="ok",
            verdict_json='{"verdict": "BUY"}',
            error="",
            input_tokens=1000,
            output_tokens=100,
            cost_usd=0.01,
            response_id="resp-1",
            created_at=AT,
        )
    ],
}


# ---- databases ---------------------------------------------------------------------------------------------
NewDatabase = Callable[[], sa.Engine]


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.e2e)])
def new_database(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[NewDatabase]:
    """Makes empty databases of one backend (a file, or a fresh PostgreSQL database), dropped afterwards."""
    engines: list[sa.Engine] = []
    server: PostgresServer | None = request.getfixturevalue("postgres") if request.param == "postgresql" else None

    def new() -> sa.Engine:
        if server is None:
            url = f"sqlite:///{tmp_path / f'ledger{len(engines)}.sqlite'}"
        else:
            url = server.create_database("mkn_migrations").render_as_string(hide_password=False)
        engines.append(sql.make_engine(url))
        return engines[-1]

    yield new
    for engine in engines:
        engine.dispose()
        if server is not None:
            server.drop_database(engine.url)


@pytest.fixture
def engine(new_database: NewDatabase) -> sa.Engine:
    return new_database()


def url_of(engine: sa.Engine) -> str:
    return engine.url.render_as_string(hide_password=False)


def tables(engine: sa.Engine) -> set[str]:
    return set(sa.inspect(engine).get_table_names())


def rows(engine: sa.Engine, table: str) -> list[dict[str, Any]]:
    """The table's rows in the columns it had before migrations (later revisions add columns)."""
    columns = ", ".join(c.name for c in legacy_metadata().tables[table].columns)
    with engine.connect() as conn:
        result = conn.execute(sa.text(f"SELECT {columns} FROM {table} ORDER BY 1"))
        return [dict(row) for row in result.mappings()]


def ddl_during(engine: sa.Engine, action: Callable[[], object]) -> list[str]:
    """The CREATE/ALTER/DROP statements `engine` sent while `action` ran."""
    statements: list[str] = []

    def record(conn: sa.Connection, cursor: Any, statement: str, *args: Any) -> None:
        if statement.lstrip().upper().startswith(("CREATE", "ALTER", "DROP")):
            statements.append(statement)

    sa.event.listen(engine, "before_cursor_execute", record)
    try:
        action()
    finally:
        sa.event.remove(engine, "before_cursor_execute", record)
    return statements


# ---- tests --------------------------------------------------------------------------------------------------
def test_an_empty_database_is_upgraded_to_every_table_once(engine: sa.Engine) -> None:
    assert migrate.current_revision(engine) is None
    assert ddl_during(engine, lambda: migrate.upgrade(engine)) != []
    assert tables(engine) == HEAD_TABLES
    assert migrate.current_revision(engine) == migrate.head_revision() == "0004_stop_exits"
    assert ddl_during(engine, lambda: migrate.upgrade(engine)) == []
    assert migrate.current_revision(engine) == migrate.head_revision()


@pytest.mark.parametrize(
    "legacy_tables",
    [
        pytest.param(LEDGER_TABLES | CACHE_TABLES, id="ledger-and-cache"),
        pytest.param(LEDGER_TABLES, id="ledger-only"),  # demo mode: the rules analyst never opened the cache
        pytest.param(CACHE_TABLES, id="cache-only"),  # analysis ran, no run traded yet
    ],
)
def test_a_database_from_before_migrations_keeps_its_rows(engine: sa.Engine, legacy_tables: set[str]) -> None:
    legacy = legacy_metadata()
    with engine.begin() as conn:
        legacy.create_all(conn, tables=[legacy.tables[name] for name in sorted(legacy_tables)])
        for name, values in LEGACY_ROWS.items():
            if name in legacy_tables:
                conn.execute(legacy.tables[name].insert(), values)
    before = {name: rows(engine, name) for name in legacy_tables}
    assert sum(map(len, before.values())) > 0

    migrate.upgrade(engine)

    assert migrate.current_revision(engine) == migrate.head_revision()
    assert tables(engine) == HEAD_TABLES
    assert {name: rows(engine, name) for name in legacy_tables} == before
    # The resources work on it: the old seed is not booked again, the old answer is served.
    ledger = TradingLedger(url=url_of(engine), initial_cash_krw=1.0)
    assert ledger.cash_krw(None) == pytest.approx(SEED - 1_000_500.0 if "cash_events" in legacy_tables else 1.0)
    cache = verdict_cache.VerdictCache(verdict_cache.make_engine(url_of(engine)))
    key = verdict_cache.CacheKey("KRW-BTC", "2023-12-06", "gpt-test", "p" * 64, "q" * 64)
    assert (cache.get(key) is not None) == ("gpt_verdict_cache" in legacy_tables)


def test_the_models_and_the_migrations_agree(engine: sa.Engine) -> None:
    # Autogenerate's view: tables, columns, types, nullability, indexes, unique and foreign keys.
    # A column added to schema.py without a revision shows up here as ('add_column', …).
    migrate.upgrade(engine)
    with engine.connect() as conn:
        differences = compare_metadata(MigrationContext.configure(conn), MODELS)
    assert differences == [], f"schema.py / verdict_cache.py differ from the migrations; add a revision: {differences}"


def _reflected(engine: sa.Engine) -> dict[str, dict[str, Any]]:
    """Every table as the database itself describes it, CHECK constraints included."""
    inspector = sa.inspect(engine)

    def described(table: str) -> dict[str, Any]:
        columns = [{**c, "type": c["type"].compile(dialect=engine.dialect)} for c in inspector.get_columns(table)]
        return {
            "columns": columns,
            "primary_key": inspector.get_pk_constraint(table),
            "foreign_keys": inspector.get_foreign_keys(table),
            "indexes": sorted(inspector.get_indexes(table), key=lambda i: i["name"]),
            "unique": sorted(inspector.get_unique_constraints(table), key=lambda u: u["column_names"]),
            "checks": sorted(inspector.get_check_constraints(table), key=lambda c: c["name"] or ""),
        }

    return {table: described(table) for table in sorted(inspector.get_table_names()) if table != "alembic_version"}


def test_the_migrations_build_exactly_what_the_models_describe(new_database: NewDatabase) -> None:
    # Autogenerate ignores CHECK constraints; comparing the reflected databases does not.
    migrated, created = new_database(), new_database()
    migrate.upgrade(migrated)
    with created.begin() as conn:
        for metadata in MODELS:
            metadata.create_all(conn)
    assert _reflected(migrated) == _reflected(created)


FIRST_USES = ("upgrade", "upgrade", "ledger", "cache")


def first_use(kind: str, url: str, start: Any, results: Any) -> None:
    """Open the database as `kind` does on a run's first use, once every racer is ready; report on `results`."""
    start.wait(timeout=120)
    try:
        if kind == "ledger":
            outcome: object = TradingLedger(url=url, initial_cash_krw=SEED).cash_krw(None)
        else:
            engine = verdict_cache.make_engine(url) if kind == "cache" else sql.make_engine(url)
            if kind == "upgrade":
                migrate.upgrade(engine)
            engine.dispose()
            outcome = "ok"
    except Exception as error:
        outcome = repr(error)
    results.put((kind, outcome))


@pytest.mark.parametrize("racers", ["threads", "processes"])
def test_first_uses_racing_on_a_new_database_do_not_collide(new_database: NewDatabase, racers: str) -> None:
    # A fresh deployment: runs (processes, under Dagster's multiprocess executor) open the ledger and the
    # GPT cache at the same instant. Processes prove the database's lock; threads, that it and the
    # process's own lock around Alembic do not deadlock.
    engine = new_database()
    if racers == "threads":
        start, results, spawn = threading.Barrier(len(FIRST_USES)), queue.Queue(), threading.Thread
    else:
        context = multiprocessing.get_context("spawn")
        start, results, spawn = context.Barrier(len(FIRST_USES)), context.Queue(), context.Process
    workers = [spawn(target=first_use, args=(kind, url_of(engine), start, results)) for kind in FIRST_USES]
    for worker in workers:
        worker.start()
    outcomes = sorted((results.get(timeout=180) for _ in workers), key=str)
    for worker in workers:
        worker.join(timeout=30)
    assert outcomes == sorted([("upgrade", "ok"), ("upgrade", "ok"), ("ledger", SEED), ("cache", "ok")], key=str)
    assert migrate.current_revision(engine) == migrate.head_revision()
    assert [row["event_key"] for row in rows(engine, "cash_events")] == ["seed"]

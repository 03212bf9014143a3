"""The local Dagster instance's event log: Dagster's SQLite storage, minus the per-event set-up.

`SqliteEventLogStorage` builds a new SQLAlchemy `Engine` and opens a new SQLite connection for
every write, one to three per event (the run's shard, the cross-run index, the asset-check
tables), and looks up in the schema whether the asset-check tables exist for every check result.
A daily `analysis_job` run stores ~155 events: building ~400 engines was ~1.5 s of its CPU, and
closing each WAL-mode connection (the last one on a file checkpoints the write-ahead log into it)
~0.6 s more (docs/performance.md). This subclass, per process:

- builds each shard's engine once;
- keeps a connection open to the few shards written last (`OPEN_SHARDS`: the index and the
  runs in progress), closing the least recently used beyond that (and dropping its engine), so a
  webserver reading thousands of runs holds no more files open than a run worker does;
- remembers a table once it has seen it (tables are added by migrations, never dropped).

Everything else is Dagster's: the same files, tables and WAL journal, a transaction per write
(committed when the write ends, as before: another process sees each event as soon as it is
stored, and an idle connection holds no lock), the same busy timeout, the same first-use
migration of a shard. A forked child opens its own connections; `wipe` and `dispose` close them.

`dagster.yaml` (the local, embedded instance) names it; production's PostgreSQL instance
(deploy/production/dagster.yaml) keeps `dagster_postgres`. Dagster is pinned (setup.py), and
`makenaide_assets_tests/test_instance.py` runs jobs on it and reads everything back.
"""

import os
from collections import OrderedDict
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from dagster._core.storage.event_log.sqlite.sqlite_event_log import (
    INDEX_SHARD_NAME,
    SQLITE_BUSY_TIMEOUT_SECONDS,
    SqliteEventLogStorage,
)
from dagster._serdes import ConfigurableClassData
from sqlalchemy import create_engine
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.pool import NullPool

# The index and a few runs: a run worker writes two shards, the daemon a handful of runs at a time.
OPEN_SHARDS = 4


class LocalEventLogStorage(SqliteEventLogStorage):
    """`SqliteEventLogStorage` with one engine per shard file and the recently written shards kept open."""

    def __init__(self, base_dir: str, inst_data: ConfigurableClassData | None = None) -> None:
        self._engines: dict[str, Engine] = {}
        self._open: OrderedDict[str, Connection] = OrderedDict()
        self._pid = os.getpid()
        self._tables: set[str] = set()
        super().__init__(base_dir, inst_data)

    @classmethod
    def from_config_value(cls, inst_data: ConfigurableClassData | None, config_value: Any) -> "LocalEventLogStorage":
        return cls(inst_data=inst_data, **config_value)

    def _engine(self, shard: str) -> Engine:
        engine = self._engines.get(shard)
        if engine is None:
            engine = create_engine(
                self.conn_string_for_shard(shard),  # NullPool: open connections are kept in _open
                poolclass=NullPool,
                connect_args={"timeout": SQLITE_BUSY_TIMEOUT_SECONDS},
            )
            self._engines[shard] = engine
        return engine

    @contextmanager
    def _connect(self, shard: str) -> Iterator[Connection]:
        # Dagster's own `_connect` (lock, first-use migration, one transaction), on a kept connection.
        with self._db_lock:
            if self._pid != os.getpid():  # a forked child must not use its parent's SQLite handles
                self._open.clear()
                self._engines.clear()
                self._pid = os.getpid()
            engine = self._engine(shard)
            if shard not in self._initialized_dbs:
                self._initdb(engine)
                self._initialized_dbs.add(shard)
            conn = self._open.get(shard)
            if conn is None or conn.closed or conn.invalidated:
                conn = self._open[shard] = engine.connect()
                while len(self._open) > OPEN_SHARDS:
                    evicted, closing = self._open.popitem(last=False)
                    closing.close()
                    # Its engine too: a webserver reading thousands of runs keeps no more of either.
                    if evicted != INDEX_SHARD_NAME:
                        self._engines.pop(evicted).dispose()
            self._open.move_to_end(shard)
            with conn.begin():
                yield conn

    def has_table(self, table_name: str) -> bool:
        # Asked for every check result (`supports_asset_checks`); Dagster's opens an engine each time.
        if table_name in self._tables:
            return True
        engine = self._engine(INDEX_SHARD_NAME)
        with engine.connect() as conn:
            present = bool(engine.dialect.has_table(conn, table_name))
        if present:
            self._tables.add(table_name)
        return present

    def _close_all(self) -> None:
        while self._open:
            self._open.popitem()[1].close()

    def wipe(self) -> None:
        with self._db_lock:
            self._close_all()
        super().wipe()

    def dispose(self) -> None:
        self._close_all()
        for engine in self._engines.values():
            engine.dispose()
        self._engines.clear()
        super().dispose()

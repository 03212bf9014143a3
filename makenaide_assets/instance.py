"""The local Dagster instance's event log: Dagster's SQLite storage, minus an engine per event.

`SqliteEventLogStorage` builds a new SQLAlchemy `Engine` for every connection it opens, and it
opens one to three per event (the run's shard, the cross-run index, the asset-check tables): a
daily `analysis_job` run stores ~160 events, and building those ~400 engines (URL parsing, dialect
set-up, event hooks) was ~1.5 s of the run's CPU, more than the analysis itself
(docs/performance.md). This subclass builds each shard's engine once per process and keeps
everything else as Dagster has it: the same files and tables, `NullPool` (no connection stays
open, so the webserver, the daemon and run workers still share the files as before), the same
busy timeout, the same first-use migration of a shard.

`dagster.yaml` (the local, embedded instance) names it; production's PostgreSQL instance
(deploy/production/dagster.yaml) keeps `dagster_postgres`. Dagster is pinned (setup.py), and
`makenaide_assets_tests/test_instance.py` runs a job on it and reads everything back.
"""

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from dagster._core.storage.event_log.sqlite.sqlite_event_log import (
    SQLITE_BUSY_TIMEOUT_SECONDS,
    SqliteEventLogStorage,
)
from dagster._serdes import ConfigurableClassData
from sqlalchemy import create_engine
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.pool import NullPool


class LocalEventLogStorage(SqliteEventLogStorage):
    """`SqliteEventLogStorage` with one engine per shard file for the life of the process."""

    def __init__(self, base_dir: str, inst_data: ConfigurableClassData | None = None) -> None:
        self._engines: dict[str, Engine] = {}
        super().__init__(base_dir, inst_data)

    @classmethod
    def from_config_value(cls, inst_data: ConfigurableClassData | None, config_value: Any) -> "LocalEventLogStorage":
        return cls(inst_data=inst_data, **config_value)

    def _engine(self, shard: str) -> Engine:
        engine = self._engines.get(shard)
        if engine is None:
            engine = create_engine(
                self.conn_string_for_shard(shard),
                poolclass=NullPool,
                connect_args={"timeout": SQLITE_BUSY_TIMEOUT_SECONDS},
            )
            self._engines[shard] = engine
        return engine

    @contextmanager
    def _connect(self, shard: str) -> Iterator[Connection]:
        # Dagster's own `_connect`, with the engine looked up instead of built (and disposed) each time.
        with self._db_lock:
            engine = self._engine(shard)
            if shard not in self._initialized_dbs:
                self._initdb(engine)
                self._initialized_dbs.add(shard)
            with engine.connect() as conn, conn.begin():
                yield conn

    def dispose(self) -> None:
        for engine in self._engines.values():
            engine.dispose()
        self._engines.clear()
        super().dispose()

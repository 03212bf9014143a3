"""One trading writer at a time, enforced by the ledger's own database, whatever launched the run.

The run queue's tag limit keeps the daemon's trading runs apart, but a hand-started `fills`
materialisation or `dagster job execute` bypasses it; two writers of one partition would then
race to the exchange. So the broker takes this lock before it plans anything:
- PostgreSQL: a session advisory lock on a connection held for the whole run; the server releases
  it when the connection ends, so a killed run never leaves it behind.
- SQLite: an exclusive `flock` on a file beside the database; the kernel releases it when the
  process dies. flock locks belong to an open file, so two runs in one process exclude each
  other too.
The second writer waits up to `wait_s` (it then finds the first one's orders booked and sends
nothing again), and otherwise fails with a message saying who holds the ledger.
"""

import fcntl
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import sqlalchemy as sa

# Any constant shared by every Makenaide process ("MKNW"); the schema lock uses another one.
_WRITER_LOCK_KEY = 0x4D4B4E57
_POLL_S = 0.2


class LedgerBusy(RuntimeError):
    """Another trading run holds the ledger's writer lock."""


@contextmanager
def writer_lock(engine: sa.Engine, owner: str, wait_s: float) -> Iterator[None]:
    if engine.dialect.name == "postgresql":
        with _advisory_lock(engine, owner, wait_s):
            yield
        return
    database = engine.url.database
    if engine.dialect.name != "sqlite" or database in (None, "", ":memory:"):
        raise LedgerBusy(f"no writer lock for {engine.dialect.name} database {database!r}; use a file or PostgreSQL")
    with _file_lock(Path(f"{database}.writer.lock"), owner, wait_s):
        yield


@contextmanager
def _advisory_lock(engine: sa.Engine, owner: str, wait_s: float) -> Iterator[None]:
    with engine.connect() as conn:
        deadline = time.monotonic() + wait_s
        while not conn.execute(sa.text("SELECT pg_try_advisory_lock(:key)"), {"key": _WRITER_LOCK_KEY}).scalar():
            if time.monotonic() >= deadline:
                raise LedgerBusy(f"{owner}: another trading run holds the ledger (waited {wait_s:g} s)")
            time.sleep(_POLL_S)
        conn.commit()
        try:
            yield
        finally:
            conn.execute(sa.text("SELECT pg_advisory_unlock(:key)"), {"key": _WRITER_LOCK_KEY})
            conn.commit()


@contextmanager
def _file_lock(path: Path, owner: str, wait_s: float) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        deadline = time.monotonic() + wait_s
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    holder = path.read_text(encoding="utf-8", errors="replace").strip() or "another run"
                    raise LedgerBusy(
                        f"{owner}: {holder} holds the ledger (waited {wait_s:g} s); try again when it has finished"
                    ) from None
                time.sleep(_POLL_S)
        # Who holds it, for the message a waiting run gives up with.
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{owner} (pid {os.getpid()})".encode(), 0)
        try:
            yield
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)

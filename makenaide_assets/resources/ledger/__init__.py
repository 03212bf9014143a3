"""The trading ledger: orders, fills, positions, cash and equity; the source of truth for holdings.

Reads take the partition's cut-off (`CutOff`, queries.py): an asset of partition D sees what the
ledger held for D, whatever was booked since. Writes are one transaction each.
"""

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import dagster as dg
import pandas as pd
import sqlalchemy as sa
from pydantic import PrivateAttr

from makenaide_assets.resources.ledger import migrate, queries
from makenaide_assets.resources.ledger import schema as t
from makenaide_assets.resources.ledger.booking import book_fill
from makenaide_assets.resources.ledger.identifiers import (
    MAX_IDENTIFIER_LENGTH,
    identifier_for_signal,
    identifiers_for_signals,
    market_of,
    order_identifier,
    signal_fingerprint,
)
from makenaide_assets.resources.ledger.queries import CutOff
from makenaide_assets.settings import ledger_url
from makenaide_assets.sql import make_engine, schema_transaction
from makenaide_assets.strategy.calendar import utc_now_naive

__all__ = [
    "MAX_IDENTIFIER_LENGTH",
    "CutOff",
    "LedgerConflict",
    "PlanConflict",
    "TradingLedger",
    "identifier_for_signal",
    "identifiers_for_signals",
    "market_of",
    "order_identifier",
    "signal_fingerprint",
]

# Equity is recomputed from the same fills and closes on a re-run; float sums may differ in the
# last bits, never by a won.
EQUITY_TOLERANCE_KRW = 1e-6


class LedgerConflict(RuntimeError):
    """A write would contradict what the ledger already holds (e.g. booking an order twice)."""


class PlanConflict(LedgerConflict):
    """A partition's recomputed signals differ from the orders already planned for it."""

    def __init__(self, partition_key: str, planned: list[str], now: list[str]) -> None:
        self.partition_key = partition_key
        self.missing = sorted(set(planned) - set(now))  # planned then, not signalled now
        self.new = sorted(set(now) - set(planned))  # signalled now, never planned
        super().__init__(
            f"{partition_key} was traded with {len(planned)} planned order(s); its signals now map to "
            f"{len(now)}: new {self.new or 'none'}, no longer signalled {self.missing or 'none'}. "
            "Nothing is ordered for a past partition whose signals changed; re-run with the "
            "configuration it was traded with, or leave its history as it is."
        )


class TradingLedger(dg.ConfigurableResource):
    """Orders, fills, positions and cash in SQLite (default) or PostgreSQL; every write is one transaction."""

    # None: settings.ledger_url(), resolved when the ledger is first used (never at import).
    url: str | None = None
    initial_cash_krw: float = 10_000_000.0

    _engine: sa.Engine | None = PrivateAttr(default=None)

    def engine(self) -> sa.Engine:
        if self._engine is None:
            engine = make_engine(self.url or ledger_url())
            self._create_and_seed(engine)
            self._engine = engine
        return self._engine

    def _create_and_seed(self, engine: sa.Engine) -> None:
        """The newest schema and the initial cash, once, even when several runs open a new ledger at
        once (the seed's unique event_key would otherwise fail all but one of them)."""
        migrate.upgrade(engine)
        with schema_transaction(engine) as conn:
            seeded = conn.execute(sa.select(t.cash_events.c.id).where(t.cash_events.c.event_key == "seed")).first()
            if seeded is None:
                conn.execute(
                    t.cash_events.insert().values(
                        event_key="seed", kind="seed", amount_krw=self.initial_cash_krw, created_at=utc_now_naive()
                    )
                )

    @contextmanager
    def transaction(self) -> Iterator[sa.Connection]:
        with self.engine().begin() as conn:
            yield conn

    # ---- reads (as of a partition's cut-off; None: everything booked, for operator tools) -------
    def _read(self, read: Any, *args: Any) -> Any:
        with self.engine().connect() as conn:
            return read(conn, *args)

    def cash_krw(self, as_of: CutOff | None) -> float:
        return self._read(queries.cash_krw, as_of)

    def cash_history(self, as_of: CutOff | None) -> pd.DataFrame:
        return self._read(queries.cash_history, as_of)

    def open_positions(self, as_of: CutOff | None) -> pd.DataFrame:
        return self._read(queries.open_positions, as_of)

    def closed_trades(self, as_of: CutOff | None) -> pd.DataFrame:
        return self._read(queries.closed_trades, as_of)

    def equity_history(self, as_of: CutOff | None) -> pd.DataFrame:
        return self._read(queries.equity_history, as_of)

    def fills_for_partition(self, partition_key: str) -> pd.DataFrame:
        """One row per order of the partition (done ones with their fill; others with the reason)."""
        return self._read(queries.orders_of_partition, partition_key)

    def plan(self, partition_key: str) -> list[str] | None:
        return self._read(queries.plan, partition_key)

    def order(self, identifier: str) -> dict[str, Any] | None:
        with self.engine().connect() as conn:
            row = conn.execute(sa.select(t.orders).where(t.orders.c.identifier == identifier)).mappings().first()
        return dict(row) if row is not None else None

    def positions_table(self) -> pd.DataFrame:
        """The booked positions as they stand (for reconciling them with the replayed fills)."""
        columns = [c for c in t.positions.c if c.name != "updated_at"]
        return self._read(queries.frame, sa.select(*columns).order_by(t.positions.c.market))

    # ---- trading plans ---------------------------------------------------------------------------
    def record_plan(self, partition_key: str, identifiers: list[str]) -> None:
        """Record what a partition's trading run is about to order, once; a re-run must match it."""
        wanted = sorted(identifiers)
        with self.transaction() as conn:
            planned = queries.plan(conn, partition_key)
            if planned is None:
                conn.execute(
                    t.trading_plans.insert().values(
                        partition_key=partition_key,
                        identifiers="\n".join(wanted),
                        signal_count=len(wanted),
                        created_at=utc_now_naive(),
                    )
                )
            elif planned != wanted:
                raise PlanConflict(partition_key, planned, wanted)

    # ---- order lifecycle -----------------------------------------------------------------------
    def record_intent(
        self,
        identifier: str,
        *,
        partition_key: str,
        market: str,
        side: str,
        broker: str,
        ref_price: float | None,
        krw_amount: float | None,
        volume: float | None,
        reason: str | None,
        status: str = t.PENDING,
        error_name: str | None = None,
        error_message: str | None = None,
    ) -> None:
        """Insert the order as `pending` (or `skipped`); only a `skipped` row may be overwritten."""
        now = utc_now_naive()
        values = dict(
            partition_key=partition_key,
            market=market,
            side=side,
            broker=broker,
            ref_price=ref_price,
            krw_amount=krw_amount,
            volume=volume,
            reason=reason,
            status=status,
            error_name=error_name,
            error_message=error_message,
            updated_at=now,
        )
        with self.transaction() as conn:
            existing = conn.execute(
                sa.select(t.orders.c.status).where(t.orders.c.identifier == identifier).with_for_update()
            ).scalar()
            if existing is None:
                conn.execute(t.orders.insert().values(identifier=identifier, created_at=now, **values))
            elif existing == t.SKIPPED:
                conn.execute(t.orders.update().where(t.orders.c.identifier == identifier).values(**values))
            else:
                raise LedgerConflict(f"order {identifier} is already {existing}; refusing to record it again")

    def mark_submitted(self, identifier: str, exchange_uuid: str | None) -> None:
        self._transition(identifier, (t.PENDING, t.SUBMITTED), status=t.SUBMITTED, exchange_uuid=exchange_uuid)

    def close_order(self, identifier: str, status: str, error_name: str | None, error_message: str) -> None:
        """End an unresolved order without a fill: rejected, failed or skipped, with the reason."""
        if status not in (t.REJECTED, t.FAILED, t.SKIPPED):
            raise ValueError(f"close_order cannot set status {status!r}")
        self._transition(identifier, t.UNRESOLVED, status=status, error_name=error_name, error_message=error_message)

    def _transition(self, identifier: str, allowed: tuple[str, ...], **values: Any) -> None:
        with self.transaction() as conn:
            updated = conn.execute(
                t.orders.update()
                .where(t.orders.c.identifier == identifier, t.orders.c.status.in_(allowed))
                .values(updated_at=utc_now_naive(), **values)
            ).rowcount
            if updated != 1:
                raise LedgerConflict(f"order {identifier} is not in {allowed}; cannot set {values}")

    def record_fill(
        self,
        identifier: str,
        *,
        price: float,
        volume: float,
        fee: float,
        executed_at: pd.Timestamp,
        exchange_uuid: str | None = None,
    ) -> dict[str, Any]:
        """Book the fill, the position and the cash of an unresolved order in ONE transaction."""
        with self.transaction() as conn:
            return book_fill(
                conn,
                identifier,
                price=price,
                volume=volume,
                fee=fee,
                executed_at=executed_at,
                exchange_uuid=exchange_uuid,
            )

    # ---- equity ----------------------------------------------------------------------------------
    def record_equity(self, partition_key: str, positions_value_krw: float) -> dict[str, float]:
        """The partition's equity: cash as of its cut-off (its own orders included) plus the given
        market value. A fact of the partition: written once, re-written only with the same value."""
        cash = self.cash_krw(CutOff(partition_key, own_orders=True))
        row = dict(
            partition_key=partition_key,
            cash_krw=cash,
            positions_value_krw=float(positions_value_krw),
            equity_krw=cash + float(positions_value_krw),
        )
        with self.transaction() as conn:
            found = (
                conn.execute(sa.select(t.equity).where(t.equity.c.partition_key == partition_key)).mappings().first()
            )
            if found is None:
                conn.execute(t.equity.insert().values(**row, recorded_at=utc_now_naive()))
            else:
                differ = {
                    k: (float(found[k]), v)
                    for k, v in row.items()
                    if k.endswith("_krw") and abs(float(found[k]) - v) > EQUITY_TOLERANCE_KRW
                }
                if differ:
                    raise LedgerConflict(
                        f"equity of {partition_key} was recorded as {dict(found)} and is now {row}: "
                        f"{differ} (recorded, now). A partition's equity is written once."
                    )
        return {k: v for k, v in row.items() if k.endswith("_krw")}  # type: ignore[misc]

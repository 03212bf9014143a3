"""The trading ledger: orders, fills, positions, cash and equity; the source of truth for holdings."""

import hashlib
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

import dagster as dg
import pandas as pd
import sqlalchemy as sa
from pydantic import PrivateAttr

from makenaide_assets.resources.ledger import migrate
from makenaide_assets.resources.ledger import schema as t
from makenaide_assets.resources.ledger.booking import book_fill
from makenaide_assets.settings import ledger_url
from makenaide_assets.sql import make_engine, schema_transaction
from makenaide_assets.strategy.calendar import utc_now_naive

# Upbit documents no maximum for `identifier`; 64 keeps us far inside any sane limit and inside
# the column width.
MAX_IDENTIFIER_LENGTH = 64


class LedgerConflict(RuntimeError):
    """A write would contradict what the ledger already holds (e.g. booking an order twice)."""


def order_identifier(partition_key: str, market: str, side: str, signal_fingerprint: str) -> str:
    """Deterministic Upbit `identifier`: the same signal of the same partition always maps to it."""
    digest = hashlib.sha256(signal_fingerprint.encode("utf-8")).hexdigest()[:12]
    identifier = f"mkn-{partition_key}-{market}-{side}-{digest}"
    if len(identifier) > MAX_IDENTIFIER_LENGTH:
        raise ValueError(f"identifier {identifier!r} is longer than {MAX_IDENTIFIER_LENGTH} characters")
    return identifier


def signal_fingerprint(signal: Mapping[str, Any]) -> str:
    """What identifies a signal across re-materialisations.

    Amounts and prices are left out on purpose: they depend on cash and positions, which change
    once the first fill is booked, so a re-run of `signals` after `fills` would otherwise mint a
    new identifier and order again. One order per (partition, market, side) unless `signals`
    supplies a `signal_id` to tell several apart.
    """
    parts = [str(signal["market"]), str(signal["side"])]
    signal_id = signal.get("signal_id")
    if signal_id is not None and not pd.isna(signal_id):
        parts.append(str(signal_id))
    return "|".join(parts)


def identifier_for_signal(partition_key: str, signal: Mapping[str, Any]) -> str:
    return order_identifier(partition_key, str(signal["market"]), str(signal["side"]), signal_fingerprint(signal))


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

    # ---- reads -------------------------------------------------------------------------------
    def cash_krw(self) -> float:
        with self.engine().connect() as conn:
            total = conn.execute(sa.select(sa.func.coalesce(sa.func.sum(t.cash_events.c.amount_krw), 0.0))).scalar()
        return float(total)

    def cash_history(self) -> pd.DataFrame:
        """Every cash event in booking order with the running balance (for the never-negative check)."""
        frame = self._frame(sa.select(t.cash_events).order_by(t.cash_events.c.id))
        frame["balance_krw"] = frame["amount_krw"].astype("float64").cumsum()
        return frame

    def open_positions(self) -> pd.DataFrame:
        query = sa.select(*[t.positions.c[name] for name in t.POSITION_COLUMNS]).order_by(t.positions.c.market)
        return self._frame(query)

    def order(self, identifier: str) -> dict[str, Any] | None:
        with self.engine().connect() as conn:
            row = conn.execute(sa.select(t.orders).where(t.orders.c.identifier == identifier)).mappings().first()
        return dict(row) if row is not None else None

    def fills_for_partition(self, partition_key: str) -> pd.DataFrame:
        """One row per order of the partition (done ones with their fill; others with the reason)."""
        o, f = t.orders, t.fills
        query = (
            sa.select(
                o.c.identifier,
                o.c.market,
                o.c.side,
                f.c.price,
                f.c.volume,
                f.c.fee,
                f.c.krw_value,
                o.c.status,
                o.c.reason,
                sa.func.coalesce(o.c.error_name + sa.literal(": ") + o.c.error_message, o.c.error_message).label(
                    "status_reason"
                ),
                f.c.executed_at,
                f.c.realized_pnl_krw,
                o.c.ref_price,
                o.c.krw_amount.label("requested_krw"),
                o.c.volume.label("requested_volume"),
                o.c.broker,
                o.c.exchange_uuid,
            )
            .select_from(o.outerjoin(f, f.c.identifier == o.c.identifier))
            .where(o.c.partition_key == partition_key)
            .order_by(o.c.id)
        )
        frame = self._frame(query)
        for column in ("price", "volume", "fee", "krw_value", "realized_pnl_krw", "ref_price"):
            frame[column] = frame[column].astype("float64")
        frame["executed_at"] = pd.to_datetime(frame["executed_at"])
        return frame

    def closed_trades(self) -> pd.DataFrame:
        """Sell fills with their realised P&L, oldest first (the input of the Kelly statistics)."""
        query = sa.select(t.fills).where(t.fills.c.side == "sell").order_by(t.fills.c.executed_at, t.fills.c.id)
        return self._frame(query)

    def equity_history(self) -> pd.DataFrame:
        return self._frame(sa.select(t.equity).order_by(t.equity.c.partition_key))

    def _frame(self, query: sa.Select) -> pd.DataFrame:
        with self.engine().connect() as conn:
            result = conn.execute(query)
            return pd.DataFrame(result.all(), columns=list(result.keys()))

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

    # ---- positions and equity ---------------------------------------------------------------------
    def record_equity(self, partition_key: str, positions_value_krw: float) -> dict[str, float]:
        """Store (or replace) the partition's equity: ledger cash plus the given market value."""
        cash = self.cash_krw()
        row = dict(
            partition_key=partition_key,
            cash_krw=cash,
            positions_value_krw=float(positions_value_krw),
            equity_krw=cash + float(positions_value_krw),
            recorded_at=utc_now_naive(),
        )
        with self.transaction() as conn:
            # Delete + insert rather than a dialect-specific upsert, so SQLite and PostgreSQL agree.
            conn.execute(t.equity.delete().where(t.equity.c.partition_key == partition_key))
            conn.execute(t.equity.insert().values(**row))
        return {k: v for k, v in row.items() if k.endswith("_krw")}

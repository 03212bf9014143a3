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
from makenaide_assets.resources.ledger.writer import LedgerBusy, writer_lock
from makenaide_assets.settings import MODES, ledger_url
from makenaide_assets.sql import make_engine, schema_transaction
from makenaide_assets.strategy.calendar import utc_now_naive
from makenaide_assets.strategy.reconcile import KRW, Adjustment, currency_of

__all__ = [
    "MAX_IDENTIFIER_LENGTH",
    "CutOff",
    "LedgerBusy",
    "LedgerConflict",
    "LedgerModeMismatch",
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


class LedgerModeMismatch(LedgerConflict):
    """The ledger belongs to another mode (a live broker on a paper ledger, or the reverse)."""


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
    # The mode this ledger belongs to, recorded on first use and checked on every later one:
    # paper fills must never become positions a live broker sells (DESIGN §8). None (tests and
    # operator tools reading a ledger) claims nothing; `modes.resources_for` always sets it.
    mode: str | None = None  # demo, paper or live (Dagster config has no Literal)
    # Paper and demo start from this notional cash; a live ledger starts empty and takes its cash
    # and coins from /v1/accounts (the first reconciliation books them as the opening balance).
    initial_cash_krw: float = 10_000_000.0
    writer_wait_s: float = 120.0

    _engine: sa.Engine | None = PrivateAttr(default=None)

    def engine(self) -> sa.Engine:
        if self._engine is None:
            if self.mode not in (None, *MODES):
                raise ValueError(f"TradingLedger.mode {self.mode!r} is not one of {', '.join(MODES)}")
            engine = make_engine(self.url or ledger_url(self.mode))  # type: ignore[arg-type]
            self._create_and_seed(engine)
            self._engine = engine
        return self._engine

    def _create_and_seed(self, engine: sa.Engine) -> None:
        """The newest schema and the initial cash, once, even when several runs open a new ledger at
        once (the seed's unique event_key would otherwise fail all but one of them)."""
        migrate.upgrade(engine)
        with schema_transaction(engine) as conn:
            if self.mode is not None:
                self._claim_mode(conn, self.mode)
            # A reader without a mode (tests, operator tools) must not seed paper cash into a live ledger.
            recorded = conn.execute(sa.select(t.ledger_info.c.value).where(t.ledger_info.c.key == "mode")).scalar()
            seeded = conn.execute(sa.select(t.cash_events.c.id).where(t.cash_events.c.event_key == "seed")).first()
            if seeded is None and "live" not in (self.mode, recorded):
                conn.execute(
                    t.cash_events.insert().values(
                        event_key="seed", kind="seed", amount_krw=self.initial_cash_krw, created_at=utc_now_naive()
                    )
                )

    @staticmethod
    def _claim_mode(conn: sa.Connection, mode: str) -> None:
        recorded = conn.execute(sa.select(t.ledger_info.c.value).where(t.ledger_info.c.key == "mode")).scalar()
        if recorded is None:
            # A ledger from before modes were recorded: its brokers say what it traded.
            brokers = set(conn.execute(sa.select(t.orders.c.broker).distinct()).scalars())
            if brokers and (brokers != {"upbit"} if mode == "live" else "upbit" in brokers):
                raise LedgerModeMismatch(
                    f"this ledger holds orders of {sorted(brokers)}; a {mode} ledger cannot take it over. "
                    f"Use the {mode} mode's own ledger (MAKENAIDE_LEDGER_URL unset, or another database)."
                )
            conn.execute(t.ledger_info.insert().values(key="mode", value=mode, created_at=utc_now_naive()))
        elif recorded != mode:
            raise LedgerModeMismatch(
                f"this ledger belongs to {recorded} mode and MAKENAIDE_MODE is {mode}; paper and live "
                "history never share a ledger. Point MAKENAIDE_LEDGER_URL at the ledger of this mode."
            )

    @contextmanager
    def writer(self, owner: str) -> Iterator[None]:
        """The ledger's one trading writer (writer.py): held while orders are planned and sent."""
        with writer_lock(self.engine(), owner, self.writer_wait_s):
            yield

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
        """One row per daily order of the partition (done ones with their fill; others with the reason)."""
        return self._read(queries.orders_of_partition, partition_key)

    def stop_exits(self, partition_key: str) -> pd.DataFrame:
        """The stop exits watched after the partition's trading run, as `fills_for_partition` shows orders."""
        return self._read(queries.orders_of_partition, partition_key, t.STOP)

    def all_orders(self) -> pd.DataFrame:
        """Every order of every partition and kind, as `fills_for_partition` shows them (operator tools)."""
        return self._read(queries.orders_of_partition, None, None)

    def unresolved_orders(self) -> list[dict[str, Any]]:
        """Every order of any partition whose outcome at the exchange is not booked yet, oldest first."""
        return self._orders_where(t.orders.c.status.in_(t.UNRESOLVED))

    def refused_orders(self, broker: str, since_partition: str) -> list[dict[str, Any]]:
        """Orders `broker` booked rejected or failed since a partition: the exchange may still
        have executed one (an answer lost on the way), so they are looked up again."""
        return self._orders_where(
            t.orders.c.status.in_((t.REJECTED, t.FAILED)),
            t.orders.c.broker == broker,
            t.orders.c.partition_key >= since_partition,
        )

    def _orders_where(self, *where: sa.ColumnElement[bool]) -> list[dict[str, Any]]:
        with self.engine().connect() as conn:
            rows = conn.execute(sa.select(t.orders).where(*where).order_by(t.orders.c.id)).mappings().all()
        return [dict(row) for row in rows]

    def plan(self, partition_key: str) -> list[str] | None:
        return self._read(queries.plan, partition_key)

    def order(self, identifier: str) -> dict[str, Any] | None:
        with self.engine().connect() as conn:
            row = conn.execute(sa.select(t.orders).where(t.orders.c.identifier == identifier)).mappings().first()
        return dict(row) if row is not None else None

    def balances(self) -> dict[str, float]:
        """What the ledger says the account holds now: KRW, and per coin its position plus the
        coins held outside Makenaide. The live account must equal it (reconciliation)."""
        with self.engine().connect() as conn:
            held = queries.holdings_outside(conn)
            positions = queries.open_positions(conn, None)
            cash = queries.cash_krw(conn, None)
        for market, volume in zip(positions["market"], positions["volume"], strict=True):
            coin = currency_of(str(market))
            held[coin] = held.get(coin, 0.0) + float(volume)
        return {KRW: cash, **held}

    def adjustments(self, partition_key: str) -> pd.DataFrame:
        return self._read(queries.adjustments, partition_key)

    def reconciled_at(self) -> pd.Timestamp | None:
        """When the ledger was last reconciled with the account (None: never, so the next one
        books the opening balance)."""
        with self.engine().connect() as conn:
            found = conn.execute(
                sa.select(t.ledger_info.c.value).where(t.ledger_info.c.key == "reconciled_at")
            ).scalar()
        return None if found is None else pd.Timestamp(found)

    def booked_event_keys(self, prefix: str) -> set[str]:
        with self.engine().connect() as conn:
            keys = set(
                conn.execute(
                    sa.select(t.cash_events.c.event_key).where(t.cash_events.c.event_key.startswith(prefix))
                ).scalars()
            )
            keys |= set(
                conn.execute(
                    sa.select(t.holding_events.c.event_key).where(t.holding_events.c.event_key.startswith(prefix))
                ).scalars()
            )
        return {key.removeprefix(prefix) for key in keys}

    def record_reconciliation(self, partition_key: str, at: pd.Timestamp, adjustments: list[Adjustment]) -> None:
        """Book a reconciliation's adjustments (cash events for KRW, holding events for coins) and
        its time, in one transaction; an adjustment's key is booked once, whoever gets there first."""
        now = utc_now_naive()
        with self.transaction() as conn:
            booked = set(conn.execute(sa.select(t.cash_events.c.event_key)).scalars())
            booked |= set(conn.execute(sa.select(t.holding_events.c.event_key)).scalars())
            for item in adjustments:
                key = f"adj:{item.key}"
                if key in booked:
                    continue
                if item.currency == KRW:
                    conn.execute(
                        t.cash_events.insert().values(
                            event_key=key,
                            kind="adjustment" if item.explained else "unexplained",
                            amount_krw=item.amount,
                            partition_key=partition_key,
                            reason=item.reason,
                            created_at=now,
                        )
                    )
                else:
                    conn.execute(
                        t.holding_events.insert().values(
                            event_key=key,
                            currency=item.currency,
                            volume=item.amount,
                            kind="adjustment",
                            reason=item.reason,
                            explained=item.explained,
                            partition_key=partition_key,
                            created_at=now,
                        )
                    )
            stamp = pd.Timestamp(at).isoformat()
            where = t.ledger_info.c.key == "reconciled_at"
            if conn.execute(sa.select(t.ledger_info.c.key).where(where)).first() is None:
                conn.execute(t.ledger_info.insert().values(key="reconciled_at", value=stamp, created_at=now))
            else:
                conn.execute(t.ledger_info.update().where(where).values(value=stamp))

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
        kind: str = t.DAILY,
        triggered_at: pd.Timestamp | None = None,
    ) -> None:
        """Insert the order as `pending` (or `skipped`); only a `skipped` row may be overwritten."""
        now = utc_now_naive()
        values = dict(
            kind=kind,
            triggered_at=None if triggered_at is None else pd.Timestamp(triggered_at).to_pydatetime(),
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

    def reopen(self, identifier: str, exchange_uuid: str | None, why: str) -> None:
        """A rejected or failed order the exchange turns out to have executed: back to
        `submitted`, so its fill can be booked; the earlier verdict stays in the message."""
        self._transition(
            identifier, (t.REJECTED, t.FAILED), status=t.SUBMITTED, exchange_uuid=exchange_uuid, error_message=why
        )

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

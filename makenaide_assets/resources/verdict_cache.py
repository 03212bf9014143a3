"""Durable record of every billed OpenAI answer, in SQL (SQLite by default, PostgreSQL in production).

Rows with status "ok" are the response cache: a later run with the same market, partition,
model, prompt hash and payload hash reuses the verdict and calls nothing. Rows with status
"error" record what a rejected answer (refusal, broken schema, cut off) cost: they count
against the day's budget but are never served, so a later run asks again.
"""

from dataclasses import dataclass
from datetime import UTC, datetime

import sqlalchemy as sa

from makenaide_assets import sql
from makenaide_assets.resources.ledger import migrate

metadata = sa.MetaData()

gpt_verdict_cache = sa.Table(
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


@dataclass(frozen=True)
class CacheKey:
    market: str
    partition_key: str
    model: str
    prompt_hash: str
    payload_hash: str

    def where(self) -> sa.ColumnElement[bool]:
        t = gpt_verdict_cache.c
        return sa.and_(
            t.market == self.market,
            t.partition_key == self.partition_key,
            t.model == self.model,
            t.prompt_hash == self.prompt_hash,
            t.payload_hash == self.payload_hash,
        )


@dataclass(frozen=True)
class CachedAnswer:
    verdict_json: str
    input_tokens: int
    output_tokens: int
    cost_usd: float


def make_engine(url: str) -> sa.Engine:
    """An engine on the newest schema (migrated once, even when several runs start together).

    The table is one of the ledger database's, so the ledger's migrations create and change it.
    """
    engine = sql.make_engine(url)
    migrate.upgrade(engine)
    return engine


class VerdictCache:
    def __init__(self, engine: sa.Engine) -> None:
        self.engine = engine

    def get(self, key: CacheKey) -> CachedAnswer | None:
        t = gpt_verdict_cache.c
        query = (
            sa.select(t.verdict_json, t.input_tokens, t.output_tokens, t.cost_usd)
            .where(key.where(), t.status == "ok")
            .order_by(t.id.desc())
            .limit(1)
        )
        with self.engine.connect() as conn:
            row = conn.execute(query).first()
        return CachedAnswer(*row) if row else None

    def record(
        self,
        key: CacheKey,
        *,
        verdict_json: str | None,
        input_tokens: int,
        output_tokens: int,
        cost_usd: float,
        response_id: str = "",
        error: str = "",
    ) -> None:
        """Store one billed answer: a verdict (status ok) or, with `error`, only its cost."""
        if (verdict_json is None) == (not error):
            raise ValueError("record either a verdict or an error, not both or neither")
        values = {
            "market": key.market,
            "partition_key": key.partition_key,
            "model": key.model,
            "prompt_hash": key.prompt_hash,
            "payload_hash": key.payload_hash,
            "status": "error" if error else "ok",
            "verdict_json": verdict_json,
            "error": error,
            "input_tokens": input_tokens,
            "output_tokens": output_tokens,
            "cost_usd": cost_usd,
            "response_id": response_id,
            "created_at": datetime.now(UTC).replace(tzinfo=None),
        }
        with self.engine.begin() as conn:
            conn.execute(gpt_verdict_cache.insert().values(**values))

    def spent_usd(self, partition_key: str) -> float:
        """What the partition's answers have cost so far, rejected ones included."""
        t = gpt_verdict_cache.c
        query = sa.select(sa.func.coalesce(sa.func.sum(t.cost_usd), 0.0)).where(t.partition_key == partition_key)
        with self.engine.connect() as conn:
            return float(conn.execute(query).scalar_one())

"""`strategy_stats`: the closed-trade evidence for partition D, which `signals` sizes Kelly from.

It reads the trading ledger rather than `fills` as an asset input: D's statistics come from the
fills of earlier partitions, and fills -> strategy_stats -> signals -> fills would be a cycle in
the asset graph. `known_by` keeps the answer the same on a re-run made after later days traded.
"""

import math

import dagster as dg
import pandas as pd
import sqlalchemy as sa
from pydantic import Field

from makenaide_assets.market.metadata import (
    COLUMN_SCHEMA,
    catalog,
    check_result,
    check_spec,
    preview,
    rounded,
    table_schema,
)
from makenaide_assets.partitions import daily
from makenaide_assets.resources.kelly_evidence import KellyEvidence
from makenaide_assets.resources.ledger import CutOff, TradingLedger
from makenaide_assets.resources.ledger import schema as t
from makenaide_assets.strategy.calendar import partition_close
from makenaide_assets.strategy.frames import astype_columns
from makenaide_assets.strategy.stats import (
    EVIDENCE_PREFIX,
    TradeStats,
    evidence_before,
    evidence_stats,
    in_window,
    known_by,
    stats_of,
    trade_returns,
    window_start,
)

STATS_COLUMNS = [
    "date",
    "window_start",
    "window_days",
    *TradeStats.__dataclass_fields__,
    "trades_known",
    "last_trade_partition",
    "last_trade_executed_at",
    "note",
    # Walk-forward out-of-sample trades closed before D (KellyEvidence); empty without evidence.
    *(EVIDENCE_PREFIX + name for name in TradeStats.__dataclass_fields__),
    "evidence_last_exit",
]
SCHEMA = table_schema(
    ("date", "string", "D: the statistics `signals` sizes D's entries with"),
    ("window_start", "string", "First partition of the window"),
    ("window_days", "int", "Partitions before D in the window"),
    ("trades", "int", "Closed trades in the window: sells ordered before D, filled by its close"),
    ("wins", "int", "Of those, trades with a profit"),
    ("losses", "int", "Of those, trades with a loss"),
    ("win_rate", "float", "wins / trades: Kelly's W (empty with no trade)"),
    ("payoff_ratio", "float", "Average win over average loss, per KRW staked: Kelly's R"),
    ("profit_factor", "float", "Gross profit over gross loss, KRW (infinite with no losing trade)"),
    ("expectancy_krw", "float", "Mean P&L per trade, KRW"),
    ("total_pnl_krw", "float", "Realised P&L of the window's trades, KRW"),
    ("trades_known", "int", "Every closed trade known by D, in the window or not"),
    ("last_trade_partition", "string", "Partition of the window's last trade"),
    ("note", "string", "Which statistics are undefined and why; empty when all are defined"),
    ("evidence_trades", "int", "Walk-forward out-of-sample trades closed before D began, in the window"),
    ("evidence_win_rate", "float", "Their win rate: Kelly's W while the ledger holds fewer than min_trades"),
    ("evidence_payoff_ratio", "float", "Their average win over average loss: Kelly's R in that case"),
    ("evidence_total_pnl_krw", "float", "Their P&L, KRW, as the walk-forward run booked it"),
    ("evidence_last_exit", "string", "Partition of the last of them"),
)

# Blocking: `signals` sizes money from these numbers.
MATCHES_LEDGER = check_spec(
    "strategy_stats",
    "strategy_stats_matches_ledger",
    "The trades counted for D are those a direct SQL query of the ledger finds: sells ordered before D,"
    " filled by its close, in the window; trades known and total P&L agree",
    blocking=True,
)
TRADE_COLUMNS = ["partition_key", "market", "price", "volume", "fee", "realized_pnl_krw", "return_pct"]


class StrategyStatsConfig(dg.Config):
    window_days: int = Field(365, ge=1, description="Partitions before D whose closed trades count")


def stats_frame(
    closed: pd.DataFrame, partition_key: str, window_days: int, evidence: pd.DataFrame | None = None
) -> pd.DataFrame:
    """The one-row statistics of D from every closed trade of the ledger (pure, for tests and checks),
    and of the walk-forward trades in `evidence` that closed before D (`evidence_*`, empty without it)."""
    window = in_window(closed, partition_key, window_days)
    known = known_by(closed, partition_key)
    stats = stats_of(window)
    last = window.iloc[-1] if len(window) else None
    if stats.trades == 0:
        note = "no closed trade in the window: statistics undefined"
    elif stats.losses == 0:
        note = "no losing trade in the window: payoff ratio undefined, profit factor infinite"
    elif stats.wins == 0:
        note = "no winning trade in the window: average win and payoff ratio undefined"
    else:
        note = ""
    row = {
        "date": partition_key,
        "window_start": window_start(partition_key, window_days),
        "window_days": window_days,
        **stats.as_dict(),
        "trades_known": len(known),
        "last_trade_partition": None if last is None else str(last["partition_key"]),
        "last_trade_executed_at": pd.NaT if last is None else pd.Timestamp(last["executed_at"]),
        "note": note,
        **evidence_columns(evidence, partition_key, window_days),
    }
    frame = pd.DataFrame([row], columns=STATS_COLUMNS)
    return astype_columns(frame, {"last_trade_executed_at": "datetime64[us]", "last_trade_partition": "object"})


def evidence_columns(evidence: pd.DataFrame | None, partition_key: str, window_days: int) -> dict[str, object]:
    """`evidence_*` of D: the statistics of the walk-forward trades that had closed before D began."""
    if evidence is None:
        names = [EVIDENCE_PREFIX + name for name in TradeStats.__dataclass_fields__]
        return {**dict.fromkeys(names, math.nan), "evidence_last_exit": None}
    before = evidence_before(evidence, partition_key, window_days)
    stats = {EVIDENCE_PREFIX + name: value for name, value in evidence_stats(before).as_dict().items()}
    last = str(before["exit_partition"].astype(str).max()) if len(before) else None
    return {**stats, "evidence_last_exit": last}


@dg.asset(
    partitions_def=daily,
    group_name="analysis",
    kinds={"pandas", "sql"},
    metadata={COLUMN_SCHEMA: SCHEMA},
    check_specs=[MATCHES_LEDGER],
    dagster_type=pd.DataFrame,
)
def strategy_stats(
    context: dg.AssetExecutionContext, config: StrategyStatsConfig, ledger: TradingLedger, kelly_evidence: KellyEvidence
) -> dg.MaterializeResult:
    """Win rate, average win/loss, profit factor and expectancy of the trades closed before D (Kelly's inputs)."""
    key = context.partition_key
    # Sells of the partitions before D only: the ledger as D's close left it (DESIGN §8).
    closed = ledger.closed_trades(CutOff(key))
    frame = stats_frame(closed, key, config.window_days, kelly_evidence.trades())
    row = frame.iloc[0]
    window = in_window(closed, key, config.window_days)
    trades = window.assign(return_pct=trade_returns(window) * 100)[TRADE_COLUMNS] if len(window) else window
    return dg.MaterializeResult(
        value=frame,
        metadata={
            **catalog(frame, SCHEMA),
            "trades": dg.MetadataValue.int(int(row["trades"])),
            "trades_known": dg.MetadataValue.int(int(row["trades_known"])),
            "win_rate": _float(row["win_rate"]),
            "payoff_ratio": _float(row["payoff_ratio"]),
            "profit_factor": _float(row["profit_factor"]),
            "expectancy_krw": _float(row["expectancy_krw"]),
            "total_pnl_krw": _float(row["total_pnl_krw"]),
            "window": f"{row['window_start']} → {key} (sells ordered before {key}, filled by its close)",
            "note": row["note"] or "none",
            "kelly_evidence": dg.MetadataValue.text(
                f"walk-forward {kelly_evidence.describe()}: {int(row['evidence_trades'])} trades closed before {key}"
                if pd.notna(row["evidence_trades"])
                else "none (MAKENAIDE_KELLY_EVIDENCE unset)"
            ),
            "closed_trades": preview(trades, rows=50),
        },
        check_results=[matches_ledger(frame, window, ledger, key, config.window_days)],
    )


def _float(value: float) -> dg.MetadataValue:
    # Metadata floats must be finite to render; undefined statistics show as text.
    return rounded(value) if math.isfinite(value) else dg.MetadataValue.text(str(value))


def ledger_trades(ledger: TradingLedger, partition_key: str, window_days: int) -> tuple[pd.DataFrame, int]:
    """The window's trades and the count of all trades known by D, straight from the ledger's SQL:
    the same rule as `known_by`/`in_window`, written against the table instead of a DataFrame."""
    f = t.fills
    start = (pd.Timestamp(partition_key) - pd.Timedelta(days=window_days)).strftime("%Y-%m-%d")
    known = sa.and_(
        f.c.side == "sell",
        f.c.partition_key < partition_key,
        f.c.executed_at <= partition_close(partition_key).to_pydatetime(),
    )
    with ledger.engine().connect() as conn:
        rows = conn.execute(
            sa.select(f.c.identifier, f.c.market, f.c.partition_key, f.c.realized_pnl_krw).where(
                known, f.c.partition_key >= start
            )
        ).all()
        count = conn.execute(sa.select(sa.func.count()).select_from(f).where(known)).scalar_one()
    return pd.DataFrame(rows, columns=["identifier", "market", "partition_key", "realized_pnl_krw"]), int(count)


def matches_ledger(
    frame: pd.DataFrame, window: pd.DataFrame, ledger: TradingLedger, partition_key: str, window_days: int
) -> dg.AssetCheckResult:
    """D's statistics against the ledger's own answer; the trades that differ are named (a string
    or time-zone slip in the pandas filters would count a trade D could not know, or lose one)."""
    expected, known = ledger_trades(ledger, partition_key, window_days)
    differ = expected[~expected["identifier"].isin(set(window["identifier"]))]
    extra = window[~window["identifier"].isin(set(expected["identifier"]))]
    row = frame.iloc[0]
    pnl = float(expected["realized_pnl_krw"].fillna(0.0).sum())
    totals_agree = int(row["trades"]) == len(expected) and int(row["trades_known"]) == known
    if len(expected):
        totals_agree &= abs(float(row["total_pnl_krw"]) - pnl) <= 1e-6 * (1.0 + abs(pnl))
    return check_result(
        MATCHES_LEDGER,
        [*differ["market"], *extra["market"]],
        passed=differ.empty and extra.empty and totals_agree,
        not_counted=", ".join(f"{r.market} sold {r.partition_key}" for r in differ.itertuples()) or "none",
        counted_but_not_in_ledger=", ".join(f"{r.market} sold {r.partition_key}" for r in extra.itertuples()) or "none",
        trades=dg.MetadataValue.int(int(row["trades"])),
        trades_in_ledger=dg.MetadataValue.int(len(expected)),
        trades_known=dg.MetadataValue.int(int(row["trades_known"])),
        trades_known_in_ledger=dg.MetadataValue.int(known),
    )

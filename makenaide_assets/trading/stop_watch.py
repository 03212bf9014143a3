"""Stops watched between daily runs (issue 14): `stop_levels`, `stop_exits` and `stop_watch_sensor`.

After partition P's trading (or report) run, `stop_levels(P)` fixes the stop and take-profit of
every held position at P's close (strategy/intraday.py). Until P+1's daily run takes the book over,
`stop_watch_sensor` compares them every few minutes with one /v1/ticker call for all held markets
(in a replay: the recorded 4-hour candles) and, when one is crossed, starts `stop_exit_job`:
`stop_exits(P)` judges the same prices again, sells through the same broker (identifier minted
from (P, market, "stop"), so a second run never sells twice), books it under P as kind `stop`,
and tells the operator. P's own fills, portfolio and equity never see it; P+1's signals do.
"""

import json
from collections.abc import Mapping
from typing import Any

import dagster as dg
import pandas as pd
from pydantic import Field

from makenaide_assets.analysis.signals import with_highest_close_since_entry
from makenaide_assets.jobs import stop_exit_job
from makenaide_assets.market.metadata import preview
from makenaide_assets.partitions import daily
from makenaide_assets.resources.broker import Broker
from makenaide_assets.resources.ledger import CutOff, TradingLedger
from makenaide_assets.resources.ledger import schema as t
from makenaide_assets.resources.market_data import MarketData
from makenaide_assets.resources.notifier import Notifier
from makenaide_assets.strategy.calendar import utc_now_naive
from makenaide_assets.strategy.exits import STOP_LOSS_PCT, TAKE_PROFIT_PCT, TRAIL_ATR_MULTIPLE, TRAIL_PCT, ExitParams
from makenaide_assets.strategy.intraday import WatchLevels, crossings, watch_book, watch_window

STOP_LEVELS = dg.AssetKey("stop_levels")
LEVEL_COLUMNS = ["market", "volume", "avg_price", "stop_price", "stop_rule", "take_profit_price"]


class StopWatchConfig(dg.Config):
    """The exit parameters the levels are set with: the same defaults as `signals`' (exits.py);
    change both together."""

    stop_loss_pct: float = Field(STOP_LOSS_PCT, gt=0.0, lt=1.0)
    trailing_atr_multiple: float = Field(TRAIL_ATR_MULTIPLE, gt=0.0)
    trailing_pct: float = Field(TRAIL_PCT, gt=0.0, lt=1.0)
    take_profit_pct: float = Field(TAKE_PROFIT_PCT, gt=0.0)

    def exits(self) -> ExitParams:
        return ExitParams(
            stop_loss_pct=self.stop_loss_pct,
            atr_multiple=self.trailing_atr_multiple,
            trail_pct=self.trailing_pct,
            take_profit_pct=self.take_profit_pct,
        )


def shared_exits(signals_config: Mapping[str, Any]) -> dict[str, Any]:
    """The exit fields of a `signals` config that `stop_levels` shares (the same names), so a
    backtest or a run given other exits watches the levels its signals judge."""
    return {name: signals_config[name] for name in StopWatchConfig.model_fields if name in signals_config}


def stop_levels_config(signals_config: Mapping[str, Any]) -> dict[str, Any]:
    """`stop_levels`' run config carrying a `signals` config's exits (empty: the defaults)."""
    shared = shared_exits(signals_config)
    return {"ops": {"stop_levels": {"config": shared}}} if shared else {}


def levels_frame(levels: list[WatchLevels]) -> pd.DataFrame:
    return pd.DataFrame([{c: getattr(level, c) for c in LEVEL_COLUMNS} for level in levels], columns=LEVEL_COLUMNS)


def levels_of(frame: pd.DataFrame) -> list[WatchLevels]:
    return [WatchLevels(**row) for row in frame[LEVEL_COLUMNS].to_dict("records")]


@dg.asset(
    partitions_def=daily,
    group_name="trading",
    kinds={"pandas", "sql"},
    deps=["portfolio"],
    dagster_type=pd.DataFrame,
    metadata={
        "dagster/column_schema": dg.TableSchema(
            columns=[
                dg.TableColumn("market", "string", "A market held after P's trading run"),
                dg.TableColumn("volume", "float", "Units held"),
                dg.TableColumn("avg_price", "float", "Average entry price, KRW"),
                dg.TableColumn("stop_price", "float", "Sold if a price at or below it is seen before P+1's run"),
                dg.TableColumn("stop_rule", "string", "stop-loss or trailing stop: whichever is higher"),
                dg.TableColumn("take_profit_price", "float", "Sold if a price at or above it is seen"),
            ]
        )
    },
)
def stop_levels(
    context: dg.AssetExecutionContext,
    config: StopWatchConfig,
    ledger: TradingLedger,
    market_data: MarketData,
    daily_indicators: pd.DataFrame,
) -> dg.MaterializeResult:
    """The stop and take-profit of every position held after P's trading run, watched until P+1's run."""
    partition = context.partition_key
    positions = ledger.open_positions(CutOff(partition, own_orders=True))
    positions = with_highest_close_since_entry(positions, market_data, partition)
    frame = levels_frame(watch_book(positions, daily_indicators, config.exits()))
    start, end = watch_window(partition)
    return dg.MaterializeResult(
        value=frame,
        metadata={
            "dagster/row_count": dg.MetadataValue.int(len(frame)),
            "watch_from_utc": dg.MetadataValue.text(f"{start:%Y-%m-%d %H:%M}"),
            "watch_until_utc": dg.MetadataValue.text(f"{end:%Y-%m-%d %H:%M}"),
            # Read by stop_watch_sensor from the event log, so a tick never loads the value.
            "levels": dg.MetadataValue.json(frame.round(8).to_dict("records")),
            "preview": preview(frame),
        },
    )


def crossed(
    levels: list[WatchLevels], ledger: TradingLedger, market_data: MarketData, partition: str, now: pd.Timestamp
) -> tuple[pd.DataFrame, list[str], list[str]]:
    """Crossings seen by `now` for positions still held (a stop exit earlier in the watch took the
    others), as `Broker.execute_stop_exits` rows; plus the markets held and those without
    intraday prices (the daily rule alone guards them)."""
    start, end = watch_window(partition)
    held = set(ledger.open_positions(CutOff(partition, stop_exits=True))["market"])
    watched = [level for level in levels if level.market in held]
    markets = [level.market for level in watched]
    prices = market_data.intraday_prices(markets, start, min(now, end)) if markets else pd.DataFrame()
    unpriced = sorted(set(markets) - set(prices["market"] if not prices.empty else []))
    rows = [
        {
            "market": e.market,
            "volume": next(level.volume for level in watched if level.market == e.market),
            "price": e.price,
            "triggered_at": e.at,
            "reason": e.reason,
        }
        for e in crossings(watched, prices)
    ]
    return pd.DataFrame(rows, columns=["market", "volume", "price", "triggered_at", "reason"]), markets, unpriced


@dg.asset(
    partitions_def=daily,
    group_name="trading",
    kinds={"pandas", "sql"},
    dagster_type=pd.DataFrame,
)
def stop_exits(
    context: dg.AssetExecutionContext,
    ledger: TradingLedger,
    broker: Broker,
    notifier: Notifier,
    market_data: MarketData,
    stop_levels: pd.DataFrame,
) -> dg.MaterializeResult:
    """Positions sold during the day after P's trading run because a stop or take-profit was crossed."""
    partition = context.partition_key
    now = pd.Timestamp(utc_now_naive())
    end = watch_window(partition)[1]
    before = set(ledger.stop_exits(partition)["identifier"])
    if now > end:
        # A re-run after the watch: what was sold then, never an order now (DESIGN §8).
        exits, held, unpriced = pd.DataFrame(), [], []
        note = f"the watch ended at {end:%Y-%m-%d %H:%M} UTC: nothing new is sold"
    else:
        exits, held, unpriced = crossed(levels_of(stop_levels), ledger, market_data, partition, now)
        note = f"watched {len(held)} positions at {now:%Y-%m-%d %H:%M} UTC"
    done = broker.execute_stop_exits(exits, partition, context.log) if not exits.empty else ledger.stop_exits(partition)
    for notice in broker.notices if not exits.empty else []:
        notifier.send(f"Makenaide stop watch after {partition}: {notice}")
    for row in done[~done["identifier"].isin(before)].itertuples(index=False):
        if row.status == t.DONE:
            notifier.send(
                f"Makenaide sold {row.volume:g} {row.market} at {row.price:,.4g} KRW ({row.reason})", routine=True
            )
        else:
            notifier.send(f"Makenaide stop exit of {row.market} not done: {row.status}: {row.status_reason}")
    if unpriced:
        context.log.info(f"no intraday prices for {', '.join(unpriced)}: the daily rule alone guards them")
    return dg.MaterializeResult(
        value=done,
        metadata={
            "dagster/row_count": dg.MetadataValue.int(len(done)),
            "sold": dg.MetadataValue.int(int((done["status"] == t.DONE).sum())),
            "watch": dg.MetadataValue.text(note),
            "daily_rule_only": dg.MetadataValue.text(
                ", ".join(unpriced) + " (no intraday prices)" if unpriced else "none"
            ),
            "preview": preview(done),
        },
    )


def watched_partition(instance: dg.DagsterInstance, now: pd.Timestamp) -> tuple[str, list[WatchLevels]] | None:
    """The partition whose book is watched at `now`, with its levels: P when now lies in P's watch
    (P+1 00:00 → P+2 00:00 UTC) and P's `stop_levels` exist. Chosen by the clock, not by the newest
    materialisation, so a re-run of an old day never takes the watch away from today's book. At the
    boundary instant both P and P+1 qualify; P+1 wins once its trading run has written its levels."""
    day = now.normalize()
    for partition in (day - pd.Timedelta(days=1), day - pd.Timedelta(days=2)):
        key = f"{partition:%Y-%m-%d}"
        start, end = watch_window(key)
        if not start <= now <= end:
            continue
        records = instance.fetch_materializations(
            dg.AssetRecordsFilter(asset_key=STOP_LEVELS, asset_partitions=[key]), limit=1
        ).records
        if records and records[0].asset_materialization is not None:
            levels = records[0].asset_materialization.metadata.get("levels")
            rows = levels.value if levels is not None else []
            frame = pd.DataFrame(rows if isinstance(rows, list) else json.loads(str(rows)), columns=LEVEL_COLUMNS)
            return key, levels_of(frame)
    return None


@dg.sensor(
    jobs=[stop_exit_job],
    minimum_interval_seconds=300,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Every 5 minutes until the next daily run: one /v1/ticker call for the held markets; "
    "a crossed stop-loss, trailing stop or take-profit starts stop_exit_job.",
)
def stop_watch_sensor(
    context: dg.SensorEvaluationContext, ledger: TradingLedger, market_data: MarketData
) -> dg.SensorResult | dg.SkipReason:
    now = pd.Timestamp(utc_now_naive())
    watched = watched_partition(context.instance, now)
    if watched is None:
        closed = f"{now.normalize() - pd.Timedelta(days=1):%Y-%m-%d}"
        return dg.SkipReason(f"no stop_levels for {closed} yet (its trading or report run has not finished); now {now}")
    partition, levels = watched
    exits, held, _ = crossed(levels, ledger, market_data, partition, now)
    if exits.empty:
        return dg.SkipReason(f"after {partition}: {len(held)} held, no level crossed at {now:%H:%M} UTC")
    running = context.instance.get_run_records(
        dg.RunsFilter(
            job_name=stop_exit_job.name,
            tags={"dagster/partition": partition},
            statuses=[dg.DagsterRunStatus.QUEUED, dg.DagsterRunStatus.STARTING, dg.DagsterRunStatus.STARTED],
        ),
        limit=1,
    )
    if running:
        return dg.SkipReason(f"a stop exit run for {partition} is already under way")
    markets = ",".join(sorted(exits["market"]))
    return dg.SensorResult(
        run_requests=[
            dg.RunRequest(
                # Per tick: a failed exit run is tried again at the next tick (the broker's
                # identifiers keep a retry from selling twice).
                run_key=f"stop:{partition}:{markets}:{now:%Y%m%d%H%M}",
                partition_key=partition,
                job_name=stop_exit_job.name,
                tags={"makenaide/stop_exits": markets},
            )
        ]
    )

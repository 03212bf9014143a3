"""Freshness: the day that just closed is analysed by 09:35 KST, or the operator hears about it.

`analysis_schedule` asks at 00:05 UTC (09:05 KST) for the partition D that closed at 00:00 UTC; by
00:35 UTC (09:35 KST) D of `daily_candles`, `daily_indicators`, `candidates` and `signals` must
exist. Three pieces, so that a missing day cannot go unnoticed whatever stopped it (a failed or
hung run, a tick that never fired, a jammed run queue):

- `<asset>_on_time` checks, one per asset, partitioned like their asset: partition D passes once
  D of the asset has been materialised. They run at the end of every analysis run (they depend on
  the four assets, so they follow them), which puts a day that arrives late back to green.
- `analysis_deadline_sensor`, evaluated by the daemon: at each deadline it evaluates the checks for
  the day due and records the results itself, without a run, so the queue cannot delay them.
- `freshness_notifier` reads every evaluation of these checks from the event log, from a cursor,
  and sends one message per failed one through the `Notifier`.

Dagster's own `build_time_partition_freshness_checks` and `build_sensor_for_freshness_checks` have
the same partition semantics but are superseded since 1.12 (a `SupersessionWarning`, an error in
this project's tests); their replacement, `FreshnessPolicy.cron`, judges an asset by its latest
materialisation of any partition, so a backfill of an older day inside the window would pass for
a missing D, and a demo replay whose days lie in the past would fail every day.
"""

from collections.abc import Iterator
from datetime import UTC, datetime, time, timedelta

import dagster as dg

from makenaide_assets.partitions import daily
from makenaide_assets.resources.notifier import Notifier

FRESH_ASSETS = ["daily_candles", "daily_indicators", "candidates", "signals"]
# 30 minutes after analysis_schedule's 00:05 UTC tick: room for a slow day, before the trading hour.
DEADLINE_UTC = time(0, 35)
DEADLINE_KST = "09:35 KST"
# Enough evaluations for a long backfill between two ticks; the cursor carries the rest over.
_BATCH = 500


def on_time_spec(asset: str) -> dg.AssetCheckSpec:
    return dg.AssetCheckSpec(
        f"{asset}_on_time",
        asset=asset,
        description=f"Partition D exists by {DEADLINE_KST} on the next day (00:35 UTC), "
        "30 minutes after the analysis schedule asks for it",
        partitions_def=daily,
    )


ON_TIME_SPECS = [on_time_spec(asset) for asset in FRESH_ASSETS]
ON_TIME_CHECKS = {spec.key for spec in ON_TIME_SPECS}


def now() -> datetime:
    """The current time (tests freeze it by replacing this function)."""
    return datetime.now(UTC)


def deadline_of(partition: str) -> datetime:
    """When partition D must exist: 00:35 UTC on D+1."""
    return datetime.combine(datetime.strptime(partition, "%Y-%m-%d").date() + timedelta(days=1), DEADLINE_UTC, UTC)


def due_at(moment: datetime) -> str:
    """The partition whose deadline is the last one passed at `moment`."""
    deadline = datetime.combine(moment.astimezone(UTC).date(), DEADLINE_UTC, UTC)
    if moment < deadline:
        deadline -= timedelta(days=1)
    return (deadline - timedelta(days=1)).strftime("%Y-%m-%d")


def evaluate(instance: dg.DagsterInstance, spec: dg.AssetCheckSpec, partition: str) -> dg.AssetCheckEvaluation:
    """`spec` for `partition`: passed when the asset has a materialisation of that partition."""
    records = instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=spec.asset_key, asset_partitions=[partition]), limit=1
    ).records
    asset = spec.asset_key.to_user_string()
    deadline = deadline_of(partition)
    metadata: dict[str, dg.MetadataValue] = {
        "partition": dg.MetadataValue.text(partition),
        "deadline": dg.MetadataValue.timestamp(deadline),
    }
    if records:
        record = records[0]
        metadata["materialised_at"] = dg.MetadataValue.timestamp(record.timestamp)
        metadata["run_id"] = dg.MetadataValue.text(record.run_id)
        late = record.timestamp > deadline.timestamp()
        description = f"{asset} {partition} materialised" + (" after the deadline" if late else "")
    else:
        description = f"{asset} {partition} not materialised: analysis for {partition} missing at {DEADLINE_KST}"
    return dg.AssetCheckEvaluation(
        asset_key=spec.asset_key,
        check_name=spec.name,
        passed=bool(records),
        metadata=metadata,
        severity=dg.AssetCheckSeverity.ERROR,
        description=description,
        partition=partition,
    )


@dg.multi_asset_check(
    specs=ON_TIME_SPECS,
    can_subset=True,
    description=f"The day's analysis arrived: each asset's partition exists (due by {DEADLINE_KST} on D+1).",
)
def analysis_on_time(context: dg.AssetCheckExecutionContext) -> Iterator[dg.AssetCheckResult]:
    """In a run, after the assets: D exists now (a late day turns green once it arrives)."""
    for spec in ON_TIME_SPECS:
        if spec.key in context.selected_asset_check_keys:
            evaluation = evaluate(context.instance, spec, context.partition_key)
            yield dg.AssetCheckResult(
                asset_key=spec.asset_key,
                check_name=spec.name,
                passed=evaluation.passed,
                severity=evaluation.severity,
                description=evaluation.description,
                metadata=evaluation.metadata,
            )


@dg.sensor(
    name="analysis_deadline_sensor",
    minimum_interval_seconds=60,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description=f"At {DEADLINE_KST} evaluates the on-time checks of the day that just closed, without a run.",
)
def analysis_deadline_sensor(context: dg.SensorEvaluationContext) -> dg.SensorResult:
    # The cursor is the last partition evaluated: one evaluation per deadline, on the first tick after it.
    partition = due_at(now())
    if context.cursor == partition:
        return dg.SensorResult(skip_reason=dg.SkipReason(f"{partition} already evaluated; next deadline to come"))
    if not daily.has_partition_key(partition):
        # Demo mode's partitions are a replay's past days: nothing is due today.
        first, last = daily.get_first_partition_key(), daily.get_last_partition_key()
        return dg.SensorResult(
            skip_reason=dg.SkipReason(f"{partition} is not a partition ({first} → {last}): nothing due"),
            cursor=partition,
        )
    evaluations = [evaluate(context.instance, spec, partition) for spec in ON_TIME_SPECS]
    missing = [e.asset_key.to_user_string() for e in evaluations if not e.passed]
    summary = f"{partition}: " + (f"missing {', '.join(missing)}" if missing else "every asset arrived")
    context.log.info(summary)
    # Recorded by the daemon as the checks' evaluations (no run); freshness_notifier reports failures.
    return dg.SensorResult(asset_events=evaluations, cursor=partition, skip_reason=dg.SkipReason(summary))


def failure_message(evaluation: dg.AssetCheckEvaluation) -> str:
    partition = evaluation.partition or "?"
    return (
        f"Makenaide: analysis for {partition} missing at {DEADLINE_KST}: "
        f"{evaluation.asset_key.to_user_string()} has no materialisation for {partition} ({evaluation.check_name})"
    )


@dg.sensor(
    name="freshness_notifier",
    minimum_interval_seconds=30,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Tells the operator about every failed on-time check (log, Slack or Telegram through Notifier).",
)
def freshness_notifier(context: dg.SensorEvaluationContext, notifier: Notifier) -> dg.SensorResult:
    # Every evaluation after the cursor, in storage order: the deadline sensor's, a run's, one from the UI.
    after = int(context.cursor) if context.cursor else None
    records = context.instance.event_log_storage.get_event_records(
        dg.EventRecordsFilter(event_type=dg.DagsterEventType.ASSET_CHECK_EVALUATION, after_cursor=after),
        limit=_BATCH,
        ascending=True,
    )
    cursor, sent = context.cursor, 0
    for record in records:
        cursor = str(record.storage_id)
        event = record.event_log_entry.dagster_event
        evaluation = event.event_specific_data if event is not None else None
        if not isinstance(evaluation, dg.AssetCheckEvaluation) or evaluation.passed:
            continue
        if dg.AssetCheckKey(evaluation.asset_key, evaluation.check_name) in ON_TIME_CHECKS:
            notifier.send(failure_message(evaluation))
            sent += 1
    summary = f"{sent} failed on-time check(s) notified among {len(records)} new evaluation(s)"
    return dg.SensorResult(skip_reason=dg.SkipReason(summary), cursor=cursor)


SENSORS = [analysis_deadline_sensor, freshness_notifier]

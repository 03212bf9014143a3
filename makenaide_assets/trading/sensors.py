"""`signals_sensor` starts trading only for partitions whose `signals` hold orders."""

import dagster as dg

from makenaide_assets.jobs import report_job, trading_job
from makenaide_assets.resources.notifier import Notifier
from makenaide_assets.trading.signal_checks import SIGNALS, failed_signal_checks

# Enough for a long backfill between two ticks; the cursor carries the rest to the next tick.
_BATCH = 500


def trading_run_after(instance: dg.DagsterInstance, partition: str, since: float) -> dg.DagsterRun | None:
    """A `trading_job` or `report_job` run of `partition` created after `since` (a materialisation's
    timestamp).

    The instance's run records, not the sensor's cursor, say which days were traded: a daemon
    started with no cursor (or the demo's own ticks, which do not write the daemon's cursor)
    must still never offer a traded day again. Both jobs carry the `makenaide/trading` tag.
    """
    records = instance.get_run_records(
        dg.RunsFilter(tags={"dagster/partition": partition, "makenaide/trading": "true"}), limit=20
    )
    # A stop exit run of the partition (same trading tag, for the one trading slot) is not its trading.
    later = [r for r in records if r.create_timestamp.timestamp() >= since and not _stop_exit_run(r.dagster_run)]
    return later[0].dagster_run if later else None


def _stop_exit_run(run: dg.DagsterRun) -> bool:
    return "makenaide/stop_watch" in run.tags


def _signal_count(record: dg.EventLogRecord) -> int | None:
    materialization = record.asset_materialization
    value = materialization.metadata.get("signal_count") if materialization else None
    return int(value.value) if value is not None else None  # type: ignore[arg-type]


@dg.sensor(
    jobs=[trading_job, report_job],
    minimum_interval_seconds=30,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="For every `signals` materialisation, once: trading_job when it holds checked signals, "
    "else report_job (every day is valued and reported).",
)
def signals_sensor(context: dg.SensorEvaluationContext) -> dg.SensorResult:
    # A plain @asset_sensor sees only the latest materialisation, so a backfill that writes many
    # partitions between two ticks would lose all but one. Reading the event log from a storage-id
    # cursor sees every one of them, in order.
    after = int(context.cursor) if context.cursor else None
    result = context.instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=SIGNALS, after_storage_id=after), limit=_BATCH, ascending=True
    )
    requests, skipped = [], []
    cursor = context.cursor
    for record in result.records:
        run = context.instance.get_run_by_id(record.run_id)
        if run is None or not run.is_finished:
            # Its checks have not all run yet: stop here and look again next tick.
            skipped.append(f"run {record.run_id[:8]} still in progress")
            break
        cursor = str(record.storage_id)
        partition = record.partition_key
        count = _signal_count(record)
        if not partition or count is None:
            skipped.append(f"storage id {record.storage_id}: no partition or no signal_count metadata")
            continue
        if (done := trading_run_after(context.instance, partition, record.timestamp)) is not None:
            skipped.append(f"{partition}: already handled by {done.job_name} run {done.run_id[:8]}")
            continue
        why_not = _why_not_traded(count, failed_signal_checks(context.instance, record.run_id, partition))
        # One run per materialisation: a re-materialised partition gets a new request, and the
        # ledger's unique order identifiers keep that second run from ordering again.
        job = report_job if why_not else trading_job
        requests.append(
            dg.RunRequest(
                run_key=f"{'report' if why_not else 'trading'}-{partition}-{record.storage_id}",
                partition_key=partition,
                job_name=job.name,
                tags={"makenaide/signal_count": str(count), **({"makenaide/not_traded": why_not} if why_not else {})},
            )
        )
        context.log.info(f"{partition}: {count} signals → {job.name}" + (f" ({why_not})" if why_not else ""))
    for reason in skipped:
        context.log.info(f"skipped {reason}")
    if requests:
        return dg.SensorResult(run_requests=requests, cursor=cursor)
    reason = "; ".join(skipped) if skipped else "no new signals materialisations"
    return dg.SensorResult(skip_reason=dg.SkipReason(reason), cursor=cursor)


def _why_not_traded(count: int, failed: list[str] | None) -> str | None:
    """Why a day's signals are only reported, not traded (None: trade them)."""
    if count <= 0:
        return "no signals"
    if failed is None:
        return "signals checks did not run; unchecked orders are never traded"
    if failed:
        return f"blocking signals checks failed ({', '.join(failed)})"
    return None


@dg.run_failure_sensor(
    name="run_failure_notifier", default_status=dg.DefaultSensorStatus.RUNNING, monitor_all_code_locations=False
)
def run_failure_notifier(context: dg.RunFailureSensorContext, notifier: Notifier) -> None:
    """Tells the operator about every failed run (log by default, Slack/Telegram when configured)."""
    run = context.dagster_run
    partition = run.tags.get("dagster/partition", "-")
    message = context.failure_event.message or "run failed"
    notifier.send(f"Makenaide: {run.job_name} for partition {partition} failed (run {run.run_id[:8]}): {message}")

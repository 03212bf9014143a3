"""Whether a `signals` materialisation passed its blocking checks: asked by the sensor before it
starts trading and by `fills` itself, however its run was started."""

import dagster as dg

SIGNALS = dg.AssetKey("signals")


def failed_signal_checks(instance: dg.DagsterInstance, run_id: str, partition: str) -> list[str] | None:
    """Names of `signals` checks that failed in the run, or None if no check evaluated at all.

    Blocking checks stop downstream steps of the same run only; the materialisation event is
    stored before they run, so the sensor must read their outcome itself before trading.
    """
    evaluations = []
    for entry in instance.all_logs(run_id, of_type=dg.DagsterEventType.ASSET_CHECK_EVALUATION):
        evaluation = entry.dagster_event.event_specific_data if entry.dagster_event else None
        if evaluation is None or evaluation.asset_key != SIGNALS:
            continue
        if evaluation.partition not in (None, partition):
            continue
        evaluations.append(evaluation)
    if not evaluations:
        return None
    return sorted(e.check_name for e in evaluations if not e.passed and e.severity == dg.AssetCheckSeverity.ERROR)


def latest_signal_checks(instance: dg.DagsterInstance, partition: str) -> tuple[str, list[str] | None] | None:
    """(run id, failed blocking checks or None if none ran) of the partition's newest `signals`
    materialisation, or None when the instance holds none."""
    records = instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=SIGNALS, asset_partitions=[partition]), limit=1
    ).records
    if not records:
        return None
    return records[0].run_id, failed_signal_checks(instance, records[0].run_id, partition)

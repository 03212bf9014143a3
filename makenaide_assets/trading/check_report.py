"""The day's asset check report: every check of every asset for partition D and its outcome.

Read through the instance's public API only: the runs tagged with partition D, and in each the
`ASSET_CHECK_EVALUATION_PLANNED` / `ASSET_CHECK_EVALUATION` events. The latest evaluation of a
check stands; a check planned in a run of D but never evaluated had its step skipped (an upstream
step or blocking check failed); one never planned for D was not run at all. Both "did not run",
and `found` says which.

The outcome is one phrase a person reads, never a bare severity beside "passed": "passed",
"failed (blocks trading)", "failed (error)", "failed (warning)" or "did not run"; `blocks_trading`
says whether a failure of that check stops the steps downstream of it.
"""

from collections.abc import Iterable

import dagster as dg
import pandas as pd

CHECK_REPORT_COLUMNS = ["asset", "check", "outcome", "blocks_trading", "found", "run_id"]
PASSED, WARNING, FAILED, BLOCKED = "passed", "failed (warning)", "failed (error)", "failed (blocks trading)"
DID_NOT_RUN = "did not run"
STEP_SKIPPED = "its step did not run: an upstream step or blocking check failed"
NEVER_PLANNED = "no run of this day included it"
_EVENTS = {dg.DagsterEventType.ASSET_CHECK_EVALUATION_PLANNED, dg.DagsterEventType.ASSET_CHECK_EVALUATION}


def _found(metadata: dict) -> str:
    """The check's own metadata, compacted: what it found (the markets first), for failures and warnings."""
    first = [key for key in ("markets", "count") if key in metadata]
    parts = []
    for key in [*first, *(key for key in metadata if key not in first)]:
        value = metadata[key]
        if isinstance(value, dg.TableMetadataValue):  # a table check's rows, one "a b c" each
            text = "; ".join(" ".join(str(v) for v in r.data.values() if v is not None) for r in value.records)
        else:
            text = str(getattr(value, "value", value))
        if text and text != "none":
            parts.append(f"{key}={text[:120]}")
    return "; ".join(parts)[:400]


def _outcome(evaluation: dg.AssetCheckEvaluation) -> str:
    """The outcome in words a person reads: a passed check is "passed", whatever its severity."""
    if evaluation.passed:
        return PASSED
    if evaluation.severity == dg.AssetCheckSeverity.WARN:
        return WARNING
    return BLOCKED if evaluation.blocking else FAILED


def check_events(
    instance: dg.DagsterInstance, partition: str
) -> tuple[dict[dg.AssetCheckKey, tuple[dg.AssetCheckEvaluation, str]], dict[dg.AssetCheckKey, str]]:
    """Per check, the latest evaluation for `partition` with its run id, and the last run that planned it."""
    evaluated: dict[dg.AssetCheckKey, tuple[dg.AssetCheckEvaluation, str]] = {}
    planned: dict[dg.AssetCheckKey, str] = {}
    runs = instance.get_run_records(dg.RunsFilter(tags={"dagster/partition": partition}), ascending=True)
    for record in runs:  # oldest first: later runs overwrite
        run_id = record.dagster_run.run_id
        for entry in instance.all_logs(run_id, of_type=_EVENTS):
            data = entry.dagster_event.event_specific_data if entry.dagster_event else None
            if isinstance(data, dg.AssetCheckEvaluation):
                if data.partition in (None, partition):
                    evaluated[dg.AssetCheckKey(data.asset_key, data.check_name)] = (data, run_id)
            elif data is not None:
                planned[dg.AssetCheckKey(data.asset_key, data.check_name)] = run_id
    return evaluated, planned


def check_outcomes(
    instance: dg.DagsterInstance, check_keys: Iterable[dg.AssetCheckKey], partition: str
) -> pd.DataFrame:
    """Latest evaluation of each check for `partition`; checks that did not run say why.

    `blocks_trading` is known for the checks that ran (their evaluation says so) and empty for
    the others."""
    evaluated, planned = check_events(instance, partition)
    rows = []
    for key in sorted(check_keys, key=lambda k: (k.asset_key.to_user_string(), k.name)):
        asset = key.asset_key.to_user_string()
        if key in evaluated:
            evaluation, run_id = evaluated[key]
            found = "" if evaluation.passed else _found(dict(evaluation.metadata))
            blocks = "yes" if evaluation.blocking else "no"
            rows.append([asset, key.name, _outcome(evaluation), blocks, found, run_id[:8]])
        elif key in planned:
            rows.append([asset, key.name, DID_NOT_RUN, "", STEP_SKIPPED, planned[key][:8]])
        else:
            rows.append([asset, key.name, DID_NOT_RUN, "", NEVER_PLANNED, ""])
    return pd.DataFrame(rows, columns=CHECK_REPORT_COLUMNS)


def verdict(report: pd.DataFrame) -> str:
    """One line answering "can I trust today's run?"."""
    failed = report[report["outcome"].isin([FAILED, BLOCKED])]
    warned = report[report["outcome"] == WARNING]
    missing = report[report["outcome"] == DID_NOT_RUN]
    if not failed.empty:
        return f"NO: {len(failed)} error-severity check(s) failed: " + ", ".join(failed["check"])
    if not missing.empty:
        return f"CAUTION: {len(missing)} check(s) did not run for this day: " + ", ".join(missing["check"])
    if not warned.empty:
        return f"YES, with {len(warned)} warning(s): " + ", ".join(warned["check"])
    return f"YES: all {len(report)} checks passed"

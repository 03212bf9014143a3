"""The day's asset check report: every check of every asset for partition D and its outcome."""

from collections.abc import Iterable

import dagster as dg
import pandas as pd

CHECK_REPORT_COLUMNS = ["asset", "check", "outcome", "severity", "found", "run_id"]
# Record statuses by value: the enum lives in Dagster's private modules.
_EVALUATED = ("SUCCEEDED", "FAILED")
# How far back to look per check: re-runs of one partition are few, but backfills interleave.
_HISTORY = 200


def _found(metadata: dict) -> str:
    """The check's own metadata, compacted: what it found, for failures and warnings."""
    parts = []
    for key, value in metadata.items():
        text = str(getattr(value, "value", value))
        if text and text != "none":
            parts.append(f"{key}={text[:120]}")
    return "; ".join(parts)[:400]


def check_outcomes(
    instance: dg.DagsterInstance, check_keys: Iterable[dg.AssetCheckKey], partition: str
) -> pd.DataFrame:
    """Latest evaluation of each check for `partition`; checks never evaluated say so."""
    rows = []
    for key in sorted(check_keys, key=lambda k: (k.asset_key.to_user_string(), k.name)):
        history = instance.event_log_storage.get_asset_check_execution_history(key, limit=_HISTORY)
        mine = [r for r in history if r.partition == partition]
        # A planned check whose step never ran (a blocking failure upstream) has no evaluation.
        latest = next((r for r in mine if r.status.value in _EVALUATED and r.event is not None), None)
        evaluation = latest.event.dagster_event.event_specific_data if latest and latest.event.dagster_event else None
        if not isinstance(evaluation, dg.AssetCheckEvaluation):
            outcome = "planned, never ran" if mine else "not evaluated"
            rows.append([key.asset_key.to_user_string(), key.name, outcome, "", "", mine[0].run_id[:8] if mine else ""])
            continue
        outcome = "passed" if evaluation.passed else "failed"
        severity = evaluation.severity.value
        found = "" if evaluation.passed else _found(dict(evaluation.metadata))
        rows.append([key.asset_key.to_user_string(), key.name, outcome, severity, found, latest.run_id[:8]])
    return pd.DataFrame(rows, columns=CHECK_REPORT_COLUMNS)


def verdict(report: pd.DataFrame) -> str:
    """One line answering "can I trust today's run?"."""
    failed = report[(report["outcome"] == "failed") & (report["severity"] == "ERROR")]
    warned = report[(report["outcome"] == "failed") & (report["severity"] == "WARN")]
    missing = report[report["outcome"].isin(["not evaluated", "planned, never ran"])]
    if not failed.empty:
        return f"NO: {len(failed)} blocking-severity check(s) failed: " + ", ".join(failed["check"])
    if not missing.empty:
        return f"CAUTION: {len(missing)} check(s) not evaluated for this day: " + ", ".join(missing["check"])
    if not warned.empty:
        return f"YES, with {len(warned)} warning(s): " + ", ".join(warned["check"])
    return f"YES: all {len(report)} checks passed"

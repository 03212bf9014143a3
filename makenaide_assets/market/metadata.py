"""Metadata helpers: what a person wants to see about a frame in the Dagster UI."""

from typing import Any

import dagster as dg
import pandas as pd


def preview(frame: pd.DataFrame, rows: int = 20) -> dg.MetadataValue:
    if frame.empty:
        return dg.MetadataValue.md("_no rows_")
    return dg.MetadataValue.md(frame.head(rows).to_markdown(index=False, floatfmt=".6g"))


def reasons_table(frame: pd.DataFrame, reason_column: str) -> dg.MetadataValue:
    """How many rows were rejected for each reason, most common first."""
    reasons = frame.loc[frame[reason_column].fillna("") != "", reason_column]
    if reasons.empty:
        return dg.MetadataValue.md("_none rejected_")
    counts = reasons.value_counts().rename_axis("reason").reset_index(name="count")
    return dg.MetadataValue.md(counts.to_markdown(index=False))


def frame_metadata(frame: pd.DataFrame, **extra: Any) -> dict[str, Any]:
    return {"row_count": dg.MetadataValue.int(len(frame)), "preview": preview(frame), **extra}

"""Metadata helpers: what a person wants to see about a frame in the Dagster UI, and about a check."""

import math
from collections.abc import Iterable
from datetime import timedelta
from typing import Any

import dagster as dg
import numpy as np
import pandas as pd

from makenaide_assets.partitions import daily

# Enough names to act on; the count says how many more there were.
_MARKETS_SHOWN = 50


def preview(frame: pd.DataFrame, rows: int = 20) -> dg.MetadataValue:
    """The first rows as a table the UI shows inline, rounded for people (`table`)."""
    return table(frame, rows)


def reasons_table(frame: pd.DataFrame, reason_column: str) -> dg.MetadataValue:
    """How many rows were rejected for each reason, most common first (an empty table: none)."""
    reasons = frame.loc[frame[reason_column].fillna("") != "", reason_column]
    counts = reasons.value_counts().rename_axis("reason").reset_index(name="count")
    return table(counts, rows=50)


# Dagster's catalog keys: the UI shows them as the asset's row count and columns.
ROW_COUNT = "dagster/row_count"
COLUMN_SCHEMA = "dagster/column_schema"
# Who answers for an asset (the UI's "Owners"; Dagster takes an email or "team:<name>").
OWNERS = ["team:makenaide"]


def table_schema(*columns: tuple[str, str, str]) -> dg.TableSchema:
    """A column schema from (name, type, one-line description) triples."""
    return dg.TableSchema(columns=[dg.TableColumn(name, type_, description) for name, type_, description in columns])


def catalog(frame: pd.DataFrame, schema: dg.TableSchema) -> dict[str, dg.MetadataValue]:
    """The catalog's row count and column schema of one materialisation."""
    return {ROW_COUNT: dg.MetadataValue.int(len(frame)), COLUMN_SCHEMA: dg.MetadataValue.table_schema(schema)}


def frame_metadata(frame: pd.DataFrame, schema: dg.TableSchema, **extra: Any) -> dict[str, Any]:
    return {**catalog(frame, schema), "preview": preview(frame), **extra}


def rounded(value: float, digits: int = 2) -> dg.MetadataValue:
    """A float as a person reads it: 0.95, not 0.9516129032258065."""
    return dg.MetadataValue.float(round(float(value), digits))


def krw(value: float) -> dg.MetadataValue:
    """An amount of KRW to the whole won (an int: the UI plots it across partitions like a float)."""
    return dg.MetadataValue.int(round(float(value)))


def pct(value: float) -> dg.MetadataValue:
    """A percentage to 2 decimals: -0.94, not -0.9397875782730436."""
    return dg.MetadataValue.float(round(float(value), 2))


def price(value: float) -> dg.MetadataValue:
    """A price to 4 significant digits (45,600,000 or 0.1323): what a person compares, not the tick."""
    return dg.MetadataValue.float(significant(float(value)))


def significant(value: float, digits: int = 4) -> float:
    return float(f"{value:.{digits}g}")


_PRICE_COLUMNS = {"price", "avg_price", "close", "ref_price", "entry", "stop", "support", "resistance"}


def for_people(column: str, value: Any) -> str | int | float | bool | None:
    """One cell of a metadata table, rounded by what its column holds: KRW (`*_krw`, `krw_*`, `fee`)
    to the whole won, percentages (`*_pct`) to 2 decimals, prices (`price`, `*_price`, `close`, ...)
    to 4 significant digits, coin volumes to Upbit's 8 decimals, other floats to 4 significant
    digits; NaN and None become an empty cell."""
    if value is None or value is pd.NA or value is pd.NaT or (isinstance(value, float) and math.isnan(value)):
        return None
    if isinstance(value, bool | np.bool_):
        return bool(value)
    if isinstance(value, int | np.integer):
        return int(value)
    if not isinstance(value, float | np.floating):
        return str(value)
    value = float(value)
    if math.isinf(value):
        return str(value)
    if column.endswith("_krw") or column.startswith("krw_") or column == "fee":
        return round(value)
    if column.endswith("_pct"):
        return round(value, 2)
    if column in _PRICE_COLUMNS or column.endswith("_price"):
        return significant(value)
    if "volume" in column:
        return round(value, 8)
    return significant(value)


def _column_type(values: list[Any]) -> str:
    known = [v for v in values if v is not None]
    if known and all(isinstance(v, bool) for v in known):
        return "bool"
    if known and all(isinstance(v, int) and not isinstance(v, bool) for v in known):
        return "int"
    if known and all(isinstance(v, int | float) and not isinstance(v, bool) for v in known):
        return "float"
    return "string"


def table(frame: pd.DataFrame, rows: int = 20, descriptions: dict[str, str] | None = None) -> dg.MetadataValue:
    """Up to `rows` rows of `frame` as a table the UI shows inline (not markdown behind a click),
    every cell rounded by `for_people`; an empty frame is an empty table with its columns."""
    columns = [str(c) for c in frame.columns]
    records = [
        {column: for_people(column, value) for column, value in zip(columns, row, strict=True)}
        for row in frame.head(rows).itertuples(index=False, name=None)
    ]
    described = descriptions or {}
    schema = dg.TableSchema(
        columns=[
            dg.TableColumn(column, _column_type([r[column] for r in records]), described.get(column))
            for column in columns
        ]
    )
    return dg.MetadataValue.table([dg.TableRecord(record) for record in records], schema)


def market_list(markets: Iterable[str]) -> str:
    """Sorted, comma-separated market names ("none" for none): readable, and parsed back by `listed`."""
    return ", ".join(sorted(set(markets))) or "none"


def listed(text: object) -> set[str]:
    """The markets of a `market_list` string (a previous partition's metadata)."""
    return {m for m in str(text or "").split(", ") if m and m != "none"}


def check_spec(asset: str, name: str, description: str, *, blocking: bool = False) -> dg.AssetCheckSpec:
    """An in-asset check of a daily asset. Blocking checks fail with ERROR severity and stop every
    downstream step; the others only warn (see `check_result`).

    An asset with `check_specs` also declares `dagster_type=pd.DataFrame`: with check specs, its
    `-> MaterializeResult` annotation alone would type the value as Nothing.
    """
    return dg.AssetCheckSpec(name, asset=asset, description=description, blocking=blocking, partitions_def=daily)


def found_metadata(markets: Iterable[str]) -> dict[str, Any]:
    """The markets a check found, named and counted, so the check report says what was found."""
    found = sorted(set(markets))
    more = len(found) - _MARKETS_SHOWN
    shown = ", ".join(found[:_MARKETS_SHOWN]) + (f" … (+{more})" if more > 0 else "")
    return {"markets": shown or "none", "count": dg.MetadataValue.int(len(found))}


def check_result(
    spec: dg.AssetCheckSpec, markets: Iterable[str] = (), *, passed: bool | None = None, **details: Any
) -> dg.AssetCheckResult:
    """The outcome of `spec`: failed when it found markets (unless `passed` says otherwise)."""
    found = found_metadata(markets)
    return dg.AssetCheckResult(
        asset_key=spec.asset_key,  # named: a step producing several assets cannot guess which
        check_name=spec.name,
        passed=found["count"].value == 0 if passed is None else passed,
        severity=dg.AssetCheckSeverity.ERROR if spec.blocking else dg.AssetCheckSeverity.WARN,
        metadata={**found, **details},
    )


def previous_partition(context: dg.AssetExecutionContext) -> str:
    return (context.partition_time_window.start - timedelta(days=1)).strftime("%Y-%m-%d")


def previous_metadata(context: dg.AssetExecutionContext, asset: str) -> dict[str, Any] | None:
    """`asset`'s metadata as last materialised for the day before D, or None if it never was.

    Read from the instance, not the IO manager: it works the same on local Parquet and S3, and a
    check comparing D with D-1 needs only the few numbers and names the asset records anyway.
    """
    records = context.instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=dg.AssetKey(asset), asset_partitions=[previous_partition(context)]), limit=1
    ).records
    materialization = records[0].asset_materialization if records else None
    if materialization is None:
        return None
    return {key: getattr(value, "value", value) for key, value in materialization.metadata.items()}

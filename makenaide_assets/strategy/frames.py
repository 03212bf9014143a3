"""Small typed frames built cheaply: a day's few rows must not pay for a copy of every column."""

from collections.abc import Mapping, Sequence
from typing import Any

import pandas as pd


def astype_columns(frame: pd.DataFrame, dtypes: Mapping[str, Any]) -> pd.DataFrame:
    """`frame.astype(dtypes)`, in place: only the columns whose type differs are cast (a frame-wide
    `astype` copies every column and builds a new frame, which costs more than a few rows' values).
    For frames the caller has just built; returns `frame`."""
    current = frame.dtypes
    for name, dtype in dtypes.items():
        if current[name] != dtype:
            frame[name] = frame[name].astype(dtype)
    return frame


def records(frame: pd.DataFrame) -> list[dict[str, Any]]:
    """`frame.to_dict("records")` from one object array: the same plain Python values (floats,
    ints, bools, str, Timestamps, NaN), without pandas boxing each value of each row on its own."""
    names = list(frame.columns)
    return [dict(zip(names, row, strict=True)) for row in frame.to_numpy(dtype=object).tolist()]


def last_rows(frame: pd.DataFrame, columns: Sequence[str] | None = None) -> dict[str, dict[str, Any]]:
    """Each market's last row as plain values by column (what `drop_duplicates("market", keep="last")`
    keeps, without a frame per row); only those of `columns` the frame has, when given."""
    if columns is not None:
        frame = frame[["market", *(c for c in columns if c in frame and c != "market")]]
    return {row["market"]: row for row in records(frame)}

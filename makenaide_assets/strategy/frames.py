"""Small typed frames built cheaply: a day's few rows must not pay for a copy of every column."""

from collections.abc import Mapping
from typing import Any

import pandas as pd


def astype_columns(frame: pd.DataFrame, dtypes: Mapping[str, Any]) -> pd.DataFrame:
    """`frame.astype(dtypes)`, in place: only the columns whose type differs are cast (a frame-wide
    `astype` copies every column and builds a new frame, which costs more than a few rows' values).
    For frames the caller has just built; returns `frame`."""
    for name, dtype in dtypes.items():
        if frame[name].dtype != dtype:
            frame[name] = frame[name].astype(dtype)
    return frame


def records(frame: pd.DataFrame) -> list[dict[str, Any]]:
    """`frame.to_dict("records")`, read column by column (`tolist` gives the same plain Python
    values); pandas' own builds a Series per column and boxes each value on its own."""
    columns = {name: frame[name].tolist() for name in frame.columns}
    return [dict(zip(columns, row, strict=True)) for row in zip(*columns.values(), strict=True)]

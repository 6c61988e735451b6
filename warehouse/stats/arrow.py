"""Rows or frames to typed Arrow tables: the one place the marts' Python models turn numbers
into the columns dbt publishes.

One rule for every mart: a float that is NaN or infinite is published as **null**. An undefined
statistic (r over constant values, a p-value with too few points) or an unbounded one is not a
number a reader can use, and DuckDB would otherwise store NaN, which sorts above every number and
breaks ``order by``. The schema is fixed, so an empty result still has typed columns.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from typing import Any

import pandas as pd
import pyarrow as pa

Fields = Sequence[tuple[str, pa.DataType]]


def _finite_or_null(value: Any) -> Any:
    if value is None:
        return None
    number = float(value)
    return number if math.isfinite(number) else None


def _array(values: Iterable[Any], dtype: pa.DataType) -> pa.Array:
    values = list(values)
    if pa.types.is_floating(dtype):
        values = [_finite_or_null(v) for v in values]
    return pa.array(values, type=dtype)


def table(rows: Sequence[tuple], fields: Fields) -> pa.Table:
    """A table from row tuples, in the order of ``fields``."""
    columns = list(zip(*rows, strict=True)) if rows else [() for _ in fields]
    arrays = [_array(values, dtype) for values, (_, dtype) in zip(columns, fields, strict=True)]
    return pa.Table.from_arrays(arrays, schema=pa.schema(list(fields)))


def frame_table(frame: pd.DataFrame, fields: Fields) -> pa.Table:
    """A table from a frame's columns named in ``fields`` (a missing column is empty)."""
    arrays = [
        _array(frame[name].tolist() if name in frame else [], dtype) for name, dtype in fields
    ]
    return pa.Table.from_arrays(arrays, schema=pa.schema(list(fields)))

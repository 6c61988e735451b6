"""What the build itself knows about the file it makes (``int_build_info``, read by
``dim_study``): the lce and schema that built it, and the state of the lake it was built from.

The rest of ``dim_study`` (the dissection settings of the lake's runs, every dbt var, the dbt
and DuckDB versions) is SQL over the staging tables and the vars; only these facts need Python.
"""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa

from base import __version__
from warehouse.lake import last_commit
from warehouse.schema import SCHEMA_VERSION


def build_info(lake: str | Path) -> pa.Table:
    """One row: lce_version, schema_version, and the lake's last commit id (null for a lake
    written before lce recorded it)."""
    return pa.table(
        {
            "lce_version": pa.array([__version__], pa.string()),
            "schema_version": pa.array([SCHEMA_VERSION], pa.int32()),
            "lake_commit": pa.array([last_commit(Path(str(lake)))], pa.string()),
        }
    )

"""The SQL page: example queries, the marts' cheat sheet, and whole results or marts exported as
CSV or Parquet through DuckDB.

Every statement passes the guard beside the query layer (``warehouse.sql_guard``), which `lce
sql` shares; its names are re-exported here because the page reaches the SQL tools through this
module.
"""

from __future__ import annotations

from pathlib import Path

import polars as pl

from warehouse.query import MARTS, query
from warehouse.sql_guard import MAX_ROWS as MAX_ROWS
from warehouse.sql_guard import SqlRefused as SqlRefused
from warehouse.sql_guard import run_sql_isolated

EXAMPLE_QUERIES: dict[str, str] = {
    "A model's top concepts": (
        "select concept, category, n_units\nfrom fct_concept_profiles\n"
        "where model = (select model from dim_models where in_embedding order by model limit 1)\n"
        "order by n_units desc, concept\nlimit 10"
    ),
    "Nearest models to a model": (
        "select model_a, model_b, round(cosine_distance, 3) as distance\n"
        "from fct_model_distances\n"
        "qualify row_number() over (partition by model_a order by cosine_distance) = 1\n"
        "order by distance"
    ),
    "Model categories": (
        "select category_label, string_agg(model, ', ' order by model) as models\n"
        "from dim_model_categories\ngroup by category_label\norder by category_label"
    ),
    "Strongest component / task correlations": (
        "select component, task, dataset, metric, n, round(pearson_r, 3) as r,\n"
        "       round(p_value, 4) as p\nfrom fct_component_task_correlations\n"
        "where pearson_r is not null\norder by abs(pearson_r) desc\nlimit 20"
    ),
    "Tables and their descriptions": (
        "select table_name, comment from duckdb_tables() order by table_name"
    ),
}


def table_descriptions(db: Path) -> pl.DataFrame:
    """The marts with their dbt descriptions and columns, as the SQL page's cheat sheet."""
    return query(
        db,
        """
        select t.table_name as "table", t.comment as description,
               string_agg(c.column_name, ', ' order by c.column_index) as columns
        from duckdb_tables() t
        join duckdb_columns() c using (database_name, schema_name, table_name)
        where list_contains(?, t.table_name)
        group by t.table_name, t.comment
        order by t.table_name
        """,
        [list(MARTS)],
    )


def to_csv(frame: pl.DataFrame) -> str:
    """The result as CSV for the download button (``run_sql`` already made every column a
    scalar, so this cannot meet nested data)."""
    return frame.write_csv()


EXPORT_MAX_BYTES = 200_000_000  # of the Arrow result an export brings back
EXPORT_FORMATS = {"CSV": ("csv", "text/csv"), "Parquet": ("parquet", "application/octet-stream")}


def export_sql(db: Path, text: str, fmt: str) -> tuple[bytes, int]:
    """The whole result of one guarded query (the SQL page's checks and timeout; no row cap,
    a byte cap of EXPORT_MAX_BYTES) as CSV or Parquet bytes written by DuckDB, and its rows.

    The warehouse connection keeps external access off; DuckDB's COPY writes the result from a
    separate in-memory connection that holds only that result, into a private temporary
    folder."""
    import tempfile

    import duckdb

    if fmt not in EXPORT_FORMATS:
        raise ValueError(f"format must be one of {', '.join(EXPORT_FORMATS)}, not {fmt!r}")
    result = run_sql_isolated(db, text, max_rows=2**62, max_bytes=EXPORT_MAX_BYTES)
    table = result.frame.to_arrow()
    extension = EXPORT_FORMATS[fmt][0]
    with tempfile.TemporaryDirectory(prefix="lce-export-") as folder:
        target = Path(folder) / f"result.{extension}"
        with duckdb.connect(":memory:") as conn:
            conn.register("result", table)
            options = "(format parquet)" if extension == "parquet" else "(format csv, header)"
            conn.execute(f"copy result to '{target}' {options}")
        return target.read_bytes(), table.num_rows


def export_mart(db: Path, mart: str, fmt: str) -> tuple[bytes, int]:
    """A whole mart (only the names in MARTS) as CSV or Parquet bytes, as ``export_sql``."""
    if mart not in MARTS:
        raise ValueError(f"unknown mart {mart!r}")
    return export_sql(db, f'select * from "{mart}"', fmt)

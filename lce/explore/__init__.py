"""What the Streamlit explorer shows, as plain functions: queries (polars frames out) and figures.

The pages in ``app_pages/`` only lay out widgets and call these, so pytest can check every number
the app shows against a direct SQL query without starting Streamlit. One module per page, named
as the page (``overview``, ``embedding``, ``components``, ``tasks`` with ``performance_map``,
``compare``, ``units``, ``gallery``, ``concept``, ``similarity``, ``sql``), over a few shared
ones: ``db`` (which file, is it usable, what it has), ``palette`` (colours and sizes), ``names``
(task, result, component and concept names and their order), ``scatter_text`` (scatter plots
whose points are named, and where each name goes), ``figures`` (bars and correlation intervals)
and ``images`` (top images with their masks outlined).

Every query reads the marts only (``warehouse.query.MARTS``; a test refuses ``stg_`` or ``int_``
relations) through ``warehouse.query``, read-only with external access off. `lce summary` reads
the facts it shares with the pages from here.

The names below are re-exported for the tests that reach them through ``lce.explore``; the
pages import from the modules.
"""

from lce.explore.images import OUTLINE_RGB, unit_tiles
from lce.explore.names import task_title
from lce.explore.performance_map import knn_interpolate
from lce.explore.scatter_text import label_overlaps, label_positions, padded_range
from lce.explore.similarity import NO_FEATURES, similarity_status
from lce.explore.sql import EXAMPLE_QUERIES, export_mart, export_sql
from warehouse.sql_guard import MAX_ROWS, SqlRefused, check_sql, run_sql, run_sql_isolated

__all__ = [
    "EXAMPLE_QUERIES",
    "MAX_ROWS",
    "NO_FEATURES",
    "OUTLINE_RGB",
    "SqlRefused",
    "check_sql",
    "export_mart",
    "export_sql",
    "knn_interpolate",
    "label_overlaps",
    "label_positions",
    "padded_range",
    "run_sql",
    "run_sql_isolated",
    "similarity_status",
    "task_title",
    "unit_tiles",
]

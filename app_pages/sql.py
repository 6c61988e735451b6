"""SQL: a read-only query box over the warehouse (no file access, no writes, capped rows)."""

from __future__ import annotations

import streamlit as st

from lce import ui
from lce.explore.safe_text import md
from lce.explore.sql import (
    EXAMPLE_QUERIES,
    MARTS,
    MAX_ROWS,
    SqlRefused,
    export_mart,
    export_sql,
    run_sql_isolated,
    table_descriptions,
    to_csv,
)

db = ui.require_db(any_schema=True)
st.title("SQL")
st.markdown(
    "Ask the warehouse anything the pages do not show, in DuckDB SQL, and export the full "
    "result (or any mart) as CSV or Parquet."
)
st.caption(
    f"One SELECT at a time over the warehouse, at most {MAX_ROWS} rows shown (the export below "
    "brings the whole result). The file is opened read-only with external access disabled: no "
    "file reads, writes, ATTACH, COPY or INSTALL."
)

if "sql_text" not in st.session_state:
    st.session_state["sql_text"] = next(iter(EXAMPLE_QUERIES.values()))


def use_example() -> None:
    """Put the chosen example in the query box."""
    name = st.session_state.get("sql_example")
    if name in EXAMPLE_QUERIES:
        st.session_state["sql_text"] = EXAMPLE_QUERIES[name]


st.selectbox(
    "Example queries", list(EXAMPLE_QUERIES), index=None, placeholder="Pick an example ...",
    key="sql_example", on_change=use_example,
)  # fmt: skip
text = st.text_area("Query (Ctrl+Enter runs it)", key="sql_text", height=180)

if text and text.strip():
    try:
        result = run_sql_isolated(db, text)
    except SqlRefused as exc:
        st.error(md(str(exc)))  # DuckDB quotes data (a name) in its errors
    else:
        note = (
            f" (capped at {MAX_ROWS}; add a LIMIT or narrow the query)" if result.truncated else ""
        )
        st.caption(f"{result.frame.height} rows in {result.seconds:.2f} s{note}")
        st.dataframe(result.frame, hide_index=True)
        # The shown rows may be capped: the button says so, the full export sits beside it.
        shown = f"the {result.frame.height} rows shown" if result.truncated else "all rows"
        st.download_button(
            f"Download {shown} (CSV)", to_csv(result.frame), file_name="lce-query.csv",
            mime="text/csv", key="sql_download_shown",
        )  # fmt: skip
        ui.full_export(
            "Export the full result", "sql_export",
            lambda fmt: export_sql(db, text, fmt), "lce-query", identity=text,
        )  # fmt: skip

st.subheader("Export a mart")
st.caption("Any table of the warehouse in full, as CSV or Parquet (written by DuckDB).")
mart = st.selectbox("Mart", list(MARTS), key="sql_mart")
ui.full_export(
    f"Export {mart}", f"mart_export_{mart}", lambda fmt: export_mart(db, mart, fmt), mart
)

with st.expander("Tables and columns"):
    st.dataframe(ui.load(table_descriptions, db), hide_index=True)

"""The lce explorer: `lce app [--db FILE]` (or `streamlit run app.py`).

Pages are thin scripts in app_pages/; everything they show comes from lce.explore, which the
tests call directly. The warehouse is opened read-only, one short connection per query.
"""

from __future__ import annotations

import streamlit as st

from lce import ui

st.set_page_config(page_title="lce explorer", page_icon=":material/hub:", layout="wide")

PAGES = [
    st.Page("app_pages/overview.py", title="Overview", icon=":material/table_chart:",
            default=True),
    st.Page("app_pages/embedding.py", title="Embedding", icon=":material/scatter_plot:",
            url_path="embedding"),
    st.Page("app_pages/components.py", title="Components", icon=":material/bar_chart:",
            url_path="components"),
    st.Page("app_pages/tasks.py", title="Tasks", icon=":material/leaderboard:", url_path="tasks"),
    st.Page("app_pages/compare.py", title="Compare", icon=":material/compare_arrows:",
            url_path="compare"),
    st.Page("app_pages/units.py", title="Units", icon=":material/grid_view:", url_path="units"),
    st.Page("app_pages/gallery.py", title="Gallery", icon=":material/photo_library:",
            url_path="gallery"),
    st.Page("app_pages/concept.py", title="Concept", icon=":material/category:",
            url_path="concept"),
    st.Page("app_pages/similarity.py", title="Similarity", icon=":material/join_inner:",
            url_path="similarity"),
    st.Page("app_pages/sql.py", title="SQL", icon=":material/terminal:", url_path="sql"),
]  # fmt: skip

page = st.navigation(PAGES)
ui.sidebar_db()
page.run()

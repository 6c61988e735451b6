"""Tables on the explorer's pages show readable headers, never identifiers such as n_pairs."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path

import polars as pl
from streamlit.testing.v1 import AppTest

from lce.ui_tables import table_columns

PAGES = (
    "overview",
    "embedding",
    "components",
    "tasks",
    "compare",
    "units",
    "gallery",
    "concept",
    "similarity",
)  # fmt: skip  (the SQL page shows the query's own names)


def test_the_identifiers_users_met_get_readable_labels() -> None:
    """The identifiers a new user found in the tables, with the labels written out by hand;
    floats get one format (three decimals, p and q three significant digits)."""
    frame = pl.DataFrame(
        {"linear_cka": [0.5], "n_pairs": [3], "model_a": ["a"], "rank_gap": [0.1],
         "category_label": ["C1"], "higher_is_better": [True], "q_value": [0.00004]}
    )  # fmt: skip
    config = table_columns(frame, {"model_a": "first model"})
    labels = {k: v if isinstance(v, str) else v["label"] for k, v in config.items()}
    assert labels == {
        "linear_cka": "linear CKA", "n_pairs": "pairs", "model_a": "first model",
        "rank_gap": "rank gap (geometric - concept)", "category_label": "category",
        "higher_is_better": "higher is better", "q_value": "q (BH)",
    }  # fmt: skip
    assert config["linear_cka"]["type_config"]["format"] == "%.3f"
    assert config["q_value"]["type_config"]["format"] == "%.3g"


def headers(at: AppTest) -> list[str]:
    """Every table header the browser would draw: a column's configured label, else its name."""
    shown = []
    for frame in at.dataframe:
        config = json.loads(frame.proto.columns or "{}")  # type: ignore[attr-defined]
        for column in frame.value.columns:
            label = (config.get(str(column)) or {}).get("label")
            shown.append(str(label or column))
    return shown


def test_no_page_shows_an_identifier_as_a_table_header(
    open_page: Callable[..., AppTest], app_db: Path
) -> None:
    raw = re.compile(r"^[a-z0-9]+(_[a-z0-9]+)+$")  # snake_case: an identifier, not a label
    for page in PAGES:
        at = open_page(app_db, page)
        bad = [h for h in headers(at) if raw.match(h)]
        assert not bad, f"{page}: identifiers as table headers: {bad}"

"""The paper's concept profiles recomputed from its raw CSV with pandas alone, following the
recipe in the reference folder's README (labels with IoU above 0.04, counts per category divided
by the category's number of labels), without any lce code: the expected values of
tests/test_warehouse_reference.py and tests/test_correlations_reference.py.
"""

from __future__ import annotations

import pandas as pd

from tests.conftest import REFERENCE


def independent_profiles() -> pd.DataFrame:
    raw = pd.read_csv(REFERENCE / "models_dissect_profiles_raw.csv")
    kept = raw[(raw["label"] != "-") & (raw["iou"] > 0.04)]
    n_labels = kept.groupby("category")["label"].nunique()
    counts = kept.groupby(["name", "category", "label"]).size().rename("n").reset_index()
    counts["w"] = counts["n"] / counts["category"].map(n_labels)
    counts["key"] = counts["category"] + "/" + counts["label"]
    return counts.pivot(index="name", columns="key", values="w").fillna(0.0).sort_index()

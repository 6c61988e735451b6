"""The leave-one-fold-out marts of the main analysis (fct_profile_fold_intervals,
fct_lce_fold_intervals, fct_fold_resamples) against a brute force.

The brute force builds each leave-one-out tally by summing the other folds' rows of the lake's
fold table (not the whole tally minus the fold's, as the marts do), relabels every unit, judges
it by the fixed rule, rebuilds the profiles by hand, fits scikit-learn's PCA and k-means,
aligns by scipy's orthogonal Procrustes, and takes the jackknife with numpy. Twice: on random
synthetic fold tallies of five models plus one published model outside the embedding (no dbt),
and on a real extraction built by `lce build` (maps_home). Without one K and fold seed for
every embedded model the marts are empty and a note says why; the Embedding page draws both
kinds of interval when the fold mart has rows.
"""

from __future__ import annotations

import json
import shutil
from collections import Counter, defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import pandas as pd
import pytest
from scipy.linalg import orthogonal_procrustes
from sklearn.cluster import KMeans
from sklearn.decomposition import PCA
from sklearn.metrics import adjusted_rand_score
from streamlit.testing.v1 import AppTest

from tests.app_driver import assert_clean, chart_with_title, sql, texts
from tests.conftest import lce
from warehouse.lake import read_table
from warehouse.stats import fold_embedding, marts
from warehouse.stats.build_notes import fold_embedding_notes

CONCEPTS = {1: ("red", "color"), 2: ("blue", "color"), 3: ("disc", "object"),
            4: ("square", "object"), 5: ("dots", "material"), 6: ("stripes", "material")}  # fmt: skip
MODELS = ["m0", "m1", "m2", "m3", "m4"]
K = 4
N_UNITS = 10
MIN_IOU = 0.08
# The published model outside the embedding: full labels only (its concepts count towards the
# categories' vocabularies in every leave-one-out build; grass is its alone).
PUBLISHED = [("red", "color", True), ("grass", "material", True), ("disc", "object", False)]


# t(0.975, df) for df = 1..4, from a table of Student's t (not from scipy)
T975 = {1: 12.706204736, 2: 4.302652730, 3: 3.182446305, 4: 2.776445105}

# ------------------------------------------------------------------------------ the brute force


def best(cells: dict[int, dict[int, tuple[int, int, int]]], skip: int | None, names: dict) -> tuple:
    """One unit's best concept (its names; None when every IoU is 0) and IoU over the folds other
    than ``skip``, summed here; ties go to the lowest concept id."""
    found: tuple[float, int] | None = None
    for concept, by_fold in sorted(cells.items()):
        i = sum(v[0] for f, v in by_fold.items() if f != skip)
        a = sum(v[1] for f, v in by_fold.items() if f != skip)
        g = sum(v[2] for f, v in by_fold.items() if f != skip)
        iou = i / (a + g - i) if a + g - i > 0 else 0.0
        if found is None or iou > found[0]:
            found = (iou, concept)
    if found is None or found[0] <= 0:
        return None, 0.0
    return names[found[1]], found[0]


def cells_of(fold_rows: list[dict], model: str, layer: str) -> dict[int, dict]:
    """unit -> concept -> fold -> (I, A, G) from the lake's fold rows."""
    cells: dict[int, dict[int, dict[int, tuple[int, int, int]]]] = defaultdict(dict)
    for r in fold_rows:
        if r["model"] == model and r["layer"] == layer:
            cells[r["unit"]].setdefault(r["concept_id"], {})[r["fold"]] = (
                r["intersection"], r["activation_in_category"], r["label_pixels"],
            )  # fmt: skip
    return cells


def loo_units(
    fold_rows: list[dict], layers: dict[str, tuple[str, int]], names: dict, f: int | None,
    min_iou: float,
) -> list[tuple[str, str | None, str | None, bool]]:  # fmt: skip
    """(model, concept, category, interpretable) of every unit of the embedded models, from the
    folds other than f (every fold for None)."""
    out = []
    for model, (layer, n_units) in sorted(layers.items()):
        cells = cells_of(fold_rows, model, layer)
        for unit in range(n_units):
            label, iou = best(cells.get(unit, {}), f, names)
            concept, category = label if label is not None else (None, None)
            out.append((model, concept, category, label is not None and iou > min_iou))
    return out


def profile(units: list[tuple]) -> dict[tuple[str, str, str], float]:
    """(model, category, concept) -> interpretable units / distinct concepts of the category."""
    kept = [(m, c, g) for m, c, g, ok in units if ok]
    vocabulary: dict[str, set[str]] = defaultdict(set)
    for _, c, g in kept:
        vocabulary[g].add(c)
    return {(m, g, c): n / len(vocabulary[g]) for (m, c, g), n in Counter(kept).items()}


def matrix_of(weights: dict, models: list[str]) -> np.ndarray:
    columns = sorted({(g, c) for _, g, c in weights})
    out = np.zeros((len(models), len(columns)))
    for (m, g, c), w in weights.items():
        if m in models:
            out[models.index(m), columns.index((g, c))] = w
    return out


def shares(units: list[tuple], models: list[str]) -> dict[tuple[str, str], float]:
    counts = Counter((m, g) for m, _, g, ok in units if ok)
    totals = Counter(m for m, _, _, ok in units if ok)
    return {(m, g): n / totals[m] for (m, g), n in counts.items() if m in models}


def pca_scores(matrix: np.ndarray, n_components: int) -> tuple[np.ndarray, np.ndarray]:
    """sklearn's PCA on the profiles, padded with zero columns to n_components."""
    rank = np.linalg.matrix_rank(matrix - matrix.mean(axis=0))
    n = min(n_components, rank, matrix.shape[0] - 1)
    pca = PCA(n_components=n, svd_solver="full").fit(matrix)
    scores = np.zeros((matrix.shape[0], n_components))
    ratios = np.zeros(n_components)
    scores[:, :n] = pca.transform(matrix)
    ratios[:n] = pca.explained_variance_ratio_
    return scores, ratios


def kmeans(matrix: np.ndarray, k: int) -> np.ndarray:
    if k < 2:
        return np.zeros(matrix.shape[0], dtype=int)
    return KMeans(n_clusters=k, n_init=20, random_state=0).fit_predict(matrix)


def jackknife(full: np.ndarray, theta: np.ndarray) -> tuple[np.ndarray, ...]:
    """(mean, se, low, high) of leave-one-out estimates stacked on the last axis, with numpy."""
    k = theta.shape[-1]
    mean = theta.mean(axis=-1)
    se = np.sqrt((k - 1) / k * ((theta - mean[..., None]) ** 2).sum(axis=-1))
    return mean, se, full - T975[k - 1] * se, full + T975[k - 1] * se


def brute_force(
    fold_rows: list[dict], layers: dict[str, tuple[str, int]], k: int, names: dict,
    full_units: list[tuple], others: list[tuple], full_scores: np.ndarray,
    full_ids: np.ndarray, min_iou: float,
) -> dict[str, Any]:  # fmt: skip
    """The three marts' numbers, keyed as their rows."""
    models = sorted(layers)
    n_comp = full_scores.shape[1]
    n_cat = len(set(full_ids.tolist()))
    folds = [loo_units(fold_rows, layers, names, f, min_iou) + others for f in range(k)]
    full_shares = shares(full_units, models)
    loo_shares = [shares(units, models) for units in folds]
    categories = sorted({g for s in (full_shares, *loo_shares) for _, g in s})
    profile_rows = {}
    for m in models:
        for g in categories:
            theta = np.array([s.get((m, g), 0.0) for s in loo_shares])
            share = full_shares.get((m, g), 0.0)
            mean, se, low, high = jackknife(np.array(share), theta)
            profile_rows[(m, g)] = (share, mean, se, max(0.0, low), min(1.0, high), k)
    aligned = np.zeros((k, len(models), n_comp))
    resamples = {}
    for f, units in enumerate(folds):
        matrix = matrix_of(profile(units), models)
        scores, ratios = pca_scores(matrix, n_comp)
        rotation, _ = orthogonal_procrustes(scores, full_scores)
        aligned[f] = scores @ rotation
        labels = kmeans(matrix, n_cat)
        ari = adjusted_rand_score(labels, full_ids)
        pairs = set(zip(labels.tolist(), full_ids.tolist(), strict=True))
        same = len(pairs) == len(set(labels.tolist())) == n_cat
        for c in range(n_comp):
            resamples[(f, c + 1)] = (ratios[c], ari, same)
    _, se, lo, hi = jackknife(full_scores, np.moveaxis(aligned, 0, -1))
    lce_rows = {
        (m, c + 1): (full_scores[i, c], se[i, c], lo[i, c], hi[i, c], k)
        for i, m in enumerate(models)
        for c in range(n_comp)
    }
    return {"profiles": profile_rows, "lce": lce_rows, "resamples": resamples}


def assert_marts_equal(got: dict[str, list[dict]], want: dict[str, Any]) -> None:
    def check(rows: list[dict], expected: dict, keys: tuple[str, ...], values: tuple[str, ...]):
        assert len(rows) == len(expected)
        for row in rows:
            for name, value in zip(values, expected[tuple(row[k] for k in keys)], strict=True):
                if isinstance(value, bool | int | np.bool_):
                    assert row[name] == value, (row, name)
                else:
                    assert row[name] == pytest.approx(float(value), abs=1e-9), (row, name, value)

    check(got["profiles"], want["profiles"], ("model", "category"),
          ("share", "share_loo_mean", "share_se", "share_low", "share_high", "n_folds"))  # fmt: skip
    check(got["lce"], want["lce"], ("model", "component"),
          ("coordinate", "se", "lo", "hi", "n_folds"))  # fmt: skip
    check(got["resamples"], want["resamples"], ("fold", "component"),
          ("explained_variance_ratio", "adjusted_rand_index", "same_partition"))  # fmt: skip


# --------------------------------------------------------------------------- a synthetic study


def synthetic(seed: int) -> tuple[fold_embedding.FoldInputs, dict[str, Any]]:
    """Random fold tallies of five embedded models (each favouring a category), a published
    model outside the embedding, the full build's frames as dbt would hand them, and what the
    brute force needs."""
    rng = np.random.default_rng(seed)
    names = dict(CONCEPTS)
    whole, fold_rows, runs = [], [], []
    for index, model in enumerate(MODELS):
        favoured = ["color", "object", "material"][index % 3]
        runs.append({"run_id": f"r{index}", "model": model, "layer": "l", "n_units": N_UNITS,
                     "started_at": pd.Timestamp("2026-01-01"),
                     "settings": json.dumps({"folds": K, "fold_seed": 0})})  # fmt: skip
        for unit in range(N_UNITS - 1):  # the last unit overlaps nothing
            for concept in rng.choice(list(CONCEPTS), size=rng.integers(1, 4), replace=False):
                boost = 3 if CONCEPTS[int(concept)][1] == favoured else 1
                i = rng.integers(0, 6, size=K) * boost
                parts = np.stack([i, i + rng.integers(0, 40, K), i + rng.integers(0, 40, K)], 1)
                s_i, s_a, s_g = (int(x) for x in parts.sum(axis=0))
                if s_i == 0:
                    continue
                whole.append({"model": model, "layer": "l", "unit": unit,
                              "concept_id": int(concept), "intersection": s_i,
                              "activation_in_category": s_a, "label_pixels": s_g,
                              "iou": s_i / (s_a + s_g - s_i)})  # fmt: skip
                for f in range(K):
                    fi, fa, fg = (int(x) for x in parts[f])
                    fold_rows.append({"model": model, "layer": "l", "unit": unit,
                                      "concept_id": int(concept), "fold": f, "intersection": fi,
                                      "activation_in_category": fa, "label_pixels": fg})  # fmt: skip
    layers = {m: ("l", N_UNITS) for m in MODELS}
    full_units = loo_units(fold_rows, layers, names, None, MIN_IOU)
    others = [("pub", c, g, ok) for c, g, ok in PUBLISHED]
    units = pd.DataFrame(
        [(m, "l", u % N_UNITS if m != "pub" else u, c, g, ok, True)
         for u, (m, c, g, ok) in enumerate(full_units + others)],
        columns=["model", "layer", "unit", "concept", "category", "is_interpretable",
                 "is_primary_layer"],
    )  # fmt: skip
    weights = profile(full_units + others)
    profiles = pd.DataFrame(
        [(m, c, g, 0, w) for (m, g, c), w in weights.items()],
        columns=["model", "concept", "category", "n_units", "weight"],
    )
    models = pd.DataFrame({"model": [*MODELS, "pub"], "in_embedding": [True] * 5 + [False],
                           "primary_layer": ["l"] * 6})  # fmt: skip
    concepts = pd.DataFrame([(i, n, g) for i, (n, g) in CONCEPTS.items()],
                            columns=["concept_id", "concept", "category"])  # fmt: skip
    study = marts.MartInputs(profiles, models, n_components=2, n_categories=2,
                             runs=pd.DataFrame(runs))  # fmt: skip
    fi = fold_embedding.FoldInputs(study, units, pd.DataFrame(whole), pd.DataFrame(fold_rows),
                                   concepts, MIN_IOU)  # fmt: skip
    full_matrix = matrix_of(weights, MODELS)
    full_scores, _ = pca_scores(full_matrix, 2)
    brute = dict(fold_rows=fold_rows, layers=layers, k=K, names=names, full_units=full_units,
                 others=others, full_scores=full_scores, full_ids=kmeans(full_matrix, 2),
                 min_iou=MIN_IOU)  # fmt: skip
    return fi, brute


def built_marts(fi: fold_embedding.FoldInputs) -> dict[str, list[dict]]:
    return {
        "profiles": fold_embedding.fct_profile_fold_intervals(fi).to_pylist(),
        "lce": fold_embedding.fct_lce_fold_intervals(fi).to_pylist(),
        "resamples": fold_embedding.fct_fold_resamples(fi).to_pylist(),
    }


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_the_fold_marts_equal_a_brute_force_from_fold_sums(seed: int) -> None:
    fi, brute = synthetic(seed)
    got = built_marts(fi)
    want = brute_force(**brute)
    assert_marts_equal(got, want)
    # the test can tell: shares and coordinates that move, every embedded model, K folds
    assert any(r["share_se"] > 0 for r in got["profiles"])
    assert any(r["se"] > 0 for r in got["lce"])
    assert {r["model"] for r in got["profiles"]} == set(MODELS)
    assert {r["fold"] for r in got["resamples"]} == set(range(K))
    assert fold_embedding_notes(fi.study.models, fi.study.runs) == []


def test_the_published_models_labels_count_in_the_vocabulary() -> None:
    """Leaving the model outside the embedding out of the leave-one-out vocabularies changes the
    brute force's coordinates: the marts keep it, as fct_concept_profiles does."""
    fi, brute = synthetic(0)
    got = built_marts(fi)
    without = brute_force(**dict(brute, others=[]))
    with pytest.raises(AssertionError):
        assert_marts_equal(got, without)


@pytest.mark.parametrize(
    ("change", "words"),
    [
        ("drop", "The primary layer of m1 kept no fold tallies"),
        ("k", "kept different folds (3, 4)"),
        ("seed", "different fold seeds"),
    ],
)
def test_the_marts_are_empty_with_a_note_unless_one_k_and_seed(change: str, words: str) -> None:
    fi, _ = synthetic(0)
    runs = fi.study.runs.copy()
    if change == "drop":
        runs = runs[runs["model"] != "m1"]
    elif change == "k":
        runs.loc[runs["model"] == "m1", "settings"] = json.dumps({"folds": 3, "fold_seed": 0})
    else:
        runs.loc[runs["model"] == "m1", "settings"] = json.dumps({"folds": K, "fold_seed": 5})
    fi = fold_embedding.FoldInputs(
        marts.MartInputs(fi.study.profiles, fi.study.models, 2, 2, runs=runs),
        fi.units, fi.tally, fi.folds, fi.concepts, fi.min_iou,
    )  # fmt: skip
    assert all(not rows for rows in built_marts(fi).values())
    (note,) = fold_embedding_notes(fi.study.models, runs)
    assert note.code == "no_fold_embedding" and words in note.message, note.message
    assert all(name in note.message for name in fold_embedding.MARTS)


# --------------------------------------------------------------------------- real dbt builds


def test_the_built_marts_equal_the_brute_force(maps_home: Path) -> None:
    """A real extraction (two CNNs, default folds) through `lce build`: the marts against the
    brute force over the lake's fold rows, aligned to the published fct_lce."""
    lake, db = maps_home / "lake", maps_home / "lce.duckdb"
    names = {r["concept_id"]: (r["concept"], r["category"])
             for r in read_table(lake, "concepts").to_pylist()}  # fmt: skip
    runs = read_table(lake, "runs").to_pylist()
    ks = {json.loads(r["settings"])["folds"] for r in runs}
    with duckdb.connect(str(db), read_only=True) as conn:
        models = conn.execute(
            "select model, primary_layer from dim_models where in_embedding order by model"
        ).fetchall()
        n_units = {(r["model"], r["layer"]): r["n_units"] for r in runs}
        layers = {m: (layer, n_units[(m, layer)]) for m, layer in models}
        full = conn.execute(
            "select model, concept, category, is_interpretable from fct_unit_labels "
            "where is_primary_layer order by model, unit"
        ).fetchall()
        lce_rows = conn.execute("select model, component, value from fct_lce").fetchall()
        ids = dict(conn.execute("select model, category_id from dim_model_categories").fetchall())
        min_iou = conn.execute("select min_iou from dim_study").fetchone()[0]
        got = {
            key: conn.execute(f"select * from {mart}").df().to_dict("records")
            for key, mart in (("profiles", "fct_profile_fold_intervals"),
                              ("lce", "fct_lce_fold_intervals"), ("resamples", "fct_fold_resamples"))
        }  # fmt: skip
    assert len(ks) == 1 and (k := ks.pop()) > 1 and len(models) == 2
    order = sorted(layers)
    n_comp = max(c for _, c, _ in lce_rows)
    scores = np.zeros((len(order), n_comp))
    for m, c, v in lce_rows:
        scores[order.index(m), c - 1] = v
    want = brute_force(
        read_table(lake, "unit_concept_tally_folds").to_pylist(), layers, k, names,
        [tuple(r) for r in full if r[0] in layers], [tuple(r) for r in full if r[0] not in layers],
        scores, np.array([ids[m] for m in order]), float(min_iou),
    )  # fmt: skip
    assert_marts_equal(got, want)
    assert got["profiles"] and got["lce"] and got["resamples"]
    # lce summary's sentence: the medians of the brute force's numbers
    ses = [se for share, mean, se, *_ in want["profiles"].values() if share > 0 or mean > 0]
    aris = {f: ari for (f, _), (_, ari, _) in want["resamples"].items()}
    code, out = lce("summary", "--db", db)
    text = " ".join(out.split())
    assert code == 0 and f"Leaving out each of the {k} folds" in text, text
    assert (
        f"share of a concept category (over the categories where it has units) is "
        f"{np.median(ses):.4f}" in text
    ), text
    assert (
        f"median adjusted Rand index against the published ones is "
        f"{np.median(list(aris.values())):.3f}" in text
    ), text


def test_a_lake_without_fold_tallies_has_empty_marts_and_a_note(toy_home: Path) -> None:
    db = toy_home / "lce.duckdb"
    for name in fold_embedding.MARTS:
        assert sql(db, f"select count(*) from {name}") == [(0,)]
    notes = sql(db, "select code, message from fct_build_notes where code = 'no_fold_embedding'")
    assert len(notes) == 1 and "kept no fold tallies" in notes[0][1]


FOLD_TRACE, BOOT_TRACE = "95% interval (probe-image folds)", "95% interval (unit bootstrap)"


def test_the_embedding_page_draws_both_kinds_of_interval(
    open_page: Callable[..., AppTest], toy_home: Path, tmp_path: Path
) -> None:
    """Fold rows written into a copy of a built file: the page draws them beside the unit
    bootstrap's, each in its own legend entry, and says what each is; without them only the
    bootstrap's."""
    db = tmp_path / "folds.duckdb"
    shutil.copy(toy_home / "lce.duckdb", db)
    with duckdb.connect(str(db)) as conn:
        conn.execute(
            "insert into fct_lce_fold_intervals select model, component, value, 0.01, "
            "value - 0.02 * component, value + 0.03, 5 from fct_lce"
        )
    bounds = {(m, c): (lo, hi) for m, c, lo, hi in
              sql(db, "select model, component, lo, hi from fct_lce_fold_intervals")}  # fmt: skip
    at = open_page(db, "embedding")
    assert "probe-image folds" in at.toggle(key="emb_intervals").label
    at.toggle(key="emb_intervals").set_value(True).run()
    assert_clean(at)
    fig = chart_with_title(at, "Learned Concepts Embedding")
    traces = {t.get("name"): t for t in fig["data"]}
    assert BOOT_TRACE in traces and FOLD_TRACE in traces
    fold, boot = traces[FOLD_TRACE], traces[BOOT_TRACE]
    assert fold["line"]["color"] != boot["line"]["color"] and fold["line"].get("dash") == "dot"
    points = {n: (x, y) for t in fig["data"] if t.get("mode") == "markers+text"
              for n, x, y in zip(t["text"], t["x"], t["y"], strict=True)}  # fmt: skip
    xs, ys = fold["x"], fold["y"]
    assert len(xs) // 6 == len(points)
    for i in range(len(xs) // 6):
        x_lo, x_hi, _, px, _, _ = xs[6 * i : 6 * i + 6]
        py, _, _, y_lo, y_hi, _ = ys[6 * i : 6 * i + 6]
        (model,) = [m for m, (a, b) in points.items() if a == px and b == py]
        assert (x_lo, x_hi) == pytest.approx(bounds[(model, 1)])
        assert (y_lo, y_hi) == pytest.approx(bounds[(model, 2)])
    caption = texts(at.caption)
    assert "unit bootstrap" in caption and "probe-image folds" in caption
    assert "fct_lce_fold_intervals" in caption

    at = open_page(toy_home / "lce.duckdb", "embedding")
    assert "probe-image folds" not in at.toggle(key="emb_intervals").label
    at.toggle(key="emb_intervals").set_value(True).run()
    names = [t.get("name") for t in chart_with_title(at, "Learned Concepts Embedding")["data"]]
    assert BOOT_TRACE in names and FOLD_TRACE not in names

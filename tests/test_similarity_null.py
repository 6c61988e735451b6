"""fct_model_similarity's permutation null and calibrated score (Groger, Wen & Brbic) against a
brute-force replay: each null score recomputed from the shuffled matrix itself with the
independent reference measures (tests/similarity_reference.py), the threshold, p-value and
calibrated score from the formula by hand. Features are written to a real Parquet lake."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
from scipy import stats

from tests.similarity_reference import (
    cka_reference,
    debiased_reference,
    mutual_knn_reference,
    procrustes_reference,
)
from warehouse.lake import write_partition
from warehouse.stats import similarity

N, K, NULLS, SEED = 60, 5, 39, 3
REFERENCES = {
    "linear_cka": cka_reference,
    "debiased_cka": debiased_reference,
    "procrustes": procrustes_reference,
    "mutual_knn": lambda x, y: mutual_knn_reference(x, y, K),
}


def study() -> dict[str, np.ndarray]:
    """net and net_copy: one network extracted under two names; other: a nonlinear function of
    the same images; noise: seeded per-image noise that does not depend on the image."""
    rng = np.random.default_rng(7)
    base = rng.standard_normal((N, 8)).astype(np.float32)
    other = np.tanh(base @ rng.standard_normal((8, 10))) + 0.3 * rng.standard_normal((N, 10))
    noise = np.stack([np.random.default_rng(1000 + i).standard_normal(6) for i in range(N)])
    return {
        "net": base,
        "net_copy": base.copy(),
        "other": other.astype(np.float32),
        "noise": noise.astype(np.float32),
    }


@pytest.fixture(scope="module")
def mart(tmp_path_factory: pytest.TempPathFactory) -> tuple[pd.DataFrame, Path]:
    lake = tmp_path_factory.mktemp("null-lake")
    images = [f"img/{i:03d}.jpg" for i in range(N)]
    for model, x in study().items():
        table = pa.table(
            {
                "model": [model] * N,
                "layer": ["l4"] * N,
                "image": images,
                "features": [row.tolist() for row in x],
            }
        )
        write_partition(lake, "image_features", {"model": model, "layer": "l4"}, table)
    index = pd.DataFrame({"model": list(study()), "layer": ["l4"] * 4})
    models = pd.DataFrame({"model": list(study()), "primary_layer": ["l4"] * 4})
    settings = similarity.Settings(k=K, min_images=50, seed=SEED, null_permutations=NULLS)
    return similarity.fct_model_similarity(index, models, lake, settings).to_pandas(), lake


def expected(observed: float, null: np.ndarray, measure: str) -> tuple[float, ...]:
    """The calibration written out from the paper's definition, per measure direction."""
    if measure == "procrustes":  # a distance: similar is small, best 0
        tau = float(np.quantile(np.append(null, observed), NULL_LOW))
        p = (1 + int((null <= observed + 1e-12).sum())) / (len(null) + 1)
        cal = 0.0 if observed >= tau else (tau - observed) / tau
    else:
        tau = float(np.quantile(np.append(null, observed), 0.95))
        p = (1 + int((null >= observed - 1e-12).sum())) / (len(null) + 1)
        cal = 0.0 if observed <= tau else (observed - tau) / (1.0 - tau)
    return float(null.mean()), float(null.std(ddof=1)), tau, p, cal


NULL_LOW = 0.05  # numpy's linear quantile is symmetric: -q_0.95(-v) == q_0.05(v)


def test_null_and_calibration_equal_a_brute_force_replay(mart: tuple[pd.DataFrame, Path]) -> None:
    frame, _ = mart
    data = study()
    names = sorted(data)
    columns = ["null_mean", "null_sd", "null_p95", "p_value", "calibrated"]
    for i, a in enumerate(names):
        for j, b in enumerate(names[i + 1 :], start=i + 1):
            draw = np.random.default_rng([SEED, i, j])
            orders = [draw.permutation(N) for _ in range(NULLS)]
            for measure, reference in REFERENCES.items():
                x, y = data[a], data[b]
                null = np.array([reference(x, y[o]) for o in orders])
                want = expected(reference(x, y), null, measure)
                rows = frame[(frame.measure == measure) & frame.model_a.isin([a, b])]
                rows = rows[rows.model_b.isin([a, b])]
                assert len(rows) == 2
                for _, row in rows.iterrows():
                    got = [row[c] for c in columns]
                    assert got == pytest.approx(list(want), rel=1e-6, abs=1e-7), (a, b, measure)
                    assert row["n_null"] == NULLS


def test_the_same_network_under_two_names_is_calibrated_to_the_maximum(
    mart: tuple[pd.DataFrame, Path],
) -> None:
    frame, _ = mart
    pair = frame[(frame.model_a == "net") & (frame.model_b == "net_copy")]
    assert set(pair.measure) == set(similarity.MEASURES)
    assert list(pair.calibrated) == pytest.approx([1.0] * 4, abs=1e-6)
    assert list(pair.p_value) == pytest.approx([1 / (NULLS + 1)] * 4, rel=1e-12)


def test_features_that_ignore_the_image_calibrate_to_zero(mart: tuple[pd.DataFrame, Path]) -> None:
    frame, _ = mart
    rows = frame[frame.model_a == "noise"]
    assert set(rows.model_b) == {"net", "net_copy", "other"}
    for _, row in rows.iterrows():
        assert abs(row.calibrated) <= 2 * row.null_sd, (row.model_b, row.measure)
    # while the raw CKA of independent features is biased above 0 (its null mean is too)
    cka = rows[rows.measure == "linear_cka"]
    assert (cka.value > 0).all() and (cka.null_mean > 0).all()


def test_agreement_reports_the_calibrated_scores_too(mart: tuple[pd.DataFrame, Path]) -> None:
    frame, _ = mart
    names = sorted(study())
    distances = pd.DataFrame(
        [
            (a, b, abs(i - j) / 4)
            for i, a in enumerate(names)
            for j, b in enumerate(names)
            if a != b
        ],
        columns=["model_a", "model_b", "cosine_distance"],
    )
    settings = similarity.Settings(permutations=19)
    out = similarity.fct_similarity_agreement(frame, distances, settings).to_pandas()
    assert len(out) == 4 and out.mantel_r_calibrated.notna().all()

    for measure in similarity.MEASURES:
        part = frame[frame.measure == measure]
        got = out[out.measure == measure].iloc[0]
        geo = {(r.model_a, r.model_b): 1 - r.calibrated for r in part.itertuples()}
        con = {(r.model_a, r.model_b): r.cosine_distance for r in distances.itertuples()}
        pairs = [(a, b) for i, a in enumerate(names) for b in names[i + 1 :]]
        want = stats.spearmanr([con[p] for p in pairs], [geo[p] for p in pairs]).statistic
        assert got.mantel_r_calibrated == pytest.approx(want, rel=1e-9, nan_ok=True)

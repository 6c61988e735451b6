"""Units matched across models (fct_unit_matches, fct_unit_match_agreement) against brute force:
every Pearson r by scipy, best matches by a loop, a model extracted twice under two names
matched unit for unit, and the label baseline replayed by hand. Features are written to a real
Parquet lake and read back as the dbt model reads them."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
from PIL import Image
from scipy import stats
from streamlit.testing.v1 import AppTest

from tests.app_driver import texts
from tests.conftest import lce
from warehouse.lake import write_partition
from warehouse.stats import matches

N = 60
IMAGES = [f"img/{i:03d}.jpg" for i in range(N)]


def study() -> dict[str, np.ndarray]:
    """net and net_copy: one network under two names; other: a noisy mix of net's units and a
    constant (dead) unit; wide: more units than net."""
    rng = np.random.default_rng(11)
    net = rng.standard_normal((N, 7)).astype(np.float32)
    other = net[:, [3, 0, 5, 1, 6]] + 0.8 * rng.standard_normal((N, 5))
    other = np.column_stack([other, np.full(N, 0.25)]).astype(np.float32)
    wide = (net @ rng.standard_normal((7, 9)) + rng.standard_normal((N, 9))).astype(np.float32)
    return {"net": net, "net_copy": net.copy(), "other": other, "wide": wide}


LABELS = {  # interpretable units' concepts; the rest are unlabelled
    "net": {0: "sky", 1: "tree", 3: "grass", 5: "red"},
    "net_copy": {0: "sky", 1: "tree", 3: "grass", 5: "red"},
    "other": {0: "grass", 1: "sky", 2: "blue", 3: "tree", 5: "red"},
    "wide": {0: "sky", 4: "red"},
}


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> tuple[pd.DataFrame, pd.DataFrame]:
    lake = tmp_path_factory.mktemp("match-lake")
    for model, x in study().items():
        order = np.random.default_rng(len(model)).permutation(N)  # rows in another order
        table = pa.table(
            {
                "model": [model] * N,
                "layer": ["l4"] * N,
                "image": [IMAGES[i] for i in order],
                "features": [row.tolist() for row in x[order]],
            }
        )
        write_partition(lake, "image_features", {"model": model, "layer": "l4"}, table)
    names = list(study())
    index = pd.DataFrame(
        [(m, "l4", image, 1) for m in names for image in IMAGES],
        columns=["model", "layer", "image", "n_features"],
    )
    models = pd.DataFrame({"model": names, "primary_layer": ["l4"] * len(names)})
    labels = pd.DataFrame(
        [
            (m, "l4", u, LABELS[m].get(u, "noise"), u in LABELS[m])
            for m, x in study().items()
            for u in range(x.shape[1])
        ],
        columns=["model", "layer", "unit", "concept", "is_interpretable"],
    )
    settings = matches.Settings(min_images=50, permutations=199, seed=5)
    unit_matches = matches.fct_unit_matches(index, models, labels, lake, settings).to_pandas()
    agreement = matches.fct_unit_match_agreement(unit_matches, index, models, settings)
    return unit_matches, agreement.to_pandas()


def brute(x: np.ndarray, y: np.ndarray) -> tuple[dict[int, tuple[int, float]], np.ndarray]:
    """Each varying column of x: its best column of y by scipy's Pearson r (first maximum)."""
    r = np.full((x.shape[1], y.shape[1]), -np.inf)
    for i in range(x.shape[1]):
        for j in range(y.shape[1]):
            if np.ptp(x[:, i]) > 0 and np.ptp(y[:, j]) > 0:
                r[i, j] = stats.pearsonr(x[:, i].astype(float), y[:, j].astype(float))[0]
    best = {}
    for i in range(x.shape[1]):
        if np.isfinite(r[i]).any():
            j = int(np.argmax(r[i]))
            best[i] = (j, float(r[i, j]))
    return best, r


def test_every_best_match_and_r_equal_brute_force(built: tuple) -> None:
    got, _ = built
    data = study()
    for a in data:
        for b in data:
            if a == b:
                continue
            forward, _ = brute(data[a], data[b])
            backward, _ = brute(data[b], data[a])
            rows = got[(got["model"] == a) & (got["other_model"] == b)]
            assert sorted(rows["unit"]) == sorted(forward), (a, b)  # the dead unit has no row
            for row in rows.itertuples():
                j, r = forward[row.unit]
                assert row.other_unit == j, (a, b, row.unit)
                assert row.r == pytest.approx(r, abs=1e-9)
                assert row.mutual == (backward[j][0] == row.unit)
                assert row.n_images == N
                ca, cb = LABELS[a].get(row.unit), LABELS[b].get(j)
                expected = None if ca is None or cb is None else ca == cb
                assert (None if pd.isna(row.same_label) else bool(row.same_label)) == expected


def test_a_network_under_two_names_matches_every_unit_to_itself(built: tuple) -> None:
    got, agreement = built
    for a, b in (("net", "net_copy"), ("net_copy", "net")):
        rows = got[(got["model"] == a) & (got["other_model"] == b)].sort_values("unit")
        assert rows["unit"].tolist() == list(range(7))
        assert (rows["other_unit"] == rows["unit"]).all()
        assert np.allclose(rows["r"], 1.0, atol=1e-9)
        assert rows["mutual"].all()
    row = agreement[(agreement["model_a"] == "net") & (agreement["model_b"] == "net_copy")].iloc[0]
    assert (row.n_mutual, row.n_labelled, row.n_same_label) == (7, 4, 4)
    assert row.same_label_share == 1.0


def test_label_baseline_replayed_by_hand(built: tuple) -> None:
    """The baseline of one pair recomputed from its labelled mutual matches: the same seeded
    shuffles (default_rng([seed, i, j]), i < j the models' places in sorted order), the share
    counted with a loop, the percentile and p from their definitions."""
    got, agreement = built
    names = sorted(study())
    for a, b in (("net", "other"), ("net", "wide"), ("net", "net_copy")):
        i, j = names.index(a), names.index(b)
        rows = got[(got["model"] == a) & (got["other_model"] == b) & got["mutual"]]
        pairs = [
            (LABELS[a][u], LABELS[b][v])
            for u, v in zip(rows["unit"], rows["other_unit"], strict=True)
            if u in LABELS[a] and v in LABELS[b]
        ]
        row = agreement[(agreement["model_a"] == a) & (agreement["model_b"] == b)].iloc[0]
        back = agreement[(agreement["model_a"] == b) & (agreement["model_b"] == a)].iloc[0]
        assert row.drop(["model_a", "model_b"]).equals(back.drop(["model_a", "model_b"]))
        assert (row.n_mutual, row.n_labelled) == (len(rows), len(pairs))
        if not pairs:
            assert pd.isna(row.same_label_share) and pd.isna(row.p_value)
            continue
        observed = sum(x == y for x, y in pairs) / len(pairs)
        rng = np.random.default_rng([5, i, j])
        shares = []
        for _ in range(199):
            order = rng.permutation(len(pairs))
            shares.append(sum(pairs[k][0] == pairs[order[k]][1] for k in range(len(pairs))))
        null = np.array(shares) / len(pairs)
        assert row.same_label_share == pytest.approx(observed)
        assert row.baseline_mean == pytest.approx(null.mean())
        ranked = np.sort(null)
        position = 0.95 * (len(ranked) - 1)
        low = int(np.floor(position))
        p95 = ranked[low] + (position - low) * (ranked[min(low + 1, len(ranked) - 1)] - ranked[low])
        assert row.baseline_p95 == pytest.approx(p95)
        assert row.p_value == pytest.approx((1 + sum(s >= observed for s in null)) / 200)
        assert row.n_permutations == 199


def test_tiny_baseline_by_hand() -> None:
    """Three pairs (a, a), (b, b), (a, c): observed share 2/3. The 6 orders of the second
    labels, by hand: (0,1,2) and (2,1,0) give 2/3, (0,2,1) and (1,2,0) 1/3, (1,0,2) and
    (2,0,1) 0; so the mean is 1/3, P(share >= 2/3) = 1/3 and the 95th percentile 2/3."""
    first = np.array(["a", "b", "a"])
    second = np.array(["a", "b", "c"])
    null = matches.label_baseline(first, second, 30000, np.random.default_rng(0))
    assert set(np.round(null * 3).astype(int)) <= {0, 1, 2}
    assert null.mean() == pytest.approx(3 / 9, abs=0.01)
    mean, p95, p = matches.baseline_summary(2 / 3, null)
    assert p == pytest.approx((1 + (null >= 2 / 3 - 1e-12).sum()) / 30001)
    assert p == pytest.approx(1 / 3, abs=0.01)
    assert p95 == pytest.approx(2 / 3)


def test_blocks_give_the_same_matches_as_one_product(monkeypatch: pytest.MonkeyPatch) -> None:
    """Bounded memory: correlations formed a few units at a time, ties and all, equal one
    product (a duplicated column makes ties that must go to the lower unit both ways)."""
    rng = np.random.default_rng(3)
    x = rng.standard_normal((40, 13))
    x[:, 11] = x[:, 7]
    y = np.column_stack([x[:, [2, 2, 7]], rng.standard_normal((40, 6))])
    whole = matches.best_matches(x, y)
    monkeypatch.setattr(matches, "_BLOCK_VALUES", 9)  # one unit of x per block
    blocked = matches.best_matches(x, y)
    assert np.array_equal(whole.best_b, blocked.best_b)
    assert np.array_equal(whole.best_a, blocked.best_a)
    assert np.allclose(whole.r_ab, blocked.r_ab, atol=1e-12)
    assert np.allclose(whole.r_ba, blocked.r_ba, atol=1e-12)
    assert whole.best_b[2] == 0 and whole.best_a[0] == whole.best_a[1] == 2
    assert whole.best_a[2] == blocked.best_a[2] == 7 and whole.best_b[11] == 2
    assert whole.mutual_ab()[2] and not whole.mutual_ba()[1]


@pytest.mark.slow
def test_units_page_shows_the_units_matches_with_labels_and_top_images(
    tmp_path: Path, open_page: Callable[..., AppTest]
) -> None:
    """A toy study built by dbt where tB's features are tA's: the Units page of tA's unit 0
    lists tB's unit 0 (r 1, mutual) with its label from fct_unit_labels and its top images."""
    from tests.app_fixtures import TOP_IMAGE_LAYER
    from tests.toy_lake import make_toy_lake, top_images_table

    lake = tmp_path / "lake"
    make_toy_lake(lake)
    probe = tmp_path / "probe"
    (probe / "images" / "toy").mkdir(parents=True)
    for i in range(5):
        Image.new("RGB", (16, 12), (40 * i, 100, 200 - 30 * i)).save(
            probe / "images" / "toy" / f"img_{i}.png"
        )
    x = np.random.default_rng(4).standard_normal((N, 12)).astype(np.float32)
    for model in ("tA", "tB"):
        rows = [(u, rank, f"toy/img_{(u + rank) % 5}.png", 9.0 - rank) for u in range(12)
                for rank in (1, 2)]  # fmt: skip
        layer = {"model": model, "layer": TOP_IMAGE_LAYER}
        write_partition(lake, "unit_top_images", layer,
                        top_images_table(model, TOP_IMAGE_LAYER, rows))  # fmt: skip
        features = pa.table(
            {
                "model": [model] * N,
                "layer": [TOP_IMAGE_LAYER] * N,
                "image": IMAGES,
                "features": [row.tolist() for row in x],
            }
        )
        write_partition(lake, "image_features", layer, features)
    db = tmp_path / "lce.duckdb"
    code, out = lce("build", "--lake", lake, "--db", db)
    assert code == 0, out
    at = open_page(db, "units", probe)
    at.selectbox(key="units_model").set_value("tA").run()
    at.selectbox(key="units_layer").set_value(TOP_IMAGE_LAYER).run()
    at.selectbox(key="units_unit").set_value(0).run()
    assert "This unit's matches in other models" in texts(at.subheader)
    shown = next(f.value for f in at.dataframe if "mutual" in f.value.columns)
    with duckdb.connect(str(db), read_only=True) as conn:
        label = conn.execute(
            "select case when is_interpretable then concept end from fct_unit_labels "
            "where model = 'tB' and layer = ? and unit = 0",
            [TOP_IMAGE_LAYER],
        ).fetchone()[0]
    assert shown["model"].tolist() == ["tB"] and shown["unit"].tolist() == [0]
    assert shown["r"].iloc[0] == pytest.approx(1.0) and bool(shown["mutual"].iloc[0])
    other = shown["concept"].iloc[0]
    assert (None if pd.isna(other) else other) == label
    assert "tB unit 0" in texts(at.markdown)
    # tA unit 0's top images, then tB unit 0's two
    assert len(at.image) == 2 and len(at.image[1].proto.imgs) == 2


def test_build_notes_say_why_pairs_are_not_matched() -> None:
    """No two models with features: one note naming both marts; a pair below the image
    minimum: one note naming the pair (once, though the mart has both orders)."""
    from warehouse.stats.build_notes import match_notes

    models = pd.DataFrame({"model": ["a", "b", "c"], "has_profile": [True, True, True]})
    empty = matches.fct_unit_match_agreement(
        pd.DataFrame(columns=["model", "other_model", "mutual", "same_label"]),
        pd.DataFrame(columns=["model", "layer", "image"]),
        pd.DataFrame({"model": ["a"], "primary_layer": ["l4"]}),
        matches.Settings(),
    ).to_pandas()
    (note,) = match_notes(models, empty)
    assert note.code == "no_unit_matches" and "fct_unit_matches" in note.message
    index = pd.DataFrame(
        [(m, "l4", f"i{k}") for m, n in (("a", 60), ("b", 60), ("c", 10)) for k in range(n)],
        columns=["model", "layer", "image"],
    )
    agreement = matches.fct_unit_match_agreement(
        pd.DataFrame(columns=["model", "other_model", "mutual", "same_label"]),
        index,
        pd.DataFrame({"model": ["a", "b", "c"], "primary_layer": ["l4"] * 3}),
        matches.Settings(min_images=50),
    ).to_pandas()
    assert len(agreement) == 6 and agreement["n_mutual"].isna().sum() == 4
    (note,) = match_notes(models, agreement)
    assert note.code == "few_images_matches"
    assert "2 model pairs" in note.message and "a / c and b / c" in note.message
    assert match_notes(models.head(1), empty) == []  # one dissected model: nothing to match

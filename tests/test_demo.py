"""The embedded demo: the synthetic probe set against its own geometry, and a reduced demo end
to end through the command line, checked against facts that follow from how the world is built.
"""

from __future__ import annotations

import csv
from pathlib import Path

import duckdb
import numpy as np
import pytest

from extract.broden import load_label_map, open_probe
from lce import synth
from tests.conftest import lce


@pytest.fixture(scope="module")
def probe(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, int]]:
    out = tmp_path_factory.mktemp("synth") / "probe"
    counts = synth.write_probe(out, n=40, size=32, seed=3)
    return out, counts


def test_probe_round_trips_through_the_broden_reader(probe: tuple[Path, dict[str, int]]) -> None:
    root, counts = probe
    p = open_probe(root)
    assert len(p.records) == 40
    assert p.categories == ["color", "material", "object", "part", "scene"]
    names = {c.name: c.category for c in p.concepts}
    assert names == {name: category for name, (_, category) in synth.LABELS.items()}
    # label pixel counts read back through the reader equal what the generator intended
    seen = dict.fromkeys(names, 0)
    number_to_name = {c.number: c.name for c in p.concepts}
    for record in p.records:
        for cell in record.cells.values():
            for token in filter(None, cell.split(";")):
                if token.isdigit():
                    seen[number_to_name[int(token)]] += record.sh * record.sw
                else:
                    numbers, freq = np.unique(load_label_map(p, record, token), return_counts=True)
                    for n, k in zip(numbers, freq, strict=True):
                        if n:
                            seen[number_to_name[int(n)]] += int(k)
    assert seen == counts
    assert min(counts.values()) > 0


def test_some_images_leave_categories_unannotated(probe: tuple[Path, dict[str, int]]) -> None:
    p = open_probe(probe[0])
    empty = {c: sum(1 for r in p.records if not r.cells[c]) for c in p.categories}
    assert empty["material"] + empty["part"] + empty["scene"] > 0
    parts = [r.cells["part"] for r in p.records if r.cells["part"]]
    assert all(len(cell.split(";")) == 2 for cell in parts)  # two part layers


def test_category_frequency_counts_the_images_that_annotate_it(
    probe: tuple[Path, dict[str, int]],
) -> None:
    """category.csv's frequency is Broden's: the images whose index row annotates the category,
    counted here from index.csv (the synthetic world leaves some categories unannotated)."""
    root = probe[0]
    with (root / "index.csv").open() as fh:
        rows = list(csv.DictReader(fh))
    with (root / "category.csv").open() as fh:
        frequency = {r["name"]: int(r["frequency"]) for r in csv.DictReader(fh)}
    assert frequency == {c: sum(1 for r in rows if r[c]) for c in frequency}
    assert min(frequency.values()) < len(rows)
    assert not list(root.parent.glob(".*partial"))  # written in a sibling, renamed into place


def test_label_pixels_match_the_generator_geometry(probe: tuple[Path, dict[str, int]]) -> None:
    """A handful of label pixels, checked against synth.inside() at the pixel centre."""
    root, _ = probe
    p = open_probe(root)
    specs = synth.read_specs(root)
    rng = np.random.default_rng(0)
    checked = 0
    for i in rng.choice(len(specs), size=6, replace=False):
        record, spec = p.records[i], specs[i]
        if "object" not in spec.annotate:
            continue
        obj_map = load_label_map(p, record, record.cells["object"].split(";")[0])
        size = record.sh
        for _ in range(40):
            r, c = rng.integers(0, size, size=2)
            x, y = (c + 0.5) / size, (r + 0.5) / size
            expected = 0
            for o in spec.objects:  # later objects occlude earlier ones
                if synth.inside(o.shape, np.array((x - o.cx) / o.r), np.array((y - o.cy) / o.r)):
                    expected = synth.LABELS[o.shape][0]
            assert obj_map[r, c] == expected, (i, r, c)
            checked += 1
    assert checked >= 120


def test_probe_synth_command(tmp_path: Path) -> None:
    code, out = lce("probe", "synth", tmp_path / "p", "--n", "5", "--size", "16", "--seed", "1")
    assert code == 0, out
    assert len(open_probe(tmp_path / "p").records) == 5
    code, out = lce("probe", "synth", tmp_path / "p", "--n", "5")
    assert code != 0 and "not an empty folder" in out
    code, out = lce("probe", "synth", tmp_path / "q", "--size", "15")
    assert code != 0 and "--size" in out


# The reduced demo run (`demo` fixture) lives in tests/app_fixtures.py, session-scoped: the
# browser test opens the Gallery on the same warehouse.


def test_demo_publishes_every_model_with_profile_and_benchmarks(demo: tuple[Path, str]) -> None:
    work, out = demo
    from lce.zoo import ZOO

    names = {e.name for e in ZOO}
    with duckdb.connect(str(work / "lce.duckdb"), read_only=True) as c:
        rows = c.execute(
            "select model, has_profile, has_benchmarks, in_embedding, excluded_reason, "
            "n_interpretable_units from dim_models"
        ).fetchall()
        benched = {
            m for (m,) in c.execute("select distinct model from fct_task_benchmarks").fetchall()
        }
        in_lce = {m for (m,) in c.execute("select distinct model from fct_lce").fetchall()}
        labelled = {
            m for (m,) in c.execute("select distinct model from fct_unit_labels").fetchall()
        }
    assert {r[0] for r in rows} == benched == labelled == names
    assert all(r[1] and r[2] for r in rows)  # every model dissected and benchmarked
    for model, _, _, in_embedding, reason, n_interpretable in rows:
        # a model is left out of the embedding only when none of its units is interpretable
        assert in_embedding == (n_interpretable > 0), model
        assert in_embedding or reason == "no interpretable units", (model, reason)
    assert in_lce == {r[0] for r in rows if r[3]}
    assert len(in_lce) >= 5
    assert "Interpretable units per concept category" in out and "lce app --db" in out


def test_colour_supervision_learns_more_colour_units(demo: tuple[Path, str]) -> None:
    work, _ = demo
    with duckdb.connect(str(work / "lce.duckdb"), read_only=True) as c:
        share = dict(
            c.execute(
                """
                select m.model, coalesce(sum(p.n_units), 0) / any_value(m.n_units)
                from dim_models m left join fct_category_profiles p
                  on p.model = m.model and p.category = 'color'
                group by m.model
                """
            ).fetchall()
        )
    assert share["colour-sup"] > share["shape-sup"]
    assert share["colour-sup"] > share["colourise"]  # the colouriser never sees colour


def test_shape_supervision_beats_random_on_the_shape_probe(demo: tuple[Path, str]) -> None:
    work, _ = demo
    with duckdb.connect(str(work / "lce.duckdb"), read_only=True) as c:
        acc = dict(
            c.execute(
                "select model, value from fct_task_benchmarks "
                "where task = 'linear_probe' and dataset = 'shape'"
            ).fetchall()
        )
    assert acc["shape-sup"] > acc["random"] + 0.05
    assert acc["shape-sup"] > 1 / 6  # above chance over six shapes


def test_demo_rerun_reuses_its_work(
    demo: tuple[Path, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The rerun names no --workdir: with LCE_HOME set, the demo works in $LCE_HOME/demo."""
    work, _ = demo
    weights = sorted((work / "zoo").glob("*.pt"))
    stamps = {p: p.stat().st_mtime_ns for p in weights}
    published = (work / "lce.duckdb").stat().st_mtime_ns
    monkeypatch.setenv("LCE_HOME", str(work.parent))
    monkeypatch.chdir(tmp_path)
    code, out = lce("demo", "--probe-images", "150", "--train-steps", "100", "--task-images", "600")
    assert code == 0, out
    assert {p: p.stat().st_mtime_ns for p in weights} == stamps  # nothing retrained
    assert (work / "lce.duckdb").stat().st_mtime_ns > published  # rebuilt under $LCE_HOME/demo
    assert not (tmp_path / "lce-data").exists()  # nothing in ./lce-data


def test_shape_few_shot_goes_with_object_units(demo: tuple[Path, str]) -> None:
    """The world is built so: only shape supervision grows object units, and it is the best
    few-shot shape learner, so fct_category_task_correlations shows r > 0 for every shape
    few-shot result against object units. Recomputed here with numpy from the file's inputs."""
    work, out = demo
    with duckdb.connect(str(work / "lce.duckdb"), read_only=True) as c:
        rows = c.execute(
            "select dataset, metric, n, pearson_r, r_lo, r_hi, q_value, significant "
            "from fct_category_task_correlations "
            "where category = 'object' and measure = 'n_units' and task = 'few_shot' "
            "and dataset = 'shape'"
        ).fetchall()
        embedded = {
            m for (m,) in c.execute("select model from dim_models where in_embedding").fetchall()
        }
        units = dict(
            c.execute(
                "select model, n_units from fct_category_profiles where category = 'object'"
            ).fetchall()
        )
        values = c.execute(
            "select metric, model, value from fct_task_benchmarks "
            "where task = 'few_shot' and dataset = 'shape'"
        ).fetchall()
    assert len(rows) == 2  # 5-shot and 20-shot
    for _, metric, n, r, lo, hi, q, significant in rows:
        models = sorted(m for k, m, _ in values if k == metric and m in embedded)
        value_of = {m: v for k, m, v in values if k == metric}
        x = np.array([units.get(m, 0) for m in models], dtype=float)
        y = np.array([value_of[m] for m in models])
        assert n == len(models) >= 5
        assert r == pytest.approx(np.corrcoef(x, y)[0, 1], abs=1e-9)
        assert r > 0, (metric, r)
        assert lo <= r <= hi and significant == (q < 0.05)
    assert "survive Benjamini-Hochberg" in out


def test_demo_compares_every_pair_of_models_by_geometry(demo: tuple[Path, str]) -> None:
    """Every zoo model keeps its image features, so every pair is compared on the 150 probe
    images and the demo prints each measure's agreement with the concept embedding."""
    work, out = demo
    from lce.zoo import ZOO

    with duckdb.connect(str(work / "lce.duckdb"), read_only=True) as c:
        pairs = c.execute(
            "select measure, count(*), count(value), min(n_images), max(n_images) "
            "from fct_model_similarity group by measure order by measure"
        ).fetchall()
        agreement = c.execute(
            "select measure, mantel_r, n_models from fct_similarity_agreement"
        ).fetchall()
    n = len(ZOO)
    assert pairs == [
        (m, n * (n - 1), n * (n - 1), 150, 150)
        for m in ("debiased_cka", "linear_cka", "mutual_knn", "procrustes")
    ]
    assert len(agreement) == 4 and all(rows >= 5 for _, _, rows in agreement)
    assert "Geometry vs concepts" in out and f"{n * (n - 1) // 2} model pair(s) compared" in out
    for measure, r, _ in agreement:
        assert measure in out and (r is None or f"{r:.3f}"[:5] in out), measure


def test_the_null_rule_removes_more_random_units_than_shape_units(demo: tuple[Path, str]) -> None:
    """Every demo extraction runs with null permutations. Judged by the null alone (min_iou 0:
    any unit with a best concept), more of the random model's units fall to chance than of the
    shape-supervised model's. At the default bar (0.04) the demo world's labels are so clean
    that the units above it beat their null in every model (docs/guide.md: A null for unit labels)."""
    work, out = demo
    with duckdb.connect(str(work / "lce.duckdb"), read_only=True) as c:
        removed = dict(
            c.execute(
                """
                select model, count(*) filter (
                    where concept is not null and iou > 0 and not beats_null)
                from fct_unit_labels where is_primary_layer group by model
                """
            ).fetchall()
        )
        unjudged = c.execute("select count(*) from fct_unit_labels where null_iou is null")
        assert unjudged.fetchone() == (0,)  # every demo unit has a null
    assert removed["random"] > removed["shape-sup"], removed
    assert "Interpretable units by rule" in out


def test_gallery_outlines_are_s_above_t_recomputed_from_the_demo_models(
    demo: tuple[Path, str],
) -> None:
    """Issue 13, on the demo lake: the outline the Gallery draws on a unit's top image equals,
    pixel for pixel at label resolution, S > T computed here from the model: its layer's whole
    map on each probe image, upsampled by F.interpolate, thresholded at numpy's quantile."""
    import json

    import torch
    import torch.nn.functional as F
    from PIL import Image
    from scipy import ndimage

    from lce import explore, zoo

    work, _ = demo
    db = work / "lce.duckdb"
    with duckdb.connect(str(db), read_only=True) as c:
        runs = c.execute(
            "select model, probe, normalize, quantile, basis, settings from stg_runs order by model"
        ).fetchall()
    mean = np.array([0.485, 0.456, 0.406]).reshape(3, 1, 1)
    std = np.array([0.229, 0.224, 0.225]).reshape(3, 1, 1)
    cross = ndimage.generate_binary_structure(2, 1)
    checked = 0
    for model, probe_spec, normalize, q, basis, settings in runs[:2]:
        assert normalize == "imagenet" and basis == "raw"
        entry = next(e for e in zoo.ZOO if e.name == model)
        net = zoo.load(entry, Path(json.loads(settings)["weights"])).eval()
        captured: dict[str, torch.Tensor] = {}
        dict(net.named_modules())[zoo.DISSECT_LAYER].register_forward_hook(
            lambda _m, _i, out, store=captured: store.__setitem__("a", out)
        )
        root = Path(probe_spec.removeprefix("broden:"))
        records = open_probe(root).records
        maps = {}
        for record in records:
            with Image.open(root / "images" / record.image) as img:
                rgb = np.asarray(img.convert("RGB")).transpose(2, 0, 1) / 255.0
            with torch.no_grad():
                net(torch.tensor((rgb - mean) / std, dtype=torch.float32)[None])
            maps[record.image] = (captured["a"].float(), (record.sh, record.sw))
        n_units = next(iter(maps.values()))[0].shape[1]
        values = np.concatenate([a[0].reshape(n_units, -1).numpy() for a, _ in maps.values()], 1)
        thresholds = np.quantile(values, 1 - q, axis=1)
        units = tuple(range(0, n_units, max(1, n_units // 6)))
        tiles = explore.unit_tiles(db, str(root), model, zoo.DISSECT_LAYER, units)
        assert tiles and all(t["outlined"] and t["pixels"] is not None for t in tiles)
        for tile in tiles:
            a, size = maps[tile["image"]]
            s = F.interpolate(a, size=size, mode="bilinear", align_corners=False)[0, tile["unit"]]
            mask = s.numpy() > thresholds[tile["unit"]]
            expected = mask & ~ndimage.binary_erosion(mask, structure=cross, border_value=0)
            pixels = tile["pixels"]
            scale = pixels.shape[0] // size[0]
            drawn = (pixels == np.array(explore.OUTLINE_RGB, dtype=np.uint8)).all(axis=-1)
            np.testing.assert_array_equal(drawn[::scale, ::scale], expected)
            checked += int(expected.sum())
    assert checked > 0


def test_demo_dissects_through_its_own_study_file(demo: tuple[Path, str]) -> None:
    """The demo writes work/study.toml and dissects through it: the plan of that file against
    the demo's lake says every zoo model's layer is done (same weights sha256 and settings)."""
    import json

    from lce import zoo

    work, _ = demo
    code, out = lce("study", "plan", work / "study.toml", "--lake", work / "lake", "--json")
    assert code == 0, out
    rows = json.loads(out)
    assert sorted(r["model"] for r in rows) == sorted(e.name for e in zoo.ZOO)
    assert {(r["layer"], r["status"]) for r in rows} == {(zoo.DISSECT_LAYER, "done")}

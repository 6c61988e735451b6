"""The dissection engine's brute-force references, shared by the extraction tests.

Written from docs/DESIGN.md, independently of extract/: the model runs one image at a time, every
activation is kept, and units, concepts and images are looped over in numpy, using the probe
generator's own label arrays (not the probe reader). tests/test_extract.py,
test_image_features.py, test_top_maps.py, test_vit.py and test_page_gallery.py compare the
engine's lake against these.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from extract.top_maps import unpack_mask
from tests.probe_factory import CATEGORIES, LABELS, ProbeSet, primary_category, small_cnn
from warehouse.lake import read_table

MODEL = "probe_factory:small_cnn"
LAYERS = ["block1", "block2"]
MEAN = np.array([0.485, 0.456, 0.406]).reshape(3, 1, 1)
STD = np.array([0.229, 0.224, 0.225]).reshape(3, 1, 1)


def model_input(rgb: np.ndarray) -> torch.Tensor:
    """(1, 3, H, W): the pixels as the engine feeds them, in float32 (/ 255, then the ImageNet
    mean and std). Computing this in float64 moves the last bit of some activations, and exact
    thresholds, and pixels tied with them, are compared bit for bit."""
    x = torch.from_numpy(rgb.transpose(2, 0, 1).copy()).float() / 255.0
    mean = torch.tensor(MEAN.ravel(), dtype=torch.float32).view(3, 1, 1)
    std = torch.tensor(STD.ravel(), dtype=torch.float32).view(3, 1, 1)
    return ((x - mean) / std)[None]


def brute_force(
    probe: ProbeSet,
    layer: str,
    q: float,
    basis: str,
    factory: Callable[[], torch.nn.Module] = small_cnn,
    to_map: Callable[[torch.Tensor], torch.Tensor] = lambda out: out,
    partner: Sequence[int] | None = None,
    device: str = "cpu",
    only: Sequence[int] | None = None,
) -> dict[str, object]:
    """The reference: ``to_map`` turns the layer's raw output into (1, C, h, w) (a ViT test
    reshapes its tokens to the patch grid itself). With ``partner``, image i's masks are
    tallied against image ``partner[i]``'s labels (a null permutation). With ``device`` the
    model and the upsampling run there (CUDA's activations can differ from the CPU's in the
    last bits); everything after that is numpy on the host. With ``only`` the tally counts
    those images alone (a fold), the thresholds still coming from every image."""
    model = factory().eval().to(device)
    captured: dict[str, torch.Tensor] = {}
    module = dict(model.named_modules())[layer]
    module.register_forward_hook(lambda _m, _i, out: captured.__setitem__("a", out))
    raw, ups = [], []
    for img in probe.images:
        with torch.no_grad():
            model(model_input(img.rgb).to(device))
        a = to_map(captured["a"]).float()
        s = F.interpolate(
            a, size=(probe.label_size, probe.label_size), mode="bilinear", align_corners=False
        )
        raw.append(a[0].cpu().numpy())
        ups.append(s[0].cpu().numpy())
    n_units = raw[0].shape[0]
    basis_maps = raw if basis == "raw" else ups
    thresholds = np.array(
        [
            np.quantile(np.concatenate([m[u].ravel() for m in basis_maps]), 1 - q)
            for u in range(n_units)
        ]
    )
    numbers = sorted(n for n in LABELS if n != 0)
    inter = np.zeros((n_units, len(numbers)), dtype=np.int64)
    act_cat = np.zeros((n_units, len(CATEGORIES)), dtype=np.int64)
    label_pixels = np.zeros(len(numbers), dtype=np.int64)
    shape = (probe.label_size, probe.label_size)
    for i, s in enumerate(ups):
        if only is not None and i not in only:
            continue
        img = probe.images[i if partner is None else partner[i]]
        annotated = [k for k, c in enumerate(CATEGORIES) if c in img.maps or c in img.image_labels]
        masks_l = []
        for number in numbers:
            cat = primary_category(number)
            mask = np.zeros(shape, dtype=bool)
            for arr in img.maps.get(cat, []):
                mask |= arr == number
            if number in img.image_labels.get(cat, []):
                mask[:] = True
            masks_l.append(mask)
            label_pixels[numbers.index(number)] += int(mask.sum())
        for u in range(n_units):
            m = s[u] > thresholds[u]
            for k in annotated:
                act_cat[u, k] += int(m.sum())
            for j in range(len(numbers)):
                inter[u, j] += int((m & masks_l[j]).sum())
    cat_index = [CATEGORIES.index(primary_category(n)) for n in numbers]
    iou = np.zeros_like(inter, dtype=np.float64)
    for u in range(n_units):
        for j in range(len(numbers)):
            denom = act_cat[u, cat_index[j]] + label_pixels[j] - inter[u, j]
            iou[u, j] = inter[u, j] / denom if denom > 0 else 0.0
    return {
        "thresholds": thresholds,
        "numbers": numbers,
        "intersection": inter,
        "activation": act_cat[:, cat_index],
        "label_pixels": label_pixels,
        "iou": iou,
        "act_max": np.array([max(m[u].max() for m in raw) for u in range(n_units)]),
        "raw_max_per_image": np.array([[m[u].max() for m in raw] for u in range(n_units)]),
    }


def lake_layer(lake: Path, table: str, model: str, layer: str) -> dict[str, np.ndarray]:
    rows = read_table(lake, table).to_pydict()
    keep = [
        i
        for i, (m, la) in enumerate(zip(rows["model"], rows["layer"], strict=True))
        if m == model and la == layer
    ]
    return {k: np.array([v[i] for i in keep]) for k, v in rows.items()}


def assert_matches(lake: Path, model: str, layer: str, ref: dict[str, object]) -> None:
    thr = lake_layer(lake, "unit_thresholds", model, layer)
    order = np.argsort(thr["unit"])
    np.testing.assert_allclose(thr["threshold"][order], ref["thresholds"], rtol=1e-6, atol=0)
    np.testing.assert_allclose(thr["act_max"][order], ref["act_max"], rtol=1e-6)
    tally = lake_layer(lake, "unit_concept_tally", model, layer)
    numbers: list[int] = ref["numbers"]  # type: ignore[assignment]
    inter = np.zeros_like(ref["intersection"])  # type: ignore[arg-type]
    for u, c, i, a, g, iou in zip(
        tally["unit"], tally["concept_id"], tally["intersection"], tally["activation_in_category"],
        tally["label_pixels"], tally["iou"], strict=True,
    ):  # fmt: skip
        j = numbers.index(int(c))
        inter[u, j] = i
        assert a == ref["activation"][u, j]  # type: ignore[index]
        assert g == ref["label_pixels"][j]  # type: ignore[index]
        assert iou == pytest.approx(ref["iou"][u, j], abs=1e-9)  # type: ignore[index]
    np.testing.assert_array_equal(inter, ref["intersection"])
    assert (np.asarray(ref["intersection"]) > 0).sum() == len(tally["unit"])


def brute_force_means(probe: ProbeSet, layer: str) -> np.ndarray:
    """One image at a time: the layer's output, averaged over its spatial grid in float64."""
    model = small_cnn().eval()
    captured: dict[str, torch.Tensor] = {}
    module = dict(model.named_modules())[layer]
    module.register_forward_hook(lambda _m, _i, out: captured.__setitem__("a", out))
    rows = []
    for img in probe.images:
        with torch.no_grad():
            model(model_input(img.rgb))
        rows.append(captured["a"][0].double().mean(dim=(1, 2)).numpy())
    return np.array(rows)


def lake_features(lake: Path, layer: str) -> tuple[list[str], np.ndarray]:
    rows = [r for r in read_table(lake, "image_features").to_pylist() if r["layer"] == layer]
    return [r["image"] for r in rows], np.array([r["features"] for r in rows], dtype=np.float64)


def reference_maps(probe: ProbeSet, layer: str) -> list[np.ndarray]:
    """Each image's raw (C, h, w) map of the layer, one image at a time."""
    model = small_cnn().eval()
    captured: dict[str, torch.Tensor] = {}
    dict(model.named_modules())[layer].register_forward_hook(
        lambda _m, _i, out: captured.__setitem__("a", out)
    )
    maps = []
    for img in probe.images:
        with torch.no_grad():
            model(model_input(img.rgb))
        maps.append(captured["a"][0].float().numpy())
    return maps


def lake_rows(lake: Path, layer: str) -> list[dict]:  # type: ignore[type-arg]
    rows = [r for r in read_table(lake, "unit_top_maps").to_pylist() if r["layer"] == layer]
    return sorted(rows, key=lambda r: (r["unit"], r["rank"]))


def assert_top_maps_match(lake: Path, probe: ProbeSet, layer: str, q: float, basis: str) -> None:
    """The lake's maps and masks against the reference, pixel for pixel at label resolution."""
    ref = brute_force(probe, layer, q, basis)
    thresholds = np.asarray(ref["thresholds"])
    maps = reference_maps(probe, layer)
    index = {img.name: i for i, img in enumerate(probe.images)}
    rows = lake_rows(lake, layer)
    tops = sorted(
        (r["unit"], r["rank"], r["image"])
        for r in read_table(lake, "unit_top_images").to_pylist()
        if r["layer"] == layer
    )
    assert [(r["unit"], r["rank"], r["image"]) for r in rows] == tops
    assert rows, "the run kept maps"
    size = (probe.label_size, probe.label_size)
    for r in rows:
        a = maps[index[r["image"]]]
        assert (r["h"], r["w"]) == a.shape[1:]
        np.testing.assert_allclose(
            np.array(r["values"], dtype=np.float32).reshape(r["h"], r["w"]),
            a[r["unit"]],
            rtol=1e-5,
            atol=1e-6,  # the engine runs images in batches: the last float32 bits may differ
        )
        whole = F.interpolate(
            torch.from_numpy(a)[None], size=size, mode="bilinear", align_corners=False
        )[0, r["unit"]].numpy()
        expected = whole > thresholds[r["unit"]]
        assert (r["sh"], r["sw"]) == size
        got = unpack_mask(r["mask"], r["sh"], r["sw"])
        np.testing.assert_array_equal(got, expected)

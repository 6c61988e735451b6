"""The restricted upsampling of the tally against the semantics computed in full.

The reference upsamples every unit's whole map with F.interpolate (as docs/DESIGN.md states) and
counts masks against labels with numpy. Thresholds are drawn from the upsampled values
themselves, so a window that rounded one pixel differently from the full map would flip that
pixel's mask.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from extract import upsample
from extract.upsample import (
    _dense_counts,
    _windows,
    batch_label_counts,
    block_floors,
    label_counts,
    pixels_above,
    upsampling_plan,
)


@pytest.fixture(autouse=True)
def two_threads() -> Iterator[None]:
    """Two CPU threads, the production default's kind (the suite runs torch on one,
    tests/conftest.py); the tests below that want one thread set it themselves."""
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    yield
    torch.set_num_threads(before)


def reference_counts(
    act: torch.Tensor, thresholds: torch.Tensor, size: tuple[int, int], onehot: np.ndarray
) -> np.ndarray:
    full = F.interpolate(act[None], size=size, mode="bilinear", align_corners=False)[0].numpy()
    out = np.zeros((act.shape[0], onehot.shape[1]), dtype=np.int64)
    for u in range(act.shape[0]):
        mask = (full[u] > thresholds[u].item()).reshape(-1)
        for j in range(onehot.shape[1]):
            out[u, j] = int(np.sum(mask & (onehot[:, j] > 0)))
    return out


def random_case(
    seed: int, c: int, h: int, w: int, size: tuple[int, int], relu: bool
) -> tuple[torch.Tensor, torch.Tensor, np.ndarray]:
    rng = np.random.default_rng(seed)
    act = torch.from_numpy(rng.normal(size=(c, h, w)).astype(np.float32) * 2)
    if relu:
        act = act.clamp(min=0)
    full = F.interpolate(act[None], size=size, mode="bilinear", align_corners=False)[0]
    flat = full.reshape(c, -1).numpy()
    # thresholds that are upsampled values (borderline pixels), high quantiles, zero, negative
    picks = [
        flat[u, rng.integers(flat.shape[1])]
        if u % 4 == 0
        else np.quantile(flat[u], [0.999, 0.95, 0.5][u % 3])
        if u % 4 != 3
        else -0.5
        for u in range(c)
    ]
    thresholds = torch.tensor(picks, dtype=torch.float32)
    if relu:
        thresholds[1] = 0.0
        act[1] = 0.0  # a dead unit: threshold 0 and nothing above it
    labels = rng.integers(0, 4, size=size[0] * size[1])
    onehot = np.zeros((size[0] * size[1], 5), dtype=np.float32)
    onehot[np.arange(labels.size), labels] = 1
    onehot[:, 2] = rng.random(labels.size) < 0.3  # an overlapping second layer
    onehot[:, -1] = 1
    return act, thresholds, onehot


SHAPES = [
    (7, 7, (112, 112)),  # ResNet layer4 on Broden
    (6, 6, (12, 12)),
    (3, 3, (48, 48)),
    (5, 9, (20, 36)),
    (14, 14, (112, 112)),
    (4, 4, (32, 32)),
    (28, 28, (112, 112)),  # windows under five rows round differently here
    (7, 10, (112, 80)),
    (7, 7, (21, 21)),  # not a power-of-two factor
    (2, 2, (16, 16)),  # too few rows for a window
    (12, 12, (12, 12)),  # no upsampling
]


@pytest.mark.parametrize(("h", "w", "size"), SHAPES)
@pytest.mark.parametrize("relu", [False, True])
def test_label_counts_equal_full_upsampling(
    h: int, w: int, size: tuple[int, int], relu: bool
) -> None:
    for seed in range(3):
        act, thresholds, onehot = random_case(seed, 24, h, w, size, relu)
        expected = reference_counts(act, thresholds, size, onehot)
        units, counts = label_counts(act, thresholds, size, torch.from_numpy(onehot))
        got = np.zeros_like(expected)
        got[units.numpy()] = counts.numpy()
        np.testing.assert_array_equal(got, expected, err_msg=f"seed {seed}")
        # units left out can not fire anywhere
        left_out = np.setdiff1d(np.arange(act.shape[0]), units.numpy())
        assert not expected[left_out].any()


@pytest.mark.parametrize(("h", "w", "size"), SHAPES)
@pytest.mark.parametrize("relu", [False, True])
def test_pixels_above_equal_full_upsampling(
    h: int, w: int, size: tuple[int, int], relu: bool
) -> None:
    """pixels_above (passes 1 and 2 on the upsampled basis) gives exactly the
    full upsampling's pixels above each bound, values bit for bit, bounds of every kind (an
    upsampled value, quantiles, 0 on a dead unit, negative, -inf)."""
    for seed in range(3):
        act, bounds, _ = random_case(seed, 24, h, w, size, relu)
        bounds[5] = float("-inf")
        full = F.interpolate(act[None], size=size, mode="bilinear", align_corners=False)[0]
        flat = full.reshape(act.shape[0], -1)
        units, values = pixels_above(act, bounds, size)
        for u in range(act.shape[0]):
            want = np.sort(flat[u][flat[u] > bounds[u]].numpy())
            got = np.sort(values[units == u].numpy())
            np.testing.assert_array_equal(got, want, err_msg=f"seed {seed} unit {u}")


@pytest.mark.parametrize(("h", "w", "size"), SHAPES)
@pytest.mark.parametrize(("stack", "ceiling"), [(upsample.STACK_PIXELS, False), (1, True)])
def test_pixels_above_a_batch_equal_each_images_full_upsampling(
    h: int,
    w: int,
    size: tuple[int, int],
    stack: int,
    ceiling: bool,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A batch's maps in one call (pass 2 sends each batch so) give, per unit, the pixels above
    its bound (and below its ceiling: round 2) of every image's own whole-map upsampling,
    values bit for bit; also when the stacks are cut to one window or map each (``stack`` 1:
    large maps are cut so). Ceilings are upsampled values themselves, or +inf."""
    monkeypatch.setattr(upsample, "STACK_PIXELS", stack)
    cases = [random_case(seed, 24, h, w, size, relu=seed == 1) for seed in range(3)]
    bounds = cases[0][1]
    batch = torch.stack([act for act, _, _ in cases])
    top = torch.full_like(bounds, float("inf"))
    if ceiling:  # the largest pixel of another case, or +inf for every fourth unit
        other = F.interpolate(cases[2][0][None], size=size, mode="bilinear", align_corners=False)
        top = torch.where(torch.arange(24) % 4 == 2, top, other[0].flatten(1).amax(dim=1))
    units, values = pixels_above(batch, bounds, size, top if ceiling else None)
    for u in range(batch.shape[1]):
        want = []
        for act, _, _ in cases:
            full = F.interpolate(act[None], size=size, mode="bilinear", align_corners=False)[0]
            want.append(full[u][(full[u] > bounds[u]) & (full[u] < top[u])].reshape(-1))
        np.testing.assert_array_equal(
            np.sort(values[units == u].numpy()), np.sort(torch.cat(want).numpy()), f"unit {u}"
        )


def test_one_cpu_thread_keeps_windows_and_stays_exact() -> None:
    """On one CPU thread (torchrun's default for its workers) PyTorch gives a stack of exactly
    three channels its channels-last kernel, which rounds differently; unpadded, windows of these
    maps came out one float32 step off the whole map on seed 2 (6 of 24 units) although the
    plan's own checks passed. ``upsample`` pads such stacks, so one thread keeps the windows and
    equals the whole map upsampled at the same thread count (``two_threads`` restores)."""
    torch.set_num_threads(1)
    for h, w, size in [(7, 7, (112, 112)), (28, 28, (112, 112)), (7, 10, (112, 80))]:
        assert upsampling_plan(24, h, w, *size) == "windows"
        for seed in range(3):
            act, bounds, _ = random_case(seed, 24, h, w, size, relu=False)
            full = F.interpolate(act[None], size=size, mode="bilinear", align_corners=False)
            flat = full[0].reshape(24, -1)
            units, values = pixels_above(act, bounds, size)
            for u in range(24):
                want = np.sort(flat[u][flat[u] > bounds[u]].numpy())
                got = np.sort(values[units == u].numpy())
                np.testing.assert_array_equal(got, want, err_msg=f"{h}x{w} seed {seed} unit {u}")


@pytest.mark.parametrize("threads", [1, 2])
def test_a_stack_of_three_rounds_as_in_a_larger_stack(threads: int) -> None:
    """Any three units upsampled together equal the same units in a stack of 24 (the generic
    NCHW kernel), at one thread too, where F.interpolate alone would switch kernels for C = 3."""
    torch.set_num_threads(threads)  # ``two_threads`` restores
    maps = torch.from_numpy(np.random.default_rng(5).normal(size=(1, 24, 7, 7)) * 3).float()
    whole = F.interpolate(maps, size=(112, 112), mode="bilinear", align_corners=False)
    for first in range(0, 24, 3):
        np.testing.assert_array_equal(
            upsample.upsample(maps[:, first : first + 3], (112, 112)).numpy(),
            whole[:, first : first + 3].numpy(),
        )


def test_dead_units_are_skipped() -> None:
    act, thresholds, onehot = random_case(0, 24, 7, 7, (112, 112), relu=True)
    units, _ = label_counts(act, thresholds, (112, 112), torch.from_numpy(onehot))
    assert 1 not in units.tolist()


def test_one_unit_stays_on_the_nchw_kernel() -> None:
    """A single (1, 1, h, w) map is contiguous in both layouts; the result must still be NCHW's."""
    act, thresholds, onehot = random_case(1, 24, 7, 7, (112, 112), relu=False)
    only = torch.zeros(24, dtype=torch.bool)
    only[5] = True
    high = torch.where(only, thresholds, torch.full_like(thresholds, 1e9))
    expected = reference_counts(act, high, (112, 112), onehot)
    units, counts = _dense_counts(act, high, (112, 112), torch.from_numpy(onehot))
    assert units.tolist() == [5]
    np.testing.assert_array_equal(counts.numpy()[0], expected[5])


def test_windows_only_for_power_of_two_row_factors() -> None:
    assert upsampling_plan(24, 7, 7, 21, 21) != "windows"
    assert upsampling_plan(24, 12, 12, 12, 12) != "windows"
    assert upsampling_plan(24, 2, 2, 16, 16) != "windows"
    assert upsampling_plan(24, 7, 7, 100, 100) != "windows"


@pytest.mark.parametrize(
    ("h", "w", "size"),
    [(7, 7, (112, 112)), (6, 6, (24, 24)), (14, 14, (112, 112)), (13, 9, (100, 77)),
     (1, 5, (9, 40)), (5, 1, (33, 7)), (3, 4, (3, 4)), (12, 12, (7, 5)), (28, 28, (112, 112))],
)  # fmt: skip
@pytest.mark.parametrize("relu", [False, True])
def test_block_floors_never_exceed_the_pixels_they_stand_for(
    h: int, w: int, size: tuple[int, int], relu: bool
) -> None:
    """The guarantee pass 1's bound rests on, checked against the full upsampling: for every
    value v, at least as many pixels are >= v as block floors >= v counted with their weights
    (the i-th largest pixel is >= the i-th largest weighted floor), and the weights count every
    pixel once. Maps: random normals, ReLU'd and squared (heavy tails), a constant, magnitudes
    of 1e30 and 1e-30."""
    rng = np.random.default_rng(h * 100 + w)
    maps = rng.normal(size=(6, h, w)).astype(np.float32) * 3
    if relu:
        maps = np.maximum(maps, 0) ** 2
    maps[2] = 1.5
    maps[3] *= 1e30
    maps[4] *= 1e-30
    act = torch.from_numpy(maps)
    floors, weights = block_floors(act, size)
    assert int(weights.sum()) == size[0] * size[1]
    full = F.interpolate(act[None], size=size, mode="bilinear", align_corners=False)[0]
    for u in range(len(maps)):
        pixels = np.sort(full[u].numpy().ravel())[::-1]
        expanded = np.sort(np.repeat(floors[u].numpy(), weights.numpy()))[::-1]
        assert np.all(pixels >= expanded), u
    # and close enough to be useful: the floors of a smooth map reach most of its peak
    assert float(floors[2].min()) <= 1.5 and float(floors[2].max()) > 1.5 * (1 - 1e-3)


def test_windows_are_disjoint_runs_of_the_rows_next_to_hot_rows() -> None:
    """Each unit gets its hot rows' neighbours merged into runs, widened to a checked height
    (a lone hot row at an edge, or two runs that meet once widened, become one window), and a
    run taller than the tallest checked height becomes the whole map: hand-worked on 7 rows."""
    act = torch.zeros((5, 7, 4))
    for unit, rows in {0: [2, 3], 1: [0, 6], 2: [0, 3], 3: [3], 4: []}.items():
        act[unit, rows] = 1.0
    found = _windows(act, torch.full((5,), 0.5), (112, 64), (3, 4))
    windows = sorted(
        (int(u), int(a), up.shape[1] // 16)
        for unit, start, up, _ in found
        for u, a in zip(unit, start, strict=True)
    )
    # unit 0: rows 1..4; unit 1: {0, 1} -> 0..2 and {5, 6} -> 4..6; unit 2: {0, 1} and
    # {2, 3, 4} touch, and 0..4 is taller than 4 rows: the whole map; unit 3: 2..4; unit 4: none
    assert windows == [(0, 1, 4), (1, 0, 3), (1, 4, 3), (2, 0, 7), (3, 2, 3)]
    for unit, start, up, exact in found:
        rows = up.shape[1] // 16
        for i in range(len(unit)):
            # exact: the pixel rows between the window's first and last cell row, and the
            # border rows (half a cell) only where the window reaches the map's edge
            top, bottom = int(start[i]) == 0, int(start[i]) + rows == 7
            assert bool(exact[i, :8].all()) == top and bool(exact[i, :8].any()) == top
            assert bool(exact[i, -8:].all()) == bottom and bool(exact[i, -8:].any()) == bottom
            assert exact[i, 8 : rows * 16 - 8].all()


@pytest.mark.parametrize(("h", "w", "size"), SHAPES)
def test_batch_label_counts_equal_each_images_full_upsampling(
    h: int, w: int, size: tuple[int, int]
) -> None:
    """A batch's maps with their own label matrices in one call (the tally sends each batch
    so) count as each image's whole-map upsampling does; the images' label matrices differ in
    width, as images present different concepts."""
    cases = [random_case(seed, 24, h, w, size, relu=seed == 1) for seed in range(3)]
    cases[1] = (cases[1][0], cases[1][1], np.ascontiguousarray(cases[1][2][:, 2:]))
    thresholds = cases[0][1]
    batch = torch.stack([act for act, _, _ in cases])
    found = batch_label_counts(
        batch, thresholds, size, [torch.from_numpy(onehot) for _, _, onehot in cases]
    )
    for (act, _, onehot), (units, counts) in zip(cases, found, strict=True):
        expected = reference_counts(act, thresholds, size, onehot)
        got = np.zeros_like(expected)
        got[units.numpy()] = counts.numpy()
        np.testing.assert_array_equal(got, expected)

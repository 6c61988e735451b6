"""The bounded exact quantile (extract/quantile.py) against numpy.quantile, bit for bit, on
adversarial data: ties at the threshold, all-zero units, a unit whose values all arrive in the
last batch, negative values, -0.0, huge and tiny magnitudes; and its running-state protocol
(merge of shards = one pass; state_dict round trips)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from extract.quantile import ThresholdSelect, float_keys, key_floats


def run_rounds(
    blocks: list[np.ndarray], q: float, shards: int = 1, ceilings: bool = False
) -> np.ndarray:
    """Round 1 over the (units, n) blocks (round-robin over ``shards`` states, merged, then
    each state_dict round-tripped), round 2 likewise, as the engine drives them; ``ceilings``:
    round 2 sees only the values below each unit's ceiling (as upsample.pixels_above gives
    them on the upsampled basis)."""
    n_units = blocks[0].shape[0]
    n = sum(b.shape[1] for b in blocks)
    states = [ThresholdSelect(n_units, n, 1 - q) for _ in range(shards)]
    for i, block in enumerate(blocks):
        s = states[i % shards]
        s.update(*s.candidates(torch.from_numpy(block)))
        s.refresh()
    select = states[0]
    for other in states[1:]:
        select.merge(other)
    again = ThresholdSelect(1, 1, 0.5)
    again.load_state_dict(select.state_dict())
    refines = [again.refine(n) for _ in range(shards)]
    for i, block in enumerate(blocks):
        r = refines[i % shards]
        units, values = r.candidates(torch.from_numpy(block))
        if ceilings:
            below = values < r.ceilings()[units]
            units, values = units[below], values[below]
        r.update(units, values)
    refine = refines[0]
    for other in refines[1:]:
        refine.merge(other)
    copy = again.refine(n)
    copy.load_state_dict(refine.state_dict())
    out = refine.thresholds()
    np.testing.assert_array_equal(copy.thresholds(), out)
    return out


def numpy_thresholds(blocks: list[np.ndarray], q: float) -> np.ndarray:
    values = np.concatenate(blocks, axis=1)
    return np.array([np.quantile(v, 1 - q) for v in values], dtype=np.float32)


def split(values: np.ndarray, sizes: list[int]) -> list[np.ndarray]:
    return np.split(values, np.cumsum(sizes)[:-1], axis=1)


def adversarial(rng: np.random.Generator, n: int) -> np.ndarray:
    """Rows: random, ReLU-sparse, all zero, constant, ties around the quantile, negative only,
    the peak only at the end, huge, tiny, mixed signs with -0.0."""
    rows = [
        rng.normal(size=n),
        np.maximum(rng.normal(-1.5, 1, size=n), 0),
        np.zeros(n),
        np.full(n, 3.25),
        rng.integers(0, 4, size=n).astype(float),
        -np.abs(rng.normal(size=n)) - 5,
        np.concatenate([np.zeros(n - n // 50), rng.uniform(1, 2, n // 50)]),
        rng.normal(size=n) * 1e30,
        rng.normal(size=n) * 1e-30,
        np.where(rng.random(n) < 0.5, -0.0, rng.normal(size=n)),
    ]
    return np.array(rows, dtype=np.float32)


@pytest.mark.parametrize("q", [0.005, 0.08, 0.5, 0.9999])
@pytest.mark.parametrize(("shards", "ceilings"), [(1, False), (3, False), (1, True), (3, True)])
def test_equals_numpy_on_adversarial_rows(q: float, shards: int, ceilings: bool) -> None:
    rng = np.random.default_rng(7)
    values = adversarial(rng, 3000)
    blocks = split(values, [7, 500, 1, 992, 1000, 500])
    got = run_rounds(blocks, q, shards, ceilings)
    np.testing.assert_array_equal(got, numpy_thresholds(blocks, q))


def test_unit_whose_values_all_arrive_last() -> None:
    values = np.zeros((2, 5000), dtype=np.float32)
    values[0, -40:] = np.linspace(1, 2, 40)
    values[1, -40:] = -np.linspace(1, 2, 40)  # the last batch only lowers it
    blocks = split(values, [1000] * 4 + [960, 40])
    for q in (0.005, 0.01, 0.02):
        np.testing.assert_array_equal(run_rounds(blocks, q), numpy_thresholds(blocks, q))


def test_ties_exactly_at_the_threshold_and_close_values() -> None:
    rng = np.random.default_rng(3)
    base = np.float32(1.0)
    nearby = np.nextafter(base, np.float32(2), dtype=np.float32)
    row = rng.choice(np.array([0.5, base, nearby, 2.0], dtype=np.float32), size=4000)
    values = np.stack([row, np.sort(row), np.sort(row)[::-1].copy()])
    blocks = split(values, [1000] * 4)
    for q in (0.001, 0.25, 0.2501, 0.5):
        np.testing.assert_array_equal(run_rounds(blocks, q), numpy_thresholds(blocks, q))


def test_few_values_and_single_values() -> None:
    rng = np.random.default_rng(1)
    for n in (1, 2, 3, 17):
        values = rng.normal(size=(4, n)).astype(np.float32)
        for q in (0.005, 0.5):
            np.testing.assert_array_equal(run_rounds([values], q), numpy_thresholds([values], q))


def test_the_bound_rises_and_counts_stay_bounded() -> None:
    """The bound is a true lower bound of the final threshold and it prunes: after the data,
    far fewer values than N are counted in round 1."""
    rng = np.random.default_rng(5)
    values = rng.exponential(size=(3, 200_000)).astype(np.float32)
    s = ThresholdSelect(3, values.shape[1], 0.995)
    for block in split(values, [10_000] * 20):
        s.update(*s.candidates(torch.from_numpy(block)))
        s.refresh()
    truth = numpy_thresholds([values], 0.005)
    assert (s.bounds.numpy() <= truth).all()
    assert (s.bounds.numpy() > 0.9 * truth).all()
    assert int(s.fine.sum()) < 0.2 * values.size


def test_float_keys_sort_as_floats_and_invert() -> None:
    rng = np.random.default_rng(2)
    special = [0.0, -0.0, 1e-45, -1e-45, 3.4e38, -3.4e38, np.inf, -np.inf, 1.0, -1.0]
    values = np.concatenate([rng.normal(size=1000) * 10.0 ** rng.integers(-30, 30, 1000), special])
    t = torch.from_numpy(values.astype(np.float32))
    keys = float_keys(t)
    order = torch.argsort(keys, stable=True)
    assert (torch.diff(t[order]) >= 0).all()
    back = key_floats(keys)
    assert torch.equal(back, t + 0.0)  # -0.0 comes back as +0.0 (they compare equal)


def test_top_and_low_bits_are_the_keys_halves() -> None:
    from extract.quantile import low_bits, top_bits

    rng = np.random.default_rng(9)
    values = np.concatenate([rng.normal(size=5000) * 10.0 ** rng.integers(-38, 38, 5000),
                             [0.0, -0.0, 1e-45, -1e-45, 3.4e38, -3.4e38]])  # fmt: skip
    t = torch.from_numpy(values.astype(np.float32))
    keys = float_keys(t)
    assert torch.equal(top_bits(t).long(), keys >> 16)
    assert torch.equal(low_bits(t).long(), keys & 0xFFFF)


def test_weighted_rows_count_as_repeated_values() -> None:
    """update_rows with weights fills the same tables and raises the same bound as the values
    repeated that many times (numpy.repeat) through the unweighted path."""
    rng = np.random.default_rng(7)
    rows = rng.normal(size=(9, 20)).astype(np.float32)
    units = torch.tensor([0, 1, 2, 0, 1, 2, 0, 1, 2])
    weights = torch.from_numpy(rng.integers(1, 300, size=20).astype(np.int32))
    n = 3 * 20 * 300
    weighted, repeated = ThresholdSelect(3, n, 0.99), ThresholdSelect(3, n, 0.99)
    for half in (slice(0, 10), slice(10, 20)):
        weighted.update_rows(units, torch.from_numpy(rows[:, half]), weights[half])
        weighted.refresh()
        values = np.repeat(rows[:, half], weights[half].numpy(), axis=1)
        for u in range(3):
            v = torch.from_numpy(values[units.numpy() == u].ravel())
            repeated.update(torch.full((len(v),), u), v)
        repeated.refresh()
        assert torch.equal(weighted.bounds, repeated.bounds)
    assert torch.equal(weighted.fine, repeated.fine)
    assert torch.equal(weighted.coarse, repeated.coarse)

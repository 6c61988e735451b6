"""The running-state interface (extract/running.py) for every statistic the engine keeps:
merging the states of disjoint shards equals one pass over all the data, and
load_state_dict(state_dict()) (also through ``restored`` and a torch file, as the checkpoint and
the distributed sync use them) gives back the same state. The quantile states are covered the
same way in tests/test_quantile.py."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from extract.broden import load_labels, open_probe
from extract.running import restored
from extract.tally import ActivationStats, ConceptTally, TopImages, unpack_bits
from tests.probe_factory import make_probe


def through_torch_file(state: dict[str, Any]) -> dict[str, Any]:
    buffer = io.BytesIO()
    torch.save(state, buffer)
    buffer.seek(0)
    return torch.load(buffer, weights_only=True)


def same_state(a: dict[str, Any], b: dict[str, Any]) -> None:
    assert a.keys() == b.keys()
    for key in a:
        if isinstance(a[key], torch.Tensor):
            assert torch.equal(a[key], b[key]), key
        else:
            assert a[key] == b[key], key


def maps(seed: int, n: int = 6) -> torch.Tensor:
    rng = np.random.default_rng(seed)
    return torch.from_numpy(rng.normal(size=(n, 5, 4, 4)).astype(np.float32))


def test_activation_stats_merge_and_round_trip() -> None:
    parts = [maps(s) for s in range(3)]
    whole = ActivationStats(5)
    whole.update(torch.cat(parts))
    merged = ActivationStats(5)
    for p in parts:
        shard = ActivationStats(5)
        shard.update(p)
        merged.merge(restored(ActivationStats, through_torch_file(shard.state_dict())))
    assert merged.count == whole.count
    assert torch.equal(merged.maximum, whole.maximum)
    # float64 sums of float32 values: exact here, whatever the order
    np.testing.assert_allclose(merged.total.numpy(), whole.total.numpy(), rtol=1e-15)
    same_state(restored(ActivationStats, whole.state_dict()).state_dict(), whole.state_dict())


def test_top_images_merge_and_round_trip() -> None:
    rng = np.random.default_rng(1)
    maxima = torch.from_numpy(rng.integers(0, 5, size=(40, 7)).astype(np.float32))  # many ties
    index = torch.arange(40)
    whole = TopImages(7, 5)
    whole.update(maxima, index)
    merged = TopImages(7, 5)
    for shard_of in range(4):  # torchrun's sharding: every 4th image
        shard = TopImages(7, 5)
        rows = index[index % 4 == shard_of]
        shard.update(maxima[rows], rows)
        merged.merge(restored(TopImages, through_torch_file(shard.state_dict())))
    assert torch.equal(merged.values, whole.values)
    assert torch.equal(merged.images, whole.images)
    # the reference: value descending, then image index ascending
    for u in range(7):
        order = sorted(range(40), key=lambda i: (-float(maxima[i, u]), i))[:5]
        assert whole.images[u].tolist() == order


def test_top_images_holding() -> None:
    top = TopImages(2, 2)
    top.update(torch.tensor([[5.0, 1.0], [4.0, 2.0], [3.0, 3.0]]), torch.tensor([10, 11, 12]))
    held = top.holding(torch.tensor([10, 12, 99]))
    assert held.tolist() == [[True, False, False], [False, True, False]]


@pytest.fixture(scope="module")
def labelled(tmp_path_factory: pytest.TempPathFactory) -> tuple[Any, list[Any]]:
    probe_set = make_probe(tmp_path_factory.mktemp("probe") / "broden", n_images=6)
    probe = open_probe(Path(probe_set.root))
    category_of = probe.concept_category_index()
    return probe, [load_labels(probe, r, category_of) for r in probe.records]


def test_concept_tally_merge_and_round_trip(labelled: tuple[Any, list[Any]]) -> None:
    probe, labels = labelled
    acts = maps(3, n=len(labels))
    thresholds = torch.tensor([0.5, 1.0, -0.2, 2.5, 0.0])
    size = (len(probe.concepts), len(probe.categories))

    def tally(images: list[int]) -> ConceptTally:
        out = ConceptTally(5, *size, n_null=1)
        for i in images:
            partner = labels[(i + 1) % len(labels)]
            out.update(acts[i], thresholds, labels[i], [partner])
        return out

    whole = tally(list(range(len(labels))))
    merged = ConceptTally(5, *size, n_null=1)
    for part in ([0, 3], [1, 4, 5], [2]):
        merged.merge(restored(ConceptTally, through_torch_file(tally(part).state_dict())))
    same_state(merged.state_dict(), whole.state_dict())
    assert int(whole.intersection.sum()) > 0 and int(whole.null_intersection.sum()) > 0


@pytest.mark.parametrize("count", [1, 8, 143, 12544])
def test_unpacking_label_bits_in_torch_is_numpys_unpackbits(count: int) -> None:
    """The label bits a GPU unpacks (extract/tally.py) against numpy on the same bytes."""
    packed = np.random.default_rng(count).integers(0, 256, (5, (count + 7) // 8), dtype=np.uint8)
    expected = np.unpackbits(packed, axis=1, count=count)
    np.testing.assert_array_equal(unpack_bits(torch.from_numpy(packed), count).numpy(), expected)

"""The forward pass stops at the last tapped layer, and only when that cannot change a table."""

from pathlib import Path

import pytest
import torch
from torch import nn

from extract.engine import ExtractConfig, run_extract
from extract.feed import forward
from extract.models import LayerTaps
from tests.probe_factory import make_probe


class Counted(nn.Module):
    """A layer that counts its calls, so a test sees whether the pass ran past the taps."""

    def __init__(self) -> None:
        super().__init__()
        self.calls = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        return x * 2


def test_second_forward_stops_after_last_tap_with_same_outputs() -> None:
    torch.manual_seed(0)
    conv = nn.Conv2d(3, 4, 3, padding=1)
    tail = Counted()
    model = nn.Sequential(conv, nn.ReLU(), tail)
    images = torch.randn(2, 3, 8, 8)
    expected = torch.relu(conv(images)).detach()  # independent: the layer computed by hand
    with LayerTaps({"1": model[1]}) as taps:
        first = forward(model, taps, images, ["1"], torch.device("cpu"))["1"]
        second = forward(model, taps, images, ["1"], torch.device("cpu"))["1"]
    assert tail.calls == 1  # the first pass ran whole, the second stopped before the tail
    assert taps.whole_pass_reason is None
    assert torch.equal(first, expected) and torch.equal(second, expected)


class Shared(nn.Module):
    """Uses one ReLU twice, as torchvision's Bottleneck does: its latest output is the second."""

    def __init__(self) -> None:
        super().__init__()
        self.relu = nn.ReLU()
        self.tail = Counted()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.tail(self.relu(self.relu(x) - 1))


def test_module_called_twice_keeps_whole_pass() -> None:
    model = Shared()
    images = torch.randn(2, 3, 4, 4)
    expected = torch.relu(torch.relu(images) - 1)
    with LayerTaps({"relu": model.relu}) as taps:
        for _ in range(2):
            got = forward(model, taps, images, ["relu"], torch.device("cpu"))["relu"]
            assert torch.equal(got, expected)
    assert model.tail.calls == 2
    assert taps.whole_pass_reason is not None and "relu" in taps.whole_pass_reason


def test_output_changed_in_place_later_keeps_whole_pass() -> None:
    """torchvision's conv -> bn -> relu(inplace=True): a tapped bn's kept output is rectified
    by the whole pass, so stopping at the tap would change the tables; the pass runs whole."""
    torch.manual_seed(0)
    conv = nn.Conv2d(3, 4, 3, padding=1)
    tail = Counted()
    model = nn.Sequential(conv, nn.ReLU(inplace=True), tail)
    images = torch.randn(2, 3, 8, 8)
    expected = torch.relu(conv(images)).detach()  # what the whole pass leaves in the conv's output
    with LayerTaps({"0": model[0]}) as taps:
        for _ in range(2):
            got = forward(model, taps, images, ["0"], torch.device("cpu"))["0"]
            assert torch.equal(got, expected)
    assert tail.calls == 2
    assert taps.whole_pass_reason is not None and "in place" in taps.whole_pass_reason


class Tail(nn.Module):
    """Counts the images that reach it, across every instance (the engine builds the model)."""

    images = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        Tail.images += x.shape[0]
        return x * 2


def tailed_cnn() -> nn.Module:
    """A model spec (test_stop_forward:tailed_cnn): a tapped conv and ReLU, then a counted tail."""
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), Tail())


def test_a_run_learns_to_stop_from_one_blank_image_not_its_first_batch(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Only the shape check's blank image runs the whole network (it also teaches the taps to
    stop; a second blank image did that before): no probe image reaches the tail, not even
    those of the first batch (batch 4 here)."""
    monkeypatch.syspath_prepend(str(Path(__file__).parent))
    probe = make_probe(tmp_path / "probe", n_images=8)
    Tail.images = 0
    run_extract(
        ExtractConfig(
            model="test_stop_forward:tailed_cnn", layers=["1"], probe=probe.root,
            lake=tmp_path / "lake", name="tailed", batch_size=4, progress=False,
        )
    )  # fmt: skip
    assert Tail.images == 1


def two_size_probe(root: Path) -> Path:
    """A probe of 24 px images (labels 12 px) and 32 px images (labels 16 px): two blank passes
    measure the layers' shapes."""
    import csv
    import shutil

    small = make_probe(root / "small", n_images=4, size=24, label_size=12, seed=1).root
    large = make_probe(root / "large", n_images=4, size=32, label_size=16, seed=2).root
    both = root / "both"
    shutil.copytree(small, both)
    rows = list(csv.reader((large / "index.csv").open()))[1:]
    for row in rows:
        for j, cell in enumerate(row):
            names = cell.split(";")
            if any(n.endswith(".png") for n in names):
                for n in names:
                    shutil.copy(large / "images" / n, both / "images" / f"l_{n}")
                row[j] = ";".join(f"l_{n}" for n in names)
    with (both / "index.csv").open("a", newline="") as fh:
        csv.writer(fh).writerows(rows)
    return both


def test_two_image_sizes_run_one_whole_blank_pass(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The first size's blank pass runs the whole network and teaches the taps; the second
    size's stops at the last tap (layer_shapes catches the stop) and still measures its shape.
    The lake's thresholds equal a brute force (numpy.quantile) over the tapped maps computed
    here by a plain forward of each image (batch size 1 in both: a convolution's last bits can
    depend on the batch size)."""
    import numpy as np
    import pyarrow.parquet as pq

    from extract.broden import load_image, open_probe
    from extract.config import NORMALIZATIONS

    monkeypatch.syspath_prepend(str(Path(__file__).parent))
    root = two_size_probe(tmp_path)
    Tail.images = 0
    run_extract(
        ExtractConfig(
            model="test_stop_forward:tailed_cnn", layers=["1"], probe=root, basis="raw",
            lake=tmp_path / "lake", name="tailed", batch_size=1, progress=False, quantile=0.05,
        )
    )  # fmt: skip
    assert Tail.images == 1
    probe = open_probe(root)
    assert {(r.ih, r.sh) for r in probe.records} == {(24, 12), (32, 16)}
    model = tailed_cnn()
    assert isinstance(model, nn.Sequential)
    mean, std = (torch.tensor(v).view(3, 1, 1) for v in NORMALIZATIONS["imagenet"])
    values = []
    with torch.no_grad():
        for r in probe.records:
            pixels = torch.from_numpy(load_image(probe, r).copy()).permute(2, 0, 1).float() / 255
            values.append(model[:2]((pixels - mean) / std).reshape(4, -1))
    want = np.quantile(torch.cat(values, dim=1).numpy(), 0.95, axis=1)
    table = pq.read_table(next((tmp_path / "lake" / "unit_thresholds").rglob("*.parquet")))
    got = table.sort_by("unit").column("threshold").to_numpy()
    np.testing.assert_array_equal(got, want.astype(np.float32))

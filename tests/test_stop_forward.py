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

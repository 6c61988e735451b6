"""Vision Transformers: token outputs (B, tokens, C) are dissected on their patch grid.

The end-to-end test dissects a tiny torchvision ViT and compares thresholds and tallies with the
brute-force reference of tests/brute.py, which reshapes the tokens to the grid itself.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from extract.engine import ExtractConfig, run_extract
from extract.models import find_layers, infer_patch_size, load_model, to_grid
from tests.brute import assert_matches, brute_force
from tests.conftest import lce
from tests.probe_factory import ProbeSet, make_probe
from tests.vit_factory import register_vit, tiny_vit

LAYERS = ["encoder.layers.encoder_layer_0", "encoder.layers.encoder_layer_1"]


@pytest.fixture(autouse=True)
def _importable_factory(monkeypatch: pytest.MonkeyPatch) -> None:
    """module:function specs name tests/vit_factory.py, so it must be importable."""
    monkeypatch.syspath_prepend(str(Path(__file__).parent))


@pytest.fixture(scope="module")
def probe(tmp_path_factory: pytest.TempPathFactory) -> ProbeSet:
    return make_probe(tmp_path_factory.mktemp("probe") / "broden", n_images=9, size=24)


def tokens_to_grid(extra: int, side: int) -> object:
    """The reference's own reshape: drop ``extra`` leading tokens, (1, T, C) -> (1, C, side, side)."""

    def to_map(out: torch.Tensor) -> torch.Tensor:
        tokens = out[0, extra:, :]
        assert tokens.shape[0] == side * side
        return tokens.T.reshape(1, -1, side, side)

    return to_map


@pytest.mark.parametrize(("q", "basis"), [(0.08, "raw"), (0.005, "upsampled")])
def test_tiny_vit_matches_brute_force(
    probe: ProbeSet, tmp_path: Path, q: float, basis: str
) -> None:
    lake = tmp_path / "lake"
    run_extract(
        ExtractConfig(
            model="vit_factory:tiny_vit",
            layers=LAYERS,
            probe=probe.root,
            lake=lake,
            name="vit",
            quantile=q,
            basis=basis,
            batch_size=4,
            progress=False,
            top_images=2,
        )  # fmt: skip
    )
    for layer in LAYERS:
        ref = brute_force(probe, layer, q, basis, tiny_vit, tokens_to_grid(1, 6))
        assert np.asarray(ref["thresholds"]).shape == (16,)
        assert_matches(lake, "vit", layer, ref)
        assert np.asarray(ref["intersection"]).sum() > 0


def test_register_tokens_are_dropped(probe: ProbeSet, tmp_path: Path) -> None:
    lake = tmp_path / "lake"
    run_extract(
        ExtractConfig(
            model="vit_factory:register_vit",
            layers=["blocks.0"],
            probe=probe.root,
            lake=lake,
            name="reg",
            quantile=0.08,
            batch_size=4,
            progress=False,
        )  # fmt: skip
    )
    ref = brute_force(probe, "blocks.0", 0.08, "raw", register_vit, tokens_to_grid(5, 6))
    assert_matches(lake, "reg", "blocks.0", ref)


def test_grid_follows_the_patch_size() -> None:
    assert infer_patch_size(tiny_vit()) == (4, 4)
    assert infer_patch_size(register_vit()) == (4, 4)  # from its patch-embedding convolution
    assert infer_patch_size(load_model("torchvision:resnet18", None).module) is None
    # 8 x 8 patches behind 8 extra tokens: without the patch size, 72 tokens look like 8 x 9
    out = torch.randn(2, 8 + 64, 5)
    grid = to_grid(out, "blocks.3", (32, 32), patch=(4, 4))
    torch.testing.assert_close(grid, out[:, 8:, :].transpose(1, 2).reshape(2, 5, 8, 8))
    assert to_grid(out, "blocks.3", (32, 32)).shape[2:] == (8, 9)
    # non-square images: 24 x 48 with 4 x 4 patches -> 6 x 12, class token dropped
    wide = torch.randn(1, 1 + 72, 3)
    assert to_grid(wide, "x", (24, 48), patch=(4, 4)).shape == (1, 3, 6, 12)


@pytest.mark.slow
def test_torchvision_vit_b_16_blocks_become_14_by_14_maps() -> None:
    model = load_model("torchvision:vit_b_16", None).module
    layer = "encoder.layers.encoder_layer_11"
    captured: dict[str, torch.Tensor] = {}
    find_layers(model, [layer])[layer].register_forward_hook(
        lambda _m, _i, out: captured.__setitem__("a", out)
    )
    with torch.no_grad():
        model(torch.randn(1, 3, 224, 224, generator=torch.Generator().manual_seed(0)))
    out = captured["a"]
    assert out.shape == (1, 197, 768)
    grid = to_grid(out, layer, (224, 224), infer_patch_size(model))
    assert grid.shape == (1, 768, 14, 14)
    # patch (row r, column c) is token 1 + 14 r + c: the class token is dropped
    torch.testing.assert_close(grid[0, :, 2, 5], out[0, 1 + 14 * 2 + 5, :])


def test_vit_on_the_wrong_image_size_is_one_clear_line(probe: ProbeSet, tmp_path: Path) -> None:
    code, out = lce(
        "extract", "torchvision:vit_b_16", "--layer", "encoder.layers.encoder_layer_0",
        "--probe", f"broden:{probe.root}", "--lake", tmp_path / "lake", "--workers", "0",
    )  # fmt: skip
    assert code != 0
    assert out.strip().startswith("error:") and len(out.strip().splitlines()) == 1, out
    assert "24 x 24" in out


def test_timm_vit(tmp_path: Path) -> None:
    pytest.importorskip("timm")
    model = load_model("timm:vit_tiny_patch16_224", None).module
    assert infer_patch_size(model) == (16, 16)
    captured: dict[str, torch.Tensor] = {}
    find_layers(model, ["blocks.11"])["blocks.11"].register_forward_hook(
        lambda _m, _i, out: captured.__setitem__("a", out)
    )
    with torch.no_grad():
        model(torch.zeros(1, 3, 224, 224))
    grid = to_grid(captured["a"], "blocks.11", (224, 224), infer_patch_size(model))
    assert grid.shape == (1, 192, 14, 14)
    assert type(model).__module__.startswith("timm.")  # timm built it, not a torchvision fallback

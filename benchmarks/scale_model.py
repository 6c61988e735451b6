"""Stand-in models for the scale benchmark: ResNet-50-shaped activations at almost no cost.

``layer4_model`` gives (2048, 7, 7) and ``layer3_model`` (1024, 14, 14) at the submodule named
``relu``, for any input size (the image is average-pooled to the grid first), so the engine can
be fed Broden-sized probe sets without a real forward pass. Load them as ``module:function``
with this folder on the path::

    PYTHONPATH=benchmarks lce extract scale_model:layer4_model --layer relu --probe broden:DIR

The layer: pool (to the grid) -> a fixed random 3x3 convolution to 64 channels -> tanh (so each
cell sees its neighbourhood through a nonlinear code, and activations are spatially smooth like
a network's) -> a fixed random 1x1 convolution to C channels plus a fixed random projection of
the code's mean over the whole grid (``glob``: a term shared by every cell of the image, as a
deep unit's large receptive field shares context, so a unit's strongest cells cluster in the
images that suit it), standardised per unit -> ``gate`` -> ``relu``. The gate is
``s_u * expm1(z - t_u)``: monotone, so a unit fires (> 0) exactly where its standardised
response z exceeds t_u, and exponential above it, which gives the heavy right tail of trained
units.

Calibration, on generator images with a seed of their own (never the probe's files; 256 images
at 7 x 7, 64 at 14 x 14: the same number of cells): t_u is the empirical (1 - f_u) quantile of
unit u's z, so the share of a unit's cells that fire is f_u, drawn per unit from Beta(2, 8)
(mean 0.20, median 0.18, 5-95% 0.04-0.44), with 1% of units dead (never fire), as trained
ResNet-50 layer4 units are sparse (typically 10-30% of cells nonzero after the ReLU, with some
dead units). The scale s_u is log-normal (sigma 0.5) so units differ in magnitude as real ones
do. Everything is seeded: the same factory gives the same weights in every process.

Measured on the probe's first 1,024 images (layer4; benchmarks/README.md has layer3 too): share
of nonzero cells per unit 5/50/95% = 0.03/0.18/0.43; per unit the 99th percentile of the
positive values is 6.4 times their median and the maximum 11 times; 4.6% of (unit, image)
pairs hold a cell above the unit's top-0.5% threshold, 5.3 cells of 49 each (13% and 1.9
without the shared term).

``LCE_BENCH_CHANNELS`` overrides the channel count (tests use a few); ``LCE_BENCH_IMAGE_SIZE``
sets the calibration images' size (the harness passes the probe's, default 28).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import numpy as np
import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent))
from scale_probe import CHUNK, render_chunk  # noqa: E402

HIDDEN = 64
# Weight of the image-global term against the local one (random weights of std 1 on the grid
# mean of the hidden code; the mean varies less than a cell, hence more than 1).
GLOBAL_WEIGHT = 4.0
FIRE_BETA = (2.0, 8.0)  # Beta(a, b) of each unit's share of firing cells
DEAD_SHARE = 0.01
SCALE_SIGMA = 0.5
CALIBRATION_SEED = 987_654
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
DEAD_BIAS = -1e4
CALIBRATION_CELLS = CHUNK * 7 * 7


class Gate(nn.Module):
    """s_u * expm1(x): negative below 0 (the ReLU clears it), exponential above."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.register_buffer("scale", torch.ones(channels, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.scale * torch.expm1(x.clamp(max=30.0))


class StandIn(nn.Module):
    def __init__(self, grid: int, channels: int) -> None:
        super().__init__()
        self.pool = nn.AdaptiveAvgPool2d(grid)
        self.mix = nn.Conv2d(3, HIDDEN, 3, padding=1)
        self.squash = nn.Tanh()
        self.proj = nn.Conv2d(HIDDEN, channels, 1)
        self.context = nn.AdaptiveAvgPool2d(1)
        self.glob = nn.Conv2d(HIDDEN, channels, 1, bias=False)
        self.gate = Gate(channels)
        self.relu = nn.ReLU()

    def response(self, x: torch.Tensor) -> torch.Tensor:
        h = self.squash(self.mix(self.pool(x)))
        return self.proj(h) + self.glob(self.context(h))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.relu(self.gate(self.response(x)))


def calibration_images(image_size: int, count: int = CHUNK) -> torch.Tensor:
    """``count`` generator images (not the probe's), ImageNet-normalised as the engine feeds
    them (``--normalize auto`` is imagenet for a module:function model)."""
    chunk = render_chunk(CALIBRATION_SEED, 0, image_size, image_size, labels=False)
    x = torch.from_numpy(chunk.images[:count]).permute(0, 3, 1, 2).float().div_(255.0)
    mean = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    return (x - mean) / std


def build(grid: int, channels: int, seed: int, image_size: int = 28) -> StandIn:
    """The stand-in with its random weights and per-unit calibration (see the module doc)."""
    gen = torch.Generator().manual_seed(seed)
    rng = np.random.default_rng(seed)
    model = StandIn(grid, channels)
    with torch.no_grad():
        model.mix.weight.copy_(torch.randn(model.mix.weight.shape, generator=gen) / 27**0.5 * 2)
        model.mix.bias.copy_(torch.randn(HIDDEN, generator=gen) * 0.5)
        model.proj.weight.copy_(torch.randn(model.proj.weight.shape, generator=gen))
        model.proj.bias.zero_()
        model.glob.weight.copy_(torch.randn(model.glob.weight.shape, generator=gen) * GLOBAL_WEIGHT)
        # CALIBRATION_CELLS cells per unit whatever the grid (256 images at 7 x 7)
        images = calibration_images(image_size, max(1, CALIBRATION_CELLS // grid**2))
        z = model.response(images).transpose(0, 1).reshape(channels, -1)
        mean, std = z.mean(dim=1), z.std(dim=1).clamp(min=1e-6)
        share = rng.beta(*FIRE_BETA, size=channels)
        share[rng.random(channels) < DEAD_SHARE] = 0.0
        ordered = np.sort(((z - mean[:, None]) / std[:, None]).numpy(), axis=1)
        rank = np.clip(
            np.round((1 - share) * ordered.shape[1]).astype(np.int64), 0, ordered.shape[1] - 1
        )
        cut = np.where(share > 0, ordered[np.arange(channels), rank], -DEAD_BIAS)
        model.proj.weight.div_(std.view(-1, 1, 1, 1))
        model.glob.weight.div_(std.view(-1, 1, 1, 1))
        model.proj.bias.copy_(-mean / std - torch.from_numpy(cut).float())
        model.gate.scale.copy_(
            torch.from_numpy(rng.lognormal(0.0, SCALE_SIGMA, size=channels)).float().view(-1, 1, 1)
        )
    return model.eval()


def _channels(default: int) -> int:
    return int(os.environ.get("LCE_BENCH_CHANNELS") or default)


def _image_size() -> int:
    return int(os.environ.get("LCE_BENCH_IMAGE_SIZE") or 28)


def layer4_model() -> nn.Module:
    """ResNet-50 layer4-shaped: (2048, 7, 7) at ``relu``."""
    return build(7, _channels(2048), seed=4, image_size=_image_size())


def layer3_model() -> nn.Module:
    """ResNet-50 layer3-shaped: (1024, 14, 14) at ``relu``."""
    return build(14, _channels(1024), seed=3, image_size=_image_size())

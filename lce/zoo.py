"""The demo's model zoo: one small CNN trained on the synthetic world with different objectives.

Each objective should leave a different trace in what the units learn: supervision on shape or
colour, rotation prediction, SimCLR-style contrast (with colour jitter, so colour is a nuisance),
denoising, colourisation (the encoder sees grey only), and a random-init control. Only the
encoder's weights are saved; heads and decoders are training scaffolding.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from extract import models
from lce.synth import COLORS, SHAPES, SceneSpec, render_image, sample_scene

IMAGE_SIZE = 64
DISSECT_LAYER = "layer3"
FEATURES = 64


class TinyNet(nn.Module):
    """Four conv blocks, 64 px in; layer3 (64 units, 8 x 8) is the dissected layer."""

    def __init__(self, gray_input: bool = False) -> None:
        super().__init__()
        self.gray_input = gray_input

        def block(cin: int, cout: int, pool: bool) -> nn.Sequential:
            layers: list[nn.Module] = [
                nn.Conv2d(cin, cout, 3, padding=1),
                nn.BatchNorm2d(cout),
                nn.ReLU(),
            ]
            if pool:
                layers.append(nn.MaxPool2d(2))
            return nn.Sequential(*layers)

        self.stem = block(1 if gray_input else 3, 12, True)  # 32
        self.layer1 = block(12, 24, True)  # 16
        self.layer2 = block(24, 48, True)  # 8
        self.layer3 = block(48, FEATURES, False)  # 8

    def feature_map(self, x: torch.Tensor) -> torch.Tensor:
        if self.gray_input:
            # the colourisation model never sees colour: grey in, whatever the caller passes
            x = (
                (0.299 * x[:, 0:1] + 0.587 * x[:, 1:2] + 0.114 * x[:, 2:3])
                if x.shape[1] == 3
                else x
            )
        return self.layer3(self.layer2(self.layer1(self.stem(x))))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Pooled features (the frozen representation the task benchmarks probe)."""
        return self.feature_map(x).mean(dim=(2, 3))


def tinynet() -> nn.Module:
    """`lce extract lce.zoo:tinynet --weights ...` builds the architecture through this."""
    return TinyNet()


def tinynet_gray() -> nn.Module:
    return TinyNet(gray_input=True)


@dataclass(frozen=True)
class ZooEntry:
    name: str
    objective: str
    factory: str  # module:function spec for `lce extract`
    why: str


ZOO = [
    ZooEntry("shape-sup", "shape", "lce.zoo:tinynet", "supervised on the main object's shape"),
    ZooEntry("colour-sup", "colour", "lce.zoo:tinynet", "supervised on the main object's colour"),
    ZooEntry(
        "rotation", "rotation", "lce.zoo:tinynet", "predicts which of 4 rotations was applied"
    ),
    ZooEntry(
        "simclr", "simclr", "lce.zoo:tinynet", "contrastive, colour jitter makes colour a nuisance"
    ),
    ZooEntry(
        "denoise", "denoise", "lce.zoo:tinynet", "reconstructs the clean image from a noisy one"
    ),
    ZooEntry("colourise", "colourise", "lce.zoo:tinynet_gray", "sees grey, predicts the colours"),
    ZooEntry("random", "random", "lce.zoo:tinynet", "random initialisation, the control"),
]

# the very constants `lce extract` normalises with, so training matches dissection
IMAGENET_MEAN = torch.tensor(models.IMAGENET_MEAN).view(1, 3, 1, 1)
IMAGENET_STD = torch.tensor(models.IMAGENET_STD).view(1, 3, 1, 1)


def normalise(images: torch.Tensor) -> torch.Tensor:
    """The same ImageNet normalisation `lce extract` applies, so training matches dissection."""
    return (images - IMAGENET_MEAN) / IMAGENET_STD


def render_batch(specs: list[SceneSpec]) -> torch.Tensor:
    """(n, 3, 64, 64) float in [0, 1]."""
    arr = np.stack([render_image(s, IMAGE_SIZE) for s in specs])
    return torch.from_numpy(arr).permute(0, 3, 1, 2).float() / 255.0


def training_pool(n: int, seed: int) -> tuple[torch.Tensor, list[SceneSpec]]:
    rng = np.random.default_rng(seed)
    specs = [sample_scene(rng, unannotated=False) for _ in range(n)]
    return render_batch(specs), specs


class Decoder(nn.Module):
    """8 x 8 features -> a 32 x 32 image (half size keeps training cheap on two cores)."""

    def __init__(self) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Upsample(scale_factor=2), nn.Conv2d(FEATURES, 32, 3, padding=1), nn.ReLU(),
            nn.Upsample(scale_factor=2), nn.Conv2d(32, 3, 3, padding=1),
        )  # fmt: skip

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


def colour_jitter(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """Strong colour jitter, per image: channel permutation, channel gains, sometimes grey."""
    n = x.shape[0]
    perms = torch.argsort(torch.rand(n, 3, generator=gen), dim=1)
    out = torch.gather(x, 1, perms.view(n, 3, 1, 1).expand_as(x))
    out = (out * (0.6 + 0.8 * torch.rand(n, 3, 1, 1, generator=gen))).clamp(0, 1)
    grey = torch.rand(n, 1, 1, 1, generator=gen) < 0.2
    return torch.where(grey, out.mean(dim=1, keepdim=True).expand_as(out), out)


def random_crop_flip(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """Random resized crops (62-100% of the side) and horizontal flips, as one affine warp."""
    n = x.shape[0]
    scale = 0.62 + 0.38 * torch.rand(n, generator=gen)
    shift = (1 - scale).unsqueeze(1) * (2 * torch.rand(n, 2, generator=gen) - 1)
    flip = torch.where(torch.rand(n, generator=gen) < 0.5, -1.0, 1.0)
    theta = torch.zeros(n, 2, 3)
    theta[:, 0, 0] = scale * flip
    theta[:, 1, 1] = scale
    theta[:, :, 2] = shift
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", align_corners=False)


def nt_xent(a: torch.Tensor, b: torch.Tensor, temperature: float = 0.2) -> torch.Tensor:
    z = F.normalize(torch.cat([a, b]), dim=1)
    sim = z @ z.T / temperature
    n = a.shape[0]
    sim.fill_diagonal_(float("-inf"))
    targets = torch.cat([torch.arange(n, 2 * n), torch.arange(0, n)])
    return F.cross_entropy(sim, targets)


def _objective(
    entry: ZooEntry, model: TinyNet, specs: list[SceneSpec]
) -> tuple[list[nn.Module], Callable[..., torch.Tensor]]:
    """The heads to train beside the encoder, and the loss of one batch."""
    shape_ids = torch.tensor([SHAPES.index(s.main.shape) for s in specs])
    colour_ids = torch.tensor([list(COLORS).index(s.main.color) for s in specs])
    if entry.objective in ("shape", "colour"):
        targets = shape_ids if entry.objective == "shape" else colour_ids
        head = nn.Linear(FEATURES, len(SHAPES) if entry.objective == "shape" else len(COLORS))

        def supervised(x: torch.Tensor, idx: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
            return F.cross_entropy(head(model(normalise(x))), targets[idx])

        return [head], supervised
    if entry.objective == "rotation":
        head = nn.Linear(FEATURES, 4)

        def rotation(x: torch.Tensor, idx: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
            k = torch.randint(0, 4, (x.shape[0],), generator=gen)
            rotated = torch.stack(
                [torch.rot90(img, int(r), dims=(1, 2)) for img, r in zip(x, k, strict=True)]
            )
            return F.cross_entropy(head(model(normalise(rotated))), k)

        return [head], rotation
    if entry.objective == "simclr":
        proj = nn.Sequential(nn.Linear(FEATURES, 64), nn.ReLU(), nn.Linear(64, 32))

        def simclr(x: torch.Tensor, idx: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
            v1 = colour_jitter(random_crop_flip(x, gen), gen)
            v2 = colour_jitter(random_crop_flip(x, gen), gen)
            return nt_xent(proj(model(normalise(v1))), proj(model(normalise(v2))))

        return [proj], simclr
    if entry.objective in ("denoise", "colourise"):
        decoder = Decoder()

        def reconstruct(x: torch.Tensor, idx: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
            source = x
            if entry.objective == "denoise":
                source = (x + 0.25 * torch.randn(x.shape, generator=gen)).clamp(0, 1)
            target = F.avg_pool2d(x, 2)
            return F.mse_loss(torch.sigmoid(decoder(model.feature_map(normalise(source)))), target)

        return [decoder], reconstruct
    raise ValueError(f"unknown objective {entry.objective!r}")


def weights_key(entry: ZooEntry, steps: int, pool: int, seed: int) -> str:
    """Cache key: a rerun with the same recipe reuses the weights instead of retraining."""
    recipe = json.dumps([entry.name, entry.objective, entry.factory, steps, pool, seed, 2])
    return hashlib.sha256(recipe.encode()).hexdigest()[:12]


def train(
    entry: ZooEntry,
    out: Path,
    steps: int = 200,
    pool: int = 1500,
    seed: int = 1,
    batch: int = 32,
    data: tuple[torch.Tensor, list[SceneSpec]] | None = None,
    progress: Callable[[int], None] | None = None,
) -> Path:
    """Train one zoo model (or reuse its cached weights) and return the weights file."""
    key = weights_key(entry, steps, pool, seed)
    path = Path(out) / f"{entry.name}-{key}.pt"
    if path.is_file():
        if progress:
            progress(steps)
        return path
    torch.manual_seed(seed + sum(map(ord, entry.name)))
    model = TinyNet(gray_input=entry.factory.endswith("_gray"))
    if entry.objective != "random":
        images, specs = data if data is not None else training_pool(pool, seed)
        heads, loss_fn = _objective(entry, model, specs)
        params = list(model.parameters()) + [p for h in heads for p in h.parameters()]
        opt = torch.optim.Adam(params, lr=3e-3)
        gen = torch.Generator().manual_seed(seed)
        model.train()
        for _ in range(steps):
            idx = torch.randint(0, images.shape[0], (batch,), generator=gen)
            loss = loss_fn(images[idx], idx, gen)
            opt.zero_grad()
            loss.backward()
            opt.step()
            if progress:
                progress(1)
    elif progress:
        progress(steps)
    model.eval()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    torch.save(model.state_dict(), tmp)
    os.replace(tmp, path)
    return path


def load(entry: ZooEntry, weights: Path) -> TinyNet:
    model = TinyNet(gray_input=entry.factory.endswith("_gray"))
    model.load_state_dict(torch.load(weights, map_location="cpu", weights_only=True))
    return model.eval()

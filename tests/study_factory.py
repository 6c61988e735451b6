"""A small study made by the tests: a probe set of a few images and three small CNNs
(tests/probe_factory.py's SmallCNN with their own random weights), two layers each."""

from __future__ import annotations

from pathlib import Path

import torch

from tests.probe_factory import make_probe, small_cnn

SPEC = "tests.probe_factory:small_cnn"
MODELS = ("alpha", "beta", "gamma")
LAYERS = ("block1", "block2")


def write_weights(path: Path, seed: int) -> Path:
    model = small_cnn()
    torch.manual_seed(seed)
    for p in model.parameters():
        torch.nn.init.normal_(p, std=0.5)
    torch.save(model.state_dict(), path)
    return path


def make_study(folder: Path, n_images: int = 6, extra: str = "", models: tuple = MODELS) -> Path:
    """study.toml in ``folder`` with its probe set and weights files beside it."""
    folder.mkdir(parents=True, exist_ok=True)
    if not (folder / "probe").exists():
        make_probe(folder / "probe", n_images=n_images, size=24, label_size=12)
    text = [
        '[probe]\npath = "broden:probe"\n',
        '[dissection]\nquantile = 0.05\nbasis = "raw"\nbatch_size = 2\ntop_images = 2\n'
        "checkpoint_every = 1\nnull_permutations = 1\n" + extra,
    ]
    for i, name in enumerate(models):
        write_weights(folder / f"{name}.pt", seed=i + 1)
        layers = ", ".join(f'"{x}"' for x in LAYERS)
        text.append(
            f'[[models]]\nname = "{name}"\nspec = "{SPEC}"\nweights = "{name}.pt"\n'
            f"layers = [{layers}]\n"
        )
    path = folder / "study.toml"
    path.write_text("\n".join(text))
    return path

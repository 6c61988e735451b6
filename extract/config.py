"""The settings of one extraction (``ExtractConfig``), their defaults and their checks.

Its own module so that the engine's parts (feed, passes, lake_write) can name the settings type
without importing the engine that imports them, and so the command line and the engine read the
same defaults.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from base.errors import LceError
from extract.models import DEFAULT_INIT_SEED, NORMALIZATIONS
from warehouse.lake import check_name

# Default seed of the null permutations (--null-seed): one seed for every run of a study, so
# each model is compared with the same shuffled pairs of images.
NULL_SEED = 0


@dataclass
class ExtractConfig:
    model: str
    layers: list[str]
    probe: Path
    lake: Path
    name: str | None = None
    weights: Path | None = None
    quantile: float = 0.005
    basis: str = "raw"
    batch_size: int = 16
    device: str = "auto"
    top_images: int = 5
    normalize: str = "auto"  # the model's own (registry, timm), else imagenet
    strict: bool = True
    skip_bad: bool = False
    cache: bool = True
    resume: bool = False
    new_study: bool = False
    workers: int = 0
    checkpoint_every: int = 20
    null_permutations: int = 0
    null_seed: int = NULL_SEED
    seed: int = DEFAULT_INIT_SEED  # random init of an architecture without --weights
    features: bool = True  # each image's spatially averaged vector per layer (image_features)
    progress: bool = True
    # runs.layer_order of the first layer: a study runs each (model, layer) as its own job and
    # records the layer's place in the model's list, so the primary layer stays the first one
    layer_offset: int = 0
    stop_after_batches: int | None = field(default=None, repr=False)  # testing hook


def check_config(cfg: ExtractConfig) -> None:
    if not 0 < cfg.quantile < 1:
        raise LceError(f"--quantile {cfg.quantile}: expected a number between 0 and 1")
    if cfg.basis not in {"raw", "upsampled"}:
        raise LceError(f"--basis {cfg.basis!r}: expected raw or upsampled")
    if cfg.normalize not in {"auto", *NORMALIZATIONS}:
        raise LceError(f"--normalize {cfg.normalize!r}: expected auto, {', '.join(NORMALIZATIONS)}")
    if cfg.batch_size < 1 or cfg.top_images < 0:
        raise LceError("--batch-size must be >= 1 and --top-images >= 0")
    if not 0 <= cfg.null_permutations <= 1000:
        raise LceError(f"--null-permutations {cfg.null_permutations}: expected 0 to 1000")
    if cfg.null_seed < 0:
        raise LceError(f"--null-seed {cfg.null_seed}: expected an integer >= 0")
    if not cfg.layers:
        raise LceError("give at least one --layer")
    if len(set(cfg.layers)) != len(cfg.layers):
        raise LceError(f"--layer given twice: {cfg.layers}")
    for layer in cfg.layers:
        check_name("--layer", layer)
    if cfg.name is not None:
        check_name("--name", cfg.name)

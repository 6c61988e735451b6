"""The settings of one extraction (``ExtractConfig``): each one's default, help text and check.

Its own module so that the engine's parts (feed, passes, lake_write) can name the settings type
without importing the engine that imports them, and so that the command line reads its defaults
and help texts from here instead of writing them a second time (``DEFAULTS``, ``HELP``). It
imports no torch: ``lce --help`` reads it.

Errors name the setting (``quantile``, ``new_study``), not a command-line flag: the engine is
also driven from Python (the demo, the tests). The flags are the settings' names with dashes,
``--non-strict`` and ``--no-cache`` being ``strict`` and ``cache`` switched off.
"""

from __future__ import annotations

import os
from dataclasses import MISSING, dataclass, field, fields
from pathlib import Path
from typing import Any

from base.errors import LceError
from warehouse.lake import check_name

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
# normalize's choices -> (mean, std) of RGB in [0, 1]. "auto" picks the model's own: the registry
# entry's, timm's pretrained config's, else imagenet.
NORMALIZATIONS: dict[str, tuple[tuple[float, ...], tuple[float, ...]]] = {
    "imagenet": (IMAGENET_MEAN, IMAGENET_STD),
    "none": ((0.0, 0.0, 0.0), (1.0, 1.0, 1.0)),
    "inception": ((0.5, 0.5, 0.5), (0.5, 0.5, 0.5)),
}
# Seed of the random initialisation of an architecture given without weights.
DEFAULT_INIT_SEED = 0
# Default seed of the null permutations: one seed for every run of a study, so each model is
# compared with the same shuffled pairs of images.
NULL_SEED = 0
# Default seed of the fold assignment (extract/folds.py): one per study, so every model's probe
# images fall into the same folds.
FOLD_SEED = 0
# The most folds a run may keep: each fold is a copy of the whole tally (units x concepts
# integers) on the device, and a leave-one-fold-out estimate gains nothing from more.
MAX_FOLDS = 100
# The command line's loader processes: half the cores, at most 4. ExtractConfig's own default
# stays 0 (load in-process), so a caller from Python (the demo, the tests) starts no processes
# unless it asks; the one setting whose two defaults differ, on purpose.
CLI_WORKERS = min(4, max(0, (os.cpu_count() or 1) // 2))


def setting(help: str, default: Any = MISSING) -> Any:
    """A dataclass field that carries its help text, for the command line to show."""
    return field(default=default, metadata={"help": help})


@dataclass
class ExtractConfig:
    model: str = setting(
        "A registry name (`lce models`), torchvision:<arch>, timm:<name> or module:function."
    )
    layers: list[str] = setting("Module path; repeat for several.")
    probe: Path = setting("Probe set: broden:PATH.")
    lake: Path = setting("Lake folder to write.")
    name: str | None = setting(
        "Model name in the lake (default: the registry name, else the weights file stem, else "
        "the arch).",
        None,
    )
    weights: Path | None = setting(
        "Checkpoint file: a state dict (weights_only=True), or for a registry name a local copy "
        "of its published checkpoint.",
        None,
    )
    quantile: float = setting("Top quantile q of the activation threshold.", 0.005)
    basis: str = setting("Threshold basis: raw (NetDissect) or upsampled (Dissect).", "raw")
    batch_size: int = setting("Images per forward pass.", 16)
    device: str = setting("auto, cpu or cuda.", "auto")
    top_images: int = setting("Top images kept per unit.", 5)
    normalize: str = setting(
        "auto (the model's own: registry / timm, else imagenet), imagenet, inception or none.",
        "auto",
    )
    strict: bool = setting(
        "Checkpoint keys must match the model's; off allows missing/unexpected keys.", True
    )
    skip_bad: bool = setting("Skip unreadable images/labels (counted in runs).", False)
    cache: bool = setting(
        "Keep the activations in a cache for passes 2 and 3; off runs the model again in each.",
        True,
    )
    resume: bool = setting("Continue an interrupted run from its checkpoint.", False)
    new_study: bool = setting("Start a new study in this lake (drops the old dissections).", False)
    workers: int = setting(
        "DataLoader worker processes (pass 3 on CPU with the cache reads labels in-process).", 0
    )
    checkpoint_every: int = setting("Batches between checkpoints (for resume).", 20)
    null_permutations: int = setting(
        "K null permutations: each unit's masks are also tallied against other images' labels, "
        "giving the null IoU that `--var interpretable_rule=null` compares with.",
        0,
    )
    null_seed: int = setting(
        "Seed of the null permutations (one per study: the same pairs).", NULL_SEED
    )
    folds: int = setting(
        "K folds of the probe images (an image's fold: a hash of its name and the fold seed); "
        "pass 3 also keeps each fold's tally (lake table unit_concept_tally_folds), for the "
        "leave-one-fold-out estimates; 1 keeps none.",
        5,
    )
    fold_seed: int = setting(
        "Seed of the fold assignment (one per study: the same folds for every model).", FOLD_SEED
    )
    seed: int = setting(
        "Seed of the random initialisation of an architecture given without weights "
        "(torchvision:, timm:, module:function): the same seed, the same random network; "
        "recorded in runs.settings as init_seed.",
        DEFAULT_INIT_SEED,
    )
    features: bool = setting(
        "Keep each image's spatially averaged activation vector per layer (lake table "
        "image_features, for the similarity marts; C x 4 bytes per image).",
        True,
    )
    progress: bool = setting("Show progress bars.", True)
    # runs.layer_order of the first layer: a study runs each (model, layer) as its own job and
    # records the layer's place in the model's list, so the primary layer stays the first one
    layer_offset: int = setting(
        "runs.layer_order of the first layer (a study's job of one layer).", 0
    )
    stop_after_batches: int | None = field(default=None, repr=False)  # testing hook


DEFAULTS: dict[str, Any] = {f.name: f.default for f in fields(ExtractConfig)}
HELP: dict[str, str] = {f.name: f.metadata.get("help", "") for f in fields(ExtractConfig)}


def check_config(cfg: ExtractConfig) -> None:
    """Refuse settings that no run can use, before any work, naming the setting."""
    if not 0 < cfg.quantile < 1:
        raise LceError(f"quantile {cfg.quantile}: expected a number between 0 and 1")
    if cfg.basis not in {"raw", "upsampled"}:
        raise LceError(f"basis {cfg.basis!r}: expected raw or upsampled")
    if cfg.normalize not in {"auto", *NORMALIZATIONS}:
        raise LceError(f"normalize {cfg.normalize!r}: expected auto, {', '.join(NORMALIZATIONS)}")
    if cfg.batch_size < 1 or cfg.top_images < 0:
        raise LceError("batch_size must be >= 1 and top_images >= 0")
    if not 0 <= cfg.null_permutations <= 1000:
        raise LceError(f"null_permutations {cfg.null_permutations}: expected 0 to 1000")
    if cfg.null_seed < 0:
        raise LceError(f"null_seed {cfg.null_seed}: expected an integer >= 0")
    if isinstance(cfg.folds, bool) or not isinstance(cfg.folds, int):
        raise LceError(f"folds {cfg.folds!r}: expected an integer from 1 to {MAX_FOLDS}")
    if not 1 <= cfg.folds <= MAX_FOLDS:
        raise LceError(f"folds {cfg.folds}: expected an integer from 1 to {MAX_FOLDS}")
    if isinstance(cfg.fold_seed, bool) or not isinstance(cfg.fold_seed, int) or cfg.fold_seed < 0:
        raise LceError(f"fold_seed {cfg.fold_seed!r}: expected an integer >= 0")
    if not cfg.layers:
        raise LceError("layers: give at least one layer")
    if len(set(cfg.layers)) != len(cfg.layers):
        raise LceError(f"layers: a layer is given twice: {cfg.layers}")
    for layer in cfg.layers:
        check_name("layer", layer)
    if cfg.name is not None:
        check_name("name", cfg.name)

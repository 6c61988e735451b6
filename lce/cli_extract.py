"""`lce extract` (dissect model layers into the lake) and `lce models` (the model registry).

The options are named types, so the command's signature reads as a list of settings and each
help text sits beside its option."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from base.errors import LceError
from lce.cli_common import LakeOpt, console, err, friendly, say
from warehouse.paths import lake_dir

ModelArg = Annotated[
    str,
    typer.Argument(
        help="A registry name (`lce models`), torchvision:<arch>, timm:<name> or module:function."
    ),
]
LayerOpt = Annotated[list[str], typer.Option("--layer", help="Module path; repeat for several.")]
ProbeOpt = Annotated[str, typer.Option(help="Probe set: broden:PATH.")]
NameOpt = Annotated[
    str | None,
    typer.Option(
        help="Model name in the lake (default: the registry name, else the weights file stem, else the arch)."
    ),
]
WeightsOpt = Annotated[
    Path | None,
    typer.Option(
        help="Checkpoint file: a state dict (weights_only=True), or for a registry name a "
        "local copy of its published checkpoint."
    ),
]
QuantileOpt = Annotated[float, typer.Option(help="Top quantile q of the activation threshold.")]
BasisOpt = Annotated[
    str, typer.Option(help="Threshold basis: raw (NetDissect) or upsampled (Dissect).")
]
BatchSizeOpt = Annotated[int, typer.Option(help="Images per forward pass.")]
DeviceOpt = Annotated[str, typer.Option(help="auto, cpu or cuda.")]
TopImagesOpt = Annotated[int, typer.Option(help="Top images kept per unit.")]
NormalizeOpt = Annotated[
    str,
    typer.Option(
        help="auto (the model's own: registry / timm, else imagenet), imagenet, inception or none."
    ),
]
NonStrictOpt = Annotated[
    bool, typer.Option("--non-strict", help="Allow missing/unexpected checkpoint keys.")
]
SkipBadOpt = Annotated[
    bool, typer.Option("--skip-bad", help="Skip unreadable images/labels (counted in runs).")
]
NoCacheOpt = Annotated[
    bool,
    typer.Option("--no-cache", help="Second forward pass instead of the activation cache."),
]
ResumeOpt = Annotated[
    bool, typer.Option("--resume", help="Continue an interrupted run from its checkpoint.")
]
NewStudyOpt = Annotated[
    bool,
    typer.Option("--new-study", help="Start a new study in this lake (drops the old dissections)."),
]
WorkersOpt = Annotated[
    int,
    typer.Option(
        help="DataLoader worker processes (pass 2 on CPU with the cache reads labels in-process)."
    ),
]
DEFAULT_WORKERS = min(4, max(0, (os.cpu_count() or 1) // 2))
CheckpointEveryOpt = Annotated[
    int, typer.Option(help="Batches between checkpoints (for --resume).")
]
NullPermutationsOpt = Annotated[
    int,
    typer.Option(
        help="K null permutations: each unit's masks are also tallied against other images' "
        "labels, giving the null IoU that `--var interpretable_rule=null` compares with."
    ),
]
NullSeedOpt = Annotated[
    int, typer.Option(help="Seed of the null permutations (one per study: the same pairs).")
]
SeedOpt = Annotated[
    int,
    typer.Option(
        help="Seed of the random initialisation of an architecture given without --weights "
        "(torchvision:, timm:, module:function): the same seed, the same random network; "
        "recorded in runs.settings as init_seed."
    ),
]
FeaturesOpt = Annotated[
    bool,
    typer.Option(
        "--features/--no-features",
        help="Keep each image's spatially averaged activation vector per layer "
        "(lake table image_features, for the similarity marts; C x 4 bytes per image).",
    ),
]


def parse_probe(spec: str) -> Path:
    kind, sep, path = spec.partition(":")
    if kind != "broden" or not sep or not path:
        raise LceError(f"--probe {spec!r}: expected broden:PATH")
    return Path(path)


@friendly
def extract(
    model: ModelArg,
    layer: LayerOpt,
    probe: ProbeOpt,
    lake: LakeOpt = None,
    name: NameOpt = None,
    weights: WeightsOpt = None,
    quantile: QuantileOpt = 0.005,
    basis: BasisOpt = "raw",
    batch_size: BatchSizeOpt = 16,
    device: DeviceOpt = "auto",
    top_images: TopImagesOpt = 5,
    normalize: NormalizeOpt = "auto",
    non_strict: NonStrictOpt = False,
    skip_bad: SkipBadOpt = False,
    no_cache: NoCacheOpt = False,
    resume: ResumeOpt = False,
    new_study: NewStudyOpt = False,
    workers: WorkersOpt = DEFAULT_WORKERS,
    checkpoint_every: CheckpointEveryOpt = 20,
    null_permutations: NullPermutationsOpt = 0,
    null_seed: NullSeedOpt = 0,
    seed: SeedOpt = 0,
    features: FeaturesOpt = True,
) -> None:
    """Dissect model layers on a probe set: exact thresholds and unit x concept tallies -> lake."""
    from extract.engine import ExtractConfig, run_extract

    cfg = ExtractConfig(
        model=model, layers=layer, probe=parse_probe(probe), lake=lake_dir(lake), name=name,
        weights=weights, quantile=quantile, basis=basis, batch_size=batch_size, device=device,
        top_images=top_images, normalize=normalize, strict=not non_strict, skip_bad=skip_bad,
        cache=not no_cache, resume=resume, new_study=new_study, workers=workers,
        checkpoint_every=max(1, checkpoint_every), null_permutations=null_permutations,
        null_seed=null_seed, seed=seed,
        features=features, progress=err.is_terminal,
    )  # fmt: skip
    result = run_extract(cfg)
    if result.written:
        for layer_result in result.layers:
            say(
                f"{result.model} {layer_result.layer}: {layer_result.n_units} units, "
                f"{result.n_images} images"
                + (f" ({len(result.skipped)} skipped)" if result.skipped else "")
                + f", {result.seconds:.1f} s on {result.device} -> {cfg.lake}"
            )


@friendly
def models() -> None:
    """List the model registry: the paper's ResNet-50s and where their checkpoints come from."""
    from extract.registry import FORMATS, rows

    table = Table(title="Model registry (lce extract NAME ...)", title_justify="left")
    table.add_column("name", no_wrap=True)
    for column in ("source", "checkpoint", "format", "normalisation", "checksum"):
        table.add_column(column, overflow="fold")
    for row in rows():
        table.add_row(
            row["name"], f"{row['model']}: {row['source']}", row["checkpoint"], row["format"],
            row["normalisation"], row["checksum"],
        )  # fmt: skip
    console.print(table)
    formats = Table(title="Formats and their conversion to torchvision", title_justify="left")
    formats.add_column("format", no_wrap=True)
    formats.add_column("conversion", overflow="fold")
    for name, text in FORMATS.items():
        formats.add_row(name, text)
    console.print(formats)
    console.print(
        "Checkpoints download on first use into $LCE_CACHE/models (default $XDG_CACHE_HOME/lce, "
        "else ~/.cache/lce); "
        "offline, pass a local copy with --weights FILE."
    )

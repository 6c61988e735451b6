"""`lce extract` (dissect model layers into the lake) and `lce models` (the model registry).

The options are named types, so the command's signature reads as a list of settings. Their
defaults and help texts are ``extract.config``'s (``DEFAULTS``, ``HELP``), written once there for
the command line and the engine alike."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from base.errors import LceError
from extract.config import CLI_WORKERS, DEFAULTS, HELP
from lce.cli_common import LakeOpt, console, err, friendly, say
from warehouse.paths import lake_dir

ModelArg = Annotated[str, typer.Argument(help=HELP["model"])]
LayerOpt = Annotated[list[str], typer.Option("--layer", help=HELP["layers"])]
ProbeOpt = Annotated[str, typer.Option(help=HELP["probe"])]
NameOpt = Annotated[str | None, typer.Option(help=HELP["name"])]
WeightsOpt = Annotated[Path | None, typer.Option(help=HELP["weights"])]
QuantileOpt = Annotated[float, typer.Option(help=HELP["quantile"])]
BasisOpt = Annotated[str, typer.Option(help=HELP["basis"])]
BatchSizeOpt = Annotated[int, typer.Option(help=HELP["batch_size"])]
DeviceOpt = Annotated[str, typer.Option(help=HELP["device"])]
TopImagesOpt = Annotated[int, typer.Option(help=HELP["top_images"])]
NormalizeOpt = Annotated[str, typer.Option(help=HELP["normalize"])]
StrictOpt = Annotated[bool, typer.Option("--strict/--non-strict", help=HELP["strict"])]
SkipBadOpt = Annotated[bool, typer.Option("--skip-bad", help=HELP["skip_bad"])]
CacheOpt = Annotated[bool, typer.Option("--cache/--no-cache", help=HELP["cache"])]
ResumeOpt = Annotated[bool, typer.Option("--resume", help=HELP["resume"])]
NewStudyOpt = Annotated[bool, typer.Option("--new-study", help=HELP["new_study"])]
WorkersOpt = Annotated[
    int, typer.Option(help=HELP["workers"] + " Here: half the cores, at most 4.")
]
CheckpointEveryOpt = Annotated[int, typer.Option(help=HELP["checkpoint_every"])]
NullPermutationsOpt = Annotated[int, typer.Option(help=HELP["null_permutations"])]
NullSeedOpt = Annotated[int, typer.Option(help=HELP["null_seed"])]
SeedOpt = Annotated[int, typer.Option(help=HELP["seed"])]
FoldsOpt = Annotated[int, typer.Option(help=HELP["folds"])]
FoldSeedOpt = Annotated[int, typer.Option(help=HELP["fold_seed"])]
FeaturesOpt = Annotated[bool, typer.Option("--features/--no-features", help=HELP["features"])]


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
    name: NameOpt = DEFAULTS["name"],
    weights: WeightsOpt = DEFAULTS["weights"],
    quantile: QuantileOpt = DEFAULTS["quantile"],
    basis: BasisOpt = DEFAULTS["basis"],
    batch_size: BatchSizeOpt = DEFAULTS["batch_size"],
    device: DeviceOpt = DEFAULTS["device"],
    top_images: TopImagesOpt = DEFAULTS["top_images"],
    normalize: NormalizeOpt = DEFAULTS["normalize"],
    strict: StrictOpt = DEFAULTS["strict"],
    skip_bad: SkipBadOpt = DEFAULTS["skip_bad"],
    cache: CacheOpt = DEFAULTS["cache"],
    resume: ResumeOpt = DEFAULTS["resume"],
    new_study: NewStudyOpt = DEFAULTS["new_study"],
    workers: WorkersOpt = CLI_WORKERS,
    checkpoint_every: CheckpointEveryOpt = DEFAULTS["checkpoint_every"],
    null_permutations: NullPermutationsOpt = DEFAULTS["null_permutations"],
    null_seed: NullSeedOpt = DEFAULTS["null_seed"],
    seed: SeedOpt = DEFAULTS["seed"],
    folds: FoldsOpt = DEFAULTS["folds"],
    fold_seed: FoldSeedOpt = DEFAULTS["fold_seed"],
    features: FeaturesOpt = DEFAULTS["features"],
) -> None:
    """Dissect model layers on a probe set: exact thresholds and unit x concept tallies -> lake."""
    from extract.engine import ExtractConfig, run_extract

    cfg = ExtractConfig(
        model=model, layers=layer, probe=parse_probe(probe), lake=lake_dir(lake), name=name,
        weights=weights, quantile=quantile, basis=basis, batch_size=batch_size, device=device,
        top_images=top_images, normalize=normalize, strict=strict, skip_bad=skip_bad,
        cache=cache, resume=resume, new_study=new_study, workers=workers,
        checkpoint_every=max(1, checkpoint_every), null_permutations=null_permutations,
        null_seed=null_seed, seed=seed, folds=folds, fold_seed=fold_seed,
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

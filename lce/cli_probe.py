"""`lce probe ...`: make, fetch, convert, label and check probe sets (Broden layout)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.markup import escape
from rich.table import Table

from base.errors import LceError
from lce.cli_common import console, err, friendly, say

if TYPE_CHECKING:
    from extract.probe_info import CategoryInfo

probe_app = typer.Typer(help="Probe sets.", no_args_is_help=True)


@probe_app.command("synth")
@friendly
def probe_synth(
    out: Annotated[Path, typer.Argument(help="Folder to write (must not exist or be empty).")],
    n: Annotated[int, typer.Option("--n", help="Images.")] = 400,
    size: Annotated[int, typer.Option(help="Image side in pixels (label maps are half).")] = 64,
    seed: Annotated[int, typer.Option(help="Random seed (same seed, same probe set).")] = 7,
) -> None:
    """Write the synthetic probe set (Broden layout) of the embedded demo world."""
    from lce import synth

    if n < 1 or size < 8 or size % 2:
        raise LceError("--n must be >= 1 and --size an even number >= 8")
    synth.write_probe(out, n=n, size=size, seed=seed)
    say(f"wrote {n} images ({size} px, label maps {size // 2} px) to {out}")


@probe_app.command("get")
@friendly
def probe_get(
    name: Annotated[str, typer.Argument(help="broden1_224 or broden1_227.")],
    to: Annotated[
        Path | None, typer.Option(help="Folder to put it in \\[default: $LCE_HOME/probes].")
    ] = None,
    url: Annotated[
        str | None, typer.Option(help="Download from this address instead (a mirror).")
    ] = None,
    keep_archive: Annotated[
        bool, typer.Option("--keep-archive", help="Keep the zip after unpacking.")
    ] = False,
) -> None:
    """Download an official Broden probe set (resumable, checksummed) and unpack it safely."""
    from rich.progress import DownloadColumn, Progress, TransferSpeedColumn

    from lce import probe_get as probe_get_mod

    with Progress(*Progress.get_default_columns(), DownloadColumn(), TransferSpeedColumn(),
                  console=err, disable=not err.is_terminal) as bar:  # fmt: skip
        task = bar.add_task(f"downloading {name}", total=None)
        path = probe_get_mod.get_probe(
            name, to, url, progress=lambda done, total: bar.update(task, completed=done, total=total),
            keep_archive=keep_archive,
        )  # fmt: skip
    console.print(f"{name}: {path} (use --probe broden:{path})")


@probe_app.command("info")
@friendly
def probe_info_cmd(
    path: Annotated[Path, typer.Argument(help="Probe set folder (Broden layout).")],
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of tables.")] = False,
) -> None:
    """Images, sizes, categories, concepts, label pixels and coverage, and every problem found."""
    import json

    from extract.probe_info import probe_info

    info = probe_info(path)
    if as_json:
        print(json.dumps(info.to_dict(), indent=2))
    else:
        sizes = ", ".join(f"{k} ({v})" for k, v in info.image_sizes.items())
        labels = ", ".join(f"{k} ({v})" for k, v in info.label_sizes.items())
        console.print(f"{info.path}: {info.images} images ({sizes}); label maps {labels}; "
                      f"{info.labels} labels")  # fmt: skip
        table = Table("category", "concepts defined", "concepts occurring", "images annotated",
                      "image coverage", "label pixels", "image-level labels")  # fmt: skip
        for c in info.categories:
            table.add_row(c.name, str(c.concepts), str(c.concepts_occurring),
                          str(c.images_annotated), f"{c.image_coverage:.1%}", str(c.label_pixels),
                          str(c.image_labels))  # fmt: skip
        console.print(table)
        for c in info.categories:
            say(concept_line(c))
        for problem in info.problems:
            console.print(f"[yellow]problem:[/] {escape(problem)}", highlight=False, soft_wrap=True)
        console.print(f"{len(info.problems)} problem(s)" if info.problems else "no problems found")
    if info.problems:
        raise typer.Exit(1)


def concept_line(c: CategoryInfo) -> str:
    """'object: disc 1,234 px, square 987 px; never occurring: star' (largest first)."""
    found = [f"{name} {count:,} px" for name, count in c.concept_pixels.items()]
    found += [f"{name} {count:,} image(s)" for name, count in c.concept_images.items()]
    line = f"{c.name}: " + (", ".join(found) if found else "no concept occurs")
    if c.never_occurring:
        line += f"; defined, never occurring: {', '.join(c.never_occurring)}"
    return line


@probe_app.command("from")
@friendly
def probe_from(
    fmt: Annotated[
        str, typer.Argument(metavar="FORMAT", help="ade20k, voc, coco-panoptic or masks.")
    ],
    src: Annotated[
        Path, typer.Argument(help="The dataset folder, in its own layout (guide: Get a probe set).")
    ],
    out: Annotated[Path, typer.Argument(help="Probe set folder to write (must not exist).")],
    size: Annotated[int, typer.Option(help="Image side in pixels.")] = 224,
    label_size: Annotated[
        int | None, typer.Option(help="Label map side in pixels \\[default: half of --size].")
    ] = None,
) -> None:
    """Convert a segmentation dataset into a probe set (Broden layout), all or nothing."""
    from extract.probe_convert import convert

    n = convert(fmt, src, out, size=size, label_size=label_size)
    console.print(f"wrote {n} images to {out}")


@probe_app.command("segment")
@friendly
def probe_segment(
    images: Annotated[Path, typer.Argument(help="Folder of images (searched recursively).")],
    out: Annotated[Path, typer.Argument(help="Probe set folder to write (must not exist).")],
    segmenter: Annotated[
        str,
        typer.Option(
            help="A torchvision segmentation architecture (deeplabv3_resnet50, ...) or module:function."
        ),
    ],
    classes: Annotated[
        Path, typer.Option(help="CSV id,name,category: every class id the segmenter outputs.")
    ],
    weights: Annotated[Path | None, typer.Option(help="The segmenter's state dict file.")] = None,
    colour_names: Annotated[
        bool, typer.Option("--colour-names", help="Add a color category (11 basic colour terms).")
    ] = False,
    size: Annotated[int, typer.Option(help="Image side in pixels.")] = 224,
    label_size: Annotated[
        int | None, typer.Option(help="Label map side in pixels \\[default: half of --size].")
    ] = None,
    batch_size: Annotated[int, typer.Option(help="Images per forward pass.")] = 8,
    device: Annotated[str, typer.Option(help="auto, cpu or cuda.")] = "auto",
) -> None:
    """Label a folder of images with a segmentation model into a probe set (Dissect's way)."""
    from rich.progress import MofNCompleteColumn, Progress

    from extract.probe_segment import SegmentConfig, run_segment

    with Progress(*Progress.get_default_columns(), MofNCompleteColumn(), console=err,
                  disable=not err.is_terminal) as bar:  # fmt: skip
        task = bar.add_task("segmenting", total=None)
        n = run_segment(
            SegmentConfig(
                images=images, out=out, segmenter=segmenter, classes=classes, weights=weights,
                colour=colour_names, size=size, label_size=label_size, batch_size=batch_size,
                device=device,
                progress=lambda done, total: bar.update(task, completed=done, total=total),
            )
        )  # fmt: skip
    console.print(f"wrote {n} images to {out}")

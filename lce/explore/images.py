"""Top images as the Units, Gallery and Concept pages draw them: the probe folder they come
from, and each image with its S > T mask outlined (fct_unit_top_images, fct_unit_top_maps).

Units whose best match is the background (a null concept) are named so on every page."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from base.named_files import Folder
from warehouse.query import query

NO_CONCEPT = "(background: no concept)"
NO_CATEGORY = "(none)"
TOP_IMAGES = "fct_unit_top_images"  # the mart the pages read top images from
OUTLINE_RGB = (255, 0, 255)  # magenta: rare in photographs, clear on dark and light regions
TILE_IMAGE_PX = 112
DARKEN_OUTSIDE = 0.2  # the darkened look: pixels outside the mask keep a fifth of their value
LOOKS = {"outline": "outline the mask", "darken": "darken outside the mask"}


def run_probe_dir(db: Path, model: str, layer: str) -> str | None:
    """The probe folder the extraction of (model, layer) recorded (runs.probe is
    ``broden:<path>``), or None when the run names none (precomputed labels, older files)."""
    frame = query(
        db,
        f"select probe_dir from {TOP_IMAGES} where model = ? and layer = ? "
        "and probe_dir is not null limit 1",
        [model, layer],
    )
    if frame.is_empty():
        return None
    return str(frame["probe_dir"][0]) or None


def recorded_probe_dirs(db: Path) -> list[str]:
    """Every probe folder the warehouse's runs recorded (the build's own probe sets)."""
    frame = query(
        db,
        f"select distinct probe_dir from {TOP_IMAGES} where probe_dir is not null "
        "order by probe_dir",
    )
    return [str(p) for p in frame["probe_dir"].to_list() if p]


def served_probe_dirs(environment: str | None) -> list[str]:
    """The folders the server was started with: LCE_PROBE_DIR, one folder or several separated
    by os.pathsep as in PATH (`lce app --probe DIR [--probe DIR]` sets it)."""
    return [p for p in (environment or "").split(os.pathsep) if p.strip()]


def probe_choices(recorded: str | None, others: Sequence[str]) -> list[str]:
    """The probe folders a visitor may choose from, all chosen by the server: the run's own
    folder first, then ``others`` (the other runs' folders, the served ones); each once, and
    only those this machine has. Never a path a visitor typed: a free box would tell anyone
    which folders exist on the server."""
    chosen: list[str] = []
    seen: set[Path] = set()
    for candidate in [recorded, *others]:
        if not candidate or not str(candidate).strip():
            continue
        path = Path(str(candidate).strip()).expanduser()
        if path.is_dir() and path.resolve() not in seen:
            seen.add(path.resolve())
            chosen.append(str(path))
    return chosen


def offered_probe(value: object, offered: Sequence[str]) -> str:
    """The folder a page reads: ``value`` (what the select box returned) only when it is one
    of the ``offered`` folders, else the first of them ("" when none). Streamlit hands back a
    label that matches no option, and a crafted one could name any path shown by the same
    name: the page never reads a folder the server did not offer."""
    return str(value) if value in offered else (offered[0] if offered else "")


def top_maps_count(db: Path, model: str, layer: str) -> int:
    """How many (unit, image) maps the warehouse holds for a layer (0: no outlines)."""
    frame = query(
        db,
        "select count(*) as n from fct_unit_top_maps where model = ? and layer = ?",
        [model, layer],
    )
    return int(frame["n"][0])


def probe_dir_problem(probe_dir: str | Path | None) -> str | None:
    """None when the probe folder can serve images, else why not (shown as a note)."""
    if probe_dir is None or not str(probe_dir).strip():
        return (
            "No probe folder on this server holds the images: start the explorer with "
            "`lce app --probe DIR` (the folder of the probe set the models were dissected on) "
            "to see each unit's top images."
        )
    path = Path(str(probe_dir).strip()).expanduser()
    if not path.is_dir():
        return f"The probe folder `{path}` is not reachable from this machine."
    return None


def resolve_probe_image(probe_dir: str | Path, image: str) -> Path | None:
    """The image's file inside the probe folder (Broden keeps images under ``images/``), or None.
    A name that leaves the folder it is read from (``..``, an absolute path, a link pointing
    out) or is no plain file is refused, as ``lce extract`` refuses it (base.named_files)."""
    root = Path(str(probe_dir).strip()).expanduser()
    for base in (root / "images", root):
        found = Folder(base).file(image)
        if found is not None:
            return found
    return None


def outline_pixels(mask: np.ndarray) -> np.ndarray:
    """The mask's inner boundary: pixels of the mask with a 4-neighbour outside it (the image's
    edge counts as outside, so a mask touching the edge is closed there)."""
    m = np.asarray(mask, dtype=bool)
    p = np.pad(m, 1, constant_values=False)
    interior = p[1:-1, 1:-1] & p[:-2, 1:-1] & p[2:, 1:-1] & p[1:-1, :-2] & p[1:-1, 2:]
    return m & ~interior


def halo_pixels(mask: np.ndarray) -> np.ndarray:
    """The ring just outside the mask: pixels outside it with a 4-neighbour inside it. Drawn
    in a contrasting grey level beside the outline, so the outline shows on a magenta object."""
    m = np.asarray(mask, dtype=bool)
    p = np.pad(m, 1, constant_values=False)
    near = p[:-2, 1:-1] | p[2:, 1:-1] | p[1:-1, :-2] | p[1:-1, 2:]
    return near & ~m


def unpack_mask(data: bytes, sh: int, sw: int) -> np.ndarray:
    """fct_unit_top_maps.mask as a (sh, sw) bool array (numpy.packbits, row-major)."""
    bits = np.unpackbits(np.frombuffer(data, dtype=np.uint8), count=sh * sw)
    return bits.reshape(sh, sw).astype(bool)


def image_at_label_scale(path: Path, mask: np.ndarray | None) -> tuple[np.ndarray, int]:
    """The probe image as RGB and the scale s of one label pixel in image pixels.

    The mask is at label resolution (sh x sw, where the IoU was counted) and is drawn as blocks
    of s x s image pixels, s = round(image height / sh) (2 for Broden's 224 px images and
    112 px labels): the image is resized to (s sh, s sw) when it is not already that size, so
    every label pixel is exactly s x s screen pixels. Without a mask: the image as it is, s 1."""
    from PIL import Image

    with Image.open(path) as img:
        rgb = img.convert("RGB")
        if mask is None:
            return np.asarray(rgb), 1
        sh, sw = mask.shape
        scale = max(1, round(rgb.height / sh))
        if rgb.size != (sw * scale, sh * scale):
            rgb = rgb.resize((sw * scale, sh * scale), Image.Resampling.BILINEAR)
        return np.array(rgb), scale


def blocks(mask: np.ndarray, scale: int) -> np.ndarray:
    """A label-resolution mask as image pixels: each label pixel a scale x scale block."""
    return np.repeat(np.repeat(mask, scale, axis=0), scale, axis=1)


def outlined_image(path: Path, mask: np.ndarray | None) -> np.ndarray:
    """The probe image as RGB, with the mask's outline drawn in OUTLINE_RGB, computed at label
    resolution (so outline[::s, ::s] is the label-resolution outline; see
    image_at_label_scale), and a halo around it (the ring just outside the mask, black or white,
    whichever contrasts with the pixel it covers), so the outline shows on magenta objects."""
    out, scale = image_at_label_scale(path, mask)
    if mask is not None:
        halo = blocks(halo_pixels(mask), scale)
        # black on light pixels, white on dark ones (Rec. 601 luma): the halo shows on any colour
        luma = out[..., :3].astype(np.float32) @ np.array([0.299, 0.587, 0.114], np.float32)
        out[halo] = np.where((luma[halo] < 128)[:, None], 255, 0).astype(np.uint8)
        out[blocks(outline_pixels(mask), scale)] = OUTLINE_RGB
    return out


def darkened_image(path: Path, mask: np.ndarray | None) -> np.ndarray:
    """NetDissect's look: the probe image with every pixel outside the mask S > T dimmed to
    DARKEN_OUTSIDE of its value (rounded), the pixels inside as they are."""
    out, scale = image_at_label_scale(path, mask)
    if mask is not None:
        outside = ~blocks(np.asarray(mask, dtype=bool), scale)
        out[outside] = np.rint(out[outside] * DARKEN_OUTSIDE).astype(np.uint8)
    return out


def unit_tiles(
    db: Path,
    probe_dir: str,
    model: str,
    layer: str,
    units: tuple[int, ...],
    look: str = "outline",
) -> list[dict[str, Any]]:
    """For each unit given, its top images as RGB arrays with the S > T mask drawn where the
    warehouse holds it (``look``: 'outline' or 'darken', see LOOKS): dicts of unit, rank, image,
    max_activation, outlined (bool: the mask is drawn) and pixels (None when the image is not in
    the probe folder). Cached by the page per file."""
    if look not in LOOKS:
        raise ValueError(f"look must be one of {', '.join(LOOKS)}, not {look!r}")
    draw = darkened_image if look == "darken" else outlined_image
    if not units:
        return []
    frame = query(
        db,
        f"""
        select t.unit, t.rank, t.image, t.max_activation, m.mask, m.sh, m.sw
        from {TOP_IMAGES} t left join fct_unit_top_maps m using (model, layer, unit, rank)
        where t.model = ? and t.layer = ? and list_contains(?, t.unit)
        order by t.unit, t.rank
        """,
        [model, layer, list(units)],
    )
    usable = probe_dir_problem(probe_dir) is None
    tiles = []
    for row in frame.iter_rows(named=True):
        mask = None
        if row["mask"] is not None:
            mask = unpack_mask(row["mask"], int(row["sh"]), int(row["sw"]))
        path = resolve_probe_image(probe_dir, row["image"]) if usable else None
        tiles.append(
            {
                "unit": int(row["unit"]),
                "rank": int(row["rank"]),
                "image": row["image"],
                "max_activation": row["max_activation"],
                "outlined": mask is not None,
                "pixels": None if path is None else draw(path, mask),
            }
        )
    return tiles


def png_bytes(pixels: np.ndarray) -> bytes:
    """An RGB array as PNG (lossless, so the outline keeps its exact colour; fast compression)."""
    import io

    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG", compress_level=1)
    return buffer.getvalue()

"""``lce probe get``: the official Broden archives, downloaded and unpacked safely.

The download goes through base.download (resumable, checksummed; MIT publishes no sha256 for the
archives, so the first complete download's digest is recorded and every later copy must match it).
Unpacking is refused before anything is written when a member would land outside the target
(an absolute path, a ``..`` component, a symbolic link) or when the free disk space is smaller
than the sum of the members' sizes. The members go into a hidden sibling folder; only after the
layout is validated (extract.broden.open_probe and every image index.csv names present) is it
renamed to its final name, and on any failure it is removed.
"""

from __future__ import annotations

import os
import shutil
import stat
import tempfile
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from base.download import download
from base.errors import LceError
from base.named_files import Folder
from extract.broden import open_probe


@dataclass(frozen=True)
class Archive:
    name: str
    url: str
    sha256: str | None  # None: not published (trust on first use)
    size: str  # as published, for the user


BASE_URL = "http://netdissect.csail.mit.edu/data"
ARCHIVES = {
    "broden1_224": Archive("broden1_224", f"{BASE_URL}/broden1_224.zip", None, "about 1 GB"),
    "broden1_227": Archive("broden1_227", f"{BASE_URL}/broden1_227.zip", None, "about 1 GB"),
}
SPACE_MARGIN = 64 << 20  # bytes kept free beyond the members' sizes


def default_folder() -> Path:
    """``$LCE_HOME/probes`` (./lce-data/probes by default)."""
    from warehouse.paths import home_dir

    return home_dir() / "probes"


def get_probe(
    name: str,
    to: Path | None = None,
    url: str | None = None,
    progress: Callable[[int, int | None], None] | None = None,
    keep_archive: bool = False,
) -> Path:
    """Download and unpack the named Broden archive into ``to/name``; returns that folder.

    An existing valid folder is returned as it is. ``url`` replaces the official address (a
    mirror); the archive is kept beside the folder only with ``keep_archive`` (its recorded sha256
    always stays, so a later download is checked against the first).
    """
    archive = ARCHIVES.get(name)
    if archive is None:
        raise LceError(f"probe set {name!r}: expected one of {', '.join(ARCHIVES)}")
    folder = Path(to) if to is not None else default_folder()
    final = folder / name
    if final.exists():
        open_probe(final)  # a valid folder is kept; anything else is for the user to look at
        return final
    folder.mkdir(parents=True, exist_ok=True)
    zip_path = folder / f"{name}.zip"
    download(url or archive.url, zip_path, archive.sha256, progress=progress, resume=True)
    try:
        unpack(zip_path, final)
    except NoSpace:
        raise  # the verified archive stays: free some space and run again
    except LceError:
        # a refused or invalid archive is not kept, nor the digest recorded for it
        zip_path.unlink(missing_ok=True)
        zip_path.with_name(zip_path.name + ".sha256").unlink(missing_ok=True)
        raise
    if not keep_archive:
        zip_path.unlink(missing_ok=True)
    return final


class NoSpace(LceError):
    """Not enough free disk space to unpack (nothing was unpacked)."""


def check_members(zf: zipfile.ZipFile, archive: Path) -> int:
    """Refuse members that would leave the target; returns the sum of their sizes."""
    total = 0
    for info in zf.infolist():
        name = info.filename
        pure = PurePosixPath(name.replace("\\", "/"))
        if pure.is_absolute() or (len(name) > 1 and name[1] == ":") or name.startswith("/"):
            raise LceError(f"{archive}: member {name!r} has an absolute path; refused")
        if ".." in pure.parts:
            raise LceError(f"{archive}: member {name!r} leaves the target folder (..); refused")
        mode = info.external_attr >> 16
        if stat.S_ISLNK(mode):
            raise LceError(f"{archive}: member {name!r} is a symbolic link; refused")
        total += info.file_size
    return total


def unpack(zip_path: Path, final: Path) -> None:
    """Safe extraction into a hidden sibling of ``final``, validated, then renamed."""
    try:
        zf = zipfile.ZipFile(zip_path)
    except (zipfile.BadZipFile, OSError) as exc:
        raise LceError(f"{zip_path}: not a readable zip archive ({exc})") from None
    with zf:
        needed = check_members(zf, zip_path)
        free = shutil.disk_usage(final.parent).free
        if free < needed + SPACE_MARGIN:
            raise NoSpace(
                f"{final.parent}: {free / 1e9:.2f} GB free, unpacking {zip_path.name} needs "
                f"{(needed + SPACE_MARGIN) / 1e9:.2f} GB; nothing unpacked"
            )
        stage = Path(tempfile.mkdtemp(prefix=f".{final.name}.unpack-", dir=final.parent))
        try:
            target = Folder(stage)
            for info in zf.infolist():
                if target.leaves(info.filename):  # belt and braces
                    raise LceError(f"{zip_path}: member {info.filename!r} leaves the target")
                zf.extract(info, stage)
            root = probe_root(stage, zip_path)
            probe = open_probe(root)
            for record in probe.records:
                if not (root / "images" / record.image).is_file():
                    raise LceError(
                        f"{zip_path}: image {record.image} of index.csv is not in the archive"
                    )
            os.replace(root, final)
        except zipfile.BadZipFile as exc:
            raise LceError(f"{zip_path}: damaged archive ({exc})") from None
        except OSError as exc:
            raise LceError(f"{zip_path}: unpacking failed ({exc})") from None
        finally:
            shutil.rmtree(stage, ignore_errors=True)


def probe_root(stage: Path, archive: Path) -> Path:
    """The folder holding index.csv: the stage itself or its one top-level folder."""
    if (stage / "index.csv").is_file():
        return stage
    tops = [p for p in stage.iterdir() if p.is_dir()]
    if len(tops) == 1 and (tops[0] / "index.csv").is_file():
        return tops[0]
    raise LceError(f"{archive}: no index.csv at the top of the archive or its one folder")

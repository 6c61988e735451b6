"""Files that data names: they must stay inside the folder that names them and be plain files.

A probe set's tables (index.csv's image and label paths), a COCO file's ``file_name`` and the
images the explorer shows are names that come from data, not from the person at the keyboard.
Read as given, ``../../home/you/.ssh/id_rsa.png`` or ``/etc/shadow`` would be opened silently,
and a FIFO or device named there would block the reader forever. ``Folder.problem`` says why a
name cannot be read, every reader asks it before opening, and the messages are the same
everywhere (``lce probe info``, ``lce probe from``, ``lce extract``, the explorer).

Inside means inside once every symbolic link is followed: an absolute name, a ``..`` out of the
folder and a link that points out of it are all refused. The folder itself may be a link (a
probe folder whose ``images`` is shared by symlink with a larger one is fine).
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

KINDS = (
    (stat.S_ISDIR, "a folder"),
    (stat.S_ISFIFO, "a FIFO"),
    (stat.S_ISSOCK, "a socket"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
)


def kind_problem(mode: int) -> str | None:
    """None for a regular file, else 'is a FIFO, not a regular file' and the like."""
    if stat.S_ISREG(mode):
        return None
    kind = next((name for test, name in KINDS if test(mode)), "a special file")
    return f"is {kind}, not a regular file"


def not_regular(path: Path) -> str | None:
    """Why ``path`` cannot be opened as a plain file without risk of blocking ('is a FIFO, ...'),
    or None for a regular file and for a path that does not exist (the opener says 'not
    found' in its own words)."""
    try:
        mode = os.stat(path).st_mode
    except OSError:
        return None
    return kind_problem(mode)


class Folder:
    """A folder whose files are named by data. Resolving a name costs one ``lstat`` once the
    name's directory has been seen (directories are resolved once per ``Folder``), so a reader
    can ask for every file it opens (a probe set's 63,305 images and their label maps)."""

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)
        self.real = os.path.realpath(self.path)
        self._dirs: dict[str, str] = {}

    def _real_dir(self, path: Path) -> str:
        key = str(path)
        found = self._dirs.get(key)
        if found is None:
            found = self._dirs[key] = os.path.realpath(path)
        return found

    def _inside(self, real: str) -> bool:
        return real == self.real or real.startswith(self.real.rstrip(os.sep) + os.sep)

    def _resolve(self, name: str | Path) -> tuple[str, int | None]:
        """The real path of ``name`` and its ``lstat`` mode (None when it does not exist)."""
        path = self.path / name
        if path.name in ("", ".", ".."):
            real = os.path.realpath(path)
        else:
            real = os.path.join(self._real_dir(path.parent), path.name)
        try:
            mode: int | None = os.lstat(real).st_mode
        except OSError:
            mode = None
        if mode is not None and stat.S_ISLNK(mode):
            real = os.path.realpath(real)
        return real, mode

    def leaves(self, name: str | Path) -> bool:
        """Whether ``name`` resolves outside this folder."""
        return not self._inside(self._resolve(name)[0])

    def problem(self, name: str | Path) -> str | None:
        """Why ``name`` (relative to this folder) cannot be read: 'leaves FOLDER' for a name
        that resolves outside it, 'is a FIFO, not a regular file' and the like for what is not
        a plain file; None when it can be opened (or does not exist: the reader says so)."""
        real, mode = self._resolve(name)
        if not self._inside(real):
            return f"leaves {self.path}"
        if mode is None:
            return None
        return not_regular(Path(real)) if stat.S_ISLNK(mode) else kind_problem(mode)

    def file(self, name: str | Path) -> Path | None:
        """``folder / name`` when it is a regular file inside the folder, else None."""
        path = self.path / name
        return path if self.problem(name) is None and path.is_file() else None

"""Scratch folders that name their owner, so the next run can remove those of killed runs.

``tempfile.TemporaryDirectory`` removes its folder when the block ends, but a ``kill -9`` ends no
block: each killed `lce build` left an ``lce-dbt-*`` folder (dbt's target and logs, about 4 MB)
in $TMPDIR and each killed `lce sensitivity` a ``.<db>.sensitivity-scratch-*`` folder beside the
published file, and nothing removed them. ``owned_scratch`` names its folder
``<prefix><pid>.<start>-<random>`` (the process id and its start time, in clock ticks since
boot: a pid reused by a later process has another start time) and, before it makes its own,
removes the folders of its prefix whose owner is no longer running. A live run's folder is never
touched, whoever owns it; a folder of the old naming (no owner) is left alone.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


def start_time(pid: int) -> str | None:
    """The process's start time (field 22 of /proc/<pid>/stat), or None where there is none."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # the command name (field 2) is in parentheses and may hold spaces: split after its end
    return stat.rpartition(")")[2].split()[19]


def owner_tag(pid: int) -> str:
    return f"{pid}.{start_time(pid) or 0}"


def is_running(tag: str) -> bool:
    """Whether the process of ``owner_tag`` still runs (True when that cannot be known)."""
    pid_text, _, start = tag.partition(".")
    if not pid_text.isdigit():
        return True
    pid = int(pid_text)
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # another user's process: running
    now = start_time(pid)
    return now is None or start in ("0", now)


def remove_orphans(prefix: str, folder: Path) -> None:
    """Remove the folders ``<prefix><owner>-*`` in ``folder`` whose owner has died."""
    try:
        names = os.listdir(folder)
    except OSError:
        return
    for name in names:
        if not name.startswith(prefix):
            continue
        tag, dash, _ = name[len(prefix) :].partition("-")
        if dash and "." in tag and not is_running(tag):
            shutil.rmtree(folder / name, ignore_errors=True)


@contextmanager
def owned_scratch(prefix: str, folder: Path | None = None) -> Iterator[Path]:
    """A temporary folder in ``folder`` ($TMPDIR by default), removed when the block ends, after
    the folders that killed runs left under the same prefix are removed."""
    where = Path(folder) if folder is not None else Path(tempfile.gettempdir())
    remove_orphans(prefix, where)
    mine = f"{prefix}{owner_tag(os.getpid())}-"
    with tempfile.TemporaryDirectory(prefix=mine, dir=where) as tmp:
        yield Path(tmp)

"""base/scratch.py: the folders of dead owners go, a live owner's stay (real processes)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from base.scratch import owned_scratch, owner_tag


def test_only_the_folders_of_dead_owners_are_removed(tmp_path: Path) -> None:
    child = subprocess.Popen([sys.executable, "-c", "import sys; sys.stdin.read()"],
                             stdin=subprocess.PIPE)  # fmt: skip
    dead_tag = owner_tag(child.pid)  # taken while it runs, as its own folder's name would be
    child.communicate(b"")
    pid, start = owner_tag(os.getpid()).split(".")
    folders = {
        "dead": tmp_path / f"p-{dead_tag}-abc",
        "reused pid": tmp_path / f"p-{pid}.{int(start) + 1}-abc",  # this pid, another start
        "live": tmp_path / f"p-{owner_tag(os.getpid())}-abc",
        "no owner": tmp_path / "p-abc123",  # the old naming: left alone
        "other prefix": tmp_path / f"q-{dead_tag}-abc",
    }
    for folder in folders.values():
        (folder / "sub").mkdir(parents=True)
    with owned_scratch("p-", tmp_path) as mine:
        assert mine.name.startswith(f"p-{owner_tag(os.getpid())}-")
        gone = {name for name, folder in folders.items() if not folder.exists()}
        assert gone == {"dead", "reused pid"}
    assert not mine.exists()

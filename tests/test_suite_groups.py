"""The suite's own scheduling: `make test` runs on pytest-xdist workers with `--dist loadgroup`,
and tests/conftest.py puts each test in a group that one worker runs whole (a shared warehouse's
tests together, every other test with its module). Under pytest 9.2 xdist's own way of marking
the groups no longer reached its scheduler, so groups were split and each shared warehouse built
on both workers; this runs a small session on two workers and checks that the groups hold."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_each_group_runs_whole_on_one_worker() -> None:
    pytest.importorskip("xdist")
    out = subprocess.run(
        [sys.executable, "-m", "pytest", "-n", "2", "--dist", "loadgroup", "-v",
         "-p", "no:cacheprovider", "tests/test_stop_forward.py", "tests/test_running.py"],
        cwd=ROOT, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-2000:]
    workers: dict[str, set[str]] = {}
    for worker, module, group in re.findall(
        r"\[(gw\d+)\] \[ *\d+%\] PASSED (tests/\w+\.py)::\S+@(\S+)", out.stdout
    ):
        assert group == module  # tests of no shared warehouse are grouped by module
        workers.setdefault(module, set()).add(worker)
    assert set(workers) == {"tests/test_stop_forward.py", "tests/test_running.py"}, out.stdout
    assert all(len(w) == 1 for w in workers.values()), workers


def test_torch_runs_on_the_suites_thread_count_here_and_in_the_processes_tests_start() -> None:
    """tests/conftest.py gives torch one thread unless OMP_NUM_THREADS says otherwise, in this
    process and, through the environment, in every process a test starts (results computed here
    and in a subprocess are compared bit for bit, and kernels can round by the thread count)."""
    import os

    import torch

    want = int(os.environ["OMP_NUM_THREADS"])
    assert torch.get_num_threads() == want
    child = subprocess.run(
        [sys.executable, "-c", "import torch; print(torch.get_num_threads())"],
        capture_output=True, text=True, timeout=120, check=True,
    )  # fmt: skip
    assert int(child.stdout) == want

"""Testing hooks for fault injection, inert unless a test sets their environment variable.

The fault-injection tests (tests/test_faults.py) run the real command line in a subprocess and
need to stop it at exact points: ``LCE_TEST_KILL_AT=<point>`` kills the process there with
SIGKILL (as `kill -9` would, so no clean-up code runs) and ``LCE_TEST_PAUSE_AT=<point>:<seconds>``
holds it there, so a second process can be started against the same files at a known moment.
"""

from __future__ import annotations

import os
import signal
import time


def kill_point(point: str) -> None:
    if os.environ.get("LCE_TEST_KILL_AT") == point:
        os.kill(os.getpid(), signal.SIGKILL)


def pause_point(point: str) -> None:
    name, _, seconds = os.environ.get("LCE_TEST_PAUSE_AT", "").partition(":")
    if name == point:
        time.sleep(float(seconds or 5))

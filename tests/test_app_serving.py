"""`lce app` is a server: it listens on 127.0.0.1 unless --host chooses a network."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

LOOPBACK = {"0100007F"}  # 127.0.0.1 as /proc/net/tcp writes it


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def listeners(port: int) -> set[str]:
    """The local addresses (hex, as the kernel lists them) listening on ``port``, IPv4 and IPv6."""
    found = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        if not Path(table).is_file():
            continue
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            address, hex_port = fields[1].rsplit(":", 1)
            if int(hex_port, 16) == port and fields[3] == "0A":  # 0A: LISTEN
                found.add(address)
    return found


def listening_addresses(tmp_path: Path, *extra: str) -> set[str]:
    """Start the real `lce app` (headless), wait until it listens, return where, stop it."""
    port = free_port()
    command = [sys.executable, "-m", "lce.cli", "app", "--db", str(tmp_path / "w.duckdb"),
               *extra, "--", "--server.headless=true", f"--server.port={port}"]  # fmt: skip
    log = (tmp_path / "app.log").open("w")
    proc = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        for _ in range(600):
            if proc.poll() is not None:
                pytest.fail((tmp_path / "app.log").read_text())
            found = listeners(port)
            if found:
                time.sleep(0.5)  # both families bound, when it binds both
                return listeners(port)
            time.sleep(0.1)
        pytest.fail("lce app did not listen within 60 s")
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=30)
        log.close()
    return set()


def test_lce_app_listens_on_loopback_only_by_default(tmp_path: Path) -> None:
    assert listening_addresses(tmp_path) == LOOPBACK


def test_lce_app_host_serves_a_network_when_asked(tmp_path: Path) -> None:
    assert listening_addresses(tmp_path, "--host", "0.0.0.0") == {"00000000"}


def test_overview_shows_no_server_folder(open_page: Callable[..., AppTest], app_db: Path) -> None:
    """The warehouse is named relative to the launch folder, else by its file name alone."""
    at = open_page(app_db, "overview")
    shown = " ".join(c.value for c in at.caption)
    assert app_db.name in shown
    assert str(app_db.parent) not in shown

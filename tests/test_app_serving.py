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

from tests.app_driver import assert_clean, texts
from tests.app_fixtures import TOP_IMAGE_LAYER, TOP_IMAGE_MODEL

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
    shown = texts(at.caption)
    assert app_db.name in shown
    assert str(app_db.parent) not in shown


def test_units_offers_only_the_probe_folders_the_server_chose(
    open_page: Callable[..., AppTest], toy_home: Path, tmp_path: Path
) -> None:
    """No path box: the Units page offers the folders the server was started with (LCE_PROBE_DIR,
    as `lce app --probe` sets it), and a folder it did not offer (/etc) cannot be asked for, so
    the page says nothing about whether one exists."""
    extra = tmp_path / "second-probe"
    extra.mkdir()
    served = os.pathsep.join([str(toy_home / "probe"), str(extra), str(tmp_path / "absent")])
    at = open_page(toy_home / "lce.duckdb", "units", probe=served)
    at.selectbox(key="units_model").set_value(TOP_IMAGE_MODEL).run()
    at.selectbox(key="units_layer").set_value(TOP_IMAGE_LAYER).run()
    assert not [w for w in at.text_input if "probe" in w.label.lower()], "no free path box"
    box = at.selectbox(key="units_probe")
    assert box.options == ["probe", "second-probe"]  # shown by name; the absent one not offered
    assert box.value == str(toy_home / "probe") and at.image
    at.selectbox(key="units_probe").set_value(str(extra)).run()
    assert_clean(at)
    assert "lce app --probe" not in texts(at.info)  # an empty probe folder: images not in it
    assert "etc" not in box.options


def test_a_probe_folder_the_server_did_not_offer_is_never_read(tmp_path: Path) -> None:
    """What a select box hands back is checked against the offered list: /etc, or another
    folder with an offered folder's name (a crafted label), falls back to the first offered."""
    from lce.explore.images import offered_probe

    offered = [str(tmp_path / "probe"), str(tmp_path / "second")]
    assert offered_probe(offered[1], offered) == offered[1]
    assert offered_probe("/etc", offered) == offered[0]
    assert offered_probe("/elsewhere/probe", offered) == offered[0]
    assert offered_probe(None, offered) == offered[0]
    assert offered_probe("/etc", []) == ""


def test_lce_app_probe_folders_reach_the_explorer(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`lce app --probe DIR` hands its folders (absolute) to Streamlit in LCE_PROBE_DIR; a
    --probe that is not a folder is refused in one line, before anything starts."""
    from tests.conftest import lce

    calls: list[dict[str, str]] = []
    monkeypatch.setattr(os, "execve", lambda path, command, env: calls.append(env))
    monkeypatch.setenv("LCE_PROBE_DIR", "/already/set")
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    monkeypatch.chdir(tmp_path)
    code, out = lce("app", "--db", tmp_path / "w.duckdb", "--probe", "a", "--probe", tmp_path / "b")
    assert code == 0, out
    assert calls[0]["LCE_PROBE_DIR"].split(os.pathsep) == [
        str(tmp_path / "a"), str(tmp_path / "b"), "/already/set",
    ]  # fmt: skip
    code, out = lce("app", "--db", tmp_path / "w.duckdb", "--probe", tmp_path / "nowhere")
    assert code == 1 and "--probe" in out and "not a folder" in out
    assert len(out.strip().splitlines()) == 1 and len(calls) == 1

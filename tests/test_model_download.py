"""Checkpoint downloads (base.download with resume): cached and reused, checksums enforced,
broken-off transfers resumed with HTTP Range or restarted, and never a partial file under the
final name. Served by a local HTTP server on 127.0.0.1."""

from __future__ import annotations

import hashlib
import io
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from base.download import download, recorded_sha256
from base.errors import LceError
from extract import registry
from tests.http_fixture import RangeServer, serve


@pytest.fixture
def range_server(monkeypatch: pytest.MonkeyPatch) -> Iterator[RangeServer]:
    yield from serve(monkeypatch)


def checkpoint_bytes() -> bytes:
    """A generated checkpoint (a small state dict), as served."""
    buffer = io.BytesIO()
    gen = torch.Generator().manual_seed(3)
    torch.save({"state_dict": {"w": torch.randn(300, 300, generator=gen)}}, buffer)
    return buffer.getvalue()


DATA = checkpoint_bytes()


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def names(folder: Path) -> set[str]:
    """The files a download left (its advisory lock file aside)."""
    if not folder.exists():
        return set()
    return {p.name for p in folder.iterdir() if not p.name.endswith(".lock")}


def test_good_download_is_cached_and_reused(range_server: RangeServer, tmp_path: Path) -> None:
    range_server.files["/ckpt.pth"] = DATA
    dest = tmp_path / "cache" / "ckpt.pth"
    for _ in range(3):
        assert download(f"{range_server.url}/ckpt.pth", dest, sha(DATA), resume=True) == dest
    assert dest.read_bytes() == DATA
    assert range_server.hits["/ckpt.pth"] == 1
    assert names(dest.parent) == {"ckpt.pth"}
    assert torch.load(dest, weights_only=True)["state_dict"]["w"].shape == (300, 300)


def test_unknown_checksum_is_recorded_at_first_download_and_enforced(
    range_server: RangeServer, tmp_path: Path
) -> None:
    range_server.files["/ckpt.pth"] = DATA
    dest = tmp_path / "ckpt.pth"
    url = f"{range_server.url}/ckpt.pth"
    download(url, dest, None, resume=True)
    assert recorded_sha256(dest) == sha(DATA)
    download(url, dest, None, resume=True)
    assert range_server.hits["/ckpt.pth"] == 1  # the cached copy matched its record

    dest.write_bytes(DATA[:-1] + b"X")  # the cached copy rots: fetched again, checked
    download(url, dest, None, resume=True)
    assert dest.read_bytes() == DATA and range_server.hits["/ckpt.pth"] == 2

    dest.unlink()  # the published file changes under the same address: refused
    range_server.files["/ckpt.pth"] = DATA + b"tampered"
    with pytest.raises(LceError, match="recorded at its first download"):
        download(url, dest, None, resume=True)
    assert not dest.exists() and not Path(f"{dest}.partial").exists()


def test_checksum_mismatch_leaves_nothing_under_the_final_name(
    range_server: RangeServer, tmp_path: Path
) -> None:
    range_server.files["/ckpt.pth"] = DATA
    dest = tmp_path / "ckpt.pth"
    with pytest.raises(LceError, match="sha256"):
        download(f"{range_server.url}/ckpt.pth", dest, sha(b"other"), resume=True)
    assert names(tmp_path) == set()
    with pytest.raises(LceError, match="md5"):
        download(f"{range_server.url}/ckpt.pth", dest, None, md5="0000", resume=True)
    assert names(tmp_path) == set()
    # a published prefix (torchvision's file names) is accepted
    download(f"{range_server.url}/ckpt.pth", dest, sha(DATA)[:8], resume=True)
    assert dest.read_bytes() == DATA


@pytest.mark.parametrize("known_sha", [True, False])
def test_interrupted_download_resumes_with_range(
    range_server: RangeServer, tmp_path: Path, known_sha: bool
) -> None:
    range_server.files["/ckpt.pth"] = DATA
    range_server.truncate["/ckpt.pth"] = 5000
    dest = tmp_path / "ckpt.pth"
    digest = sha(DATA) if known_sha else None
    url = f"{range_server.url}/ckpt.pth"
    with pytest.raises(LceError, match="broke off after 5000"):
        download(url, dest, digest, resume=True)
    assert not dest.exists() and recorded_sha256(dest) is None
    assert Path(f"{dest}.partial").stat().st_size == 5000  # kept, under another name

    del range_server.truncate["/ckpt.pth"]
    assert download(url, dest, digest, resume=True) == dest
    assert dest.read_bytes() == DATA
    assert range_server.ranges == [None, "bytes=5000-"]
    assert names(tmp_path) == {"ckpt.pth"} | (set() if known_sha else {"ckpt.pth.sha256"})


def test_server_ignoring_range_restarts_cleanly(range_server: RangeServer, tmp_path: Path) -> None:
    range_server.files["/ckpt.pth"] = DATA
    range_server.truncate["/ckpt.pth"] = 7000
    dest = tmp_path / "ckpt.pth"
    url = f"{range_server.url}/ckpt.pth"
    with pytest.raises(LceError):
        download(url, dest, sha(DATA), resume=True)
    del range_server.truncate["/ckpt.pth"]
    range_server.honour_ranges = False
    download(url, dest, sha(DATA), resume=True)
    assert dest.read_bytes() == DATA


def test_changed_file_is_not_spliced_onto_an_old_prefix(
    range_server: RangeServer, tmp_path: Path
) -> None:
    old = bytes(range(256)) * 200
    range_server.files["/ckpt.pth"] = old
    range_server.truncate["/ckpt.pth"] = 9000
    dest = tmp_path / "ckpt.pth"
    url = f"{range_server.url}/ckpt.pth"
    with pytest.raises(LceError):
        download(url, dest, sha(DATA), resume=True)
    # the server now has another file (new ETag): If-Range makes it send the whole new file
    del range_server.truncate["/ckpt.pth"]
    range_server.files["/ckpt.pth"] = DATA
    range_server.etag = '"v2"'
    download(url, dest, sha(DATA), resume=True)
    assert dest.read_bytes() == DATA


def test_corrupt_partial_never_passes_for_complete(
    range_server: RangeServer, tmp_path: Path
) -> None:
    range_server.files["/ckpt.pth"] = DATA
    range_server.truncate["/ckpt.pth"] = 5000
    dest = tmp_path / "ckpt.pth"
    url = f"{range_server.url}/ckpt.pth"
    with pytest.raises(LceError):
        download(url, dest, sha(DATA), resume=True)
    partial = Path(f"{dest}.partial")
    partial.write_bytes(b"\0" * 5000)  # the kept prefix is damaged on disk
    del range_server.truncate["/ckpt.pth"]
    with pytest.raises(LceError, match="sha256"):
        download(url, dest, sha(DATA), resume=True)  # resumed, then rejected as a whole
    assert names(tmp_path) == set()
    download(url, dest, sha(DATA), resume=True)  # and the next try starts over
    assert dest.read_bytes() == DATA


def test_without_resume_a_broken_transfer_leaves_nothing(
    range_server: RangeServer, tmp_path: Path
) -> None:
    range_server.files["/ckpt.pth"] = DATA
    range_server.truncate["/ckpt.pth"] = 5000
    with pytest.raises(LceError):
        download(f"{range_server.url}/ckpt.pth", tmp_path / "ckpt.pth", sha(DATA))
    assert names(tmp_path) == set()


def test_registry_fetch_resumes_and_verifies(
    range_server: RangeServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import dataclasses

    range_server.files["/swav_800ep_pretrain.pth.tar"] = DATA
    range_server.truncate["/swav_800ep_pretrain.pth.tar"] = 4096
    entry = registry.lookup("swav")
    assert entry is not None
    local = dataclasses.replace(
        entry, files=(registry.Remote(f"{range_server.url}/swav_800ep_pretrain.pth.tar"),)
    )
    monkeypatch.setenv("LCE_CACHE", str(tmp_path))
    with pytest.raises(LceError) as info:
        registry.fetch(local)
    assert "--weights" in str(info.value) and "broke off" in str(info.value)
    assert not (tmp_path / "models" / "swav" / "swav_800ep_pretrain.pth.tar").exists()
    del range_server.truncate["/swav_800ep_pretrain.pth.tar"]
    path = registry.fetch(local)
    assert path == tmp_path / "models" / "swav" / "swav_800ep_pretrain.pth.tar"
    assert path.read_bytes() == DATA
    assert range_server.ranges[-1] == "bytes=4096-"


def test_concurrent_downloads_fetch_once(range_server: RangeServer, tmp_path: Path) -> None:
    """torchrun ranks (or two runs) asking for one checkpoint: one downloads, the rest wait."""
    import threading

    range_server.files["/ckpt.pth"] = DATA
    dest = tmp_path / "ckpt.pth"
    errors: list[BaseException] = []

    def fetch() -> None:
        try:
            download(f"{range_server.url}/ckpt.pth", dest, None, resume=True)
        except BaseException as exc:  # pragma: no cover (reported below)
            errors.append(exc)

    threads = [threading.Thread(target=fetch) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert errors == []
    assert dest.read_bytes() == DATA and range_server.hits["/ckpt.pth"] == 1

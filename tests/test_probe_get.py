"""`lce probe get` against a real HTTP server on 127.0.0.1 serving small Broden zips: a good
archive, a transfer broken off and resumed, a changed file (checksum refused), members with
`../`, an absolute path or a symbolic link (refused, nothing written anywhere), and a disk-space
shortfall (injected by replacing shutil.disk_usage; refused before anything is unpacked)."""

from __future__ import annotations

import io
import shutil
import stat
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from extract.broden import open_probe
from lce import synth
from tests.conftest import lce
from tests.http_fixture import RangeServer, serve

PATH = "/data/broden1_224.zip"


@pytest.fixture
def server(monkeypatch: pytest.MonkeyPatch) -> Iterator[RangeServer]:
    yield from serve(monkeypatch)


@pytest.fixture(scope="module")
def probe_zip(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    """A small valid probe set, zipped under a top folder as the official archives are."""
    root = tmp_path_factory.mktemp("src")
    synth.write_probe(root / "broden1_224", n=6, size=16, seed=3)
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as zf:
        for path in sorted((root / "broden1_224").rglob("*")):
            zf.write(path, path.relative_to(root).as_posix())
    return buffer.getvalue()


def with_member(good: bytes, info: zipfile.ZipInfo, data: bytes = b"x") -> bytes:
    buffer = io.BytesIO(good)
    with zipfile.ZipFile(buffer, "a") as zf:
        zf.writestr(info, data)
    return buffer.getvalue()


def get(server: RangeServer, to: Path) -> tuple[int, str]:
    return lce("probe", "get", "broden1_224", "--to", to, "--url", server.url + PATH)


def assert_nothing_unpacked(to: Path) -> None:
    assert not (to / "broden1_224").exists()
    assert not [p for p in to.iterdir() if p.name.startswith(".broden1_224")], list(to.iterdir())


def test_good_archive(server: RangeServer, probe_zip: bytes, tmp_path: Path) -> None:
    server.files[PATH] = probe_zip
    code, out = get(server, tmp_path / "probes")
    assert code == 0, out
    final = tmp_path / "probes" / "broden1_224"
    assert len(open_probe(final).records) == 6
    names = sorted(p.name for p in (tmp_path / "probes").iterdir() if p.suffix != ".lock")
    assert names == ["broden1_224", "broden1_224.zip.sha256"]  # archive removed, digest kept
    code, out = get(server, tmp_path / "probes")  # already there: no second download
    assert code == 0 and server.hits[PATH] == 1


def test_truncated_transfer_resumes(server: RangeServer, probe_zip: bytes, tmp_path: Path) -> None:
    server.files[PATH] = probe_zip
    server.truncate[PATH] = len(probe_zip) // 2
    code, out = get(server, tmp_path)
    assert code != 0 and "run again to resume" in out, out
    assert_nothing_unpacked(tmp_path)
    del server.truncate[PATH]
    code, out = get(server, tmp_path)
    assert code == 0, out
    assert server.ranges[-1] == f"bytes={len(probe_zip) // 2}-"  # only the rest was asked for
    assert len(open_probe(tmp_path / "broden1_224").records) == 6


def test_changed_file_is_refused(server: RangeServer, probe_zip: bytes, tmp_path: Path) -> None:
    server.files[PATH] = probe_zip
    assert get(server, tmp_path)[0] == 0
    shutil.rmtree(tmp_path / "broden1_224")
    server.files[PATH] = with_member(probe_zip, zipfile.ZipInfo("broden1_224/extra.txt"))
    server.etag = '"v2"'
    code, out = get(server, tmp_path)
    assert code != 0 and "recorded at its first download" in out, out
    assert_nothing_unpacked(tmp_path)
    assert not (tmp_path / "broden1_224.zip").exists()


@pytest.mark.parametrize("kind", ["dotdot", "absolute", "symlink"])
def test_escaping_members_are_refused(
    server: RangeServer, probe_zip: bytes, tmp_path: Path, kind: str
) -> None:
    to = tmp_path / "a" / "b"
    to.mkdir(parents=True)
    outside = tmp_path / "escaped.txt"
    if kind == "dotdot":
        info = zipfile.ZipInfo("broden1_224/../../../escaped.txt")
    elif kind == "absolute":
        info = zipfile.ZipInfo(str(outside))
    else:
        info = zipfile.ZipInfo("broden1_224/images/link.png")
        info.external_attr = (stat.S_IFLNK | 0o777) << 16
    server.files[PATH] = with_member(probe_zip, info, str(outside).encode())
    with zipfile.ZipFile(io.BytesIO(server.files[PATH])) as zf:
        assert info.filename in zf.namelist()  # the archive really holds the bad name
    code, out = get(server, to)
    assert code != 0 and "refused" in out and len(out.strip().splitlines()) == 1, out
    assert_nothing_unpacked(to)
    assert not outside.exists() and not list(tmp_path.rglob("escaped.txt"))
    assert not (to / "broden1_224.zip").exists()  # a refused archive is not kept


def test_disk_shortfall_refused_before_unpacking(
    server: RangeServer, probe_zip: bytes, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    server.files[PATH] = probe_zip
    real = shutil.disk_usage

    def almost_full(path: str | Path) -> object:  # injected: 1 MB free, whatever the disk has
        usage = real(path)
        return type(usage)(usage.total, usage.total - 1_000_000, 1_000_000)

    monkeypatch.setattr(shutil, "disk_usage", almost_full)
    code, out = get(server, tmp_path)
    assert code != 0 and "GB free" in out and "nothing unpacked" in out, out
    assert_nothing_unpacked(tmp_path)
    assert (tmp_path / "broden1_224.zip").is_file()  # verified download kept for the rerun
    monkeypatch.setattr(shutil, "disk_usage", real)
    assert get(server, tmp_path)[0] == 0
    assert server.hits[PATH] == 1  # the kept archive was used, not downloaded again


def test_unknown_name_and_invalid_archive(server: RangeServer, tmp_path: Path) -> None:
    code, out = lce("probe", "get", "broden2", "--to", tmp_path)
    assert code != 0 and "expected one of broden1_224, broden1_227" in out
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as zf:
        zf.writestr("broden1_224/readme.txt", "no probe set here")
    server.files[PATH] = buffer.getvalue()
    code, out = get(server, tmp_path)
    assert code != 0 and "no index.csv" in out, out
    assert_nothing_unpacked(tmp_path)

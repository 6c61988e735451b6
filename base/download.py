"""Downloads that never leave a partial file under the final name and always verify a digest.

Two modes share one function:

- the default (used for the paper's reference files): a failed transfer leaves nothing behind;
- ``resume=True`` (used for model checkpoints of 100+ MB): a broken-off transfer keeps its bytes in
  ``DEST.partial`` (with ``DEST.partial.json`` naming the address and the server's validators), and
  the next call asks for the rest with an HTTP ``Range`` request. A server that ignores the range,
  or whose file changed (``If-Range``), sends the whole file and the download restarts cleanly.

Either way, bytes are only renamed to ``DEST`` once the length the server announced has arrived and
the digest matches. When no sha256 is published, the first complete download's sha256 is recorded
beside the file (``DEST.sha256``, trust on first use): every later use verifies the cached copy
against it, and a re-download that differs is refused rather than silently accepted.
"""

from __future__ import annotations

import functools
import hashlib
import http.client
import json
import os
import re
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from base.errors import LceError

CHUNK = 1 << 20


def cache_dir() -> Path:
    """Where downloads are kept: ``$LCE_CACHE``, else ``$XDG_CACHE_HOME/lce``, else ``~/.cache/lce``."""
    if os.environ.get("LCE_CACHE"):
        return Path(os.environ["LCE_CACHE"]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base).expanduser() / "lce"


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(CHUNK), b""):
            digest.update(block)
    return digest.hexdigest()


@functools.lru_cache(maxsize=256)
def _sha256_of(path: Path, size: int, mtime_ns: int) -> str:
    return sha256_file(path)


def weights_sha256(path: Path | None) -> str:
    """The sha256 of a weights file, "" when none is given: recorded in the lake's runs so a
    changed checkpoint is told apart from the one dissected. Hashed once per file and version
    (path, size, mtime) in a process: a study names one checkpoint for several jobs, and
    hashing a ResNet-50 takes about a second."""
    if path is None:
        return ""
    resolved = Path(path).resolve()
    st = resolved.stat()
    return _sha256_of(resolved, st.st_size, st.st_mtime_ns)


def md5_file(path: Path) -> str:
    digest = hashlib.md5(usedforsecurity=False)
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(CHUNK), b""):
            digest.update(block)
    return digest.hexdigest()


def digest_matches(actual: str, expected: str) -> bool:
    """Full digests compare equal; a shorter expected value is a published prefix (torchvision
    names its files after the first 8 hex digits of the sha256, MoCo publishes md5 prefixes)."""
    expected = expected.lower()
    return actual == expected if len(expected) >= len(actual) else actual.startswith(expected)


def verify_sha256(path: Path, expected: str) -> None:
    actual = sha256_file(path)
    if not digest_matches(actual, expected):
        raise LceError(f"{path}: sha256 is {actual}, expected {expected}")


def recorded_sha256(dest: Path) -> str | None:
    """The sha256 recorded at the first download of ``dest`` (trust on first use), if any."""
    record = _record_path(dest)
    if not record.is_file():
        return None
    try:
        value = json.loads(record.read_text())["sha256"]
    except (ValueError, KeyError, TypeError):
        return None
    return value if isinstance(value, str) else None


def _record_path(dest: Path) -> Path:
    return dest.with_name(dest.name + ".sha256")


def _partial_paths(dest: Path) -> tuple[Path, Path]:
    return dest.with_name(dest.name + ".partial"), dest.with_name(dest.name + ".partial.json")


def _write_json(path: Path, data: dict[str, Any]) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data))
    os.replace(tmp, path)


def _cached_ok(dest: Path, sha256: str | None, md5: str | None) -> bool:
    """Whether ``dest`` is a copy we can vouch for: its digest matches the published one, or the
    one recorded at its first download. A file with neither is not trusted (downloaded again)."""
    if not dest.is_file():
        return False
    expected = sha256 or recorded_sha256(dest)
    if expected is None or not digest_matches(sha256_file(dest), expected):
        return False
    return md5 is None or digest_matches(md5_file(dest), md5)


def download(
    url: str,
    dest: Path,
    sha256: str | None,
    timeout: float = 60.0,
    progress: Callable[[int, int | None], None] | None = None,
    *,
    md5: str | None = None,
    resume: bool = False,
) -> Path:
    """Fetch ``url`` to ``dest`` unless a verified copy is already there.

    ``sha256`` is the published digest (or a published prefix of it), or None when none is
    published: then the first download's digest is recorded and later copies must match it.
    ``md5`` is an extra published check (a prefix is enough). The bytes go to ``dest.partial``;
    only a complete download whose length and digests match is renamed to ``dest``.
    """
    if _cached_ok(dest, sha256, md5):
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    if not resume:
        return _download(url, dest, sha256, timeout, progress, md5, resume)
    # Several processes (torchrun ranks, two runs) may want the same checkpoint: one downloads,
    # the others wait and then find the verified file.
    with _locked(dest.with_name(dest.name + ".lock")):
        if _cached_ok(dest, sha256, md5):
            return dest
        return _download(url, dest, sha256, timeout, progress, md5, resume)


@contextmanager
def _locked(path: Path) -> Iterator[None]:
    """An exclusive advisory lock on ``path`` (a no-op where fcntl does not exist)."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover (Windows)
        yield
        return
    with path.open("a+") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _download(
    url: str,
    dest: Path,
    sha256: str | None,
    timeout: float,
    progress: Callable[[int, int | None], None] | None,
    md5: str | None,
    resume: bool,
) -> Path:
    partial, meta_path = _partial_paths(dest)
    meta = _read_meta(meta_path) if resume else None
    if not resume or meta is None or meta.get("url") != url or not partial.is_file():
        partial.unlink(missing_ok=True)
        meta_path.unlink(missing_ok=True)
        meta = None
    try:
        _transfer(url, partial, meta_path, meta, timeout, progress, resume)
        actual = sha256_file(partial)
        expected = sha256 or recorded_sha256(dest)
        if expected is not None and not digest_matches(actual, expected):
            what = "expected" if sha256 else "recorded at its first download"
            hint = (
                "" if sha256 else f" (the file changed; delete {_record_path(dest)} to accept it)"
            )
            raise LceError(f"download of {url}: sha256 is {actual}, {what} {expected}{hint}")
        if md5 is not None and not digest_matches(md5_file(partial), md5):
            raise LceError(f"download of {url}: md5 does not start with the published {md5}")
        if sha256 is None:
            _write_json(_record_path(dest), {"url": url, "sha256": actual})
        os.replace(partial, dest)
        meta_path.unlink(missing_ok=True)
    except _BrokenOff as exc:
        if not resume:
            partial.unlink(missing_ok=True)
            meta_path.unlink(missing_ok=True)
        raise LceError(str(exc) + ("; run again to resume" if resume else "")) from None
    except (urllib.error.URLError, http.client.HTTPException, OSError, ValueError) as exc:
        if not resume:  # a resumable prefix survives a refused connection or a timeout
            partial.unlink(missing_ok=True)
            meta_path.unlink(missing_ok=True)
        reason = getattr(exc, "reason", None) or exc
        raise LceError(f"download of {url} failed: {reason}") from exc
    except BaseException as exc:
        # A digest mismatch: bytes that cannot be trusted are not kept for a resume. An interrupt
        # (Ctrl+C) while resumable keeps the prefix written so far; the digest still decides.
        if not resume or isinstance(exc, LceError):
            partial.unlink(missing_ok=True)
            meta_path.unlink(missing_ok=True)
        raise
    return dest


class _BrokenOff(Exception):
    """The transfer stopped before the announced length arrived (bytes so far may be resumed)."""


def _read_meta(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


_CONTENT_RANGE = re.compile(r"bytes (\d+)-(\d+)/(\d+|\*)")


def _transfer(
    url: str,
    partial: Path,
    meta_path: Path,
    meta: dict[str, Any] | None,
    timeout: float,
    progress: Callable[[int, int | None], None] | None,
    resume: bool,
) -> None:
    """Write the whole resource to ``partial`` (appending to a resumable prefix when possible)."""
    have = partial.stat().st_size if meta is not None and partial.is_file() else 0
    request = urllib.request.Request(url)
    if have:
        request.add_header("Range", f"bytes={have}-")
        validator = (meta.get("etag") or meta.get("last_modified")) if meta else None
        if validator:
            request.add_header("If-Range", validator)
    try:
        response = urllib.request.urlopen(request, timeout=timeout)
    except urllib.error.HTTPError as exc:
        if exc.code == 416 and have:
            # our prefix is no prefix of the current file: start over
            partial.unlink(missing_ok=True)
            meta_path.unlink(missing_ok=True)
            return _transfer(url, partial, meta_path, None, timeout, progress, resume)
        raise
    with response:
        total: int | None
        mode = "wb"
        start = 0
        content_range = response.headers.get("Content-Range")
        match = _CONTENT_RANGE.match(content_range or "")
        if response.status == 206 and have and match and int(match.group(1)) == have:
            mode, start = "ab", have
            total = int(match.group(3)) if match.group(3) != "*" else None
        elif response.status == 206:
            # a range we did not ask for: forget the prefix and ask for the whole file
            partial.unlink(missing_ok=True)
            meta_path.unlink(missing_ok=True)
            return _transfer(url, partial, meta_path, None, timeout, progress, resume)
        else:
            length = response.headers.get("Content-Length")
            total = int(length) if length else None
        if resume:
            _write_json(
                meta_path,
                {
                    "url": url,
                    "etag": response.headers.get("ETag"),
                    "last_modified": response.headers.get("Last-Modified"),
                    "total": total,
                },
            )
        received = start
        with partial.open(mode) as out:
            try:
                while True:
                    block = response.read(CHUNK)
                    if not block:
                        break
                    out.write(block)
                    received += len(block)
                    if progress:
                        progress(received, total)
            except (http.client.IncompleteRead, OSError) as exc:
                out.flush()
                raise _BrokenOff(
                    f"download of {url} broke off after {received} of {total or '?'} bytes: {exc}"
                ) from None
    if total is not None and received != total:
        raise _BrokenOff(f"download of {url} broke off after {received} of {total} bytes")
    return None

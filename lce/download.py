"""Downloads that never leave a partial file under the final name and always verify a sha256."""

from __future__ import annotations

import hashlib
import http.client
import os
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path

from lce.errors import LceError

CHUNK = 1 << 20


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(CHUNK), b""):
            digest.update(block)
    return digest.hexdigest()


def verify_sha256(path: Path, expected: str) -> None:
    actual = sha256_file(path)
    if actual != expected:
        raise LceError(f"{path}: sha256 is {actual}, expected {expected}")


def download(
    url: str,
    dest: Path,
    sha256: str,
    timeout: float = 60.0,
    progress: Callable[[int, int | None], None] | None = None,
) -> Path:
    """Fetch ``url`` to ``dest`` unless a verified copy is already there.

    The bytes go to ``dest.partial``; only a complete download whose length and sha256 match is
    renamed to ``dest``. A broken-off transfer raises and leaves no file that passes for complete.
    """
    if dest.is_file() and sha256_file(dest) == sha256:
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    partial = dest.with_name(dest.name + ".partial")
    digest = hashlib.sha256()
    received = 0
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response, partial.open("wb") as out:
            length = response.headers.get("Content-Length")
            total = int(length) if length else None
            while True:
                block = response.read(CHUNK)
                if not block:
                    break
                out.write(block)
                digest.update(block)
                received += len(block)
                if progress:
                    progress(received, total)
        if total is not None and received != total:
            raise LceError(f"download of {url} broke off after {received} of {total} bytes")
        if digest.hexdigest() != sha256:
            raise LceError(f"download of {url}: sha256 is {digest.hexdigest()}, expected {sha256}")
        os.replace(partial, dest)
    except (urllib.error.URLError, http.client.HTTPException, OSError, ValueError) as exc:
        reason = getattr(exc, "reason", None) or exc
        raise LceError(f"download of {url} failed: {reason}") from exc
    finally:
        partial.unlink(missing_ok=True)
    return dest

"""A local HTTP server on 127.0.0.1 for download tests: byte ranges, truncation, request log."""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest


@dataclass
class RangeServer:
    url: str
    files: dict[str, bytes] = field(default_factory=dict)
    # path -> bytes actually sent before the connection is closed (the full length is announced)
    truncate: dict[str, int] = field(default_factory=dict)
    honour_ranges: bool = True
    hits: Counter = field(default_factory=Counter)
    ranges: list[str | None] = field(default_factory=list)
    etag: str = '"v1"'


def serve(monkeypatch: pytest.MonkeyPatch) -> Iterator[RangeServer]:
    """Run the server for one test (use from a fixture: ``yield from serve(monkeypatch)``)."""
    for var in ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("no_proxy", "127.0.0.1")
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")
    state = RangeServer(url="")

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 (http.server's name)
            state.hits[self.path] += 1
            requested = self.headers.get("Range")
            state.ranges.append(requested)
            body = state.files.get(self.path)
            if body is None:
                self.send_error(404)
                return
            start = 0
            if_range = self.headers.get("If-Range")
            if (
                requested
                and state.honour_ranges
                and requested.startswith("bytes=")
                and (if_range is None or if_range == state.etag)
            ):
                start = int(requested[len("bytes=") :].split("-")[0])
                if start >= len(body):
                    self.send_response(416)
                    self.send_header("Content-Range", f"bytes */{len(body)}")
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                self.send_response(206)
                self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
            else:
                self.send_response(200)
            payload = body[start:]
            self.send_header("Content-Type", "application/octet-stream")
            self.send_header("Content-Length", str(len(payload)))
            self.send_header("ETag", state.etag)
            self.send_header("Accept-Ranges", "bytes")
            self.end_headers()
            if self.path in state.truncate:
                self.wfile.write(payload[: state.truncate[self.path]])
                self.wfile.flush()
                self.close_connection = True
                return
            self.wfile.write(payload)

        def log_message(self, format: str, *args: object) -> None:
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    state.url = f"http://127.0.0.1:{httpd.server_address[1]}"
    thread = threading.Thread(target=httpd.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield state
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=5)

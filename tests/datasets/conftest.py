"""Locating the shared real data, and a loopback HTTP server for URL sources."""

from __future__ import annotations

import functools
import os
import threading
from collections.abc import Iterator
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from cityos.datasets import shared_data_dir


@pytest.fixture(scope="session")
def shared_data() -> Path:
    path = shared_data_dir()
    if path is None:
        msg = "shared real data not found; set CITYOS_SHARED_DATA to the shared/data folder"
        if os.environ.get("CI"):
            pytest.fail(msg)  # CI must not pass by skipping the real-data tests
        pytest.skip(msg)
    return path


class _QuietHandler(SimpleHTTPRequestHandler):
    requested: list[str]

    def log_message(self, format: str, *args: Any) -> None:
        return None

    def do_GET(self) -> None:
        self.requested.append(self.path)
        # Serve the file whatever the query string (the SODA API takes $limit there).
        self.path = self.path.split("?", 1)[0]
        super().do_GET()


@pytest.fixture
def http_dir(tmp_path: Path) -> Iterator[tuple[str, Path, list[str]]]:
    """(base URL, folder it serves, request paths seen) for a server on 127.0.0.1."""
    requested: list[str] = []
    handler = type("Handler", (_QuietHandler,), {"requested": requested})
    server = ThreadingHTTPServer(
        ("127.0.0.1", 0), functools.partial(handler, directory=str(tmp_path))
    )
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", tmp_path, requested
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)

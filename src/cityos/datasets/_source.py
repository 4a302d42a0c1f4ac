"""Where loaders get their bytes: a folder, a file, a zip (nested zips too) or an http(s)
URL, always yielding (member name, CSV bytes or path) pairs."""

from __future__ import annotations

import io
import os
import urllib.error
import urllib.request
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO

import cityos
from cityos.datasets._errors import DataSourceError

__all__ = ["CsvSource", "iter_csv", "shared_data_dir"]

CsvSource = tuple[str, Callable[[], IO[bytes]]]
_TIMEOUT_S = 120.0


def shared_data_dir() -> Path | None:
    """The folder of shared real data for tests, demos and benchmarks, or None if absent.

    Taken from the ``CITYOS_SHARED_DATA`` environment variable, else ``shared/data`` beside
    the repository root (the folder that holds ``src/cityos``).

    Examples
    --------
    >>> p = shared_data_dir()
    >>> p is None or p.is_dir()
    True
    """
    env = os.environ.get("CITYOS_SHARED_DATA")
    if env:
        path = Path(env).expanduser()
    else:
        repo_root = Path(cityos.__file__).resolve().parents[2]
        path = repo_root.parent / "shared" / "data"
    return path if path.is_dir() else None


def is_url(source: object) -> bool:
    """True for ``http://`` and ``https://`` strings."""
    return isinstance(source, str) and source.lower().startswith(("http://", "https://"))


def fetch(url: str) -> bytes:
    """Download ``url`` into memory, raising :class:`DataSourceError` with the cause."""
    try:
        with urllib.request.urlopen(url, timeout=_TIMEOUT_S) as resp:
            data: bytes = resp.read()
            return data
    except (urllib.error.URLError, TimeoutError, OSError) as exc:
        raise DataSourceError(
            f"could not download {url}: {exc}; check the network, or download the file "
            "yourself and pass its local path as source"
        ) from exc


def _bytes_opener(data: bytes) -> Callable[[], IO[bytes]]:
    return lambda: io.BytesIO(data)


def _file_opener(path: Path) -> Callable[[], IO[bytes]]:
    return lambda: path.open("rb")


def _from_zip(name: str, data: IO[bytes], want: Callable[[str], bool]) -> Iterator[CsvSource]:
    try:
        zf = zipfile.ZipFile(data)
    except zipfile.BadZipFile as exc:
        raise DataSourceError(f"{name} is not a valid zip archive: {exc}") from exc
    with zf:
        for info in sorted(zf.infolist(), key=lambda i: i.filename):
            member = info.filename
            base = member.rsplit("/", 1)[-1]
            if info.is_dir() or base.startswith(("._", ".")) or "__MACOSX" in member:
                continue
            if member.lower().endswith(".zip"):
                # The UCI release wraps the CSV folder in a second zip.
                yield from _from_zip(f"{name}!{member}", io.BytesIO(zf.read(member)), want)
            elif member.lower().endswith(".csv") and want(base):
                yield (f"{name}!{member}", _bytes_opener(zf.read(member)))


def iter_csv(
    source: str | Path, want: Callable[[str], bool] = lambda _: True
) -> Iterator[CsvSource]:
    """CSV members of ``source`` whose base name passes ``want``, in name order.

    ``source`` is a folder (its ``*.csv`` files), a ``.csv`` file, a ``.zip`` file, or an
    http(s) URL to either. Each item is ``(name, opener)``; ``opener()`` returns a binary
    stream of the CSV.
    """
    if is_url(source):
        url = str(source)
        data = fetch(url)
        if data[:4] == b"PK\x03\x04":
            yield from _from_zip(url, io.BytesIO(data), want)
        else:
            yield (url, _bytes_opener(data))
        return
    path = Path(source).expanduser()
    if path.is_dir():
        for f in sorted(path.glob("*.csv")):
            if want(f.name):
                yield (str(f), _file_opener(f))
    elif path.is_file():
        if zipfile.is_zipfile(path):
            with path.open("rb") as fh:
                yield from _from_zip(str(path), fh, want)
        else:
            yield (str(path), _file_opener(path))
    else:
        raise DataSourceError(
            f"data source {str(path)!r} does not exist; pass a folder, a CSV or zip file, "
            "or an http(s) URL"
        )

"""Where loaders get their files: a folder, a file, a zip (nested zips too) or an http(s)
URL. Remote files and zip members are written to a temporary folder, so every loader reads
local CSV files with the one ingest parser (:func:`cityos.ingest.read_file`)."""

from __future__ import annotations

import io
import os
import shutil
import tempfile
import urllib.error
import urllib.parse
import urllib.request
import zipfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO

import cityos
from cityos.datasets._errors import DataSourceError

__all__ = ["csv_files", "fetch", "is_url", "shared_data_dir"]

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
    """True for ``http://`` and ``https://`` strings.

    Examples
    --------
    >>> is_url("https://example.org/a.csv"), is_url("a.csv")
    (True, False)
    """
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


def _extract(
    name: str, data: IO[bytes], want: Callable[[str], bool], into: Path, out: list[tuple[str, Path]]
) -> None:
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
                _extract(f"{name}!{member}", io.BytesIO(zf.read(member)), want, into, out)
            elif member.lower().endswith(".csv") and want(base):
                target = into / str(len(out)) / base
                target.parent.mkdir(parents=True)
                with zf.open(info) as src, target.open("wb") as dst:
                    shutil.copyfileobj(src, dst)
                out.append((f"{name}!{member}", target))


def _url_name(url: str) -> str:
    base = urllib.parse.urlsplit(url).path.rsplit("/", 1)[-1]
    return base if base.lower().endswith(".csv") else f"{base or 'download'}.csv"


@contextmanager
def csv_files(
    source: str | Path, want: Callable[[str], bool] = lambda _: True
) -> Iterator[list[tuple[str, Path]]]:
    """The CSV files of ``source`` whose base name passes ``want``, in name order, as
    ``(name for messages, local path)`` pairs, valid inside the ``with`` block.

    ``source`` is a folder (its ``*.csv`` files), a ``.csv`` file (taken whatever its
    name), a ``.zip`` file, or an http(s) URL to either. Downloads and zip members go to a
    temporary folder removed on exit; local files are read where they are.
    """
    tmp: Path | None = None
    try:
        found: list[tuple[str, Path]] = []
        if is_url(source):
            url = str(source)
            data = fetch(url)
            tmp = Path(tempfile.mkdtemp(prefix="cityos-data-"))
            if data[:4] == b"PK\x03\x04":
                _extract(url, io.BytesIO(data), want, tmp, found)
            else:
                target = tmp / _url_name(url)
                target.write_bytes(data)
                found.append((url, target))
        else:
            path = Path(source).expanduser()
            if path.is_dir():
                found = [(str(f), f) for f in sorted(path.glob("*.csv")) if want(f.name)]
            elif path.is_file() and zipfile.is_zipfile(path):
                tmp = Path(tempfile.mkdtemp(prefix="cityos-data-"))
                with path.open("rb") as fh:
                    _extract(str(path), fh, want, tmp, found)
            elif path.is_file():
                found = [(str(path), path)]
            else:
                raise DataSourceError(
                    f"data source {str(path)!r} does not exist; pass a folder, a CSV or zip "
                    "file, or an http(s) URL"
                )
        yield found
    finally:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)

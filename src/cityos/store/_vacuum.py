"""Removing data files no catalog version references (left by a crashed write, or replaced
by compaction or delete), safely while writers run.

Every write holds a *lease* from before its first file is created until its catalog
commit: a small file under ``data/.writes/`` locked by the writing process and naming the
dataset. Vacuum leaves the unreferenced files of a dataset alone while a write to it is
in flight (however long it takes; no clocks are compared), keeps files younger than the
grace period (for writers that take no lease), and reads leases and the catalog again
before deleting, so a write that committed meanwhile keeps its files. A lease whose
process died is no longer locked: it protects nothing and is removed.
"""

from __future__ import annotations

import contextlib
import json
import os
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

try:  # POSIX advisory locks; elsewhere leases count as live until they are removed
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]

__all__ = ["LEASE_DIR", "VacuumResult", "vacuum_files", "write_lease"]

#: Folder (inside the data folder) of the leases of in-flight writes.
LEASE_DIR = ".writes"


@dataclass(frozen=True)
class VacuumResult:
    """What :func:`vacuum_files` did."""

    removed: tuple[str, ...]
    kept_young: int
    kept_in_flight: int
    stale_leases: int

    def __int__(self) -> int:
        return len(self.removed)


@contextlib.contextmanager
def write_lease(data_dir: Path, dataset: str) -> Iterator[None]:
    """Hold a lease for one write of ``dataset`` (see the module docstring)."""
    d = data_dir / LEASE_DIR
    d.mkdir(parents=True, exist_ok=True)
    path = d / f"{uuid.uuid4().hex}.lease"
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o644)
    try:
        if fcntl is not None:
            fcntl.flock(fd, fcntl.LOCK_SH)
        os.write(fd, json.dumps({"dataset": dataset, "started": time.time()}).encode())
        yield
    finally:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
        os.close(fd)


def _live_leases(data_dir: Path) -> tuple[set[str], int]:
    """(datasets with a write in flight, number of stale leases removed)."""
    busy: set[str] = set()
    stale = 0
    d = data_dir / LEASE_DIR
    if not d.is_dir():
        return busy, 0
    for p in d.glob("*.lease"):
        try:
            fd = os.open(p, os.O_RDWR)
        except FileNotFoundError:
            continue  # the write just finished
        try:
            alive = True
            if fcntl is not None:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    alive = False  # nobody holds it: its writer is gone
                except BlockingIOError:
                    alive = True
            if not alive:
                with contextlib.suppress(FileNotFoundError):
                    p.unlink()
                stale += 1
                continue
            try:
                dataset = json.loads(os.read(fd, 4096) or b"{}").get("dataset")
            except (ValueError, AttributeError):
                dataset = None
            # a lease still being written names no dataset yet: protect every dataset
            busy.add(dataset if isinstance(dataset, str) else "*")
        finally:
            os.close(fd)
    return busy, stale


_vacuum_lock = threading.Lock()


def _copy_of(rel: str) -> str | None:
    """The data file ``rel`` is the id-index copy of (see :mod:`cityos.store._idindex`)."""
    from cityos.store._idindex import base_path

    return base_path(rel)


def vacuum_files(
    data_dir: Path,
    referenced: Callable[[], set[str]],
    *,
    older_than_s: float = 3600.0,
    dry_run: bool = False,
) -> VacuumResult:
    """Remove the files under ``data_dir`` that ``referenced()`` (the catalog's paths,
    relative to ``data_dir``) does not name, keeping those younger than ``older_than_s``
    seconds or belonging to a dataset with a write in flight."""
    with _vacuum_lock:
        live = referenced()
        busy, stale = _live_leases(data_dir)
        grace = time.time() - max(older_than_s, 0.0)
        candidates: list[tuple[Path, str]] = []
        young = 0
        for p in data_dir.rglob("*.parquet*"):
            rel = p.relative_to(data_dir).as_posix()
            if rel in live or rel.startswith(LEASE_DIR + "/"):
                continue
            if _copy_of(rel) in live:  # an id-index copy lives as long as its data file
                continue
            try:
                mtime = p.stat().st_mtime
            except FileNotFoundError:
                continue
            if mtime >= grace:
                young += 1
            else:
                candidates.append((p, rel))
        # Leases again, then the catalog again: a write that was running when a candidate
        # was seen either still runs (its dataset is busy) or has committed (its files are
        # referenced now) or failed (its files are garbage).
        later, more_stale = _live_leases(data_dir)
        busy |= later
        live = referenced()
        removed = []
        in_flight = 0
        for p, rel in candidates:
            if rel in live or _copy_of(rel) in live:
                continue
            if "*" in busy or rel.split("/", 1)[0] in busy:
                in_flight += 1
                continue
            if not dry_run:
                p.unlink(missing_ok=True)
            removed.append(rel)
        return VacuumResult(tuple(sorted(removed)), young, in_flight, stale + more_stale)

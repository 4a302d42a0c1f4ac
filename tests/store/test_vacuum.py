"""Vacuum removes files no catalog version references, safely while writers run: files of
an in-flight write (in any process) are kept however old, files younger than the grace
period are kept, and a write that commits during a vacuum keeps its files."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest

import cityos
from builders import make_points
from cityos.model import DatasetSchema, Field, ModelKind
from cityos.store import Store
from cityos.store._vacuum import LEASE_DIR, vacuum_files

SRC = str(Path(cityos.__file__).resolve().parents[1])


def _points_schema() -> DatasetSchema:
    return DatasetSchema(ModelKind.POINT_ST, fields=(Field("speed", "float64"),))


def _age(path: Path, seconds: float) -> None:
    t = time.time() - seconds
    os.utime(path, (t, t))


def test_an_in_flight_write_keeps_its_files_however_old(
    city: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    city.create_dataset("cars", _points_schema())
    city.append("cars", make_points(2, 20))
    entered, release = threading.Event(), threading.Event()
    real = city.catalog.commit_files

    def slow_commit(*a: Any, **k: Any) -> int:
        entered.set()
        assert release.wait(30)
        return real(*a, **k)

    monkeypatch.setattr(city.catalog, "commit_files", slow_commit)
    errors: list[BaseException] = []

    def write() -> None:
        try:
            city.append("cars", make_points(2, 20, seed=9).assign(id=lambda d: d.id + "b"))
        except BaseException as exc:
            errors.append(exc)

    t = threading.Thread(target=write)
    t.start()
    assert entered.wait(30)
    live = {f.path for f in city.catalog.files("cars")}
    pending = [
        p
        for p in city.data_dir.rglob("*.parquet*")  # data files and their id-index copies
        if p.relative_to(city.data_dir).as_posix().removesuffix(".ids") not in live
    ]
    assert pending
    for p in pending:  # a write that has taken two hours so far
        _age(p, 7200)
    res = city.vacuum(older_than_s=0)
    assert res.removed == () and res.kept_in_flight == len(pending)
    release.set()
    t.join(30)
    assert not errors
    assert len(city.read("cars")) == 80
    assert not list((city.data_dir / LEASE_DIR).glob("*.lease"))  # the lease is gone


def test_crash_leftovers_and_dead_writers_leases_are_cleared(city: Store) -> None:
    city.create_dataset("cars", _points_schema())
    city.append("cars", make_points(2, 20))
    part = next(city.data_dir.rglob("*.parquet")).parent
    orphan = part / "part-crashed.parquet"
    tmp = part / ".part-crashed.parquet.tmp"
    for p in (orphan, tmp):
        p.write_bytes(b"half a file")
        _age(p, 7200)
    # a process that held a lease and was killed (SIGKILL): the lease file stays unlocked
    script = (
        "import os, signal, sys, pathlib\n"
        "from cityos.store._vacuum import write_lease\n"
        f"cm = write_lease(pathlib.Path({str(city.data_dir)!r}), 'cars'); cm.__enter__()\n"
        "os.kill(os.getpid(), signal.SIGKILL)\n"
    )
    env = {**os.environ, "PYTHONPATH": SRC + os.pathsep + os.environ.get("PYTHONPATH", "")}
    subprocess.run([sys.executable, "-c", script], env=env, timeout=60)
    assert len(list((city.data_dir / LEASE_DIR).glob("*.lease"))) == 1
    young = part / "part-young.parquet"
    young.write_bytes(b"maybe a write in progress")
    res = city.vacuum(older_than_s=600)
    assert sorted(Path(r).name for r in res.removed) == [
        ".part-crashed.parquet.tmp",
        "part-crashed.parquet",
    ]
    assert res.stale_leases == 1 and res.kept_young == 1 and young.exists()
    assert not list((city.data_dir / LEASE_DIR).glob("*.lease"))
    assert len(city.read("cars")) == 40


def test_a_write_that_commits_during_a_vacuum_keeps_its_files(tmp_path: Path) -> None:
    f = tmp_path / "cars" / "p" / "part-new.parquet"
    f.parent.mkdir(parents=True)
    f.write_bytes(b"x")
    _age(f, 7200)
    reads = iter([set(), {"cars/p/part-new.parquet"}])  # committed between the two reads
    res = vacuum_files(tmp_path, lambda: next(reads), older_than_s=0)
    assert res.removed == () and f.exists()
    assert vacuum_files(tmp_path, set, older_than_s=0, dry_run=True).removed == (
        "cars/p/part-new.parquet",
    )
    assert f.exists()


def test_cli_vacuum(city: Store, tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from cityos.cli import app

    city.create_dataset("cars", _points_schema())
    city.append("cars", make_points(2, 20))
    orphan = next(city.data_dir.rglob("*.parquet")).parent / "part-orphan.parquet"
    orphan.write_bytes(b"x")
    _age(orphan, 7200)
    home = ["--home", str(city.settings.home)]
    dry = CliRunner().invoke(app, ["vacuum", *home, "--dry-run"])
    assert dry.exit_code == 0 and "would remove" in dry.output and orphan.exists()
    done = CliRunner().invoke(app, ["vacuum", *home, "--grace", "60"])
    assert done.exit_code == 0 and "1 unreferenced files removed" in done.output, done.output
    assert not orphan.exists() and len(city.read("cars")) == 40

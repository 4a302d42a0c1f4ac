"""Every change to a dataset, from any entry point (plain Python store, CLI, ingest,
SecureStore), is audited in the same transaction as its catalog commit."""

from __future__ import annotations

import getpass
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import cityos
from cityos import access
from cityos.access import _audit
from cityos.config import Settings
from cityos.db import Database, DatasetChange, _hooks, acting_as
from cityos.ingest import FileSource, Mapping
from cityos.model import DatasetSchema, ModelKind
from cityos.store import Store

SRC = str(Path(cityos.__file__).resolve().parents[1])
ROW = {"id": "a", "t": "2026-03-02T08:00Z", "x": 116.4, "y": 39.9}


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CITYOS_")}
    env["PYTHONPATH"] = SRC + os.pathsep + env.get("PYTHONPATH", "")
    return env


def _writes(db: Database, after: int = 0) -> list[tuple[str, str | None, str]]:
    return [
        (e.actor, e.dataset, e.detail["operation"])
        for e in access.read_audit(db, after=after, limit=100_000)
        if e.action == "write"
    ]


@pytest.fixture
def store(db_url: str, tmp_path: Path) -> Iterator[Store]:
    s = Store(settings=Settings(home=tmp_path / "city", database_url=db_url))
    yield s
    s.close()


def test_plain_store_changes_are_audited_even_if_access_was_never_imported(
    tmp_path: Path,
) -> None:
    home = tmp_path / "city"
    script = f"""
import sys
from cityos.store import Store
from cityos.model import DatasetSchema, ModelKind
s = Store({str(home)!r})
s.create_dataset("cars", DatasetSchema(ModelKind.POINT_ST))
s.append("cars", [{ROW!r}])
s.delete("cars", ids=["a"])
s.drop_dataset("cars")
assert "cityos.server" not in sys.modules
"""
    out = subprocess.run(
        [sys.executable, "-c", script], env=_env(), capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stderr
    db = Database(f"sqlite:///{home / 'cityos.db'}")
    me = f"python:{getpass.getuser()}"
    assert _writes(db) == [
        (me, "cars", "create"),
        (me, "cars", "append"),
        (me, "cars", "delete"),
        (me, "cars", "drop"),
    ]
    assert access.verify_audit(db).ok
    db.dispose()


def test_cli_writes_are_audited_as_the_cli(tmp_path: Path) -> None:
    home, csv = tmp_path / "city", tmp_path / "cars.csv"
    csv.write_text("id,t,x,y\na,2026-03-02T08:00Z,116.4,39.9\nb,2026-03-02T08:00Z,116.5,39.9\n")
    cli = [str(Path(sys.executable).parent / "cityos")]
    for args in (["dataset", "create", "cars"], ["load", "cars", str(csv)]):
        out = subprocess.run(
            [*cli, *args, "--home", str(home)],
            env=_env(),
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert out.returncode == 0, out.stdout + out.stderr
    db = Database(f"sqlite:///{home / 'cityos.db'}")
    me = f"cli:{getpass.getuser()}"
    assert _writes(db) == [(me, "cars", "create"), (me, "cars", "append")]
    [entry] = [e for e in access.read_audit(db, limit=100) if e.detail.get("operation") == "append"]
    assert (
        entry.detail["rows_written"] == 2 and entry.detail["source"] == f"load:{csv}"
    )  # cityos load is a FileSource run
    db.dispose()


def test_ingest_writes_are_audited_with_their_source(store: Store, tmp_path: Path) -> None:
    d = tmp_path / "in"
    d.mkdir()
    (d / "a.csv").write_text("k,t,lon,lat\nA,2026-01-01,1,2\nB,2026-01-01,1,3\n")
    m = Mapping.from_dict(
        {
            "dataset": {"name": "pts", "model": "point_st"},
            "id": {"from": "k"},
            "time": {"from": "t"},
            "geometry": {"x": "lon", "y": "lat"},
        }
    )
    with acting_as("ingest-bot"):
        FileSource(d, m, name="nightly").run(store)
    entries = [e for e in access.read_audit(store.db, limit=100) if e.action == "write"]
    assert [(e.actor, e.detail["operation"]) for e in entries] == [
        ("ingest-bot", "create"),
        ("ingest-bot", "append"),
    ]
    assert entries[1].detail["source"] == "nightly" and entries[1].detail["rows_written"] == 2


def test_write_and_audit_entry_commit_together(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    store.create_dataset("cars", DatasetSchema(ModelKind.POINT_ST))
    n_audit = len(access.read_audit(store.db, limit=100_000))
    files = set((store.data_dir).rglob("*.parquet"))

    def broken(*_a: Any, **_k: Any) -> None:
        raise RuntimeError("audit log unavailable")

    monkeypatch.setattr(_audit, "append_audit", broken)
    with pytest.raises(RuntimeError, match="audit log unavailable"):
        store.append("cars", [ROW])
    monkeypatch.undo()
    # no audit entry, so no change: the catalog commit rolled back and its files are gone
    assert store.describe("cars").rows == 0
    assert len(access.read_audit(store.db, limit=100_000)) == n_audit
    assert set(store.data_dir.rglob("*.parquet")) == files

    class Failing:
        def guard(self, db: Database) -> Any:
            import contextlib

            return contextlib.nullcontext()

        def __call__(self, session: Any, change: DatasetChange, actor: str) -> None:
            raise RuntimeError("a later hook failed")

    hook = Failing()
    _hooks.append(hook)
    try:
        with pytest.raises(RuntimeError, match="later hook"):
            store.append("cars", [ROW])
    finally:
        _hooks.remove(hook)
    # the audit entry written before the failure rolled back with the change
    assert store.describe("cars").rows == 0
    assert len(access.read_audit(store.db, limit=100_000)) == n_audit
    store.append("cars", [ROW])
    assert store.describe("cars").rows == 1
    assert _writes(store.db, after=n_audit)[0][2] == "append"
    assert access.verify_audit(store.db).ok


def test_secure_store_changes_are_audited_once_as_the_principal(store: Store) -> None:
    db = store.db
    access.create_role(db, "loader")
    access.grant(db, "loader", "cars", "write")
    access.create_user(db, "wu", None, roles=["loader"])
    ss = access.SecureStore(store, access.principal_for(db, "wu"))
    ss.create_dataset("cars", DatasetSchema(ModelKind.POINT_ST))
    ss.append("cars", [ROW])
    ss.delete("cars", ids=["a"])
    assert _writes(db) == [
        ("wu", "cars", "create"),
        ("wu", "cars", "append"),
        ("wu", "cars", "delete"),
    ]

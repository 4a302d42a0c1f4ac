"""The catalog: datasets, their files and per-row-group statistics, in the relational DB.

Readers see a dataset through the catalog only, so a write becomes visible in the single
transaction that registers its files. Row-group statistics (time range, bounding box,
hashes of the object ids) are loaded into numpy arrays once per dataset version and prune
reads before any file is opened.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from functools import lru_cache
from typing import Any

import numpy as np
from sqlalchemy import (
    BigInteger,
    DateTime,
    Float,
    ForeignKey,
    Integer,
    LargeBinary,
    String,
    Text,
    bindparam,
    delete,
    select,
    update,
)
from sqlalchemy.orm import Mapped, Session, mapped_column

from cityos.db import Base, Database, DatasetChange, utcnow
from cityos.errors import ConflictError, DatasetExists, DatasetNotFound
from cityos.model import DatasetSchema

#: Row-group id sets with each id's time span: the marker, then records of (hash, first and
#: last second relative to the group's first time). Without the marker a blob is plain
#: uint32 hashes (datasets without time).
SPANS_MARK = b"S1"
SPAN_DTYPE = np.dtype([("h", "<u4"), ("t0", "<i4"), ("t1", "<i4")])

__all__ = ["Catalog", "DatasetInfo", "FileEntry", "RowGroupStats"]


class DatasetRow(Base):
    __tablename__ = "st_datasets"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(200), unique=True, nullable=False)
    model: Mapped[str] = mapped_column(String(40), nullable=False)
    schema_json: Mapped[str] = mapped_column(Text, nullable=False)
    version: Mapped[int] = mapped_column(BigInteger, nullable=False, default=0)
    description: Mapped[str] = mapped_column(Text, nullable=False, default="")
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class _Extent:
    """Time range (epoch ms) and bounding box shared by files and row groups."""

    t_min: Mapped[int | None] = mapped_column(BigInteger)
    t_max: Mapped[int | None] = mapped_column(BigInteger)
    x_min: Mapped[float | None] = mapped_column(Float)
    y_min: Mapped[float | None] = mapped_column(Float)
    x_max: Mapped[float | None] = mapped_column(Float)
    y_max: Mapped[float | None] = mapped_column(Float)


#: ``bytes`` by another name: inside ``FileRow`` and ``FileEntry`` the name is a field
_Blob = bytes


class FileRow(_Extent, Base):
    __tablename__ = "st_files"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    dataset_id: Mapped[int] = mapped_column(
        ForeignKey("st_datasets.id", ondelete="CASCADE"), index=True, nullable=False
    )
    path: Mapped[str] = mapped_column(String(1000), nullable=False)
    partition: Mapped[str] = mapped_column(String(100), nullable=False)
    rows: Mapped[int] = mapped_column(BigInteger, nullable=False)
    bytes: Mapped[int] = mapped_column(BigInteger, nullable=False)
    commit_id: Mapped[int] = mapped_column(BigInteger, nullable=False)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    #: per row group of the file's id-index copy: first and last id and time (Arrow IPC)
    id_ranges: Mapped[_Blob | None] = mapped_column(LargeBinary)


class RowGroupRow(_Extent, Base):
    __tablename__ = "st_row_groups"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    file_id: Mapped[int] = mapped_column(
        ForeignKey("st_files.id", ondelete="CASCADE"), index=True, nullable=False
    )
    rg: Mapped[int] = mapped_column(Integer, nullable=False)
    rows: Mapped[int] = mapped_column(Integer, nullable=False)
    id_hashes: Mapped[bytes | None] = mapped_column(LargeBinary)


class CommitRow(Base):
    __tablename__ = "st_commits"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    dataset_id: Mapped[int] = mapped_column(
        ForeignKey("st_datasets.id", ondelete="CASCADE"), index=True, nullable=False
    )
    kind: Mapped[str] = mapped_column(String(20), nullable=False)
    rows_added: Mapped[int] = mapped_column(BigInteger, nullable=False, default=0)
    rows_removed: Mapped[int] = mapped_column(BigInteger, nullable=False, default=0)
    source: Mapped[str] = mapped_column(Text, nullable=False, default="")
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


@dataclass(frozen=True)
class RowGroupStats:
    """Statistics of one row group, as written to the catalog."""

    rg: int
    rows: int
    t_min: int | None
    t_max: int | None
    x_min: float | None
    y_min: float | None
    x_max: float | None
    y_max: float | None
    id_hashes: bytes | None


@dataclass(frozen=True)
class FileEntry:
    """A data file about to be registered (path relative to the data folder)."""

    path: str
    partition: str
    rows: int
    bytes: int
    row_groups: tuple[RowGroupStats, ...]
    #: the key ranges of the file's id-index copy (``_idindex.key_ranges``), if it has one
    id_ranges: _Blob | None = None

    def _agg(self, attr: str, fn: Any) -> Any:
        vals = [getattr(r, attr) for r in self.row_groups if getattr(r, attr) is not None]
        return fn(vals) if vals else None


@dataclass(frozen=True)
class DatasetInfo:
    """What the catalog knows about a dataset."""

    id: int
    name: str
    schema: DatasetSchema
    version: int
    description: str
    created_at: datetime
    rows: int
    files: int
    bytes: int
    t_min: int | None
    t_max: int | None
    bbox: tuple[float, float, float, float] | None

    @property
    def model(self) -> str:
        return str(self.schema.model)

    def to_dict(self) -> dict[str, Any]:
        import pandas as pd

        def ts(v: int | None) -> str | None:
            return None if v is None else pd.Timestamp(v, unit="ms", tz="UTC").isoformat()

        return {
            "name": self.name,
            "model": self.model,
            "crs": self.schema.crs,
            "rows": self.rows,
            "files": self.files,
            "bytes": self.bytes,
            "version": self.version,
            "t_min": ts(self.t_min),
            "t_max": ts(self.t_max),
            "bbox": list(self.bbox) if self.bbox else None,
            "description": self.description,
            "created_at": self.created_at.isoformat() if self.created_at else None,
            "schema": self.schema.to_dict(),
        }


@dataclass
class StatsArrays:
    """Row-group statistics of one dataset version as parallel numpy arrays."""

    version: int
    paths: list[str]
    file_index: np.ndarray  # row group -> index into paths
    rg: np.ndarray
    rows: np.ndarray
    t_min: np.ndarray
    t_max: np.ndarray
    x_min: np.ndarray
    y_min: np.ndarray
    x_max: np.ndarray
    y_max: np.ndarray
    id_hashes: list[bytes | None]
    #: data file path -> key ranges of its id-index copy, for files registered with them
    id_ranges: dict[str, bytes] = field(default_factory=dict)
    #: the catalog id of each file in ``paths`` (files are immutable: what a later version
    #: reads again only for files it does not share with this one)
    file_ids: np.ndarray = field(default_factory=lambda: np.array([], dtype=np.int64))
    _by_hash: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray] | None = None
    #: which incarnation of the dataset these are of: (dataset id, creation time), so a
    #: dataset dropped and created again (by any process) never reuses them
    identity: tuple[int, str] = (0, "")
    #: what queries derive from this version alone (scan plans, column lists), cached with
    #: it: a new version is a new object, so every write invalidates them all at once
    memo: dict[Any, Any] = field(default_factory=dict)

    def remember(self, key: Any, make: Any) -> Any:
        """``make()``, computed once per key for this version (bounded)."""
        try:
            return self.memo[key]
        except KeyError:
            pass
        val = make()
        if len(self.memo) >= 1024:
            self.memo.clear()
        self.memo[key] = val
        return val

    def _spans(self, i: int) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
        """(id hash, first ms, last ms) of each object in row group ``i``; None when the
        group has no recorded ids."""
        blob = self.id_hashes[i]
        if blob is None:
            return None
        if blob[:2] == SPANS_MARK and len(blob) % 4 == 2:
            rec = np.frombuffer(blob, dtype=SPAN_DTYPE, offset=2)
            base = int(self.t_min[i])
            return (
                rec["h"],
                base + rec["t0"].astype(np.int64) * 1000,
                base + rec["t1"].astype(np.int64) * 1000,
            )
        h = np.frombuffer(blob, dtype=np.uint32)  # ids without time spans
        return (
            h,
            np.full(len(h), self.t_min[i], dtype=np.int64),
            np.full(len(h), self.t_max[i], dtype=np.int64),
        )

    def _index(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """(hash, row group, first ms, last ms) sorted by hash, and the groups without ids."""
        if self._by_hash is None:
            hs, owner, t0, t1 = [], [], [], []
            unknown = np.zeros(len(self.id_hashes), dtype=bool)
            for i in range(len(self.id_hashes)):
                sp = self._spans(i)
                if sp is None:
                    unknown[i] = True
                    continue
                hs.append(sp[0])
                t0.append(sp[1])
                t1.append(sp[2])
                owner.append(np.full(len(sp[0]), i, dtype=np.int64))

            def cat(parts: list[np.ndarray], dtype: Any) -> np.ndarray:
                return np.concatenate(parts) if parts else np.array([], dtype=dtype)

            flat = cat(hs, np.uint32)
            order = np.argsort(flat, kind="stable")
            self._by_hash = (
                flat[order],
                cat(owner, np.int64)[order],
                cat(t0, np.int64)[order],
                cat(t1, np.int64)[order],
                unknown,
            )
        return self._by_hash

    def rows_with_ids(
        self,
        hashes: np.ndarray,
        start: int | None = None,
        end: int | None = None,
        among: np.ndarray | None = None,
    ) -> np.ndarray:
        """Mask of row groups that may hold any of the id ``hashes`` in [start, end): one binary
        search per hash in a (hash, row group, time span) index built once per dataset
        version, so a group where the object appears only outside the window is skipped.
        Row groups without recorded ids always match.

        With ``among`` (the groups other conditions left), only those are answered (the
        rest are False); when they are few and the version's index is not built yet, their
        own id spans are checked instead of building it. That is what an append's duplicate
        check of a stream of new times asks: a new version each time, and almost no group
        left by the time window, so building the whole index for it would make every append
        cost in proportion to everything stored."""
        if among is not None and self._by_hash is None and len(among) * 8 <= len(self.id_hashes):
            m = np.zeros(len(self.id_hashes), dtype=bool)
            for i in among.tolist():
                sp = self._spans(i)
                if sp is None:
                    m[i] = True
                    continue
                keep = np.isin(sp[0], hashes)
                if start is not None:
                    keep &= sp[2] >= start
                if end is not None:
                    keep &= sp[1] < end
                m[i] = bool(keep.any())
            return m
        flat, owner, t0, t1, unknown = self._index()
        m = unknown.copy()
        lo = np.searchsorted(flat, hashes, side="left")
        hi = np.searchsorted(flat, hashes, side="right")
        for a, b in zip(lo.tolist(), hi.tolist(), strict=True):
            if b > a:
                keep = np.ones(b - a, dtype=bool)
                if start is not None:
                    keep &= t1[a:b] >= start
                if end is not None:
                    keep &= t0[a:b] < end
                m[owner[a:b][keep]] = True
        if among is not None:
            sel = np.zeros(len(m), dtype=bool)
            sel[among] = True
            m &= sel
        return m


def _assemble_stats(
    version: int,
    ident: tuple[int, str],
    files: Sequence[Any],
    known: dict[tuple[int, str], int],
    prev: StatsArrays | None,
    rows: Sequence[Any],
    ranges: Sequence[Any],
) -> StatsArrays:
    """The statistics of a version whose files (id, path; in id order) are ``files``: row
    groups of files ``prev`` holds (``known``: file -> its index there) are taken from it,
    the others from ``rows`` (file id, rg, rows, extent..., id hashes; in file id, rg order)."""
    big = np.iinfo(np.int64).max

    def col(j: int, dtype: str, fill: float) -> np.ndarray:
        return np.array([fill if r[j] is None else r[j] for r in rows], dtype=dtype)

    new = {
        "rg": col(1, "int64", 0),
        "rows": col(2, "int64", 0),
        "t_min": col(3, "int64", -big),
        "t_max": col(4, "int64", big),
        "x_min": col(5, "float64", -np.inf),
        "y_min": col(6, "float64", -np.inf),
        "x_max": col(7, "float64", np.inf),
        "y_max": col(8, "float64", np.inf),
    }
    new_hashes = [None if r[9] is None else bytes(r[9]) for r in rows]
    new_fid = np.array([int(r[0]) for r in rows], dtype=np.int64)
    n_prev = 0 if prev is None else len(prev.rg)
    if prev is not None:  # where each file's row groups start among prev's (contiguous)
        p_start = np.searchsorted(prev.file_index, np.arange(len(prev.paths)), "left")
        p_end = np.searchsorted(prev.file_index, np.arange(len(prev.paths)), "right")
    take: list[np.ndarray] = []
    paths: list[str] = []
    fids: list[int] = []
    counts: list[int] = []
    for f, p in files:
        j = known.get((int(f), p))
        if j is not None and prev is not None:
            idx = np.arange(p_start[j], p_end[j])
        else:
            a, b = np.searchsorted(new_fid, [int(f), int(f) + 1])
            idx = np.arange(a, b) + n_prev
        if len(idx) == 0:
            continue
        take.append(idx)
        paths.append(str(p))
        fids.append(int(f))
        counts.append(len(idx))
    order = np.concatenate(take) if take else np.array([], dtype=np.int64)

    def pick(name: str) -> np.ndarray:
        both = new[name] if prev is None else np.concatenate([getattr(prev, name), new[name]])
        return both[order]

    hashes = new_hashes if prev is None else prev.id_hashes + new_hashes
    kept = set(paths)
    id_ranges = {} if prev is None else {p: b for p, b in prev.id_ranges.items() if p in kept}
    id_ranges.update({str(p): bytes(b) for p, b in ranges if b is not None})
    return StatsArrays(
        version=version,
        paths=paths,
        file_index=np.repeat(np.arange(len(paths), dtype=np.int64), counts),
        rg=pick("rg"),
        rows=pick("rows"),
        t_min=pick("t_min"),
        t_max=pick("t_max"),
        x_min=pick("x_min"),
        y_min=pick("y_min"),
        x_max=pick("x_max"),
        y_max=pick("y_max"),
        id_hashes=[hashes[i] for i in order.tolist()],
        id_ranges=id_ranges,
        identity=ident,
        file_ids=np.array(fids, dtype=np.int64),
    )


@lru_cache(maxsize=512)
def _parse_schema(text: str) -> DatasetSchema:
    return DatasetSchema.from_json(text)


class Catalog:
    """Datasets, files and statistics in the relational database."""

    _schema_q = select(
        DatasetRow.id, DatasetRow.schema_json, DatasetRow.version, DatasetRow.created_at
    ).where(DatasetRow.name == bindparam("name"))

    def __init__(self, db: Database) -> None:
        self.db = db
        self._stats: dict[str, StatsArrays] = {}
        self._lock = threading.Lock()

    # -- datasets ----------------------------------------------------------------------
    def create(
        self, name: str, schema: DatasetSchema, description: str = "", exist_ok: bool = False
    ) -> None:
        # change_session: the change hooks (the audit log) commit with the change
        with self.db.change_session() as (s, changed):
            existing = s.scalar(select(DatasetRow).where(DatasetRow.name == name))
            if existing is not None:
                if exist_ok and DatasetSchema.from_json(existing.schema_json) == schema:
                    return
                if exist_ok:
                    raise DatasetExists(
                        f"dataset {name!r} exists with a different schema ({existing.model}); "
                        "drop it first or use another name"
                    )
                raise DatasetExists(
                    f"dataset {name!r} already exists; pass exist_ok=True or pick another name"
                )
            s.add(
                DatasetRow(
                    name=name,
                    model=str(schema.model),
                    schema_json=schema.to_json(),
                    version=0,
                    description=description,
                )
            )
            changed(DatasetChange(name, "create", 0, source=str(schema.model)))

    def names(self) -> list[str]:
        with self.db.session() as s:
            return list(s.scalars(select(DatasetRow.name).order_by(DatasetRow.name)))

    def _row(self, s: Session, name: str) -> DatasetRow:
        row = s.scalar(select(DatasetRow).where(DatasetRow.name == name))
        if row is None:
            raise DatasetNotFound(name, list(s.scalars(select(DatasetRow.name))))
        return row

    def schema(self, name: str) -> tuple[int, DatasetSchema, int]:
        """(dataset id, schema, version), read on every call so other processes' writes
        are seen; one indexed lookup through SQLAlchemy Core, schemas parsed once."""
        did, schema, version, _ = self.head(name)
        return did, schema, version

    def head(self, name: str) -> tuple[int, DatasetSchema, int, tuple[int, str]]:
        """(dataset id, schema, version, identity) in one indexed read; the identity tells
        a dataset from one of the same name dropped and created again."""
        with self.db.engine.connect() as conn:
            row = conn.execute(self._schema_q, {"name": name}).first()
        if row is None:
            raise DatasetNotFound(name, self.names())
        return int(row[0]), _parse_schema(row[1]), int(row[2]), (int(row[0]), str(row[3]))

    def info(self, name: str) -> DatasetInfo:
        with self.db.session() as s:
            row = self._row(s, name)
            return self._info(s, row)

    def all(self) -> list[DatasetInfo]:
        with self.db.session() as s:
            return [
                self._info(s, r) for r in s.scalars(select(DatasetRow).order_by(DatasetRow.name))
            ]

    def _info(self, s: Session, row: DatasetRow) -> DatasetInfo:
        from sqlalchemy import func

        agg = s.execute(
            select(
                func.count(FileRow.id),
                func.coalesce(func.sum(FileRow.rows), 0),
                func.coalesce(func.sum(FileRow.bytes), 0),
                func.min(FileRow.t_min),
                func.max(FileRow.t_max),
                func.min(FileRow.x_min),
                func.min(FileRow.y_min),
                func.max(FileRow.x_max),
                func.max(FileRow.y_max),
            ).where(FileRow.dataset_id == row.id)
        ).one()
        x0, y0, x1, y1 = agg[5], agg[6], agg[7], agg[8]
        bbox = (
            None
            if x0 is None or y0 is None or x1 is None or y1 is None
            else (float(x0), float(y0), float(x1), float(y1))
        )
        return DatasetInfo(
            id=row.id,
            name=row.name,
            schema=DatasetSchema.from_json(row.schema_json),
            version=row.version,
            description=row.description,
            created_at=row.created_at,
            rows=int(agg[1]),
            files=int(agg[0]),
            bytes=int(agg[2]),
            t_min=agg[3],
            t_max=agg[4],
            bbox=bbox,
        )

    def drop(self, name: str) -> list[str]:
        """Remove a dataset from the catalog; returns the paths of its files."""
        with self.db.change_session() as (s, changed):
            row = self._row(s, name)
            paths = list(s.scalars(select(FileRow.path).where(FileRow.dataset_id == row.id)))
            fids = select(FileRow.id).where(FileRow.dataset_id == row.id)
            s.execute(delete(RowGroupRow).where(RowGroupRow.file_id.in_(fids)))
            s.execute(delete(FileRow).where(FileRow.dataset_id == row.id))
            s.execute(delete(CommitRow).where(CommitRow.dataset_id == row.id))
            s.delete(row)
            changed(DatasetChange(name, "drop", row.version, files_removed=len(paths)))
        self._stats.pop(name, None)
        return paths

    # -- files ---------------------------------------------------------------------------
    def files(self, name: str, t_min: int | None = None, t_max: int | None = None) -> list[FileRow]:
        """Files of a dataset, optionally only those whose time range meets [t_min, t_max]."""
        with self.db.session() as s:
            row = self._row(s, name)
            q = select(FileRow).where(FileRow.dataset_id == row.id)
            if t_min is not None:
                q = q.where((FileRow.t_max.is_(None)) | (FileRow.t_max >= t_min))
            if t_max is not None:
                q = q.where((FileRow.t_min.is_(None)) | (FileRow.t_min <= t_max))
            return list(s.scalars(q.order_by(FileRow.id)))

    def commit_files(
        self,
        name: str,
        base_version: int,
        add: list[FileEntry],
        remove_paths: list[str],
        kind: str,
        rows_added: int,
        rows_removed: int,
        source: str = "",
    ) -> int:
        """Register ``add`` and unregister ``remove_paths`` in one transaction.

        Fails with :class:`ConflictError` when the dataset changed since ``base_version``
        (optimistic concurrency), so no write is ever based on stale state. Returns the
        new version.
        """
        with self.db.change_session() as (s, changed):
            row = self._row(s, name)
            res = s.execute(
                update(DatasetRow)
                .where(DatasetRow.id == row.id, DatasetRow.version == base_version)
                .values(version=base_version + 1, updated_at=utcnow())
            )
            if res.rowcount != 1:  # type: ignore[attr-defined]
                raise ConflictError(f"dataset {name!r} changed during this {kind}; retry")
            commit = CommitRow(
                dataset_id=row.id,
                kind=kind,
                rows_added=rows_added,
                rows_removed=rows_removed,
                source=source,
            )
            s.add(commit)
            s.flush()
            if remove_paths:
                fids = select(FileRow.id).where(
                    FileRow.dataset_id == row.id, FileRow.path.in_(remove_paths)
                )
                s.execute(delete(RowGroupRow).where(RowGroupRow.file_id.in_(fids)))
                n = s.execute(
                    delete(FileRow).where(
                        FileRow.dataset_id == row.id, FileRow.path.in_(remove_paths)
                    )
                ).rowcount  # type: ignore[attr-defined]
                if n != len(remove_paths):
                    raise ConflictError(f"dataset {name!r}: files to replace are gone; retry")
            for fe in add:
                f = FileRow(
                    dataset_id=row.id,
                    path=fe.path,
                    partition=fe.partition,
                    rows=fe.rows,
                    bytes=fe.bytes,
                    t_min=fe._agg("t_min", min),
                    t_max=fe._agg("t_max", max),
                    x_min=fe._agg("x_min", min),
                    y_min=fe._agg("y_min", min),
                    x_max=fe._agg("x_max", max),
                    y_max=fe._agg("y_max", max),
                    commit_id=commit.id,
                    id_ranges=fe.id_ranges,
                )
                s.add(f)
                s.flush()
                s.add_all(
                    [
                        RowGroupRow(
                            file_id=f.id,
                            rg=r.rg,
                            rows=r.rows,
                            t_min=r.t_min,
                            t_max=r.t_max,
                            x_min=r.x_min,
                            y_min=r.y_min,
                            x_max=r.x_max,
                            y_max=r.y_max,
                            id_hashes=r.id_hashes,
                        )
                        for r in fe.row_groups
                    ]
                )
            changed(
                DatasetChange(
                    name,
                    kind,
                    base_version + 1,
                    rows_added,
                    rows_removed,
                    len(add),
                    len(remove_paths),
                    source,
                )
            )
            return base_version + 1

    # -- statistics for pruning ----------------------------------------------------------
    def stats(
        self, name: str, version: int, identity: tuple[int, str] | None = None
    ) -> StatsArrays:
        """Row-group statistics for ``name`` at ``version`` (of the dataset incarnation
        ``identity``, when given), cached until the next write."""

        def fresh(c: StatsArrays | None) -> bool:
            return (
                c is not None
                and c.version == version
                and (identity is None or c.identity == identity)
            )

        cached = self._stats.get(name)
        if cached is not None and fresh(cached):
            return cached
        with self._lock:
            cached = self._stats.get(name)
            if cached is not None and fresh(cached):
                return cached
            with self.db.session() as s:
                row = self._row(s, name)
                ident = (int(row.id), str(row.created_at))
                files = s.execute(
                    select(FileRow.id, FileRow.path)
                    .where(FileRow.dataset_id == row.id)
                    .order_by(FileRow.id)
                ).all()
                # files are immutable: the row groups and key ranges of a file the cached
                # version of this incarnation already holds are the same in every version,
                # so only those of files added since are read (an append costs in proportion
                # to what it adds, not to everything stored)
                prev = cached if cached is not None and cached.identity == ident else None
                known = (
                    {}
                    if prev is None
                    else {
                        (int(f), p): j
                        for j, (f, p) in enumerate(zip(prev.file_ids, prev.paths, strict=True))
                    }
                )
                added = [int(f) for f, p in files if (int(f), p) not in known]
                rows: list[Any] = []
                ranges: list[Any] = []
                chunks = (
                    [None]
                    if prev is None
                    else [added[i : i + 500] for i in range(0, len(added), 500)]
                )
                for ids in chunks:
                    where = [FileRow.dataset_id == row.id] + (
                        [] if ids is None else [FileRow.id.in_(ids)]
                    )
                    rows += s.execute(
                        select(
                            FileRow.id,
                            RowGroupRow.rg,
                            RowGroupRow.rows,
                            RowGroupRow.t_min,
                            RowGroupRow.t_max,
                            RowGroupRow.x_min,
                            RowGroupRow.y_min,
                            RowGroupRow.x_max,
                            RowGroupRow.y_max,
                            RowGroupRow.id_hashes,
                        )
                        .join(RowGroupRow, RowGroupRow.file_id == FileRow.id)
                        .where(*where)
                        .order_by(FileRow.id, RowGroupRow.rg)
                    ).all()
                    ranges += s.execute(
                        select(FileRow.path, FileRow.id_ranges).where(
                            *where, FileRow.id_ranges.is_not(None)
                        )
                    ).all()
                actual_version = row.version
            st = _assemble_stats(actual_version, ident, files, known, prev, rows, ranges)
            self._stats[name] = st
            return st

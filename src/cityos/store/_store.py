"""The Store: a city's datasets on disk, their catalog, and the queries over them.

Writes are atomic: files are written under unique names first (invisible to readers),
then registered in one catalog transaction guarded by the dataset's version, so readers
never see half a write and a crash leaves no visible partial data (``vacuum`` removes
orphaned files). Appends are idempotent by record key.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import threading
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from cityos.config import Settings
from cityos.db import Database
from cityos.errors import ConflictError, EngineError, QueryError, ValidationError
from cityos.model import ID_COL, TIME_COL, X_COL, Y_COL, DatasetSchema, conform
from cityos.store import _idindex as idindex
from cityos.store import _spec as specs
from cityos.store._catalog import Catalog, DatasetInfo, FileEntry
from cityos.store._engine import (
    DatasetContext,
    Deadline,
    QueryEngine,
    QueryResult,
    Restriction,
    engine_class,
    engine_names,
    read_plan,
    spatial_dataset,
    typed_ids,
)
from cityos.store._layout import decode, hash_values, layout_for, quantum
from cityos.store._plan import Predicate, plan_scan, query_geometry, to_ms
from cityos.store._spec import Grid, QuerySpec
from cityos.store._sql import SqlView
from cityos.store._vacuum import VacuumResult, vacuum_files, write_lease

__all__ = ["CompactResult", "Store", "WriteResult", "open_city"]

_NAME_OK = set("abcdefghijklmnopqrstuvwxyz0123456789_")


def check_name(name: str) -> str:
    """Dataset names are lower-case identifiers, so they are safe as SQL views and folder names."""
    if (
        not isinstance(name, str)
        or not name
        or len(name) > 63
        or not set(name) <= _NAME_OK
        or name[0].isdigit()
    ):
        raise ValidationError(
            f"invalid dataset name {name!r}: use 1-63 lower-case letters, digits and '_', "
            "starting with a letter",
            field="name",
            expected="an identifier such as 'taxi_gps'",
        )
    return name


@dataclass(frozen=True)
class WriteResult:
    """What an append did."""

    dataset: str
    rows_in: int
    rows_written: int
    duplicates: int
    files: tuple[str, ...] = ()
    version: int = 0
    elapsed_s: float = 0.0


@dataclass(frozen=True)
class CompactResult:
    dataset: str
    files_before: int
    files_after: int
    rows: int


@dataclass
class _Locks:
    data_dir: Path
    by_name: dict[str, threading.Lock] = field(default_factory=dict)
    guard: threading.Lock = field(default_factory=threading.Lock)

    @contextlib.contextmanager
    def get(self, name: str) -> Any:
        """The dataset's writer lock, and a lease that keeps ``vacuum`` (of any process)
        off the files this write creates until it has committed them."""
        with self.guard:
            lock = self.by_name.setdefault(name, threading.Lock())
        with lock, write_lease(self.data_dir, name):
            yield


class Store:
    """A city's spatio-temporal data engine.

    Parameters
    ----------
    home:
        Folder of the city (catalog ``cityos.db`` and ``data/``), created if missing.
    database_url, data_dir:
        Override where the catalog and the files live (PostgreSQL, shared storage).
    engine:
        The default query engine: ``"duckdb"`` (embedded, the default), ``"spark"``, or any
        other registered with :func:`cityos.store.register_engine`.

    Examples
    --------
    >>> import tempfile, cityos
    >>> from cityos.model import DatasetSchema, ModelKind
    >>> store = cityos.open_city(tempfile.mkdtemp())
    >>> _ = store.create_dataset("cars", DatasetSchema(ModelKind.POINT_ST))
    >>> store.append("cars", [{"id": "a", "t": "2026-03-02T08:00Z", "x": 116.4, "y": 39.9}]).rows_written
    1
    >>> len(store.st_range("cars", (116, 39, 117, 40), "2026-03-02", "2026-03-03"))
    1
    """

    def __init__(
        self,
        home: str | Path | None = None,
        *,
        database_url: str | None = None,
        data_dir: str | Path | None = None,
        engine: str | None = None,
        settings: Settings | None = None,
        migrate: bool = True,
    ) -> None:
        kw: dict[str, Any] = {}
        if home is not None:
            kw["home"] = Path(home)
        if database_url is not None:
            kw["database_url"] = database_url
        if data_dir is not None:
            kw["data_dir"] = Path(data_dir)
        if engine is not None:
            kw["engine"] = engine
        self.settings = settings or Settings(**kw)
        assert self.settings.data_dir is not None and self.settings.database_url is not None
        self.data_dir: Path = self.settings.data_dir
        self.data_dir.mkdir(parents=True, exist_ok=True)
        if self.settings.database_url.startswith("sqlite:///"):
            Path(self.settings.database_url.removeprefix("sqlite:///")).parent.mkdir(
                parents=True, exist_ok=True
            )
        self.db = Database(self.settings.database_url)
        if migrate:
            self.db.migrate()
        self.catalog = Catalog(self.db)
        self._locks = _Locks(self.data_dir)
        self._engines: dict[str, QueryEngine] = {}
        self.default_engine = self.settings.engine
        if self.default_engine not in engine_names():  # an error at open, not at first query
            raise EngineError(
                f"unknown engine {self.default_engine!r}; registered engines: "
                f"{', '.join(engine_names())}"
            )

    # -- engines ---------------------------------------------------------------------------
    def engine(self, name: str | None = None) -> QueryEngine:
        """The registered query engine called ``name`` (default: the store's), started on
        first use."""
        name = name or self.default_engine
        eng = self._engines.get(name)
        if eng is None:
            if not isinstance(name, str):
                raise EngineError(f"engine must be a name, not {type(name).__name__}")
            eng = engine_class(name)(self.settings)
            self._engines[name] = eng
        return eng

    def close(self) -> None:
        for e in self._engines.values():
            e.close()
        self._engines.clear()
        self.db.dispose()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- datasets --------------------------------------------------------------------------
    def create_dataset(
        self, name: str, schema: DatasetSchema, *, exist_ok: bool = False, description: str = ""
    ) -> DatasetInfo:
        """Register a dataset with its schema (no data yet)."""
        self.catalog.create(check_name(name), schema, description, exist_ok)
        return self.catalog.info(name)

    def list_datasets(self) -> list[DatasetInfo]:
        return self.catalog.all()

    def describe(self, name: str) -> DatasetInfo:
        return self.catalog.info(name)

    def schema(self, name: str) -> DatasetSchema:
        return self.catalog.schema(name)[1]

    def drop_dataset(self, name: str) -> None:
        """Remove a dataset and its files."""
        with self._locks.get(name):
            self.catalog.drop(name)
            shutil.rmtree(self.data_dir / name, ignore_errors=True)

    def context(self, name: str, restriction: Restriction | None = None) -> DatasetContext:
        """What a query engine needs of dataset ``name``: schema, one consistent version of
        its statistics and where its files are (optionally with a row restriction)."""
        if not isinstance(name, str):
            raise QueryError(f"a dataset is named by a string, not {type(name).__name__}")
        _, schema, version, identity = self.catalog.head(name)
        return DatasetContext(
            name,
            schema,
            version,
            self.catalog.stats(name, version, identity),
            self.data_dir,
            restriction,
        )

    _context = context  # the name engines and tools used before the seam was public

    # -- writes ----------------------------------------------------------------------------
    def append(self, name: str, data: Any, *, source: str = "") -> WriteResult:
        """Add records to a dataset: all of them or none.

        Records whose key is already stored (or repeated within ``data``) are skipped, so
        re-delivering a batch is safe. Raises :class:`~cityos.errors.ValidationError`
        naming the dataset, row, key and field of every bad record; nothing is written then.
        """
        t0 = time.perf_counter()
        _, schema, _ = self.catalog.schema(name)
        tbl = conform(data, schema, name)
        rows_in = tbl.num_rows
        tbl = _dedup_within(tbl, schema)
        with self._locks.get(name):
            for _attempt in range(20):
                ctx = self._context(name)
                schema, version = ctx.schema, ctx.version
                new = self._drop_stored(ctx, tbl)
                if new.num_rows == 0:
                    return WriteResult(
                        name, rows_in, 0, rows_in, (), version, time.perf_counter() - t0
                    )
                entries = self._write_parts(name, schema, new)
                try:
                    v = self.catalog.commit_files(
                        name, version, entries, [], "append", new.num_rows, 0, source
                    )
                except ConflictError:
                    self._unlink([e.path for e in entries])
                    continue
                except BaseException:
                    self._unlink([e.path for e in entries])
                    raise
                return WriteResult(
                    name,
                    rows_in,
                    new.num_rows,
                    rows_in - new.num_rows,
                    tuple(e.path for e in entries),
                    v,
                    time.perf_counter() - t0,
                )
        raise ConflictError(f"dataset {name!r} kept changing during the append; retry later")

    def _write_parts(self, name: str, schema: DatasetSchema, tbl: pa.Table) -> list[FileEntry]:
        """Encode ``tbl`` into one file per time partition and write them, each under a unique
        name invisible to readers until registered. Parquet writing releases the GIL, so
        files are written on two threads while the next partition is being sorted."""
        from concurrent.futures import ThreadPoolExecutor

        layout = layout_for(schema)
        entries: list[FileEntry] = []
        with ThreadPoolExecutor(max_workers=2, thread_name_prefix="cityos-write") as pool:
            futures = [
                pool.submit(self._write_part, name, schema, layout, part)
                for part in layout.encode(tbl)
            ]
            errors = []
            for f in futures:
                try:
                    entries.append(f.result())
                except BaseException as exc:  # every file written must be accounted for
                    errors.append(exc)
        if errors:
            self._unlink([e.path for e in entries])
            raise errors[0]
        return entries

    def _write_part(self, name: str, schema: DatasetSchema, layout: Any, part: Any) -> FileEntry:
        rel = f"{name}/{part.partition}/part-{uuid.uuid4().hex}.parquet"
        full = self.data_dir / rel
        full.parent.mkdir(parents=True, exist_ok=True)
        tmp = full.with_name("." + full.name + ".tmp")
        extra, ranges = 0, None
        try:
            if idindex.applies(schema):
                # the (id, t)-ordered copy first: a data file is never visible without it
                copy = idindex.build(part.table, quantum(schema))
                if copy is not None:
                    extra, ranges = idindex.write(copy, self.data_dir / idindex.index_path(rel))
            pq.write_table(part.table, tmp, **layout.parquet_options(part.table))
            with open(tmp, "rb+") as fh:
                os.fsync(fh.fileno())
            os.replace(tmp, full)
        except BaseException:
            tmp.unlink(missing_ok=True)
            (self.data_dir / idindex.index_path(rel)).unlink(missing_ok=True)
            raise
        # the copy's bytes count as the file's: what the dataset costs on disk
        return FileEntry(
            rel,
            part.partition,
            part.table.num_rows,
            full.stat().st_size + extra,
            tuple(part.row_groups),
            ranges,
        )

    def _unlink(self, rels: list[str]) -> None:
        for r in rels:
            for p in (r, idindex.index_path(r)):
                with contextlib.suppress(FileNotFoundError):
                    (self.data_dir / p).unlink()

    def _drop_stored(self, ctx: DatasetContext, tbl: pa.Table) -> pa.Table:
        """Remove rows whose record key is already stored.

        Only the key columns of row groups that can hold a matching key are read: those
        whose time range meets the batch's and whose object-id hashes meet the batch's ids,
        so a stream appending new times reads almost nothing."""
        schema = ctx.schema
        if tbl.num_rows == 0 or not ctx.stats.paths:
            return tbl
        keys = list(schema.key)
        start = end = None
        if schema.model.has_time and TIME_COL in tbl.column_names:
            t = tbl[TIME_COL].cast(pa.int64()).to_numpy()
            start, end = int(t.min()), int(t.max()) + 1
        ids = None
        if ID_COL in keys:
            uniq = pc.unique(tbl[ID_COL]).to_numpy(zero_copy_only=False)
            if len(uniq) <= 10_000:  # beyond that, per-row-group hash checks cost more than reading
                ids = tuple(uniq.tolist())
        plan = plan_scan(ctx.stats, Predicate(None, start, end, ids))
        if not plan.files:
            return tbl
        stored = read_plan(ctx, plan, [k for k in keys if k not in (X_COL, Y_COL)])
        new_h = _key_hash(tbl, keys)
        old_h = _key_hash(stored, keys)
        cand = np.isin(new_h, old_h)
        if not cand.any():
            return tbl
        # confirm candidates on the real key values (hashes could collide)
        a = tbl.select(keys).filter(pa.array(cand)).to_pandas()
        a["_pos"] = np.flatnonzero(cand)
        b = (
            stored.select(keys)
            .filter(pa.array(np.isin(old_h, new_h[cand])))
            .to_pandas()
            .drop_duplicates()
        )
        hit = a.merge(b, on=keys, how="inner")["_pos"].to_numpy()
        keep = np.ones(tbl.num_rows, dtype=bool)
        keep[hit] = False
        return tbl.filter(pa.array(keep))

    def delete(
        self,
        name: str,
        *,
        geometry: Any = None,
        start: Any = None,
        end: Any = None,
        ids: Any = None,
        crs: Any = None,
    ) -> int:
        """Delete the rows matching every given condition; returns how many were deleted.
        Affected files are rewritten without those rows and swapped in one transaction."""
        if geometry is None and start is None and end is None and ids is None:
            raise QueryError(
                "delete needs a condition (geometry, start, end or ids); "
                "use drop_dataset to remove everything"
            )
        with self._locks.get(name):
            for _attempt in range(20):
                ctx = self._context(name)
                pred = Predicate(
                    query_geometry(geometry, crs, ctx.schema),
                    to_ms(start),
                    to_ms(end),
                    None if ids is None else typed_ids(specs._ids(ids), ctx.schema, name),
                )
                plan = plan_scan(ctx.stats, pred)
                add: list[FileEntry] = []
                remove: list[str] = []
                removed = 0
                for rel in plan.files:
                    tbl = decode(ctx.schema, pq.read_table(self.data_dir / rel))
                    m = pred.mask(tbl)
                    if not m.any():
                        continue
                    removed += int(m.sum())
                    remove.append(rel)
                    keep = tbl.filter(pa.array(~m))
                    if keep.num_rows:
                        add += self._write_parts(name, ctx.schema, keep)
                if not remove:
                    return 0
                try:
                    self.catalog.commit_files(name, ctx.version, add, remove, "delete", 0, removed)
                except ConflictError:
                    self._unlink([e.path for e in add])
                    continue
                return removed
        raise ConflictError(f"dataset {name!r} kept changing during the delete; retry later")

    def compact(self, name: str, *, min_files: int = 2) -> CompactResult:
        """Merge each partition's files into one, re-sorted, in one transaction."""
        with self._locks.get(name):
            ctx = self._context(name)
            files = self.catalog.files(name)
            by_part: dict[str, list[str]] = {}
            for f in files:
                by_part.setdefault(f.partition, []).append(f.path)
            add: list[FileEntry] = []
            remove: list[str] = []
            rows = 0
            for _part, paths in by_part.items():
                if len(paths) < min_files:
                    continue
                tbl = pa.concat_tables(
                    [decode(ctx.schema, pq.read_table(self.data_dir / p)) for p in paths],
                    promote_options="permissive",
                )
                rows += tbl.num_rows
                add += self._write_parts(name, ctx.schema, tbl)
                remove += paths
            if remove:
                try:
                    self.catalog.commit_files(name, ctx.version, add, remove, "compact", 0, 0)
                except BaseException:
                    self._unlink([e.path for e in add])
                    raise
            return CompactResult(name, len(files), len(files) - len(remove) + len(add), rows)

    def vacuum(self, *, older_than_s: float = 3600.0, dry_run: bool = False) -> VacuumResult:
        """Delete data files no catalog version references (replaced by compaction or
        delete, or left by a crashed write) once older than ``older_than_s``; files of
        writes still in flight, in any process, are kept however old (see
        :mod:`cityos.store._vacuum`). ``int(result)`` is the number of files removed."""

        def referenced() -> set[str]:
            live: set[str] = set()
            for name in self.catalog.names():
                live |= {f.path for f in self.catalog.files(name)}
            return live

        return vacuum_files(self.data_dir, referenced, older_than_s=older_than_s, dry_run=dry_run)

    # -- queries ---------------------------------------------------------------------------
    def touches(self, spec: QuerySpec) -> tuple[str, ...]:
        """Every dataset answering ``spec`` reads: those it names, and the network of a
        network series queried by area (its geometry lives there)."""
        return self._touches(spec, self.schema)

    @staticmethod
    def _touches(spec: QuerySpec, schema_of: Any) -> tuple[str, ...]:
        names = list(dict.fromkeys(spec.datasets()))
        if isinstance(spec, specs.Scan) and spec.geometry is not None:
            net = spatial_dataset(schema_of(spec.dataset))
            if net is not None and net not in names:
                names.append(net)
        return tuple(names)

    def query(
        self,
        spec: QuerySpec,
        *,
        engine: str | None = None,
        restrictions: Mapping[str, Restriction] | None = None,
        timeout_s: float | None = None,
    ) -> QueryResult:
        """Answer one query: the single entry point every query method goes through.

        Parameters
        ----------
        spec:
            A query specification (:class:`~cityos.store.Scan`, ``Range``, ``STRange``,
            ``IDTemporal``, ``KNN``, ``KNNTrajectories``, ``Similar``, ``JoinRegions``,
            ``JoinNearest`` or ``Aggregate``).
        engine:
            A registered engine name (default: the store's).
        restrictions:
            Per dataset, the rows the query may use (applied to every dataset the query
            touches before any computation); a security layer passes row filters here.
        timeout_s:
            Time budget; past it the query is cancelled with
            :class:`~cityos.errors.QueryTimeout`.

        Examples
        --------
        >>> import tempfile, cityos
        >>> from cityos.model import DatasetSchema, ModelKind
        >>> from cityos.store import STRange
        >>> store = cityos.open_city(tempfile.mkdtemp())
        >>> _ = store.create_dataset("cars", DatasetSchema(ModelKind.POINT_ST))
        >>> _ = store.append("cars", [{"id": "a", "t": "2026-03-02T08:00Z", "x": 116.4, "y": 39.9}])
        >>> len(store.query(STRange("cars", (116, 39, 117, 40), "2026-03-02", "2026-03-03")))
        1
        """
        if not isinstance(spec, QuerySpec):
            raise QueryError(f"query needs a query spec, not {type(spec).__name__}")
        deadline = Deadline(timeout_s)
        r = dict(restrictions or {})
        # one catalog read per dataset: its schema, version and statistics together
        contexts: dict[str, DatasetContext] = {}

        def ctx_of(d: str) -> DatasetContext:
            if d not in contexts:
                contexts[d] = self.context(d, r.get(d))
            return contexts[d]

        touched = self._touches(spec, lambda d: ctx_of(d).schema)
        unknown = set(r) - set(touched)
        if unknown:
            raise QueryError(
                f"restrictions name datasets the query does not touch: {sorted(unknown)}"
            )
        for d in touched:
            ctx_of(d)
        contexts = {d: contexts[d] for d in touched}
        res = self.engine(engine).execute(spec, contexts, deadline)
        if r:
            res.stats["rows_restricted"] = {d: contexts[d].rows_restricted for d in r}
        return res

    def scan(
        self,
        name: str,
        *,
        columns: list[str] | None = None,
        geometry: Any = None,
        start: Any = None,
        end: Any = None,
        ids: Any = None,
        crs: Any = None,
        engine: str | None = None,
    ) -> QueryResult:
        """Rows matching any combination of geometry, time window [start, end) and ids."""
        return self.query(
            specs.scan(
                name, columns=columns, geometry=geometry, start=start, end=end, ids=ids, crs=crs
            ),
            engine=engine,
        )

    def read(self, name: str, *, engine: str | None = None) -> QueryResult:
        """Every row of a dataset."""
        return self.query(specs.read(name), engine=engine)

    def range(
        self, name: str, geometry: Any, *, crs: Any = None, engine: str | None = None
    ) -> QueryResult:
        """Spatial range query: rows inside ``geometry`` (bbox tuple, WKT or shapely)."""
        return self.query(specs.range(name, geometry, crs=crs), engine=engine)

    def st_range(
        self,
        name: str,
        geometry: Any,
        start: Any,
        end: Any,
        *,
        crs: Any = None,
        engine: str | None = None,
    ) -> QueryResult:
        """Spatio-temporal range query: rows inside ``geometry`` with start <= t < end."""
        return self.query(specs.st_range(name, geometry, start, end, crs=crs), engine=engine)

    def id_temporal(
        self, name: str, ids: Any, start: Any = None, end: Any = None, *, engine: str | None = None
    ) -> QueryResult:
        """Every row of the given object id(s) in [start, end)."""
        return self.query(specs.id_temporal(name, ids, start, end), engine=engine)

    def knn(
        self,
        name: str,
        x: float,
        y: float,
        k: int,
        *,
        start: Any = None,
        end: Any = None,
        crs: Any = None,
        engine: str | None = None,
    ) -> QueryResult:
        """The ``k`` points nearest to (x, y), with ``distance_m``."""
        return self.query(specs.knn(name, x, y, k, start=start, end=end, crs=crs), engine=engine)

    def knn_trajectories(
        self,
        name: str,
        x: float,
        y: float,
        k: int,
        *,
        start: Any = None,
        end: Any = None,
        crs: Any = None,
        engine: str | None = None,
    ) -> QueryResult:
        """The ``k`` objects that pass nearest to (x, y) in the window (``id``, ``distance_m``)."""
        return self.query(
            specs.knn_trajectories(name, x, y, k, start=start, end=end, crs=crs), engine=engine
        )

    def similar(
        self,
        name: str,
        trajectory: Any,
        k: int,
        *,
        start: Any = None,
        end: Any = None,
        metric: str = "dtw",
        crs: Any = None,
        engine: str | None = None,
    ) -> QueryResult:
        """The ``k`` objects whose trajectories in the window are most similar to ``trajectory``."""
        return self.query(
            specs.similar(name, trajectory, k, start=start, end=end, metric=metric, crs=crs),
            engine=engine,
        )

    def join_regions(
        self,
        name: str,
        regions: str,
        *,
        start: Any = None,
        end: Any = None,
        geometry: Any = None,
        crs: Any = None,
        engine: str | None = None,
    ) -> QueryResult:
        """Points joined with the regions containing them (adds ``region_id``)."""
        return self.query(
            specs.join_regions(name, regions, start=start, end=end, geometry=geometry, crs=crs),
            engine=engine,
        )

    def join_nearest(
        self,
        name: str,
        lines: str,
        *,
        max_distance_m: float = 50.0,
        start: Any = None,
        end: Any = None,
        geometry: Any = None,
        crs: Any = None,
        engine: str | None = None,
    ) -> QueryResult:
        """Points joined with the nearest line within ``max_distance_m`` (adds ``edge_id``, ``distance_m``)."""
        return self.query(
            specs.join_nearest(
                name,
                lines,
                max_distance_m=max_distance_m,
                start=start,
                end=end,
                geometry=geometry,
                crs=crs,
            ),
            engine=engine,
        )

    def aggregate(
        self,
        name: str,
        *,
        grid: Grid | None = None,
        regions: str | None = None,
        time_bin: str | None = "1h",
        aggs: Mapping[str, Any] | None = None,
        start: Any = None,
        end: Any = None,
        geometry: Any = None,
        crs: Any = None,
        engine: str | None = None,
    ) -> QueryResult:
        """Aggregate points into grid cells or regions per time bin: a spatial time series
        (``id``, ``t``, ``x``, ``y``, aggregates).

        ``aggs`` maps output names to ``"count"`` (rows), a function applied to the column
        of the same name (``{"speed": "mean"}``), or a ``(column, function)`` pair
        (``{"avg": ("speed", "mean")}``); functions are count, sum, mean, min and max.
        A ``grid`` made by :meth:`Grid.from_metres` without a CRS follows the dataset's."""
        return self.query(
            specs.aggregate(
                name,
                grid=grid,
                regions=regions,
                time_bin=time_bin,
                aggs=aggs,
                start=start,
                end=end,
                geometry=geometry,
                crs=crs,
            ),
            engine=engine,
        )

    # -- SQL -------------------------------------------------------------------------------
    def sql(self, query: str, *, engine: str | None = None) -> pa.Table:
        """Run SQL where every dataset is a view under its name (points expose ``x`` and
        ``y``; other geometry is WKB in ``geometry``), on ``engine`` (default: the store's;
        ``"duckdb"`` or ``"spark"``). Spatio-temporal functions, the same on both engines:
        ``haversine_m(x1, y1, x2, y2)`` (metres between lon/lat points) and the core
        ``ST_*`` functions (``ST_Point(x, y)``, ``ST_Length``, ``ST_Intersects``,
        ``ST_Distance``, ``ST_Buffer``, ``ST_AsText``, ...): on DuckDB its spatial extension,
        loaded from the installed ``duckdb-extension-spatial`` package, never the network;
        on Spark the same functions over the shared geometry kernels
        (:data:`cityos.store._spatial_sql.SPARK_FUNCTIONS`). ``z2_cell(x, y, level)`` is
        DuckDB only.

        Examples
        --------
        >>> # store.sql("SELECT id, count(*) FROM taxis GROUP BY id")
        >>> # store.sql("SELECT id, ST_Length(geometry) FROM roads", engine="spark")
        """
        return self.engine(engine).sql(query, self.sql_views())

    def sql_views(self) -> list[SqlView]:
        """Every dataset with files, as :meth:`sql` shows it."""
        out = []
        for info in self.catalog.all():
            files = tuple(str(self.data_dir / f.path) for f in self.catalog.files(info.name))
            if files:
                out.append(SqlView(info.name, files, info.schema.point_layout))
        return out


def _dedup_within(tbl: pa.Table, schema: DatasetSchema) -> pa.Table:
    """Keep the first of records repeating a key within one batch. Hashes find the
    candidates in O(n); the real key values decide, so a hash collision never drops a
    distinct record."""
    keys = [k for k in schema.key if k in tbl.column_names]
    if not keys or tbl.num_rows < 2:
        return tbl
    cand = pd.Series(_key_hash(tbl, keys)).duplicated(keep=False).to_numpy()
    if not cand.any():
        return tbl
    pos = np.flatnonzero(cand)
    sub = tbl.select(keys).take(pa.array(pos)).to_pandas()
    dup = np.zeros(tbl.num_rows, dtype=bool)
    dup[pos] = sub.duplicated(subset=keys, keep="first").to_numpy()
    return tbl.filter(pa.array(~dup)) if dup.any() else tbl


def _key_hash(tbl: pa.Table, keys: list[str]) -> np.ndarray:
    h = np.zeros(tbl.num_rows, dtype=np.uint64)
    for k in keys:
        h = h * np.uint64(1000003) ^ hash_values(tbl[k])
    return h


def open_city(home: str | Path = "city", **kw: Any) -> Store:
    """Open (or create) the city in ``home``: a :class:`Store` with its catalog migrated."""
    return Store(home, **kw)

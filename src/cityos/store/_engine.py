"""Query engines. The base class owns the loop — resolve the dataset, build the exact
predicate, plan which row groups to read, dispatch to the engine's hook, put the answer
in canonical order and attach statistics — so an engine only implements the hooks.
Both engines must return the same rows for the same query (a contract test checks it).
"""

from __future__ import annotations

import threading
import time
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from cityos.errors import QueryError
from cityos.geo.crs import crs_from_user, transform_xy
from cityos.model import ID_COL, TIME_COL, TRAJ_COL, DatasetSchema, table_to_geopandas
from cityos.store._catalog import StatsArrays
from cityos.store._layout import decode
from cityos.store._plan import (
    KNN,
    Aggregate,
    IDTemporal,
    JoinNearest,
    JoinRegions,
    KNNTrajectories,
    Predicate,
    Range,
    ScanPlan,
    Similar,
    query_geometry,
    to_ms,
)

if TYPE_CHECKING:
    from cityos.store._store import Store

__all__ = ["DatasetContext", "QueryEngine", "QueryResult", "read_plan"]


@dataclass
class QueryResult:
    """Rows answering a query, with how they were found.

    ``stats`` holds ``engine``, ``files_total``, ``files_read``, ``row_groups_total``,
    ``row_groups_read``, ``rows_scanned`` and ``elapsed_ms``.
    """

    table: pa.Table
    crs: str
    stats: dict[str, Any] = field(default_factory=dict)

    def __len__(self) -> int:
        return int(self.table.num_rows)

    def to_arrow(self) -> pa.Table:
        return self.table

    def to_pandas(self) -> Any:
        return self.table.to_pandas()

    def to_geopandas(self) -> Any:
        return table_to_geopandas(self.table, self.crs)

    def __repr__(self) -> str:
        return f"<QueryResult {self.table.num_rows} rows, {self.stats.get('elapsed_ms', 0):.2f} ms>"


@dataclass
class DatasetContext:
    """A dataset as a query sees it: schema and one consistent version of its statistics."""

    name: str
    schema: DatasetSchema
    version: int
    stats: StatsArrays
    data_dir: Path


_md_cache: dict[str, pq.FileMetaData] = {}  # parsed footers by path; files never change
_md_lock = threading.Lock()


def _parquet_file(path: str) -> pq.ParquetFile:
    md = _md_cache.get(path)
    if md is None:
        md = pq.ParquetFile(path).metadata
        with _md_lock:
            if len(_md_cache) > 4096:
                _md_cache.clear()
            _md_cache[path] = md
    return pq.ParquetFile(path, metadata=md)


def read_plan(ctx: DatasetContext, plan: ScanPlan, columns: list[str] | None = None) -> pa.Table:
    """Read the planned row groups and return them in canonical form."""
    parts = []
    for rel, rgs in plan.files.items():
        pf = _parquet_file(str(ctx.data_dir / rel))
        parts.append(pf.read_row_groups(sorted(rgs), columns=columns, use_threads=len(rgs) > 2))
    if not parts:
        return empty_table(ctx, columns)
    tbl = pa.concat_tables(parts, promote_options="permissive") if len(parts) > 1 else parts[0]
    return decode(ctx.schema, tbl)


def empty_table(ctx: DatasetContext, columns: list[str] | None = None) -> pa.Table:
    """A zero-row canonical table with the dataset's stored schema."""
    if ctx.stats.paths:
        pf = _parquet_file(str(ctx.data_dir / ctx.stats.paths[0]))
        sch = pf.schema_arrow
        if columns is not None:
            sch = pa.schema([sch.field(c) for c in columns if c in sch.names])
        return decode(ctx.schema, sch.empty_table())
    from cityos.model import conform

    return conform(
        pa.table({c: pa.array([], pa.string()) for c in ctx.schema.canonical_columns}), ctx.schema
    )


def sort_keys(schema: DatasetSchema, tbl: pa.Table) -> list[tuple[str, str]]:
    keys = [k for k in schema.key if k in tbl.column_names]
    for extra in (ID_COL, TIME_COL, TRAJ_COL):
        if extra in tbl.column_names and extra not in keys:
            keys.append(extra)
    return [(k, "ascending") for k in keys]


class QueryEngine(ABC):
    """An execution engine; subclasses implement the ``_hooks``."""

    name: ClassVar[str]

    def __init__(self, store: Store) -> None:
        self.store = store

    # -- the loop --------------------------------------------------------------------------
    def execute(self, spec: Any) -> QueryResult:
        t0 = time.perf_counter()
        ctx = self.store._context(spec.dataset)
        info: dict[str, Any] = {
            "engine": self.name,
            "files_total": len(ctx.stats.paths),
            "row_groups_total": len(ctx.stats.rg),
        }
        s = ctx.schema
        if isinstance(spec, Range | IDTemporal):
            if isinstance(spec, IDTemporal):
                if not spec.ids:
                    raise QueryError("id_temporal needs at least one id")
                pred = Predicate(None, to_ms(spec.start), to_ms(spec.end), tuple(spec.ids))
                cols = None
            else:
                pred = Predicate(
                    query_geometry(spec.geometry, spec.crs, s),
                    to_ms(spec.start),
                    to_ms(spec.end),
                    None if spec.ids is None else tuple(spec.ids),
                )
                cols = list(spec.columns) if spec.columns else None
            self._check_window(pred)
            # read the key columns too, so the canonical order is total (not that of the files)
            # even when the caller leaves them out; they are dropped again after sorting
            extra = (
                []
                if cols is None
                else [c for c in dict.fromkeys((*s.key, ID_COL, TIME_COL)) if c not in cols]
            )
            tbl = self._range(
                ctx, pred, None if cols is None else list(dict.fromkeys([*cols, *extra])), info
            )
            tbl = tbl.sort_by(sort_keys(s, tbl)) if tbl.num_rows else tbl
            drop = [c for c in extra if c in tbl.column_names]
            tbl = tbl.drop_columns(drop) if drop else tbl
        elif isinstance(spec, KNN | KNNTrajectories):
            if spec.k < 1:
                raise QueryError(f"k must be at least 1, got {spec.k}")
            self._need_points(ctx, type(spec).__name__)
            x, y = self._point(spec.x, spec.y, spec.crs, s)
            pred = Predicate(None, to_ms(spec.start), to_ms(spec.end))
            self._check_window(pred)
            if isinstance(spec, KNN):
                tbl = self._knn(ctx, x, y, spec.k, pred, info)
            else:
                tbl = self._knn_trajectories(ctx, x, y, spec.k, pred, info)
        elif isinstance(spec, Similar):
            if spec.k < 1:
                raise QueryError(f"k must be at least 1, got {spec.k}")
            if spec.metric not in ("dtw", "frechet"):
                raise QueryError(f"metric must be 'dtw' or 'frechet', not {spec.metric!r}")
            self._need_points(ctx, "similarity search")
            coords = self._coords(spec.coords, spec.crs, s)
            pred = Predicate(None, to_ms(spec.start), to_ms(spec.end))
            tbl = self._similar(ctx, coords, spec.k, spec.metric, pred, info)
        elif isinstance(spec, JoinRegions | JoinNearest):
            self._need_points(ctx, "a join")
            other = self.store._context(
                spec.regions if isinstance(spec, JoinRegions) else spec.lines
            )
            pred = Predicate(
                query_geometry(spec.geometry, spec.crs, s), to_ms(spec.start), to_ms(spec.end)
            )
            if other.schema.crs != s.crs:
                raise QueryError(
                    f"datasets {ctx.name!r} ({s.crs}) and {other.name!r} ({other.schema.crs}) "
                    "must share a CRS to be joined"
                )
            if isinstance(spec, JoinRegions):
                tbl = self._join_regions(ctx, other, pred, info)
            else:
                if spec.max_distance_m <= 0:
                    raise QueryError("max_distance_m must be positive")
                tbl = self._join_nearest(ctx, other, spec.max_distance_m, pred, info)
        elif isinstance(spec, Aggregate):
            self._need_points(ctx, "aggregation")
            regions = self.store._context(spec.regions) if spec.regions else None
            pred = Predicate(
                query_geometry(spec.geometry, spec.crs, s), to_ms(spec.start), to_ms(spec.end)
            )
            for out, a in spec.aggs.items():
                if not isinstance(a, str) and a[0] not in self.store._columns(ctx):
                    raise QueryError(
                        f"aggregate {out!r}: dataset {ctx.name!r} has no column {a[0]!r}"
                    )
            tbl = self._aggregate(ctx, spec, regions, pred, info)
        else:
            raise QueryError(f"unknown query {type(spec).__name__}")
        info["elapsed_ms"] = (time.perf_counter() - t0) * 1000
        info.setdefault("rows_out", tbl.num_rows)
        return QueryResult(tbl, s.crs, info)

    # -- checks and conversions ------------------------------------------------------------
    @staticmethod
    def _check_window(pred: Predicate) -> None:
        if pred.start is not None and pred.end is not None and pred.end < pred.start:
            raise QueryError("the time window ends before it starts")

    @staticmethod
    def _need_points(ctx: DatasetContext, what: str) -> None:
        if not ctx.schema.point_layout:
            raise QueryError(f"{what} needs a point dataset; {ctx.name!r} is {ctx.schema.model}")

    @staticmethod
    def _point(x: float, y: float, crs: Any, s: DatasetSchema) -> tuple[float, float]:
        if not (np.isfinite(x) and np.isfinite(y)):
            raise QueryError(f"query point ({x}, {y}) must be finite")
        src = crs_from_user(crs) if crs is not None else s.crs
        tx, ty = transform_xy(np.array([x]), np.array([y]), src, s.crs)
        return float(tx[0]), float(ty[0])

    @staticmethod
    def _coords(coords: Any, crs: Any, s: DatasetSchema) -> np.ndarray:
        if hasattr(coords, "geom_type"):
            import shapely

            arr = shapely.get_coordinates(coords)
        else:
            arr = np.asarray(coords, dtype="float64")
        if arr.ndim != 2 or arr.shape[1] != 2 or len(arr) == 0 or not np.isfinite(arr).all():
            raise QueryError(
                "a query trajectory must be a non-empty (n, 2) array of finite x/y or a LineString"
            )
        src = crs_from_user(crs) if crs is not None else s.crs
        tx, ty = transform_xy(arr[:, 0], arr[:, 1], src, s.crs)
        return np.column_stack([tx, ty])

    # -- hooks ----------------------------------------------------------------------------
    @abstractmethod
    def _range(
        self, ctx: DatasetContext, pred: Predicate, columns: list[str] | None, info: dict[str, Any]
    ) -> pa.Table: ...

    @abstractmethod
    def _knn(
        self, ctx: DatasetContext, x: float, y: float, k: int, pred: Predicate, info: dict[str, Any]
    ) -> pa.Table: ...

    @abstractmethod
    def _knn_trajectories(
        self, ctx: DatasetContext, x: float, y: float, k: int, pred: Predicate, info: dict[str, Any]
    ) -> pa.Table: ...

    @abstractmethod
    def _similar(
        self,
        ctx: DatasetContext,
        coords: np.ndarray,
        k: int,
        metric: str,
        pred: Predicate,
        info: dict[str, Any],
    ) -> pa.Table: ...

    @abstractmethod
    def _join_regions(
        self, ctx: DatasetContext, regions: DatasetContext, pred: Predicate, info: dict[str, Any]
    ) -> pa.Table: ...

    @abstractmethod
    def _join_nearest(
        self,
        ctx: DatasetContext,
        lines: DatasetContext,
        max_d: float,
        pred: Predicate,
        info: dict[str, Any],
    ) -> pa.Table: ...

    @abstractmethod
    def _aggregate(
        self,
        ctx: DatasetContext,
        spec: Aggregate,
        regions: DatasetContext | None,
        pred: Predicate,
        info: dict[str, Any],
    ) -> pa.Table: ...

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release resources (sessions, connections)."""

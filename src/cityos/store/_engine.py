"""Query engines and the seam between them and the store.

An engine sees only what a query needs: one :class:`DatasetContext` per dataset the query
touches (schema, one consistent version of its statistics, where its files are, and any
:class:`Restriction` a caller above the store put on its rows) and a :class:`Deadline`.
It never sees the :class:`~cityos.store.Store`. The base class owns the loop — check the
spec, build the exact predicate, dispatch to the engine's hook, put the answer in
canonical order and attach statistics — so an engine only implements the hooks.

Engines are registered by name with :func:`register_engine` (the built-in ``duckdb`` and
``spark`` below); every registered engine must return the same rows for the same query,
which one contract test checks over all of them. A third engine is one new module that
subclasses :class:`QueryEngine` and calls :func:`register_engine`.
"""

from __future__ import annotations

import os
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor, wait
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from itertools import pairwise
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from cityos.errors import EngineError, QueryError, QueryTimeout
from cityos.geo.crs import transform_xy
from cityos.model import (
    GEOM_COL,
    ID_COL,
    TIME_COL,
    TRAJ_COL,
    X_COL,
    Y_COL,
    DatasetSchema,
    table_to_geopandas,
)
from cityos.store._catalog import StatsArrays
from cityos.store._kernels import bin_ms
from cityos.store._layout import decode
from cityos.store._plan import Predicate, ScanPlan, query_geometry, to_ms, user_crs
from cityos.store._spec import (
    KNN,
    MAX_K,
    MAX_QUERY_TRAJECTORY,
    Aggregate,
    IDTemporal,
    JoinNearest,
    JoinRegions,
    KNNTrajectories,
    QuerySpec,
    Scan,
    Similar,
    STRange,
)
from cityos.store._sql import SqlView

if TYPE_CHECKING:
    from cityos.config import Settings

__all__ = [
    "DatasetContext",
    "Deadline",
    "QueryEngine",
    "QueryResult",
    "Restriction",
    "engine_class",
    "engine_names",
    "parallel_map",
    "read_plan",
    "register_engine",
    "split_plan",
]

_T = TypeVar("_T")
_R = TypeVar("_R")


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


@dataclass(frozen=True)
class Restriction:
    """The rows of one dataset a query may use, decided above the store (a role's row
    filter, say). Engines apply it to every row they read of that dataset, before any
    computation, so joins, aggregates and nearest-neighbour searches see only those rows.

    ``mask`` takes canonical rows (with ``columns`` among them) and returns which to keep;
    ``spatial`` says it also needs the coordinates (``x``/``y`` or ``geometry``).
    """

    mask: Callable[[pa.Table], np.ndarray]
    columns: frozenset[str] = frozenset()
    spatial: bool = False

    def needs(self, schema: DatasetSchema) -> set[str]:
        """Canonical columns the mask reads."""
        need = set(self.columns)
        if self.spatial:
            need |= {X_COL, Y_COL} if schema.point_layout else {GEOM_COL}
        return need


@dataclass
class DatasetContext:
    """A dataset as a query sees it: schema, one consistent version of its statistics,
    the folder its files are under, and any restriction on its rows."""

    name: str
    schema: DatasetSchema
    version: int
    stats: StatsArrays
    data_dir: Path
    restriction: Restriction | None = None
    #: rows the restriction removed so far (counted where rows are read in this process)
    rows_restricted: int = 0

    def columns(self) -> list[str]:
        """Every canonical column of the dataset, declared or found in its files."""

        def make() -> tuple[str, ...]:
            cols = list(self.schema.canonical_columns) + [f.name for f in self.schema.fields]
            if self.stats.paths:
                sch = _parquet_file(str(self.data_dir / self.stats.paths[0])).schema_arrow
                cols += [c for c in sch.names if c not in cols]
            return tuple(cols)

        return list(self.stats.remember(("columns", self.schema), make))

    def physical(self, columns: list[str] | None) -> list[str] | None:
        """Stored columns needed for canonical ``columns`` (ids and times are always read,
        for filters and ordering, and whatever the restriction needs)."""
        if columns is None:
            return None
        need = set(columns) | {ID_COL}
        if self.restriction is not None:
            need |= self.restriction.needs(self.schema)
        if self.schema.model.has_time:
            need.add(TIME_COL)
        if self.schema.point_layout and need & {X_COL, Y_COL}:
            need -= {X_COL, Y_COL}
            need.add(GEOM_COL)
        return sorted(need)

    def restrict(self, tbl: pa.Table) -> pa.Table:
        """Canonical rows with the restriction applied."""
        r = self.restriction
        if r is None or tbl.num_rows == 0:
            return tbl
        m = np.asarray(r.mask(tbl), dtype=bool)
        if m.all():
            return tbl
        self.rows_restricted += int((~m).sum())
        return tbl.filter(pa.array(m))


class Deadline:
    """A query's time budget: :meth:`check` raises :class:`~cityos.errors.QueryTimeout`
    once it is spent, and :meth:`watch` cancels blocking work (a DuckDB statement, a Spark
    job) when it runs out.

    Examples
    --------
    >>> Deadline(None).remaining is None
    True
    >>> Deadline(0.0).check()
    Traceback (most recent call last):
    ...
    cityos.errors.QueryTimeout: the query ran past its time budget of 0 s; narrow it (a smaller area, a shorter window, fewer ids) or raise the budget
    """

    def __init__(self, timeout_s: float | None) -> None:
        if timeout_s is not None and not (timeout_s >= 0):
            raise QueryError(f"timeout_s must be a non-negative number of seconds, not {timeout_s}")
        self.timeout_s = timeout_s
        self.at = None if timeout_s is None else time.monotonic() + timeout_s

    @property
    def remaining(self) -> float | None:
        return None if self.at is None else max(0.0, self.at - time.monotonic())

    @property
    def expired(self) -> bool:
        return self.at is not None and time.monotonic() >= self.at

    def check(self) -> None:
        if self.expired:
            raise self.error()

    def error(self) -> QueryTimeout:
        return QueryTimeout(
            f"the query ran past its time budget of {self.timeout_s:g} s; narrow it (a "
            "smaller area, a shorter window, fewer ids) or raise the budget"
        )

    @contextmanager
    def watch(self, cancel: Callable[[], None]) -> Iterator[None]:
        """Run the block; call ``cancel`` from a timer thread if the budget runs out, and
        raise :class:`QueryTimeout` afterwards if it did."""
        rem = self.remaining
        if rem is None:
            yield
            return
        self.check()
        fired = threading.Event()

        def fire() -> None:
            fired.set()
            cancel()

        timer = threading.Timer(rem, fire)
        timer.daemon = True
        timer.start()
        try:
            yield
        except Exception as exc:
            if fired.is_set():
                raise self.error() from exc
            raise
        finally:
            timer.cancel()
        if fired.is_set():
            raise self.error()


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


def parquet_file(path: str) -> pq.ParquetFile:
    """A Parquet file with its footer parsed once per process (files never change)."""
    return _parquet_file(path)


#: Threads one query may use to read and decode row groups and to run its join kernels
#: (Arrow, numpy, shapely and pyproj release the GIL in that work); 1 keeps it all on the
#: calling thread.
QUERY_THREADS = max(1, min(2, os.cpu_count() or 1))
#: Fewest planned row groups worth splitting across the query threads.
PARALLEL_MIN_ROW_GROUPS = 16
#: Parts a plan is cut into per query thread (several, so a thread that runs late on a
#: busy machine leaves its share to the others), and the fewest row groups in a part.
PARTS_PER_THREAD = 4
MIN_PART_ROW_GROUPS = 8

_pool: ThreadPoolExecutor | None = None
_pool_lock = threading.Lock()


def _worker_pool() -> ThreadPoolExecutor:
    global _pool
    with _pool_lock:
        if _pool is None:
            _pool = ThreadPoolExecutor(
                max_workers=max(1, QUERY_THREADS - 1), thread_name_prefix="cityos-query"
            )
        return _pool


def parallel_map(fn: Callable[[_T], _R], items: Sequence[_T]) -> list[_R]:
    """``[fn(i) for i in items]`` on the calling thread and the query worker threads at
    once, results in the order of ``items``. Threads take the next item as they come free,
    so a thread the machine does not schedule delays the answer by one item at most. The
    first error stops the other threads taking items and is raised once they stop. ``fn``
    must not itself call :func:`parallel_map` (it would wait on its own pool).

    Examples
    --------
    >>> parallel_map(lambda v: v * v, [1, 2, 3])
    [1, 4, 9]
    """
    if len(items) <= 1 or QUERY_THREADS <= 1:
        return [fn(i) for i in items]
    results: list[Any] = [None] * len(items)
    todo = iter(range(len(items)))
    lock = threading.Lock()
    failed = threading.Event()

    def drain() -> None:
        while not failed.is_set():
            with lock:
                k = next(todo, None)
            if k is None:
                return
            try:
                results[k] = fn(items[k])
            except BaseException:
                failed.set()
                raise

    pool = _worker_pool()
    helpers = [pool.submit(drain) for _ in range(min(QUERY_THREADS, len(items)) - 1)]
    try:
        drain()
    finally:
        wait(helpers)
    for f in helpers:
        f.result()  # a helper's error
    return results


def split_plan(plan: ScanPlan, parts: int = 0) -> list[ScanPlan]:
    """The plan cut into ``parts`` (default: :data:`PARTS_PER_THREAD` per query thread, of
    at least :data:`MIN_PART_ROW_GROUPS` row groups) consecutive plans of about equal
    numbers of row groups, in the order :func:`read_plan` reads them, so
    reading the parts one after the other gives the rows of the whole plan in the same
    order. A plan with fewer than :data:`PARALLEL_MIN_ROW_GROUPS` row groups stays whole.

    Examples
    --------
    >>> p = ScanPlan({"a": [5, 4, 3, 2, 1, 0], "b": list(range(10, 0, -1))}, 20, 2, 0)
    >>> [q.files for q in split_plan(p, 2)]
    [{'a': [0, 1, 2, 3, 4, 5], 'b': [1, 2]}, {'b': [3, 4, 5, 6, 7, 8, 9, 10]}]
    >>> len(split_plan(ScanPlan({"a": [0, 1, 2]}, 3, 1, 0), 2))  # too small to split
    1
    """
    items = [(rel, rg) for rel, rgs in plan.files.items() for rg in sorted(rgs)]
    if not parts:
        parts = (
            1
            if QUERY_THREADS <= 1
            else min(QUERY_THREADS * PARTS_PER_THREAD, len(items) // MIN_PART_ROW_GROUPS)
        )
    if parts <= 1 or len(items) < max(2, PARALLEL_MIN_ROW_GROUPS):
        return [plan]
    parts = min(parts, len(items))
    bounds = [round(k * len(items) / parts) for k in range(parts + 1)]
    out = []
    for a, b in pairwise(bounds):
        files: dict[str, list[int]] = {}
        for rel, rg in items[a:b]:
            files.setdefault(rel, []).append(rg)
        out.append(ScanPlan(files, plan.row_groups_total, plan.files_total, 0))
    return out


def read_plan(
    ctx: DatasetContext,
    plan: ScanPlan,
    columns: list[str] | None = None,
    deadline: Deadline | None = None,
    use_threads: bool | None = None,
) -> pa.Table:
    """Read the planned row groups (stored ``columns``) and return them in canonical form,
    with the context's restriction applied. ``use_threads``: whether Arrow decodes the
    columns of one file on its own threads (default: when more than two row groups)."""
    parts = []
    for rel, rgs in plan.files.items():
        if deadline is not None:
            deadline.check()
        pf = _parquet_file(str(ctx.data_dir / rel))
        thr = len(rgs) > 2 if use_threads is None else use_threads
        parts.append(pf.read_row_groups(sorted(rgs), columns=columns, use_threads=thr))
    if not parts:
        return empty_table(ctx, columns)
    tbl = pa.concat_tables(parts, promote_options="permissive") if len(parts) > 1 else parts[0]
    return ctx.restrict(decode(ctx.schema, tbl))


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


def sort_table(tbl: pa.Table, keys: list[tuple[str, str]]) -> pa.Table:
    """``tbl.sort_by(keys)``, faster: every key column becomes dense integer sort codes
    (text by its rank among the distinct values, integers and times offset from their
    minimum; nulls last, as ``sort_by`` puts them), the codes are packed into one int64
    when their ranges fit, and a stable sort of that orders the rows (timsort, which also
    profits from the runs an answer made of sorted row groups already has). Ties keep
    their order, so the answer is exactly ``sort_by``'s; keys it cannot code (floats,
    nested types) leave the whole sort to ``sort_by``.

    Examples
    --------
    >>> t = pa.table({"id": ["b", "a", None, "b", "a"], "t": [2, 9, 0, 1, 3]})
    >>> keys = [("id", "ascending"), ("t", "ascending")]
    >>> sort_table(t, keys).equals(t.sort_by(keys))
    True
    """
    if tbl.num_rows < 2 or not keys:
        return tbl
    codes: list[tuple[np.ndarray, int]] = []
    for name, order in keys:
        c = _sort_codes(tbl[name], order)
        if c is None:
            return tbl.sort_by(keys)
        codes.append(c)
    widths = [top.bit_length() for _, top in codes]
    if sum(widths) <= 63:
        packed = np.zeros(tbl.num_rows, dtype=np.int64)
        shift = 0
        for (c, _), w in zip(reversed(codes), reversed(widths), strict=True):
            packed |= c << shift if shift else c
            shift += w
        order_ix: Any = np.argsort(packed, kind="stable")
    else:
        ktbl = pa.table({f"k{i}": c for i, (c, _) in enumerate(codes)})
        order_ix = pc.sort_indices(ktbl, [(f"k{i}", "ascending") for i in range(len(codes))])
    return tbl.take(order_ix)


def _sort_codes(col: pa.ChunkedArray, order: str) -> tuple[np.ndarray, int] | None:
    """Integer codes in [0, top] whose ascending order is ``col``'s in ``order``, nulls
    coded ``top`` (last, whatever the order); None for a type this does not code."""
    typ = col.type
    if pa.types.is_string(typ) or pa.types.is_large_string(typ):
        enc = pc.dictionary_encode(col).combine_chunks()
        top = len(enc.dictionary)
        rank = pc.rank(enc.dictionary, sort_keys=order, tiebreaker="first")
        code = pc.take(pc.subtract(rank.cast(pa.int64()), 1), enc.indices)
        return np.asarray(code.fill_null(top) if code.null_count else code), top
    if pa.types.is_boolean(typ):
        arr = col.combine_chunks().cast(pa.int8())
    elif pa.types.is_integer(typ) and not pa.types.is_uint64(typ):
        arr = col.combine_chunks()
    elif pa.types.is_timestamp(typ) or pa.types.is_date64(typ) or pa.types.is_duration(typ):
        arr = col.combine_chunks().view(pa.int64())
    elif pa.types.is_date32(typ):
        arr = col.combine_chunks().view(pa.int32())
    else:
        return None
    v = np.asarray(arr.fill_null(0) if arr.null_count else arr).astype(np.int64, copy=False)
    valid = np.asarray(arr.is_valid()) if arr.null_count else None
    present = v if valid is None else v[valid]
    if len(present) == 0:
        return np.zeros(len(v), dtype=np.int64), 0
    lo, hi = int(present.min()), int(present.max())
    top = hi - lo + 1
    if top >= 2**62:  # the offsets would not fit an int64
        return None
    c = hi - v if order == "descending" else v - lo
    return (c if valid is None else np.where(valid, c, top)), top


def sort_keys(schema: DatasetSchema, tbl: pa.Table) -> list[tuple[str, str]]:
    keys = [k for k in schema.key if k in tbl.column_names]
    for extra in (ID_COL, TIME_COL, TRAJ_COL):
        if extra in tbl.column_names and extra not in keys:
            keys.append(extra)
    return [(k, "ascending") for k in keys]


def typed_ids(ids: tuple[Any, ...], schema: DatasetSchema, dataset: str) -> tuple[Any, ...]:
    """Ids converted to the dataset's id type where the conversion is exact (``7`` and
    ``"7"`` name the same object), a :class:`QueryError` otherwise."""
    out: list[Any] = []
    for v in ids:
        if isinstance(v, np.generic):
            v = v.item()
        if isinstance(v, bool) or not isinstance(v, str | int | float):
            raise QueryError(
                f"dataset {dataset!r}: an id must be a string or an integer, not {type(v).__name__}"
            )
        if schema.id_type == "string":
            if isinstance(v, float):
                if not v.is_integer():
                    raise QueryError(f"dataset {dataset!r} has text ids; {v!r} is not one")
                v = int(v)
            out.append(v if isinstance(v, str) else str(v))
            continue
        if isinstance(v, int):
            out.append(v)
        elif isinstance(v, float) and v.is_integer():
            out.append(int(v))
        elif isinstance(v, str) and v.strip().lstrip("+-").isdigit():
            out.append(int(v.strip()))
        else:
            raise QueryError(
                f"dataset {dataset!r} has integer ids; {str(v)[:40]!r} is not an integer"
            )
    for v in out:
        if isinstance(v, int) and not -(2**63) <= v < 2**63:
            raise QueryError(f"dataset {dataset!r}: id {v} does not fit in 64 bits")
    return tuple(out)


def spatial_dataset(schema: DatasetSchema) -> str | None:
    """The dataset that holds the geometry of a dataset without its own (a network series'
    network), or None."""
    if schema.model.has_geometry:
        return None
    return schema.network


# -- the registry -----------------------------------------------------------------------------
_ENGINES: dict[str, Callable[[], type[QueryEngine]]] = {}


def register_engine(name: str, engine: type[QueryEngine] | Callable[[], type[QueryEngine]]) -> None:
    """Make an engine available as ``Store.query(..., engine=name)``.

    ``engine`` is the :class:`QueryEngine` subclass, or a function returning it (so an
    engine with heavy imports loads only when first used).
    """
    if not isinstance(name, str) or not name.isidentifier():
        raise EngineError(f"engine name {name!r} must be an identifier")
    if isinstance(engine, type):
        cls = engine
        _ENGINES[name] = lambda: cls
    else:
        _ENGINES[name] = engine


def engine_names() -> tuple[str, ...]:
    """The registered engine names, in registration order."""
    return tuple(_ENGINES)


def engine_class(name: str) -> type[QueryEngine]:
    """The engine class registered as ``name``."""
    load = _ENGINES.get(name)
    if load is None:
        raise EngineError(
            f"unknown engine {name!r}; registered engines: {', '.join(engine_names())}"
        )
    return load()


class QueryEngine(ABC):
    """An execution engine; subclasses implement the ``_hooks``.

    Parameters
    ----------
    settings:
        The city's settings (an engine may read its own options there, such as
        ``spark_master``); ``None`` for defaults.
    """

    name: ClassVar[str]

    def __init__(self, settings: Settings | None = None) -> None:
        self.settings = settings
        self.deadline = Deadline(None)

    # -- the loop --------------------------------------------------------------------------
    def execute(
        self,
        spec: QuerySpec,
        datasets: Mapping[str, DatasetContext],
        deadline: Deadline | None = None,
    ) -> QueryResult:
        """Answer ``spec`` over ``datasets`` (one context for each of ``spec.datasets()``)."""
        t0 = time.perf_counter()
        missing = [d for d in spec.datasets() if d not in datasets]
        if missing:
            raise EngineError(f"no context given for dataset(s) {missing}")
        self.deadline = deadline or Deadline(None)
        ctx = datasets[spec.dataset]
        info: dict[str, Any] = {
            "engine": self.name,
            "files_total": len(ctx.stats.paths),
            "row_groups_total": len(ctx.stats.rg),
        }
        s = ctx.schema
        tbl: pa.Table
        if isinstance(spec, Scan | IDTemporal):
            if isinstance(spec, IDTemporal):
                if not spec.ids:
                    raise QueryError("id_temporal needs at least one id")
                pred = Predicate(
                    None,
                    to_ms(spec.start),
                    to_ms(spec.end),
                    typed_ids(tuple(spec.ids), s, ctx.name),
                )
                cols = None
            else:
                if isinstance(spec, STRange) and not s.model.has_time:
                    raise QueryError(
                        f"st_range needs a dataset with time; {ctx.name!r} is {s.model} "
                        "(use range for a spatial query)"
                    )
                ids = None if spec.ids is None else typed_ids(tuple(spec.ids), s, ctx.name)
                geometry = spec.geometry
                if geometry is not None and not s.model.has_geometry:
                    # a network series has no geometry of its own: its rows are the edges
                    # of its network that meet the geometry
                    ids = self._edges_in(ctx, datasets, geometry, spec.crs, ids, info)
                    geometry = None
                pred = Predicate(
                    query_geometry(geometry, spec.crs, s), to_ms(spec.start), to_ms(spec.end), ids
                )
                if (pred.start is not None or pred.end is not None) and not s.model.has_time:
                    raise QueryError(
                        f"dataset {ctx.name!r} is {s.model} and has no time; drop start/end"
                    )
                cols = list(spec.columns) if spec.columns else None
                if cols:
                    known = ctx.columns()
                    bad = [c for c in cols if c not in known]
                    if bad:
                        raise QueryError(f"dataset {ctx.name!r} has no column(s) {bad}")
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
            tbl = sort_table(tbl, sort_keys(s, tbl)) if tbl.num_rows else tbl
            drop = [c for c in extra if c in tbl.column_names]
            tbl = tbl.drop_columns(drop) if drop else tbl
        elif isinstance(spec, KNN):
            self._check_k(spec.k)
            self._need_points(ctx, spec.kind)
            x, y = self._point(spec.x, spec.y, spec.crs, s)
            pred = Predicate(None, to_ms(spec.start), to_ms(spec.end))
            self._check_window(pred)
            if isinstance(spec, KNNTrajectories):
                tbl = self._knn_trajectories(ctx, x, y, spec.k, pred, info)
            else:
                tbl = self._knn(ctx, x, y, spec.k, pred, info)
        elif isinstance(spec, Similar):
            self._check_k(spec.k)
            if spec.metric not in ("dtw", "frechet"):
                raise QueryError(f"metric must be 'dtw' or 'frechet', not {spec.metric!r}")
            self._need_points(ctx, "similarity search")
            coords = self._coords(spec.coords, spec.crs, s)
            pred = Predicate(None, to_ms(spec.start), to_ms(spec.end))
            self._check_window(pred)
            tbl = self._similar(ctx, coords, spec.k, spec.metric, pred, info)
        elif isinstance(spec, JoinRegions | JoinNearest):
            self._need_points(ctx, "a join")
            other = datasets[spec.regions if isinstance(spec, JoinRegions) else spec.lines]
            self._need_shapes(other, "regions" if isinstance(spec, JoinRegions) else "lines")
            pred = Predicate(
                query_geometry(spec.geometry, spec.crs, s), to_ms(spec.start), to_ms(spec.end)
            )
            self._check_window(pred)
            if other.schema.crs != s.crs:
                raise QueryError(
                    f"datasets {ctx.name!r} ({s.crs}) and {other.name!r} ({other.schema.crs}) "
                    "must share a CRS to be joined"
                )
            if isinstance(spec, JoinRegions):
                tbl = self._join_regions(ctx, other, pred, info)
            else:
                if not (
                    isinstance(spec.max_distance_m, int | float) and spec.max_distance_m > 0
                ) or not np.isfinite(spec.max_distance_m):
                    raise QueryError("max_distance_m must be a positive number of metres")
                tbl = self._join_nearest(ctx, other, float(spec.max_distance_m), pred, info)
        elif isinstance(spec, Aggregate):
            self._need_points(ctx, "aggregation")
            regions = datasets[spec.regions] if spec.regions else None
            if regions is not None:
                self._need_shapes(regions, "regions")
                if regions.schema.crs != s.crs:
                    raise QueryError(
                        f"datasets {ctx.name!r} ({s.crs}) and {regions.name!r} "
                        f"({regions.schema.crs}) must share a CRS to be aggregated together"
                    )
            if spec.time_bin is not None and s.model.has_time:
                bin_ms(spec.time_bin)  # a bad bin is an error before any work
            pred = Predicate(
                query_geometry(spec.geometry, spec.crs, s), to_ms(spec.start), to_ms(spec.end)
            )
            self._check_window(pred)
            self._check_agg_columns(ctx, spec)
            if spec.grid is not None:
                spec = replace(spec, grid=spec.grid.resolve(s.crs))
                assert spec.grid is not None and spec.grid.crs is not None
                user_crs(spec.grid.crs, "grid crs")
            tbl = self._aggregate(ctx, spec, regions, pred, info)
        else:
            raise QueryError(f"unknown query {type(spec).__name__}")
        self.deadline.check()
        info["elapsed_ms"] = (time.perf_counter() - t0) * 1000
        info.setdefault("rows_out", tbl.num_rows)
        return QueryResult(tbl, s.crs, info)

    def _edges_in(
        self,
        ctx: DatasetContext,
        datasets: Mapping[str, DatasetContext],
        geometry: Any,
        crs: Any,
        ids: tuple[Any, ...] | None,
        info: dict[str, Any],
    ) -> tuple[Any, ...]:
        """Ids of the network edges meeting ``geometry`` (and among ``ids``, if given)."""
        net = spatial_dataset(ctx.schema)
        if net is None or net not in datasets:
            raise QueryError(
                f"dataset {ctx.name!r} is {ctx.schema.model} without a network dataset, so it "
                "has no geometry to query by area; create it with network='<lines dataset>'"
            )
        nctx = datasets[net]
        g = query_geometry(geometry, crs, nctx.schema)
        edges = self._range(nctx, Predicate(g), [ID_COL], {})
        found = typed_ids(
            tuple(edges[ID_COL].to_pylist()) if edges.num_rows else (), ctx.schema, ctx.name
        )
        info["edges_matched"] = len(found)
        if ids is not None:
            keep = set(ids)
            found = tuple(v for v in found if v in keep)
        return found

    # -- checks and conversions ------------------------------------------------------------
    @staticmethod
    def _check_window(pred: Predicate) -> None:
        if pred.start is not None and pred.end is not None and pred.end < pred.start:
            raise QueryError("the time window ends before it starts")

    @staticmethod
    def _check_k(k: Any) -> None:
        if isinstance(k, bool) or not isinstance(k, int | np.integer) or not 1 <= k <= MAX_K:
            raise QueryError(f"k must be an integer from 1 to {MAX_K}, got {k!r}")

    @staticmethod
    def _need_points(ctx: DatasetContext, what: str) -> None:
        if not ctx.schema.point_layout:
            raise QueryError(f"{what} needs a point dataset; {ctx.name!r} is {ctx.schema.model}")

    @staticmethod
    def _need_shapes(ctx: DatasetContext, what: str) -> None:
        if ctx.schema.point_layout or ctx.schema.model.has_time:
            raise QueryError(
                f"{what} must be a static dataset of shapes (polygons or lines); "
                f"{ctx.name!r} is {ctx.schema.model} of points"
                if ctx.schema.point_layout
                else f"{what} must be a static dataset of shapes; {ctx.name!r} is {ctx.schema.model}"
            )

    @staticmethod
    def _check_agg_columns(ctx: DatasetContext, spec: Aggregate) -> None:
        """Aggregated columns exist and are numeric; messages name columns and types only,
        never values."""
        target = empty_table(ctx)
        known = ctx.columns()
        for out, a in spec.agg_specs.items():
            if a.column is None:
                continue
            if a.column not in known:
                raise QueryError(
                    f"aggregate {out!r}: dataset {ctx.name!r} has no column {a.column!r}"
                )
            if a.column in (ID_COL, TIME_COL, X_COL, Y_COL):
                raise QueryError(
                    f"aggregate {out!r}: {a.column!r} is a key or coordinate column; "
                    "aggregate a value column"
                )
            if a.fn == "count":
                continue
            typ = target.schema.field(a.column).type if a.column in target.column_names else None
            if typ is None or not (pa.types.is_integer(typ) or pa.types.is_floating(typ)):
                raise QueryError(
                    f"aggregate {out!r}: {a.fn} needs a numeric column; {a.column!r} of "
                    f"dataset {ctx.name!r} is {typ if typ is not None else 'not stored'}"
                )

    @staticmethod
    def _point(x: Any, y: Any, crs: Any, s: DatasetSchema) -> tuple[float, float]:
        ok = all(isinstance(v, int | float | np.number) and not isinstance(v, bool) for v in (x, y))
        if not ok or not (np.isfinite(x) and np.isfinite(y)):
            raise QueryError(f"query point ({x!r}, {y!r}) must be two finite numbers")
        src = user_crs(crs, "query crs") if crs is not None else s.crs
        tx, ty = transform_xy(np.array([float(x)]), np.array([float(y)]), src, s.crs)
        if not (np.isfinite(tx[0]) and np.isfinite(ty[0])):
            raise QueryError(f"query point ({x}, {y}) cannot be expressed in {s.crs}")
        return float(tx[0]), float(ty[0])

    @staticmethod
    def _coords(coords: Any, crs: Any, s: DatasetSchema) -> np.ndarray:
        if hasattr(coords, "geom_type"):
            import shapely

            arr = shapely.get_coordinates(coords)
        else:
            try:
                arr = np.asarray(coords, dtype="float64")
            except (TypeError, ValueError) as exc:
                raise QueryError(
                    "a query trajectory must be an (n, 2) array of x/y numbers or a LineString"
                ) from exc
        if arr.ndim != 2 or arr.shape[1] != 2 or len(arr) == 0 or not np.isfinite(arr).all():
            raise QueryError(
                "a query trajectory must be a non-empty (n, 2) array of finite x/y or a LineString"
            )
        if len(arr) > MAX_QUERY_TRAJECTORY:
            raise QueryError(
                f"a query trajectory may have at most {MAX_QUERY_TRAJECTORY} points (similarity "
                f"costs grow with their number), got {len(arr)}; simplify it first"
            )
        src = user_crs(crs, "query crs") if crs is not None else s.crs
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

    def sql(self, query: str, views: Sequence[SqlView]) -> pa.Table:
        """Run user SQL over ``views`` (:meth:`Store.sql <cityos.store.Store.sql>`); an
        engine that runs no SQL keeps this refusal."""
        raise EngineError(f"the {self.name} engine does not run SQL")

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release resources (sessions, connections)."""


def _load_duckdb() -> type[QueryEngine]:
    from cityos.store._duckdb import DuckDBEngine

    return DuckDBEngine


def _load_spark() -> type[QueryEngine]:
    from cityos.store._spark import SparkEngine

    return SparkEngine


# the built-in engines (each imports its dependencies only when first used)
register_engine("duckdb", _load_duckdb)
register_engine("spark", _load_spark)

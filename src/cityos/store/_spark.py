"""The Spark engine: the same Parquet files and scan plans as the embedded engine, read and
filtered by Spark (time, bbox and id predicates pushed down), with exact geometry done by the
shared kernels inside Arrow UDFs so that both engines return identical answers."""

from __future__ import annotations

import math
import os
import shutil
import sys
import threading
import warnings
from collections.abc import Callable, Generator, Iterator, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import pyarrow as pa

from cityos.errors import EngineError
from cityos.geo.distance import EARTH_RADIUS_M, point_bbox_distance
from cityos.geo.similarity import discrete_frechet, dtw
from cityos.model import GEOM_COL, ID_COL, TIME_COL, TIME_END_COL, X_COL, Y_COL, DatasetSchema
from cityos.store._engine import (
    DatasetContext,
    Deadline,
    QueryEngine,
    QueryResult,
    Restriction,
    empty_table,
    parquet_file,
)
from cityos.store._kernels import (
    DIST_COL,
    EDGE_COL,
    REGION_COL,
    aggregate_frame,
    aggregate_keys,
    bin_ms,
    distances,
    group_trajectories,
    lines_index,
    nearest_lines,
    reference_point,
    regions_containing,
)
from cityos.store._layout import BBOX_COL, TS, decode
from cityos.store._plan import Predicate, plan_scan, prune_mask
from cityos.store._spatial_sql import register_spark
from cityos.store._spec import Aggregate
from cityos.store._spec import QuerySpec as _QuerySpec
from cityos.store._sql import SqlView

if TYPE_CHECKING:
    from collections.abc import Mapping

    from pyspark.sql import Column, DataFrame, SparkSession
    from pyspark.sql.types import DataType, StructType

    from cityos.config import Settings

__all__ = ["SparkEngine", "spark_session"]

GEOM = "geometry"

# -- one SparkSession per process ---------------------------------------------------------------
# Starting a JVM costs seconds, and tests open many stores, so every SparkEngine shares one
# session; it is stopped when the last engine using it is closed (unless someone else owns it).
_lock = threading.Lock()
_session: SparkSession | None = None
_owned = False
_users = 0


@contextmanager
def _quiet() -> Iterator[None]:
    """PySpark warns on every pandas/Arrow UDF that pandas 3 is 'not yet fully supported';
    nothing a caller can act on, and an error under ``-W error``."""
    with warnings.catch_warnings():
        warnings.filterwarnings(
            "ignore", message=".*PySpark does not yet fully support", category=FutureWarning
        )
        yield


def _start(master: str) -> tuple[SparkSession, bool]:
    if shutil.which("java") is None and not os.environ.get("JAVA_HOME"):
        raise EngineError("the spark engine needs Java 17+ (java on PATH or JAVA_HOME)")
    try:
        from pyspark.sql import SparkSession
    except ImportError as exc:
        raise EngineError("the spark engine needs PySpark: pip install pyspark") from exc
    active = SparkSession.getActiveSession()
    if active is not None:
        return active, False
    # loopback only: no network exposure, and no failure on hosts without a resolvable name
    os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
    # UDF workers must import cityos from the same interpreter (venv, editable install)
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    os.environ.setdefault("PYSPARK_DRIVER_PYTHON", sys.executable)
    conf = {
        "spark.driver.host": "127.0.0.1",
        "spark.driver.bindAddress": "127.0.0.1",
        "spark.ui.enabled": "false",
        "spark.ui.showConsoleProgress": "false",
        "spark.sql.session.timeZone": "UTC",
        "spark.sql.execution.arrow.pyspark.enabled": "true",
        "spark.sql.shuffle.partitions": "4",
        "spark.default.parallelism": "4",
        "spark.sql.parquet.filterPushdown": "true",
        "spark.executorEnv.PYTHONWARNINGS": "ignore::FutureWarning",
    }
    b = SparkSession.builder.master(master).appName("cityos")
    for k, v in conf.items():
        b = b.config(k, v)
    with _quiet():
        s = b.getOrCreate()
    s.sparkContext.setLogLevel("ERROR")
    return s, True


def spark_session(master: str = "local[2]") -> SparkSession:
    """The process's shared SparkSession, started on first use (without taking a reference)."""
    global _session, _owned
    with _lock:
        if _session is None or _session.sparkContext._jsc is None:
            _session, _owned = _start(master)
        return _session


def _acquire(master: str) -> SparkSession:
    global _users
    s = spark_session(master)
    with _lock:
        _users += 1
    return s


def _release() -> None:
    global _session, _users, _owned
    with _lock:
        _users = max(0, _users - 1)
        if _users == 0 and _session is not None:
            if _owned:
                _session.stop()
            _session, _owned = None, False


# -- Arrow helpers used inside UDFs (module level, so Spark pickles them by reference) ---------
def _canon(schema: DatasetSchema, batch: pa.RecordBatch | pa.Table) -> pa.Table:
    """Physical rows as Spark hands them over, in canonical form (x/y, millisecond times)."""
    tbl = pa.Table.from_batches([batch]) if isinstance(batch, pa.RecordBatch) else batch
    tbl = decode(schema, tbl)
    for c in (TIME_COL, TIME_END_COL):
        if c in tbl.column_names and pa.types.is_timestamp(tbl[c].type) and tbl[c].type != TS:
            tbl = tbl.set_column(tbl.column_names.index(c), c, tbl[c].cast(TS))
    return tbl


def _append(
    batch: pa.RecordBatch, take: np.ndarray | None, extra: dict[str, pa.Array]
) -> pa.RecordBatch:
    out = batch.take(pa.array(take, pa.int64())) if take is not None else batch
    arrays = list(out.columns) + list(extra.values())
    return pa.RecordBatch.from_arrays(arrays, names=list(out.schema.names) + list(extra))


def _restriction_filter(
    schema: DatasetSchema, restriction: Restriction
) -> Callable[[Iterator[pa.RecordBatch]], Iterator[pa.RecordBatch]]:
    def run(it: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        for b in it:
            m = np.asarray(restriction.mask(_canon(schema, b)), dtype=bool)
            yield b.filter(pa.array(m))

    return run


def _geometry_filter(
    schema: DatasetSchema, geometry: Any
) -> Callable[[Iterator[pa.RecordBatch]], Iterator[pa.RecordBatch]]:
    pred = Predicate(geometry)

    def run(it: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        for b in it:
            m = pred.mask(_canon(schema, b))
            yield b.filter(pa.array(m))

    return run


def _with_distance(
    schema: DatasetSchema, x: float, y: float
) -> Callable[[Iterator[pa.RecordBatch]], Iterator[pa.RecordBatch]]:
    def run(it: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        for b in it:
            d = distances(_canon(schema, b), x, y, schema.geographic)
            yield _append(b, None, {DIST_COL: pa.array(d, pa.float64())})

    return run


def _with_regions(
    schema: DatasetSchema, regions: pa.Table, rtype: pa.DataType
) -> Callable[[Iterator[pa.RecordBatch]], Iterator[pa.RecordBatch]]:
    def run(it: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        for b in it:
            c = _canon(schema, b)
            pi, rid = regions_containing(c[X_COL].to_numpy(), c[Y_COL].to_numpy(), regions)
            yield _append(b, pi, {REGION_COL: pa.array(rid.tolist(), rtype)})

    return run


def _with_nearest(
    schema: DatasetSchema,
    lines: pa.Table,
    max_d: float,
    ref: tuple[float, float],
    etype: pa.DataType,
) -> Callable[[Iterator[pa.RecordBatch]], Iterator[pa.RecordBatch]]:
    def run(it: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        # one index per partition, not per batch
        tree, lids = lines_index(lines, schema.crs, schema.geographic, ref)
        for b in it:
            c = _canon(schema, b)
            pi, eid, d = nearest_lines(
                c[X_COL].to_numpy(),
                c[Y_COL].to_numpy(),
                tree,
                lids,
                max_d,
                schema.crs,
                schema.geographic,
                ref,
            )
            yield _append(
                b, pi, {EDGE_COL: pa.array(list(eid), etype), DIST_COL: pa.array(d, pa.float64())}
            )

    return run


def _aggregate_keys(
    schema: DatasetSchema,
    spec: Aggregate,
    step: int | None,
    cols: list[str],
    regions: pa.Table | None,
    out: pa.Schema,
) -> Callable[[Iterator[pa.RecordBatch]], Iterator[pa.RecordBatch]]:
    def run(it: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        for b in it:
            c = _canon(schema, b)
            data: dict[str, Any] = dict(aggregate_keys(c, spec, step, schema.crs))
            vals = {k: c[k].combine_chunks() for k in cols}
            if regions is not None:
                pi, rid = regions_containing(c[X_COL].to_numpy(), c[Y_COL].to_numpy(), regions)
                data = {k: v[pi] for k, v in data.items()}
                data[REGION_COL] = rid.tolist()
                vals = {k: v.take(pa.array(pi, pa.int64())) for k, v in vals.items()}
            data.update(vals)
            yield pa.RecordBatch.from_arrays(
                [
                    pa.array(data[f.name], f.type)
                    if not isinstance(data[f.name], pa.Array)
                    else data[f.name].cast(f.type)
                    for f in out
                ],
                schema=out,
            )

    return run


def _trajectory_distance(
    schema: DatasetSchema, q: np.ndarray, metric: str, id_type: pa.DataType
) -> Callable[[pa.Table], pa.Table]:
    fn = dtw if metric == "dtw" else discrete_frechet

    def run(tbl: pa.Table) -> pa.Table:
        c = tbl.set_column(
            tbl.column_names.index(TIME_COL), TIME_COL, tbl[TIME_COL].cast(pa.int64())
        )
        ids, trajs = group_trajectories(c)
        d = [fn(q, t, schema.geographic) for t in trajs]
        return pa.table({ID_COL: pa.array(list(ids), id_type), DIST_COL: pa.array(d, pa.float64())})

    return run


# -- the engine ---------------------------------------------------------------------------------
class SparkEngine(QueryEngine):
    """Execution on Apache Spark (local mode by default; ``spark_master`` in the settings)."""

    name = "spark"

    def __init__(self, settings: Settings | None = None) -> None:
        super().__init__(settings)
        self._spark: SparkSession | None = None
        self._group = f"cityos-{id(self)}"

    @property
    def spark(self) -> SparkSession:
        if self._spark is None:
            self._spark = _acquire(getattr(self.settings, "spark_master", None) or "local[2]")
            register_spark(self._spark)  # the ST_* SQL functions, as on DuckDB
        return self._spark

    def execute(
        self,
        spec: _QuerySpec,
        datasets: Mapping[str, DatasetContext],
        deadline: Deadline | None = None,
    ) -> QueryResult:
        with _quiet():
            # Spark column expressions need a live session, even before any file is read
            sc = self.spark.sparkContext
            d = deadline or Deadline(None)
            group = f"{self._group}-{threading.get_ident()}"
            sc.setJobGroup(group, "cityos query", interruptOnCancel=True)
            try:
                with d.watch(lambda: sc.cancelJobGroup(group)):
                    return super().execute(spec, datasets, d)
            finally:
                sc.setLocalProperty("spark.jobGroup.id", None)  # type: ignore[arg-type]

    def sql(self, query: str, views: Sequence[SqlView]) -> pa.Table:
        from cityos.store._sql import spark_sql

        return spark_sql(self.spark, query, views)

    def close(self) -> None:
        if self._spark is not None:
            self._spark = None
            _release()

    # -- reading ---------------------------------------------------------------------------
    def _frame(
        self,
        ctx: DatasetContext,
        pred: Predicate,
        info: dict[str, Any],
        columns: list[str] | None = None,
        mask: np.ndarray | None = None,
    ) -> DataFrame | None:
        """The rows of ``ctx`` matching ``pred`` exactly, as a Spark DataFrame of stored
        (physical) rows, or None when the plan reads nothing."""
        from pyspark.sql import functions as F

        plan = plan_scan(ctx.stats, pred, mask)
        info["files_read"] = info.get("files_read", 0) + len(plan.files)
        info["row_groups_read"] = info.get("row_groups_read", 0) + plan.row_groups
        # Spark prunes row groups again by their Parquet statistics; count what the plan allows
        info["rows_scanned"] = info.get("rows_scanned", 0) + plan.rows_candidate
        if not plan.files:
            return None
        paths = [str(ctx.data_dir / rel) for rel in plan.files]
        reader = self.spark.read
        if len({parquet_file(p).schema_arrow for p in paths}) > 1:
            reader = reader.option("mergeSchema", "true")
        df = reader.parquet(*paths)
        names = df.columns
        if columns is not None:
            keep = set(ctx.physical(columns) or ())
            df = df.select(*[c for c in names if c in keep])
            names = df.columns
        cond: Column | None = None

        def add(c: Column) -> None:
            nonlocal cond
            cond = c if cond is None else cond & c

        if TIME_COL in names:
            if pred.start is not None:
                add(
                    F.col(TIME_END_COL if TIME_END_COL in names else TIME_COL)
                    >= F.timestamp_millis(F.lit(pred.start))
                )
            if pred.end is not None:
                add(F.col(TIME_COL) < F.timestamp_millis(F.lit(pred.end)))
        if pred.ids is not None:
            add(F.col(ID_COL).isin(list(pred.ids)))
        exact = False
        b = pred.bbox
        if b is not None:
            if ctx.schema.point_layout and GEOM in names:
                gx, gy = F.col(f"{GEOM}.x"), F.col(f"{GEOM}.y")
                add((gx >= b[0]) & (gx <= b[2]) & (gy >= b[1]) & (gy <= b[3]))
                exact = not pred.is_box
            elif BBOX_COL in names:
                add(
                    (F.col(f"{BBOX_COL}.xmax") >= b[0])
                    & (F.col(f"{BBOX_COL}.xmin") <= b[2])
                    & (F.col(f"{BBOX_COL}.ymax") >= b[1])
                    & (F.col(f"{BBOX_COL}.ymin") <= b[3])
                )
                exact = True
        if cond is not None:
            df = df.filter(cond)
        if exact:
            # the polygon test itself: the same shapely predicate the embedded engine uses
            df = df.mapInArrow(_geometry_filter(ctx.schema, pred.geometry), df.schema)
        if ctx.restriction is not None:
            df = df.mapInArrow(_restriction_filter(ctx.schema, ctx.restriction), df.schema)
        return df

    def _collect(
        self,
        ctx: DatasetContext,
        df: DataFrame | None,
        columns: list[str] | None = None,
        extra: dict[str, pa.DataType] | None = None,
    ) -> pa.Table:
        """Rows of a DataFrame in canonical form: decoded, cast to the stored types, columns in
        the dataset's order (then any added columns)."""
        target = empty_table(ctx)
        if df is None:
            tbl = target
        else:
            with _quiet():
                tbl = _canon(ctx.schema, df.toArrow())
        for f in target.schema:
            if f.name in tbl.column_names and tbl[f.name].type != f.type:
                tbl = tbl.set_column(
                    tbl.column_names.index(f.name), f.name, tbl[f.name].cast(f.type)
                )
        for name, typ in (extra or {}).items():
            if name not in tbl.column_names:
                tbl = tbl.append_column(name, pa.array([], typ))
            elif tbl[name].type != typ:
                tbl = tbl.set_column(tbl.column_names.index(name), name, tbl[name].cast(typ))
        order = [c for c in target.column_names if c in tbl.column_names]
        order += [c for c in tbl.column_names if c not in order]
        if columns is not None:
            order = [c for c in columns if c in tbl.column_names]
        return tbl.select(order)

    def _table(self, ctx: DatasetContext) -> pa.Table:
        """A whole (small) dataset, such as regions or lines, in canonical form."""
        return self._collect(ctx, self._frame(ctx, Predicate(), {}))

    @staticmethod
    def _spark_type(t: pa.DataType) -> DataType:
        from pyspark.sql.types import DoubleType, LongType, StringType

        if pa.types.is_integer(t):
            return LongType()
        if pa.types.is_floating(t):
            return DoubleType()
        return StringType()

    @staticmethod
    def _id_type(ctx: DatasetContext) -> pa.DataType:
        return pa.string() if ctx.schema.id_type == "string" else pa.int64()

    def _extend(self, df: DataFrame, fields: dict[str, pa.DataType]) -> StructType:
        from pyspark.sql.types import StructField, StructType

        return StructType(
            [*df.schema.fields, *(StructField(n, self._spark_type(t)) for n, t in fields.items())]
        )

    # -- hooks -----------------------------------------------------------------------------
    def _range(
        self, ctx: DatasetContext, pred: Predicate, columns: list[str] | None, info: dict[str, Any]
    ) -> pa.Table:
        if columns is not None and pred.geometry is not None:
            # the exact geometry test needs the coordinates, asked for or not
            shape = [X_COL, Y_COL] if ctx.schema.point_layout else [GEOM_COL]
            columns = list(dict.fromkeys([*columns, *shape]))
        return self._collect(ctx, self._frame(ctx, pred, info, columns), columns)

    def _boxes(
        self, ctx: DatasetContext, x: float, y: float, k: int, pred: Predicate
    ) -> Generator[tuple[Any, float, bool], float | None, None]:
        """Search boxes around (x, y), growing: yields (box geometry, radius up to which the
        box holds every point, whether it covers all candidate row groups). The caller sends
        back the k-th distance found in the box (None when fewer than k rows were found)."""
        import shapely

        st = ctx.stats
        cand = prune_mask(st, pred)
        if not cand.any():
            return
        geo = ctx.schema.geographic
        ext = (
            float(np.nanmin(st.x_min[cand])),
            float(np.nanmin(st.y_min[cand])),
            float(np.nanmax(st.x_max[cand])),
            float(np.nanmax(st.y_max[cand])),
        )
        n = float(st.rows[cand].sum())
        w, h = ext[2] - ext[0], ext[3] - ext[1]
        if geo:
            lat = math.radians((ext[1] + ext[3]) / 2)
            w, h = (
                math.radians(w) * EARTH_RADIUS_M * math.cos(lat),
                math.radians(h) * EARTH_RADIUS_M,
            )
        # a radius expected to hold about 4k candidate rows at the dataset's mean density ...
        r = math.sqrt(4 * k * max(w * h, 1.0) / (math.pi * max(n, 1.0)))
        # ... but at least reaching the data when the point lies outside it
        gap = float(
            point_bbox_distance(
                x,
                y,
                np.array([ext[0]]),
                np.array([ext[1]]),
                np.array([ext[2]]),
                np.array([ext[3]]),
                geo,
            )[0]
        )
        r = max(r, gap * 1.01, 1e-6 if not geo else 1.0)
        while True:
            box, r_in = _box_around(x, y, r, geo)
            covers = box[0] <= ext[0] and box[1] <= ext[1] and box[2] >= ext[2] and box[3] >= ext[3]
            g = shapely.box(*box)
            kth = yield (g, r_in, covers)
            if covers:
                return
            if kth is not None:
                r = max(kth * 1.1, r * 1.5)
            else:
                r *= 2.0

    def _knn(
        self, ctx: DatasetContext, x: float, y: float, k: int, pred: Predicate, info: dict[str, Any]
    ) -> pa.Table:
        from pyspark.sql import functions as F

        order = [F.col(DIST_COL), F.col(ID_COL)]
        boxes = self._boxes(ctx, x, y, k, pred)
        top = self._collect(ctx, None, extra={DIST_COL: pa.float64()})
        try:
            step = next(boxes)
            while True:
                g, r_in, covers = step
                info["search_rounds"] = info.get("search_rounds", 0) + 1
                df = self._frame(ctx, Predicate(g, pred.start, pred.end, pred.ids), info)
                if df is not None:
                    df = df.mapInArrow(
                        _with_distance(ctx.schema, x, y), self._extend(df, {DIST_COL: pa.float64()})
                    )
                    o = order + ([F.col(TIME_COL)] if TIME_COL in df.columns else [])
                    top = self._collect(
                        ctx, df.orderBy(*o).limit(k), extra={DIST_COL: pa.float64()}
                    )
                if covers or (top.num_rows >= k and top[DIST_COL][k - 1].as_py() < r_in):
                    break
                step = boxes.send(top[DIST_COL][k - 1].as_py() if top.num_rows >= k else None)
        except StopIteration:
            pass
        return top

    def _knn_trajectories(
        self, ctx: DatasetContext, x: float, y: float, k: int, pred: Predicate, info: dict[str, Any]
    ) -> pa.Table:
        from pyspark.sql import functions as F

        typ = self._id_type(ctx)
        top = pa.table({ID_COL: pa.array([], typ), DIST_COL: pa.array([], pa.float64())})
        boxes = self._boxes(ctx, x, y, k, pred)
        try:
            step = next(boxes)
            while True:
                g, r_in, covers = step
                info["search_rounds"] = info.get("search_rounds", 0) + 1
                df = self._frame(
                    ctx, Predicate(g, pred.start, pred.end), info, [ID_COL, X_COL, Y_COL]
                )
                if df is not None:
                    df = df.mapInArrow(
                        _with_distance(ctx.schema, x, y), self._extend(df, {DIST_COL: pa.float64()})
                    )
                    df = (
                        df.groupBy(ID_COL)
                        .agg(F.min(DIST_COL).alias(DIST_COL))
                        .orderBy(F.col(DIST_COL), F.col(ID_COL))
                        .limit(k)
                    )
                    with _quiet():
                        got = df.toArrow()
                    top = pa.table(
                        {ID_COL: got[ID_COL].cast(typ), DIST_COL: got[DIST_COL].cast(pa.float64())}
                    )
                if covers or (top.num_rows >= k and top[DIST_COL][k - 1].as_py() < r_in):
                    break
                step = boxes.send(top[DIST_COL][k - 1].as_py() if top.num_rows >= k else None)
        except StopIteration:
            pass
        return top

    def _similar(
        self,
        ctx: DatasetContext,
        coords: np.ndarray,
        k: int,
        metric: str,
        pred: Predicate,
        info: dict[str, Any],
    ) -> pa.Table:
        from pyspark.sql import functions as F
        from pyspark.sql.types import DoubleType, StructField, StructType

        typ = self._id_type(ctx)
        df = self._frame(ctx, pred, info, [ID_COL, TIME_COL, X_COL, Y_COL])
        if df is None:
            return pa.table({ID_COL: pa.array([], typ), DIST_COL: pa.array([], pa.float64())})
        flat = df.select(
            F.col(ID_COL),
            F.col(TIME_COL),
            F.col(f"{GEOM}.x").alias(X_COL),
            F.col(f"{GEOM}.y").alias(Y_COL),
        )
        out = StructType(
            [StructField(ID_COL, self._spark_type(typ)), StructField(DIST_COL, DoubleType())]
        )
        # every trajectory's exact distance in parallel, then Spark keeps the k best
        # (ties: smallest id as text, like the embedded engine's similarity_topk)
        scored = flat.groupBy(ID_COL).applyInArrow(
            _trajectory_distance(ctx.schema, coords, metric, typ), out
        )
        best = scored.orderBy(F.col(DIST_COL), F.col(ID_COL).cast("string")).limit(k)
        with _quiet():
            got = best.toArrow()
        return pa.table({ID_COL: got[ID_COL].cast(typ), DIST_COL: got[DIST_COL].cast(pa.float64())})

    def _join_regions(
        self, ctx: DatasetContext, regions: DatasetContext, pred: Predicate, info: dict[str, Any]
    ) -> pa.Table:
        from pyspark.sql import functions as F

        rtype = self._id_type(regions)
        df = self._frame(ctx, pred, info)
        if df is None:
            return self._collect(ctx, None, extra={REGION_COL: rtype})
        reg = self._table(regions).select([ID_COL, GEOM])
        df = df.mapInArrow(
            _with_regions(ctx.schema, reg, rtype), self._extend(df, {REGION_COL: rtype})
        )
        keys = [c for c in (ID_COL, TIME_COL) if c in df.columns] + [REGION_COL]
        return self._collect(ctx, df.orderBy(*[F.col(c) for c in keys]), extra={REGION_COL: rtype})

    def _join_nearest(
        self,
        ctx: DatasetContext,
        lines: DatasetContext,
        max_d: float,
        pred: Predicate,
        info: dict[str, Any],
    ) -> pa.Table:
        from pyspark.sql import functions as F

        etype = self._id_type(lines)
        extra = {EDGE_COL: etype, DIST_COL: pa.float64()}
        df = self._frame(ctx, pred, info)
        if df is None:
            return self._collect(ctx, None, extra=extra)
        ln = self._table(lines).select([ID_COL, GEOM])
        df = df.mapInArrow(
            _with_nearest(ctx.schema, ln, max_d, reference_point(ctx.stats), etype),
            self._extend(df, extra),
        )
        keys = [c for c in (ID_COL, TIME_COL) if c in df.columns]
        return self._collect(ctx, df.orderBy(*[F.col(c) for c in keys]), extra=extra)

    def _aggregate(
        self,
        ctx: DatasetContext,
        spec: Aggregate,
        regions: DatasetContext | None,
        pred: Predicate,
        info: dict[str, Any],
    ) -> pa.Table:
        from pyspark.sql import functions as F
        from pyspark.sql.types import StructField, StructType

        has_t = ctx.schema.model.has_time
        cols = spec.agg_columns()
        base = [ID_COL, TIME_COL, X_COL, Y_COL] if has_t else [ID_COL, X_COL, Y_COL]
        df = self._frame(ctx, pred, info, [*base, *cols])
        step = bin_ms(spec.time_bin) if has_t and spec.time_bin else None
        reg_tbl = self._table(regions).select([ID_COL, "geometry"]) if regions is not None else None
        fields: list[pa.Field] = []
        if spec.grid is not None:
            fields += [pa.field("cell_x", pa.int64()), pa.field("cell_y", pa.int64())]
        else:
            assert regions is not None
            fields.append(pa.field(REGION_COL, self._id_type(regions)))
        if step is not None:
            fields.append(pa.field("t_bin", pa.int64()))
        target = empty_table(ctx)
        for c in cols:
            t = target.schema.field(c).type if c in target.column_names else pa.float64()
            kind = (
                pa.int64()
                if pa.types.is_integer(t)
                else pa.float64()
                if pa.types.is_floating(t)
                else pa.string()  # only counted
            )
            fields.append(pa.field(c, kind))
        out = pa.schema(fields)
        group = [f.name for f in fields if f.name in ("cell_x", "cell_y", REGION_COL, "t_bin")]
        if df is None:
            frame = pd.DataFrame(
                {
                    f.name: pd.Series([], dtype=f.type.to_pandas_dtype())
                    for f in fields
                    if f.name in group
                }
            )
            for o, a in spec.agg_specs.items():
                frame[o] = pd.Series([], dtype="int64" if a.fn == "count" else "float64")
            return aggregate_frame(frame, spec, reg_tbl, ctx.schema.crs)
        sout = StructType([StructField(f.name, self._spark_type(f.type)) for f in fields])
        keyed = df.mapInArrow(_aggregate_keys(ctx.schema, spec, step, cols, reg_tbl, out), sout)
        fn = {"count": F.count, "sum": F.sum, "mean": F.avg, "min": F.min, "max": F.max}
        aggs = [
            F.count(F.lit(1)).alias(o) if a.column is None else fn[a.fn](F.col(a.column)).alias(o)
            for o, a in spec.agg_specs.items()
        ]
        with _quiet():
            frame = keyed.groupBy(*group).agg(*aggs).toArrow().to_pandas()
        return aggregate_frame(frame, spec, reg_tbl, ctx.schema.crs)


def _box_around(
    x: float, y: float, r: float, geographic: bool
) -> tuple[tuple[float, float, float, float], float]:
    """A box holding every point within ``r`` metres of (x, y), and the radius up to which it
    is complete (the shortest distance from (x, y) to its boundary, a little conservatively)."""
    if not geographic:
        return (x - r, y - r, x + r, y + r), r * (1 - 1e-12)
    dlat = math.degrees(r / EARTH_RADIUS_M)
    y0, y1 = y - dlat, y + dlat
    r_lat = r
    if y1 >= 90 or y0 <= -90:
        y0, y1 = max(y0, -90.0), min(y1, 90.0)
    c = math.cos(math.radians(y))
    if c <= 1e-9 or y1 >= 90 or y0 <= -90:
        # the box reaches a pole: every longitude
        return (-180.0, y0, 180.0, y1), r_lat * 0.999
    s = math.sin(r / EARTH_RADIUS_M) / c
    if s >= 1 or r / EARTH_RADIUS_M >= math.pi / 2:
        return (-180.0, y0, 180.0, y1), r_lat * 0.999
    dlon = math.degrees(math.asin(s))
    # the great-circle distance from (x, y) to the meridian x +/- dlon is asin(cos(y) sin(dlon)) = r
    x0, x1 = max(x - dlon, -180.0), min(x + dlon, 180.0)
    return (x0, y0, x1, y1), r * 0.999

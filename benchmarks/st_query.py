"""How fast are spatio-temporal queries in CityOS against DuckDB over plain GeoParquet,
PostgreSQL + PostGIS with a GiST index, and GeoPandas with an STRtree — and how small is
the data?

BerlinMOD-style vehicles move on a generated road network (``cityos.synth``). The same
points (coordinates snapped to CityOS's 2^-23 degree grid first, so every system stores
identical values) are loaded into each system; every query is run on each, the answers
are checked against each other, and the script prints median latencies, bytes per point,
load throughput, and one ratio line per baseline.

    .venv/bin/python benchmarks/st_query.py --points 10000000
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import sys
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.csv as pcsv
import pyarrow.parquet as pq

sys.path.insert(0, str(Path(__file__).parent))
from _common import print_table, save, timed
from cityos.geo import haversine
from cityos.model import DatasetSchema, ModelKind
from cityos.store import Store
from cityos.synth import iter_vehicle_points, make_city

Q = 2.0**-23
HOUR = 3_600_000
#: DuckDB's buffer pool per connection (its default, 80 % of RAM per connection, would let
#: the two DuckDB systems alone take more than the machine has at 100M points)
DUCKDB_MEMORY = "4GB"
#: above this many points GeoPandas is skipped: it holds every point as a shapely object
#: plus an STRtree in memory (~2.6 GB at 10M for the whole benchmark, so >20 GB at 100M)
GEOPANDAS_MAX_POINTS = 20_000_000


def stream(n: int, seed: int) -> Iterator[pd.DataFrame]:
    """The points in time order, 1M at a time, snapped to the 2^-23 degree grid."""
    city = make_city(seed=seed)
    for chunk in iter_vehicle_points(city, n, chunk_points=1_000_000, seed=seed):
        df = chunk[["id", "t", "x", "y"]].copy()
        df["id"] = df["id"].astype(str)
        df["x"] = np.round(df["x"].to_numpy() / Q) * Q
        df["y"] = np.round(df["y"].to_numpy() / Q) * Q
        yield df


def generate(n: int, seed: int) -> pd.DataFrame:
    return pd.concat(list(stream(n, seed)), ignore_index=True)


# -- query sets ----------------------------------------------------------------------------


def make_queries(df: pd.DataFrame, nq: int, seed: int) -> dict[str, list[dict[str, Any]]]:
    """Query sets sized for target selectivities; ``df`` may be a uniform sample of the data."""
    rng = np.random.default_rng(seed)
    t = df["t"].to_numpy().astype("datetime64[ms]").astype("int64")
    x, y = df["x"].to_numpy(), df["y"].to_numpy()
    x0, x1 = np.quantile(x, [0.001, 0.999])
    y0, y1 = np.quantile(y, [0.001, 0.999])
    span_h = (t.max() - t.min()) / HOUR
    area = (x1 - x0) * (y1 - y0)
    ids = df["id"].to_numpy()
    out: dict[str, list[dict[str, Any]]] = {}

    def centres(k: int) -> np.ndarray:
        return rng.integers(0, len(df), k)

    # spatial range over all time selecting ~0.1% of points
    side = np.sqrt(area * 0.001)
    out["spatial range ~0.1%"] = [
        {
            "box": (x[i] - side / 2, y[i] - side / 2, x[i] + side / 2, y[i] + side / 2),
            "start": None,
            "end": None,
        }
        for i in centres(nq)
    ]
    for sel in (0.00001, 0.0001, 0.001):
        frac_t = min(1.0, 1.0 / span_h)
        side = np.sqrt(area * min(1.0, sel / frac_t))
        qs = []
        for i in centres(nq):
            s = int(t[i] - HOUR // 2)
            qs.append(
                {
                    "box": (x[i] - side / 2, y[i] - side / 2, x[i] + side / 2, y[i] + side / 2),
                    "start": s,
                    "end": s + HOUR,
                }
            )
        out[f"ST range ~{sel * 100:g}%"] = qs
    # an object that is moving at that time, over the hour around it
    out["ID-temporal 1 h"] = [
        {"id": str(ids[i]), "start": int(t[i] - HOUR // 2), "end": int(t[i] + HOUR // 2)}
        for i in centres(nq)
    ]
    out["kNN k=10, 1 h"] = [
        {
            "x": float(x[i]) + 0.001,
            "y": float(y[i]),
            "k": 10,
            "start": int(t[i] - HOUR // 2),
            "end": int(t[i] + HOUR // 2),
        }
        for i in centres(nq)
    ]
    # joins over one hour of the whole city: every point with its district / nearest road
    out["points-in-regions, 1 h"] = [
        {"start": int(t[i] - HOUR // 2), "end": int(t[i] + HOUR // 2)}
        for i in centres(max(3, nq // 3))
    ]
    out["nearest segment <=50 m, 1 h"] = [
        {"start": int(t[i] - HOUR // 2), "end": int(t[i] + HOUR // 2), "max_m": 50.0}
        for i in centres(max(3, nq // 3))
    ]
    return out


#: which method of a system answers a query set, by the set's name prefix
KINDS = (
    ("kNN", "knn"),
    ("ID", "id_temporal"),
    ("points-in-regions", "regions"),
    ("nearest segment", "nearest"),
    ("", "range"),
)


def kind_of(qname: str) -> str:
    return next(m for p, m in KINDS if qname.startswith(p))


def key_set(tbl: pd.DataFrame, extra: str | None = None) -> set[tuple[Any, ...]]:
    tt = pd.to_datetime(tbl["t"], utc=True).astype("datetime64[ns, UTC]").astype("int64") // 10**6
    cols = [tbl["id"].astype(str), tt]
    if extra is not None:
        cols.append(tbl[extra].astype(str))
    return set(zip(*cols, strict=True))


def same_answer(kind: str, a: pd.DataFrame, b: pd.DataFrame) -> bool:
    """Whether two systems' answers to one query agree (kNN by distance, since earth models
    differ in the last digits; nearest segment by matched points and distance, since exact
    ties between two roads may be broken differently)."""
    if kind == "knn":
        da, db = np.sort(a["distance_m"].to_numpy()), np.sort(b["distance_m"].to_numpy())
        return len(da) == len(db) and bool(np.allclose(da, db, rtol=5e-3))
    if kind == "regions":
        return key_set(a, "region_id") == key_set(b, "region_id")
    if kind == "nearest":
        if key_set(a) != key_set(b):
            return False

        def by_key(t: pd.DataFrame) -> pd.Series:
            tt = pd.to_datetime(t["t"], utc=True).astype("datetime64[ns, UTC]").astype("int64")
            return pd.Series(t["distance_m"].to_numpy(), index=[t["id"].astype(str), tt // 10**6])

        da, db = by_key(a).sort_index(), by_key(b).sort_index()
        return bool(np.allclose(da.to_numpy(), db.to_numpy(), rtol=1e-6, atol=1e-6))
    return key_set(a) == key_set(b)


# -- systems --------------------------------------------------------------------------------


def city_layers(seed: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The districts (polygons) and the road network (line segments) of the generated city
    the vehicles drive in, as ``id`` + WKB ``geometry`` tables."""
    import shapely

    city = make_city(seed=seed)
    d, e = city.districts, city.edges
    districts = pd.DataFrame(
        {
            "id": d["district_id"].astype(str).to_numpy(),
            "geometry": shapely.to_wkb(d.geometry.values),
        }
    )
    roads = pd.DataFrame(
        {
            "id": e["edge_id"].astype(str).to_numpy(),
            "from_node": e["from_node"].to_numpy(),
            "to_node": e["to_node"].to_numpy(),
            "geometry": shapely.to_wkb(e.geometry.values),
        }
    )
    return districts, roads


class CityOS:
    name = "CityOS"

    def __init__(self, work: Path, layers: tuple[pd.DataFrame, pd.DataFrame], engine: str) -> None:
        shutil.rmtree(work / "cityos", ignore_errors=True)
        self.home = work / "cityos"
        self.store = Store(self.home)
        self.engine = engine
        self.store.create_dataset("v", DatasetSchema(ModelKind.POINT_ST))
        self.store.create_dataset(
            "districts", DatasetSchema(ModelKind.POINT_STATIC, geometry_type="region")
        )
        self.store.append("districts", layers[0])
        self.store.create_dataset("roads", DatasetSchema(ModelKind.NETWORK_STATIC))
        self.store.append("roads", layers[1])
        self.load_s = 0.0
        if engine != "duckdb":
            self.name = f"CityOS ({engine})"

    def add(self, df: pd.DataFrame) -> None:
        tbl = pa.Table.from_pandas(df, preserve_index=False)
        self.load_s += timed(lambda: self.store.append("v", tbl))[1]

    def finish(self) -> None:
        _, self.compact_s = timed(lambda: self.store.compact("v"))
        self.bytes = self.store.describe("v").bytes

    def range(self, q: dict[str, Any]) -> pd.DataFrame:
        return self.store.scan(
            "v",
            geometry=q["box"],
            start=q["start"],
            end=q["end"],
            columns=["id", "t"],
            engine=self.engine,
        ).to_pandas()

    def id_temporal(self, q: dict[str, Any]) -> pd.DataFrame:
        return self.store.id_temporal(
            "v", q["id"], q["start"], q["end"], engine=self.engine
        ).to_pandas()

    def knn(self, q: dict[str, Any]) -> pd.DataFrame:
        return self.store.knn(
            "v", q["x"], q["y"], q["k"], start=q["start"], end=q["end"], engine=self.engine
        ).to_pandas()

    def regions(self, q: dict[str, Any]) -> pd.DataFrame:
        return self.store.join_regions(
            "v", "districts", start=q["start"], end=q["end"], engine=self.engine
        ).to_pandas()

    def nearest(self, q: dict[str, Any]) -> pd.DataFrame:
        return self.store.join_nearest(
            "v",
            "roads",
            max_distance_m=q["max_m"],
            start=q["start"],
            end=q["end"],
            engine=self.engine,
        ).to_pandas()


class CityOSOtherEngine(CityOS):
    """The same CityOS store queried through another execution engine (``--engine spark``)."""

    def __init__(self, base: CityOS, engine: str) -> None:
        self.store, self.engine, self.home = base.store, engine, base.home
        self.name = f"CityOS ({engine})"
        self.base = base
        self.load_s = 0.0

    def add(self, df: pd.DataFrame) -> None:
        pass

    def finish(self) -> None:
        self.bytes = None
        self.load_s = self.base.load_s


def _geoparquet_meta(covering: bool) -> bytes:
    col: dict[str, Any] = {"encoding": "WKB", "geometry_types": ["Point"], "crs": None}
    from pyproj import CRS

    col["crs"] = __import__("json").loads(CRS.from_epsg(4326).to_json())
    if covering:
        col["covering"] = {"bbox": {k: ["bbox", k] for k in ("xmin", "ymin", "xmax", "ymax")}}
    return (
        __import__("json")
        .dumps({"version": "1.1.0", "primary_column": "geometry", "columns": {"geometry": col}})
        .encode()
    )


class DuckDBGeoParquet:
    """DuckDB over GeoParquet as GeoPandas writes it (rows in arrival order, i.e. by time;
    WKB geometry; the GeoParquet 1.1 bbox covering column, which DuckDB can filter on
    without the spatial extension — that cannot be installed here). The file is written
    chunk by chunk with pyarrow exactly as ``GeoDataFrame.to_parquet(write_covering_bbox=True)``
    lays it out, so 100M points fit in memory; a second file without the covering column is
    the "default GeoParquet" for the storage comparison."""

    name = "DuckDB+GeoParquet"

    def __init__(self, work: Path) -> None:
        import shapely

        self._shapely = shapely
        self.path = work / "plain.parquet"
        self.default_path = work / "default.parquet"
        ts = pa.timestamp("ms", tz="UTC")
        bbox = pa.struct([(k, pa.float64()) for k in ("xmin", "ymin", "xmax", "ymax")])
        cov = pa.schema(
            [("id", pa.string()), ("t", ts), ("geometry", pa.binary()), ("bbox", bbox)],
            metadata={b"geo": _geoparquet_meta(True)},
        )
        plain = pa.schema(
            [("id", pa.string()), ("t", ts), ("geometry", pa.binary())],
            metadata={b"geo": _geoparquet_meta(False)},
        )
        self.w_cov = pq.ParquetWriter(self.path, cov)
        self.w_plain = pq.ParquetWriter(self.default_path, plain)
        self.load_s = 0.0

    def add(self, df: pd.DataFrame) -> None:
        def write() -> None:
            x, y = df["x"].to_numpy(), df["y"].to_numpy()
            wkb = pa.array(self._shapely.to_wkb(self._shapely.points(x, y)), pa.binary())
            base = [pa.array(df["id"]), pa.array(df["t"]), wkb]
            bb = pa.StructArray.from_arrays(
                [pa.array(x), pa.array(y), pa.array(x), pa.array(y)],
                names=["xmin", "ymin", "xmax", "ymax"],
            )
            self.w_cov.write_table(pa.Table.from_arrays([*base, bb], schema=self.w_cov.schema))
            return base

        base, dt = timed(write)
        self.load_s += dt
        self.w_plain.write_table(pa.Table.from_arrays(base, schema=self.w_plain.schema))

    def finish(self) -> None:
        import duckdb

        self.w_cov.close()
        self.w_plain.close()
        self.bytes = self.path.stat().st_size
        self.default_bytes = self.default_path.stat().st_size
        self.con = duckdb.connect()
        self.con.execute("SET threads=2")
        self.con.execute(f"SET memory_limit='{DUCKDB_MEMORY}'")
        self.con.execute(f"CREATE VIEW v AS SELECT * FROM read_parquet('{self.path}')")

    def range(self, q: dict[str, Any]) -> pd.DataFrame:
        b = q["box"]
        sql = "SELECT id, t FROM v WHERE bbox.xmin >= ? AND bbox.xmax <= ? AND bbox.ymin >= ? AND bbox.ymax <= ?"
        args: list[Any] = [b[0], b[2], b[1], b[3]]
        if q["start"] is not None:
            sql += " AND t >= make_timestamp(?::BIGINT * 1000) AND t < make_timestamp(?::BIGINT * 1000)"
            args += [q["start"], q["end"]]
        return self.con.execute(sql, args).df()

    def id_temporal(self, q: dict[str, Any]) -> pd.DataFrame:
        return self.con.execute(
            "SELECT id, t FROM v WHERE id = ? AND t >= make_timestamp(?::BIGINT * 1000) "
            "AND t < make_timestamp(?::BIGINT * 1000)",
            [q["id"], q["start"], q["end"]],
        ).df()

    def knn(self, q: dict[str, Any]) -> pd.DataFrame:
        # haversine in SQL over the rows in the time window, as a DuckDB user would write it
        return self.con.execute(
            """SELECT id, t, 2 * 6371008.8 * asin(sqrt(pow(sin(radians(bbox.ymin - ?) / 2), 2) +
                      cos(radians(?)) * cos(radians(bbox.ymin)) * pow(sin(radians(bbox.xmin - ?) / 2), 2)))
                      AS distance_m
               FROM v WHERE t >= make_timestamp(?::BIGINT * 1000) AND t < make_timestamp(?::BIGINT * 1000)
               ORDER BY distance_m, id, t LIMIT ?""",
            [q["y"], q["y"], q["x"], q["start"], q["end"], q["k"]],
        ).df()


def _spatial_extension() -> str:
    """Path of the DuckDB spatial extension shipped by the ``duckdb-extension-spatial`` wheel
    (loaded from disk: nothing is downloaded)."""
    import duckdb
    import duckdb_extension_spatial

    p = Path(duckdb_extension_spatial.__file__).parent / "extensions" / f"v{duckdb.__version__}"
    return str(p / "spatial.duckdb_extension")


def _ms_sql(ms: int) -> str:
    return f"make_timestamp({int(ms)}::BIGINT * 1000)"


class DuckDBSpatial:
    """DuckDB with its spatial extension: a native GEOMETRY column in a DuckDB database file,
    rows in arrival (time) order, an R-tree index on the geometry, ``ST_Intersects`` for
    ranges and region joins (DuckDB's spatial join operator), ``ST_Distance_Sphere`` for
    kNN, and ``ST_DWithin`` on UTM-projected geometries for the nearest road (roads are
    projected once at load; points per query)."""

    name = "DuckDB-spatial"

    def __init__(self, work: Path, layers: tuple[pd.DataFrame, pd.DataFrame], utm: str) -> None:
        import duckdb

        self.path = work / "spatial.duckdb"
        self.con = duckdb.connect(str(self.path))
        self.con.execute(f"LOAD '{_spatial_extension()}'")
        self.con.execute("SET threads=2")
        self.con.execute(f"SET memory_limit='{DUCKDB_MEMORY}'")
        self.con.execute("SET TimeZone='UTC'")
        self.utm = utm
        self.con.execute("CREATE TABLE v (id VARCHAR, t TIMESTAMP, geom GEOMETRY)")
        districts, roads = (pa.Table.from_pandas(x, preserve_index=False) for x in layers)
        self.con.register("districts_in", districts)
        self.con.register("roads_in", roads)
        self.con.execute(
            "CREATE TABLE districts AS SELECT id, ST_GeomFromWKB(geometry) AS geom FROM districts_in"
        )
        self.con.execute(
            "CREATE TABLE roads_m AS SELECT id, ST_Transform(ST_GeomFromWKB(geometry), "
            f"'EPSG:4326', '{utm}', always_xy := true) AS geom FROM roads_in"
        )
        self.con.execute("CREATE INDEX roads_rtree ON roads_m USING RTREE (geom)")
        self.con.unregister("districts_in")
        self.con.unregister("roads_in")
        self.load_s = 0.0

    def add(self, df: pd.DataFrame) -> None:
        tbl = pa.table({"id": df["id"], "t": pa.array(df["t"]), "x": df["x"], "y": df["y"]})

        def ins() -> None:
            self.con.register("chunk", tbl)
            self.con.execute("INSERT INTO v SELECT id, t::TIMESTAMP, ST_Point(x, y) FROM chunk")
            self.con.unregister("chunk")

        self.load_s += timed(ins)[1]

    def load_files(self, paths: list[Path]) -> None:
        """Load every chunk file with one ``INSERT ... SELECT`` over ``read_parquet`` (the way
        a DuckDB user bulk-loads; what ``add`` does chunk by chunk), then ``finish``."""
        files = ", ".join(f"'{p}'" for p in paths)

        def ins() -> None:
            self.con.execute(
                f"INSERT INTO v SELECT id, t::TIMESTAMP, ST_Point(x, y) FROM read_parquet([{files}])"
            )

        self.load_s += timed(ins)[1]
        self.finish()

    def finish(self) -> None:
        def idx() -> None:
            self.con.execute("CREATE INDEX v_rtree ON v USING RTREE (geom)")
            self.con.execute("CHECKPOINT")

        self.load_s += timed(idx)[1]
        self.bytes = self.path.stat().st_size

    def _window(self, q: dict[str, Any], col: str = "t") -> str:
        if q["start"] is None:
            return ""
        return f" AND {col} >= {_ms_sql(q['start'])} AND {col} < {_ms_sql(q['end'])}"

    def range(self, q: dict[str, Any]) -> pd.DataFrame:
        # constants in the SQL text: the R-tree scan is chosen only for a constant geometry
        b = q["box"]
        x0, y0, x1, y1 = (repr(float(v)) for v in b)
        env = f"ST_MakeEnvelope({x0}, {y0}, {x1}, {y1})"
        return self.con.execute(
            f"SELECT id, t FROM v WHERE ST_Intersects(geom, {env})" + self._window(q)
        ).df()

    def id_temporal(self, q: dict[str, Any]) -> pd.DataFrame:
        return self.con.execute(
            "SELECT id, t FROM v WHERE id = ?" + self._window(q), [q["id"]]
        ).df()

    def knn(self, q: dict[str, Any]) -> pd.DataFrame:
        # ST_Distance_Sphere takes (lat, lon) points: EPSG:4326 axis order
        return self.con.execute(
            "SELECT id, t, ST_Distance_Sphere(ST_FlipCoordinates(geom), ST_Point(?, ?)) "
            "AS distance_m FROM v WHERE true"
            + self._window(q)
            + " ORDER BY distance_m, id, t LIMIT ?",
            [q["y"], q["x"], q["k"]],
        ).df()

    def regions(self, q: dict[str, Any]) -> pd.DataFrame:
        return self.con.execute(
            "SELECT v.id, v.t, d.id AS region_id FROM v JOIN districts d "
            "ON ST_Intersects(d.geom, v.geom) WHERE true" + self._window(q, "v.t")
        ).df()

    def nearest(self, q: dict[str, Any]) -> pd.DataFrame:
        return self.con.execute(
            f"""WITH p AS (SELECT id, t, ST_Transform(geom, 'EPSG:4326', '{self.utm}',
                                                   always_xy := true) AS g
                           FROM v WHERE true {self._window(q)})
                SELECT id, t, edge_id, distance_m FROM (
                  SELECT p.id, p.t, r.id AS edge_id, ST_Distance(p.g, r.geom) AS distance_m,
                         row_number() OVER (PARTITION BY p.id, p.t
                                            ORDER BY ST_Distance(p.g, r.geom), r.id) AS rn
                  FROM p JOIN roads_m r ON ST_DWithin(p.g, r.geom, {q["max_m"]!r}))
                WHERE rn = 1"""
        ).df()


class SedonaDB:
    """Apache SedonaDB (single node, Rust/DataFusion) over the same GeoParquet file as the
    DuckDB baseline (GeoParquet 1.1 with bbox covering; SedonaDB prunes row groups by its
    statistics): ``ST_Intersects`` for ranges and region joins (its spatial join),
    haversine in SQL for kNN (SedonaDB has no spherical distance), and its ``ST_KNN`` join
    on UTM-projected geometries for the nearest road."""

    name = "SedonaDB"

    def __init__(
        self,
        work: Path,
        layers: tuple[pd.DataFrame, pd.DataFrame],
        utm: str,
        files: DuckDBGeoParquet | None,
    ) -> None:
        self.files = files or DuckDBGeoParquet(work)
        self.own = files is None
        self.layers, self.utm = layers, utm
        self.load_s = 0.0
        self.bytes = None

    def add(self, df: pd.DataFrame) -> None:
        if self.own:
            self.files.add(df)

    def finish(self) -> None:
        import geopandas as gpd
        import sedonadb
        import shapely

        if self.own:
            self.files.finish()
        self.bytes = self.files.bytes
        self.load_s = self.files.load_s
        self.sd = sedonadb.connect()
        self.sd.read_parquet(str(self.files.path)).to_view("v")
        for name, df in zip(("districts", "roads"), self.layers, strict=True):
            g = gpd.GeoDataFrame(
                {"id": df["id"]}, geometry=shapely.from_wkb(df["geometry"]), crs=4326
            )
            self.sd.create_data_frame(g).to_view(f"{name}_in")
        self.sd.sql("SELECT id, geometry AS geom FROM districts_in").to_memtable().to_view(
            "districts"
        )
        self.sd.sql(
            f"SELECT id, ST_Transform(geometry, '{self.utm}') AS geom FROM roads_in"
        ).to_memtable().to_view("roads_m")

    @staticmethod
    def _window(q: dict[str, Any], col: str = "t") -> str:
        if q["start"] is None:
            return ""
        return (
            f" AND {col} >= to_timestamp_millis({int(q['start'])})"
            f" AND {col} < to_timestamp_millis({int(q['end'])})"
        )

    def range(self, q: dict[str, Any]) -> pd.DataFrame:
        b = q["box"]
        env = f"ST_SetSRID(ST_GeomFromText('{shapely_box_wkt(b)}'), 4326)"
        return self.sd.sql(
            f"SELECT id, t FROM v WHERE ST_Intersects(geometry, {env})" + self._window(q)
        ).to_pandas()

    def id_temporal(self, q: dict[str, Any]) -> pd.DataFrame:
        ident = q["id"].replace("'", "''")
        return self.sd.sql(
            f"SELECT id, t FROM v WHERE id = '{ident}'" + self._window(q)
        ).to_pandas()

    def knn(self, q: dict[str, Any]) -> pd.DataFrame:
        x, y = float(q["x"]), float(q["y"])
        d = (
            f"2 * 6371008.8 * asin(sqrt(power(sin(radians(ST_Y(geometry) - {y!r}) / 2), 2) + "
            f"cos(radians({y!r})) * cos(radians(ST_Y(geometry))) * "
            f"power(sin(radians(ST_X(geometry) - {x!r}) / 2), 2)))"
        )
        return self.sd.sql(
            f"SELECT id, t, {d} AS distance_m FROM v WHERE true"
            + self._window(q)
            + f" ORDER BY distance_m, id, t LIMIT {int(q['k'])}"
        ).to_pandas()

    def regions(self, q: dict[str, Any]) -> pd.DataFrame:
        return self.sd.sql(
            "SELECT v.id, v.t, d.id AS region_id FROM v JOIN districts d "
            "ON ST_Intersects(d.geom, v.geometry) WHERE true" + self._window(q, "v.t")
        ).to_pandas()

    def nearest(self, q: dict[str, Any]) -> pd.DataFrame:
        return self.sd.sql(
            f"""WITH p AS (SELECT id, t, ST_Transform(geometry, '{self.utm}') AS g
                           FROM v WHERE true {self._window(q)})
                SELECT id, t, edge_id, distance_m FROM (
                  SELECT p.id, p.t, r.id AS edge_id, ST_Distance(p.g, r.geom) AS distance_m
                  FROM p JOIN roads_m r ON ST_KNN(p.g, r.geom, 1, false))
                WHERE distance_m <= {q["max_m"]!r}"""
        ).to_pandas()


def shapely_box_wkt(b: tuple[float, float, float, float]) -> str:
    x0, y0, x1, y1 = (repr(float(v)) for v in b)
    return f"POLYGON (({x0} {y0}, {x1} {y0}, {x1} {y1}, {x0} {y1}, {x0} {y0}))"


class PostGIS:
    """PostgreSQL + PostGIS, points in a geometry(Point, 4326) column with a GiST index and
    B-trees on time and (id, time), loaded with COPY from a full-precision CSV."""

    name = "PostGIS+GiST"

    def __init__(self, work: Path, url: str) -> None:
        import psycopg

        self.csv = work / "full_precision.csv"
        self.writer: pcsv.CSVWriter | None = None
        self.conn = psycopg.connect(
            url.replace("postgresql+psycopg://", "postgresql://"), autocommit=True
        )
        self.load_s = 0.0

    def add(self, df: pd.DataFrame) -> None:
        tbl = pa.Table.from_pandas(df, preserve_index=False)
        if self.writer is None:
            self.writer = pcsv.CSVWriter(self.csv, tbl.schema)
        self.writer.write_table(tbl)

    def load_files(self, paths: list[Path]) -> None:
        """COPY the chunk files' rows (full-precision CSV made chunk by chunk and streamed to
        the server, so no 100M-row CSV is written to disk), then index as ``finish`` does."""
        c = self._prepare()

        def load() -> None:
            with (
                c.cursor() as cur,
                cur.copy("COPY stage FROM STDIN WITH (FORMAT csv, HEADER false)") as cp,
            ):
                for p in paths:
                    buf = pa.BufferOutputStream()
                    pcsv.write_csv(pq.read_table(p), buf, pcsv.WriteOptions(include_header=False))
                    cp.write(buf.getvalue().to_pybytes())
            self._index()

        _, self.load_s = timed(load)
        self._size()

    def _prepare(self) -> Any:
        c = self.conn
        c.execute("CREATE EXTENSION IF NOT EXISTS postgis")
        c.execute("CREATE UNLOGGED TABLE stage (id text, t timestamptz, x float8, y float8)")
        c.execute("CREATE TABLE v (id text, t timestamptz, geom geometry(Point, 4326))")
        # what a user loading 100M rows would set for the index builds (default 64 MB)
        c.execute("SET maintenance_work_mem = '1GB'")
        return c

    def _index(self) -> None:
        c = self.conn
        c.execute("INSERT INTO v SELECT id, t, ST_SetSRID(ST_MakePoint(x, y), 4326) FROM stage")
        c.execute("DROP TABLE stage")
        c.execute("CREATE INDEX v_geom ON v USING gist (geom)")
        c.execute("CREATE INDEX v_t ON v (t)")
        c.execute("CREATE INDEX v_id_t ON v (id, t)")
        c.execute("VACUUM ANALYZE v")

    def _size(self) -> None:
        row = self.conn.execute("SELECT pg_total_relation_size('v')").fetchone()
        self.bytes = int(row[0]) if row else 0

    def finish(self) -> None:
        assert self.writer is not None
        self.writer.close()
        c = self._prepare()

        def load() -> None:
            with (
                c.cursor() as cur,
                cur.copy("COPY stage FROM STDIN WITH (FORMAT csv, HEADER true)") as cp,
                open(self.csv, "rb") as fh,
            ):
                while data := fh.read(1 << 20):
                    cp.write(data)
            self._index()

        _, self.load_s = timed(load)
        self.csv.unlink()
        self._size()

    @staticmethod
    def _ts(ms: int) -> pd.Timestamp:
        return pd.Timestamp(ms, unit="ms", tz="UTC")

    def range(self, q: dict[str, Any]) -> pd.DataFrame:
        b = q["box"]
        # ST_Intersects: && on the GiST index (float4 boxes, rounded outward) then an exact test
        sql = "SELECT id, t FROM v WHERE ST_Intersects(geom, ST_MakeEnvelope(%s, %s, %s, %s, 4326))"
        args: list[Any] = [b[0], b[1], b[2], b[3]]
        if q["start"] is not None:
            sql += " AND t >= %s AND t < %s"
            args += [self._ts(q["start"]), self._ts(q["end"])]
        rows = self.conn.execute(sql, args).fetchall()
        return pd.DataFrame(rows, columns=["id", "t"])

    def id_temporal(self, q: dict[str, Any]) -> pd.DataFrame:
        rows = self.conn.execute(
            "SELECT id, t FROM v WHERE id = %s AND t >= %s AND t < %s",
            [q["id"], self._ts(q["start"]), self._ts(q["end"])],
        ).fetchall()
        return pd.DataFrame(rows, columns=["id", "t"])

    def knn(self, q: dict[str, Any]) -> pd.DataFrame:
        # index-assisted kNN (<->, planar degrees) over a 40k-row candidate set, re-ranked by
        # spherical distance: the usual PostGIS idiom for metric kNN on lon/lat points
        rows = self.conn.execute(
            """SELECT id, t, d FROM (
                 SELECT id, t, ST_DistanceSphere(geom, p) AS d FROM v,
                        (SELECT ST_SetSRID(ST_MakePoint(%s, %s), 4326) AS p) q
                 WHERE t >= %s AND t < %s ORDER BY geom <-> p LIMIT %s) c
               ORDER BY d, id, t LIMIT %s""",
            [q["x"], q["y"], self._ts(q["start"]), self._ts(q["end"]), 40 * q["k"], q["k"]],
        ).fetchall()
        return pd.DataFrame(rows, columns=["id", "t", "distance_m"])


class GeoPandasSTR:
    """GeoPandas in memory with a shapely STRtree on the points."""

    name = "GeoPandas+STRtree"

    def __init__(self) -> None:
        self.parts: list[pd.DataFrame] = []
        self.load_s = 0.0
        self.bytes = None

    def add(self, df: pd.DataFrame) -> None:
        self.parts.append(df)

    def finish(self) -> None:
        import geopandas as gpd
        import shapely

        df = pd.concat(self.parts, ignore_index=True)
        self.parts = []

        def load() -> Any:
            g = gpd.GeoDataFrame(
                df[["id", "t"]], geometry=gpd.points_from_xy(df["x"], df["y"]), crs=4326
            )
            return g, shapely.STRtree(g.geometry.values)

        (self.gdf, self.tree), self.load_s = timed(load)
        self.t = df["t"].to_numpy().astype("datetime64[ms]").astype("int64")
        self.ids = df["id"].to_numpy()
        self.x, self.y = df["x"].to_numpy(), df["y"].to_numpy()

    def range(self, q: dict[str, Any]) -> pd.DataFrame:
        import shapely

        idx = self.tree.query(shapely.box(*q["box"]), predicate="intersects")
        if q["start"] is not None:
            tt = self.t[idx]
            idx = idx[(tt >= q["start"]) & (tt < q["end"])]
        return self.gdf.iloc[idx][["id", "t"]]

    def id_temporal(self, q: dict[str, Any]) -> pd.DataFrame:
        m = (self.t >= q["start"]) & (self.t < q["end"])
        m &= self.ids == q["id"]
        return self.gdf.loc[m, ["id", "t"]]

    def knn(self, q: dict[str, Any]) -> pd.DataFrame:
        m = np.flatnonzero((self.t >= q["start"]) & (self.t < q["end"]))
        d = haversine(q["x"], q["y"], self.x[m], self.y[m])
        k = min(q["k"], len(d))
        top = np.argpartition(d, k - 1)[:k] if k else np.array([], dtype=int)
        out = self.gdf.iloc[m[top]][["id", "t"]].assign(distance_m=d[top])
        return out.sort_values(["distance_m", "id", "t"])


def load_system(sys_: Any, chunks: list[Path]) -> None:
    """Feed one system every chunk file (one frame at a time) and finish it: its bulk path
    (``load_files``) where it has one, else ``add`` per chunk then ``finish``."""
    import gc

    print(f"  loading {sys_.name} ...", flush=True)
    if hasattr(sys_, "load_files"):
        sys_.load_files(chunks)
    else:
        for p in chunks:
            df = pq.read_table(p).to_pandas()
            sys_.add(df)
            del df
        gc.collect()
        sys_.finish()
    print(f"  {sys_.name} loaded ({sys_.load_s:.0f} s)", flush=True)


def budget_median_ms(
    fn: Any, qs: list[Any], warmup: int, budget_s: float | None
) -> tuple[float, list[Any], list[float]]:
    """``median_ms`` of ``fn`` over ``qs`` (and each query's ms), but once ``budget_s``
    seconds were spent on this system and query set (warm-up included) no further query is
    timed: the median is over the first ones (at least one), the answers are theirs."""
    import statistics
    import time

    if budget_s is None:
        budget_s = float("inf")
    t00 = time.perf_counter()
    for q in qs[:warmup]:
        fn(q)
        if time.perf_counter() - t00 > budget_s / 2:
            break
    times, answers = [], []
    for q in qs:
        t0 = time.perf_counter()
        answers.append(fn(q))
        times.append((time.perf_counter() - t0) * 1000)
        if time.perf_counter() - t00 > budget_s:
            break
    return statistics.median(times), answers, times


def own_peak_rss() -> int:
    """This process's peak resident memory (``VmHWM``), in bytes."""
    with open("/proc/self/status") as fh:
        return 1024 * next(int(ln.split()[1]) for ln in fh if ln.startswith("VmHWM:"))


def print_memory(when: str) -> None:
    print(f"  benchmark process peak resident memory {when}: {own_peak_rss() / 2**20:,.0f} MiB")


def cityos_storage(store: Store, name: str = "v") -> list[list[Any]]:
    """Bytes of the dataset's live files (those of its current version, not replaced ones
    awaiting ``vacuum``) by kind (data files, id-index copies) and by column (compressed
    column chunks summed over row groups; footers and page indexes apart)."""
    rows: dict[tuple[str, str], int] = {}
    totals: dict[str, int] = {}
    for rel in sorted(f.path for f in store.catalog.files(name)):
        for kind, f in (
            ("data files", store.data_dir / rel),
            ("id-index copies (.ids)", store.data_dir / (rel + ".ids")),
        ):
            if not f.exists():
                continue
            totals[kind] = totals.get(kind, 0) + f.stat().st_size
            md = pq.ParquetFile(f).metadata
            for i in range(md.num_row_groups):
                rg = md.row_group(i)
                for j in range(rg.num_columns):
                    c = rg.column(j)
                    key = (kind, c.path_in_schema)
                    rows[key] = rows.get(key, 0) + c.total_compressed_size
    out: list[list[Any]] = []
    for kind, tot in totals.items():
        cols = sum(v for (k, _), v in rows.items() if k == kind)
        out.append([kind, "(file total)", tot])
        out += [[kind, c, v] for (k, c), v in sorted(rows.items()) if k == kind]
        out.append([kind, "(footers, page indexes)", tot - cols])
    return out


# -- the run ----------------------------------------------------------------------------------


def profile_cityos(sys_: Any, queries: dict[str, list[Any]], out: Path) -> None:
    """One untimed pass of ``sys_``'s queries per set under cProfile, in this process after
    the timed runs: ``out/<set>.prof`` (for ``pstats`` / snakeviz) and ``out/<set>.txt``
    (the 25 entries with the most cumulative time), with each query's wall time beside."""
    import cProfile
    import io
    import pstats
    import time

    out.mkdir(parents=True, exist_ok=True)
    for qname, qs in queries.items():
        fn = getattr(sys_, kind_of(qname), None)
        if fn is None:
            continue
        prof = cProfile.Profile()
        walls = []
        for q in qs:
            t0 = time.perf_counter()
            prof.runcall(fn, q)
            walls.append((time.perf_counter() - t0) * 1000)
        slug = "".join(c if c.isalnum() else "_" for c in qname)
        prof.dump_stats(out / f"{slug}.prof")
        buf = io.StringIO()
        buf.write(f"{qname}: wall ms under the profiler " + ", ".join(f"{w:.1f}" for w in walls))
        buf.write("\n")
        pstats.Stats(prof, stream=buf).sort_stats("cumulative").print_stats(25)
        (out / f"{slug}.txt").write_text(buf.getvalue())
    print(f"  CityOS profiles (cProfile, one untimed pass per set) in {out}")


def _status_kib(field: str) -> int:
    with open("/proc/self/status") as fh:
        return next(int(ln.split()[1]) for ln in fh if ln.startswith(field + ":"))


def memory_probe(home: Path, qfile: Path) -> None:
    """Run the CityOS query workload in a fresh process and print its peak resident memory
    (the CityOS side alone: the baselines live in the benchmark's own process), overall and
    per query set: the high-water mark is reset before each set (``/proc/self/clear_refs``),
    so each set's figure is the most the process held while that set ran."""
    import json

    queries = json.loads(qfile.read_text())
    sys_ = CityOS.__new__(CityOS)
    sys_.store, sys_.engine = Store(home), "duckdb"
    # VmHWM is this process's own peak. ru_maxrss is not: Linux carries the high-water mark
    # of the mm replaced at exec into it, and subprocess's vfork child execs from the
    # benchmark's own mm, so ru_maxrss reported the benchmark's peak (every system's data).
    overall = _status_kib("VmHWM")
    per_set: dict[str, int] = {}
    for qname, qs in queries.items():
        with contextlib.suppress(OSError), open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")  # resets VmHWM to the current resident size
        fn = getattr(sys_, kind_of(qname))
        for q in qs:
            if "box" in q:
                q["box"] = tuple(q["box"])
            fn(q)
        peak = _status_kib("VmHWM")
        per_set[qname] = peak * 1024
        overall = max(overall, peak)
    print(json.dumps({"peak": overall * 1024, "per_set": per_set}))


def cityos_peak_rss(
    home: Path, queries: dict[str, list[dict[str, Any]]], work: Path
) -> tuple[int, dict[str, int]]:
    import json
    import subprocess

    qfile = work / "queries.json"
    qfile.write_text(json.dumps(queries, default=float))
    out = subprocess.run(
        [sys.executable, __file__, "--memory-probe", str(home), str(qfile)],
        check=True,
        capture_output=True,
        text=True,
    )
    got = json.loads(out.stdout.strip().splitlines()[-1])
    return int(got["peak"]), {k: int(v) for k, v in got["per_set"].items()}


def main() -> None:
    # DuckDB's and pandas' conversion warnings (deprecations in their own code) are noise here
    warnings.simplefilter("ignore")
    if len(sys.argv) == 4 and sys.argv[1] == "--memory-probe":
        memory_probe(Path(sys.argv[2]), Path(sys.argv[3]))
        return
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--points", type=int, default=1_000_000)
    ap.add_argument("--queries", type=int, default=25)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument(
        "--skip",
        nargs="*",
        default=[],
        help="systems to skip: duckdb duckdb-spatial sedonadb postgis geopandas",
    )
    ap.add_argument(
        "--engine",
        nargs="*",
        default=[],
        help="also query the same CityOS store through these engines (e.g. spark)",
    )
    ap.add_argument(
        "--spark-cluster",
        action="store_true",
        help="run the spark engine on a standalone master + worker started for the run "
        "(cityos.testing.spark) instead of local mode",
    )
    ap.add_argument(
        "--only",
        nargs="*",
        default=None,
        help="run only the query sets whose names start with these prefixes",
    )
    ap.add_argument("--work", type=Path, default=Path(__file__).parent / "_work")
    ap.add_argument(
        "--parallel-load",
        action="store_true",
        help="load the systems side by side, one thread each (their load times then overlap)",
    )
    ap.add_argument(
        "--budget-s",
        type=float,
        default=None,
        help="per system and query set: stop timing further queries once this many seconds "
        "were spent (at least one is timed); the medians then say over how many",
    )
    ap.add_argument(
        "--profile",
        type=Path,
        default=None,
        metavar="DIR",
        help="after the timed runs, run CityOS's queries once more per set under cProfile in "
        "this process (same heap as the timed runs) and write DIR/<set>.prof with a summary",
    )
    ap.add_argument(
        "--keep", action="store_true", help="keep the work directory (the CityOS store) at the end"
    )
    args = ap.parse_args()
    work = args.work / f"st_query_{args.points}"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    load0 = os.getloadavg()

    from cityos.store._kernels import utm_crs

    cluster_ctx = None
    if args.spark_cluster:
        from cityos.testing.spark import spark_cluster

        cluster_ctx = spark_cluster(cores=2, memory="3g")
        os.environ["CITYOS_SPARK_MASTER"] = cluster_ctx.__enter__().master_url
        print(f"spark engine on the standalone cluster {os.environ['CITYOS_SPARK_MASTER']}")
    layers = city_layers(args.seed)
    utm = utm_crs(*make_city(seed=args.seed).center)
    systems: list[Any] = [CityOS(work, layers, "duckdb")]
    cityos = systems[0]
    for e in args.engine:
        systems.append(CityOSOtherEngine(cityos, e))
    duck = None
    if "duckdb" not in args.skip:
        duck = DuckDBGeoParquet(work)
        systems.append(duck)
    if "duckdb-spatial" not in args.skip:
        systems.append(DuckDBSpatial(work, layers, utm))
    if "sedonadb" not in args.skip:
        systems.append(SedonaDB(work, layers, utm, duck))
    pg_ctx = None
    if "postgis" not in args.skip:
        from cityos.testing.postgres import postgres_server

        pg_ctx = postgres_server()
        systems.append(PostGIS(work, pg_ctx.__enter__()))
    if "geopandas" not in args.skip and args.points > GEOPANDAS_MAX_POINTS:
        print(
            f"GeoPandas skipped: above {GEOPANDAS_MAX_POINTS:,} points it holds every point as "
            "a shapely object plus an STRtree in memory, more than this machine has"
        )
    elif "geopandas" not in args.skip:
        systems.append(GeoPandasSTR())

    print(
        f"generating {args.points:,} BerlinMOD-style points to {work / 'chunks'} "
        f"(load average {load0[0]:.1f}) ...",
        flush=True,
    )
    rng = np.random.default_rng(args.seed)
    # the raw CSV is only measured (a counting sink), never written
    raw = pa.MockOutputStream()
    csv_writer: pcsv.CSVWriter | None = None
    samples, n, gen_s, vehicles = [], 0, 0.0, set()
    chunks: list[Path] = []
    (work / "chunks").mkdir()
    it = stream(args.points, args.seed)
    while True:
        df, dt = timed(lambda: next(it, None))
        if df is None:
            break
        gen_s += dt
        n += len(df)
        vehicles.update(df["id"].unique().tolist())
        csv_tbl = pa.table(
            {
                "id": df["id"],
                "t": pa.array(df["t"]),
                "x": np.round(df["x"].to_numpy(), 7),
                "y": np.round(df["y"].to_numpy(), 7),
            }
        )
        if csv_writer is None:
            csv_writer = pcsv.CSVWriter(raw, csv_tbl.schema)
        csv_writer.write_table(csv_tbl)
        samples.append(df.iloc[rng.random(len(df)) < min(1.0, 200_000 / args.points)])
        chunks.append(work / "chunks" / f"{len(chunks):05d}.parquet")
        pq.write_table(pa.Table.from_pandas(df, preserve_index=False), chunks[-1])
        print(f"  {n:,} points", end="\r", flush=True)
    assert csv_writer is not None
    csv_writer.close()
    csv_bytes = raw.size()
    del df, csv_tbl
    sample = pd.concat(samples, ignore_index=True)
    print(
        f"  {n:,} points, {len(vehicles):,} vehicles, {sample.t.min()} .. {sample.t.max()} "
        f"(generated in {gen_s:.0f} s)"
    )
    # each system loads from the chunk files (one frame at a time, freed after): nothing
    # holds all points but GeoPandas, which is skipped above GEOPANDAS_MAX_POINTS
    later = [
        s
        for s in systems
        if isinstance(s, CityOSOtherEngine) or (isinstance(s, SedonaDB) and not s.own)
    ]
    loaders = [s for s in systems if s not in later]
    mode = "side by side, one thread each" if args.parallel_load else "one after another"
    print(f"loading {len(loaders)} systems from the chunk files ({mode}) ...", flush=True)
    if args.parallel_load:
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(len(loaders)) as pool:
            for f in [pool.submit(load_system, s, chunks) for s in loaders]:
                f.result()
    else:
        for sys_ in loaders:
            load_system(sys_, chunks)
    for sys_ in later:
        print(f"finishing {sys_.name} ...", flush=True)
        sys_.finish()
    shutil.rmtree(work / "chunks")
    print_memory("after loading")

    queries = make_queries(sample, args.queries, args.seed)
    if args.only is not None:
        queries = {q: v for q, v in queries.items() if any(q.startswith(p) for p in args.only)}
    load1 = os.getloadavg()
    results: dict[str, dict[str, float | None]] = {}
    selectivity: dict[str, float] = {}
    agree: dict[str, bool] = {}
    counts: dict[str, dict[str, int]] = {}
    times: dict[str, dict[str, list[float]]] = {}
    for qname, qs in queries.items():
        print(f"  {qname} ...", flush=True)
        kind = kind_of(qname)
        results[qname] = {}
        counts[qname] = {}
        times[qname] = {}
        answers = {}
        for sys_ in systems:
            fn = getattr(sys_, kind, None)
            if fn is None:
                results[qname][sys_.name] = None
                continue
            ms, ans, each = budget_median_ms(fn, qs, 2 if len(qs) > 5 else 1, args.budget_s)
            results[qname][sys_.name] = ms
            answers[sys_.name] = ans
            counts[qname][sys_.name] = len(ans)
            times[qname][sys_.name] = each
            print(
                f"    {sys_.name}: {ms:,.2f} ms (median of {len(ans)}; each: "
                + ", ".join(f"{t:.1f}" for t in each)
                + ")",
                flush=True,
            )
        ref = answers[cityos.name]
        selectivity[qname] = float(np.mean([len(a) for a in ref])) / n
        ok = True
        for name, ans in answers.items():
            # a system cut short by the time budget is compared on the queries it ran
            this = all(same_answer(kind, a, b) for a, b in zip(ref, ans, strict=False))
            if not this:
                print(f"  !! {name} disagrees with CityOS on {qname}")
            ok &= this
        agree[qname] = ok
    load2 = os.getloadavg()
    if args.profile is not None:
        profile_cityos(systems[0], queries, args.profile)
    print("measuring the CityOS side's peak resident memory (query workload, fresh process) ...")
    rss, rss_per_set = cityos_peak_rss(cityos.home, queries, work)

    names = [s.name for s in systems]
    print(f"\nMedian latency (ms) over {args.queries} queries each, {n:,} points, 2 cores")
    print_table(
        ["query", "rows (mean)", *names],
        [[q, selectivity[q] * n, *[results[q][s] for s in names]] for q in queries],
    )
    print("\nStorage and load")
    size_rows = [["raw CSV (id,t,x,y)", csv_bytes / n, None]]
    if duck is not None:
        size_rows.append(["GeoParquet (GeoPandas default)", duck.default_bytes / n, None])
    for s in systems:
        if isinstance(s, CityOSOtherEngine):
            continue
        size_rows.append([s.name, None if s.bytes is None else s.bytes / n, n / s.load_s])
    print_table(["system", "bytes/point", "load points/s"], size_rows)
    print(
        f"  CityOS load {cityos.load_s:.1f} s in 1M-point appends (+ {cityos.compact_s:.1f} s compaction, "
        f"{n / (cityos.load_s + cityos.compact_s):,.0f} points/s with it)"
    )
    print(f"  CityOS peak resident memory running the query workload: {rss / 2**20:,.0f} MiB")
    print(
        "    per query set (peak while it ran): "
        + "; ".join(f"{q} {b / 2**20:,.0f} MiB" for q, b in rss_per_set.items())
    )
    print_memory("(all systems held in it; PostgreSQL's server processes apart)")
    short = {q: {s: c for s, c in cs.items() if c < len(queries[q])} for q, cs in counts.items()}
    short = {q: cs for q, cs in short.items() if cs}
    if short:
        print(
            f"  cut short by the {args.budget_s:g} s budget per system and query set (queries timed):"
        )
        for q, cs in short.items():
            print(f"    {q}: " + ", ".join(f"{s} {c}" for s, c in cs.items()))
    storage = cityos_storage(cityos.store)
    print("\nCityOS storage by file kind and column (bytes/point)")
    print_table(["files", "column", "bytes/point"], [[a, b, c / n] for a, b, c in storage])

    print("\nRatios (system time / CityOS time; >1 means CityOS is faster)")
    for s in names[1:]:
        parts = [
            f"{q}: {results[q][s] / results[q][cityos.name]:.1f}x"  # type: ignore[operator]
            for q in queries
            if results[q].get(s) is not None
        ]
        print(f"  vs {s}: " + "; ".join(parts))
    print(
        f"  storage: CityOS is 1/{csv_bytes / cityos.bytes:.1f} of raw CSV"
        + (f", 1/{duck.default_bytes / cityos.bytes:.1f} of default GeoParquet" if duck else "")
    )
    print("  answers agree: " + ", ".join(f"{q}: {'yes' if v else 'NO'}" for q, v in agree.items()))
    print(
        f"  load average (1 min): {load0[0]:.1f} at start, {load1[0]:.1f} before queries, "
        f"{load2[0]:.1f} after"
    )
    save(
        f"st_query_{n}",
        {
            "points": n,
            "latency_ms": results,
            "selectivity": selectivity,
            "agree": agree,
            "bytes_per_point": {
                s.name: (None if s.bytes is None else s.bytes / n)
                for s in systems
                if not isinstance(s, CityOSOtherEngine)
            }
            | {"raw CSV": csv_bytes / n}
            | ({"GeoParquet default": duck.default_bytes / n} if duck else {}),
            "load_points_per_s": {s.name: n / s.load_s for s in systems},
            "cityos_compact_s": cityos.compact_s,
            "cityos_peak_rss_bytes": rss,
            "cityos_peak_rss_bytes_per_set": rss_per_set,
            "benchmark_peak_rss_bytes": own_peak_rss(),
            "queries_timed": counts,
            "query_ms": times,
            "cityos_storage_bytes": storage,
            "parallel_load": args.parallel_load,
            "load_average": [load0, load1, load2],
        },
    )
    for s in systems:
        if hasattr(s, "con") and hasattr(s.con, "close"):
            s.con.close()
    cityos.store.close()
    if pg_ctx is not None:
        pg_ctx.__exit__(None, None, None)
    if cluster_ctx is not None:
        cluster_ctx.__exit__(None, None, None)
    if not args.keep:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()

"""Spatial SQL: DuckDB's spatial extension loaded from the installed package, the same
``ST_*`` functions registered on Spark, the same SQL giving the same answers on both."""

from __future__ import annotations

import math
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pyarrow as pa
import pytest
import shapely
from typer.testing import CliRunner

from cityos.model import DatasetSchema, GeometryType, ModelKind
from cityos.store import Store
from cityos.store._spatial_sql import (
    SPARK_FUNCTIONS,
    create_spark_views,
    register_spark,
    spatial_extension_path,
)

ROADS = {
    "r1": "LINESTRING (0 0, 3 4)",
    "r2": "LINESTRING (10 10, 10 20, 20 20)",
    "r3": "LINESTRING (-5 -5, -1 -1)",
}
ZONES = {
    "z1": "POLYGON ((-1 -1, 5 -1, 5 5, -1 5, -1 -1))",
    "z2": "POLYGON ((9 9, 30 9, 30 30, 9 30, 9 9))",
}
POINTS = {"p1": (1.0, 1.0), "p2": (12.0, 19.0), "p3": (50.0, 50.0)}

# the same SQL text on both engines
QUERIES = {
    "length": "SELECT id, ST_Length(geometry) AS v FROM roads ORDER BY id",
    "distance": (
        "SELECT id, ST_Distance(ST_Point(x, y), ST_Point(0, 0)) AS v FROM sites ORDER BY id"
    ),
    "intersects": (
        "SELECT s.id AS site, z.id AS zone FROM sites s, zones z "
        "WHERE ST_Intersects(ST_Point(s.x, s.y), z.geometry) ORDER BY site, zone"
    ),
    "buffer_area": ("SELECT id, ST_Area(ST_Buffer(ST_Point(x, y), 2)) AS v FROM sites ORDER BY id"),
    "as_text": "SELECT id, ST_AsText(ST_Centroid(geometry)) AS v FROM zones ORDER BY id",
    "contains": (
        "SELECT z.id AS zone, count(*) AS n FROM zones z, roads r "
        "WHERE ST_Intersects(z.geometry, r.geometry) GROUP BY z.id ORDER BY zone"
    ),
}


@pytest.fixture(scope="module")
def spark_ready() -> None:
    """Spark tests need pyspark and Java; in CI their absence is a failure, not a skip."""
    problems = []
    try:
        import pyspark  # noqa: F401
    except ImportError:
        problems.append("pyspark is not installed")
    if shutil.which("java") is None and not os.environ.get("JAVA_HOME"):
        problems.append("Java is not installed")
    if problems:
        if os.environ.get("CI"):
            pytest.fail(f"Spark SQL test cannot run in CI: {'; '.join(problems)}")
        pytest.skip("; ".join(problems))


def _wkb(wkt: dict[str, str]) -> pa.Table:
    return pa.table(
        {"id": list(wkt), "geometry": shapely.to_wkb(shapely.from_wkt(list(wkt.values())))}
    )


@pytest.fixture(scope="module")
def city(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Store]:
    store = Store(tmp_path_factory.mktemp("spatial") / "city")
    store.create_dataset(
        "roads", DatasetSchema(ModelKind.POINT_STATIC, crs="EPSG:3857", geometry_type="line")
    )
    store.append("roads", _wkb(ROADS))
    store.create_dataset(
        "zones",
        DatasetSchema(ModelKind.POINT_STATIC, crs="EPSG:3857", geometry_type=GeometryType.REGION),
    )
    store.append("zones", _wkb(ZONES))
    store.create_dataset("sites", DatasetSchema(ModelKind.POINT_STATIC, crs="EPSG:3857"))
    store.append(
        "sites",
        pa.table(
            {
                "id": list(POINTS),
                "x": [p[0] for p in POINTS.values()],
                "y": [p[1] for p in POINTS.values()],
            }
        ),
    )
    yield store
    store.close()


def _expected(case: str) -> list[tuple[object, ...]]:
    g = {k: shapely.from_wkt(v) for k, v in {**ROADS, **ZONES}.items()}
    pts = {k: shapely.Point(*v) for k, v in POINTS.items()}
    if case == "length":
        return [(k, g[k].length) for k in sorted(ROADS)]
    if case == "distance":
        return [(k, math.hypot(*POINTS[k])) for k in sorted(POINTS)]
    if case == "intersects":
        return sorted((p, z) for p in pts for z in ZONES if pts[p].intersects(g[z]))
    if case == "buffer_area":
        return [(k, pts[k].buffer(2, quad_segs=8).area) for k in sorted(POINTS)]
    if case == "as_text":
        return [(k, shapely.to_wkt(g[k].centroid, rounding_precision=-1)) for k in sorted(ZONES)]
    return [
        (z, sum(g[z].intersects(g[r]) for r in ROADS))
        for z in sorted(ZONES)
        if any(g[z].intersects(g[r]) for r in ROADS)
    ]


def _rows(tbl: pa.Table) -> list[tuple[object, ...]]:
    cols = [tbl.column(i).to_pylist() for i in range(tbl.num_columns)]
    return list(zip(*cols, strict=True))


def _close(got: list[tuple[object, ...]], want: list[tuple[object, ...]]) -> None:
    assert len(got) == len(want), (got, want)
    for g, w in zip(got, want, strict=True):
        assert g[:-1] == w[:-1]
        if isinstance(w[-1], float):
            assert g[-1] == pytest.approx(w[-1], rel=1e-9)
        else:
            assert g[-1] == w[-1]


@pytest.mark.parametrize("case", sorted(QUERIES))
def test_st_functions_in_store_sql(city: Store, case: str) -> None:
    _close(_rows(city.sql(QUERIES[case])), _expected(case))


def test_extension_comes_from_the_installed_package() -> None:
    import duckdb
    import duckdb_extension_spatial

    p = spatial_extension_path()
    assert p.is_relative_to(Path(duckdb_extension_spatial.__file__).parent)
    assert f"v{duckdb.__version__}" in p.parts


def test_csv_output_prints_geometry_as_wkt(city: Store) -> None:
    from cityos.cli import app

    home = str(city.settings.home)
    res = CliRunner().invoke(
        app,
        [
            "query",
            "--sql",
            "SELECT id, geometry, ST_Buffer(ST_Point(0, 0), 1) AS b FROM roads ORDER BY id",
            "--format",
            "csv",
            "--home",
            home,
        ],
    )
    assert res.exit_code == 0, res.output
    lines = res.stdout.splitlines()
    assert lines[0] == "id,geometry,b"
    assert lines[1].startswith('r1,"LINESTRING (0 0, 3 4)","POLYGON ((1 0')
    assert "b'" not in res.stdout and "\\x" not in res.stdout


@pytest.mark.spark
@pytest.mark.parametrize("case", sorted(QUERIES))
def test_same_sql_on_spark(city: Store, spark_ready: None, case: str) -> None:
    from cityos.store._spark import _quiet, spark_session

    spark = spark_session()
    register_spark(spark)
    create_spark_views(spark, city)
    with _quiet():
        got = spark.sql(QUERIES[case]).toArrow()
    _close(_rows(got), _rows(city.sql(QUERIES[case])))
    _close(_rows(got), _expected(case))


@pytest.mark.spark
def test_the_spark_engine_registers_the_functions(city: Store, spark_ready: None) -> None:
    eng = city.engine("spark")
    names = {f.name.lower() for f in eng.spark.catalog.listFunctions()}
    assert {n.lower() for n in SPARK_FUNCTIONS} <= names


@pytest.mark.spark
@pytest.mark.parametrize("case", sorted(QUERIES))
def test_store_sql_on_the_spark_engine(city: Store, spark_ready: None, case: str) -> None:
    got = city.sql(QUERIES[case], engine="spark")
    _close(_rows(got), _rows(city.sql(QUERIES[case], engine="duckdb")))
    _close(_rows(got), _expected(case))


@pytest.mark.spark
def test_spark_sql_sees_later_appends_and_reports_errors(tmp_path: Path, spark_ready: None) -> None:
    from cityos.errors import QueryError

    store = Store(tmp_path / "city")
    try:
        store.create_dataset("sites", DatasetSchema(ModelKind.POINT_STATIC, crs="EPSG:3857"))
        store.append("sites", pa.table({"id": ["a"], "x": [1.0], "y": [2.0]}))
        q = "SELECT count(*) AS n, sum(x + y) AS s FROM sites"
        assert _rows(store.sql(q, engine="spark")) == [(1, 3.0)]
        store.append("sites", pa.table({"id": ["b"], "x": [10.0], "y": [20.0]}))
        assert _rows(store.sql(q, engine="spark")) == [(2, 33.0)] == _rows(store.sql(q))
        with pytest.raises(QueryError, match="SQL failed on Spark"):
            store.sql("SELECT * FROM nosuch", engine="spark")
    finally:
        store.close()


@pytest.mark.spark
def test_cli_sql_on_spark_prints_what_duckdb_prints(city: Store, spark_ready: None) -> None:
    from cityos.cli import app

    q = "SELECT id, ST_AsText(geometry) AS g, ST_Length(geometry) AS n FROM roads ORDER BY id"
    out = {}
    for engine in ("duckdb", "spark"):
        args = ["query", "--sql", q, "--format", "csv", "--engine", engine]
        res = CliRunner().invoke(app, [*args, "--home", str(city.settings.home)])
        assert res.exit_code == 0, res.output
        out[engine] = res.stdout
    assert out["spark"] == out["duckdb"]
    assert out["spark"].splitlines()[1] == 'r1,"LINESTRING (0 0, 3 4)",5.0'

"""Engine contract: every query type gives the same answer on the embedded DuckDB engine and
on Spark (local mode), over one small deterministic city; range queries are also checked
against a brute-force pandas scan."""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
import shapely

import cityos
from cityos.model import DatasetSchema, Field, ModelKind
from cityos.store import Grid, QueryResult, Store

DAY0 = pd.Timestamp("2026-03-02T00:00:00Z")
BBOX = (116.30, 39.85, 116.50, 40.00)
TRIANGLE = "POLYGON ((116.32 39.86, 116.48 39.90, 116.36 39.99, 116.32 39.86))"


# -- the city ------------------------------------------------------------------------------------
def _cars() -> pd.DataFrame:
    """20 vehicles, a fix every 10 minutes for 2 days, with ties built in: v01 and v02 share
    positions for a while (equal distances, broken by id) and v03 is parked (equal
    distances, broken by time)."""
    rng = np.random.default_rng(7)
    n_veh, n_t = 20, 2 * 24 * 6
    t = DAY0 + pd.to_timedelta(np.arange(n_t) * 10, unit="min")
    rows = []
    for v in range(n_veh):
        start = rng.uniform([BBOX[0] + 0.02, BBOX[1] + 0.02], [BBOX[2] - 0.02, BBOX[3] - 0.02])
        steps = rng.normal(0, 0.002, size=(n_t, 2))
        xy = np.clip(start + np.cumsum(steps, axis=0), [BBOX[0], BBOX[1]], [BBOX[2], BBOX[3]])
        if v == 3:
            xy[:] = [116.40, 39.92]
        rows.append(
            pd.DataFrame(
                {
                    "id": f"v{v:02d}",
                    "t": t,
                    "x": xy[:, 0],
                    "y": xy[:, 1],
                    "speed": rng.uniform(0, 60, n_t).round(3),
                }
            )
        )
    df = pd.concat(rows, ignore_index=True)
    same = (df["id"] == "v02") & (df["t"] < DAY0 + pd.Timedelta("6h"))
    src = df.loc[(df["id"] == "v01") & (df["t"] < DAY0 + pd.Timedelta("6h")), ["x", "y"]].to_numpy()
    df.loc[same, ["x", "y"]] = src
    return df


def _regions() -> pd.DataFrame:
    polys = {
        "r0": shapely.box(116.30, 39.85, 116.40, 39.925),
        "r1": shapely.box(116.40, 39.85, 116.50, 39.925),  # shares an edge with r0
        "r2": shapely.box(116.30, 39.925, 116.50, 40.00),
        "r3": shapely.from_wkt(TRIANGLE),  # overlaps the others
        "r4": shapely.box(117.0, 41.0, 117.1, 41.1),  # far away: never matched
    }
    return pd.DataFrame(
        {"id": list(polys), "geometry": [shapely.to_wkb(g) for g in polys.values()]}
    )


def _roads() -> pd.DataFrame:
    lines = []
    for i, x in enumerate(np.arange(116.30, 116.501, 0.025)):
        lines.append((f"ns{i}", shapely.LineString([(x, 39.85), (x, 40.0)])))
    for i, y in enumerate(np.arange(39.85, 40.001, 0.025)):
        lines.append((f"ew{i}", shapely.LineString([(116.30, y), (116.50, y)])))
    lines.append(("diag", shapely.LineString([(116.30, 39.85), (116.50, 40.0)])))
    return pd.DataFrame(
        {
            "id": [n for n, _ in lines],
            "from_node": np.arange(len(lines)),
            "to_node": np.arange(len(lines)) + 1,
            "geometry": [shapely.to_wkb(g) for _, g in lines],
        }
    )


@pytest.fixture(scope="module")
def cars_df() -> pd.DataFrame:
    return _cars()


@pytest.fixture(scope="module")
def city(tmp_path_factory: pytest.TempPathFactory, cars_df: pd.DataFrame) -> Iterator[Store]:
    store = cityos.open_city(tmp_path_factory.mktemp("contract_city"))
    store.create_dataset(
        "cars",
        DatasetSchema(ModelKind.POINT_ST, fields=(Field("speed", "float64"),), row_group_rows=256),
    )
    # several appends: several files per day partition, several row groups per file
    day1 = cars_df["t"] < DAY0 + pd.Timedelta("1D")
    store.append("cars", cars_df[day1 & (cars_df["id"] < "v10")])
    store.append("cars", cars_df[day1 & (cars_df["id"] >= "v10")])
    store.append("cars", cars_df[~day1])
    store.create_dataset("districts", DatasetSchema(ModelKind.POINT_STATIC, geometry_type="region"))
    store.append("districts", _regions())
    store.create_dataset("roads", DatasetSchema(ModelKind.NETWORK_STATIC))
    store.append("roads", _roads())
    store.create_dataset(
        "nothing", DatasetSchema(ModelKind.POINT_ST, fields=(Field("speed", "float64"),))
    )
    yield store
    store.close()


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
        msg = "; ".join(problems)
        if os.environ.get("CI"):
            pytest.fail(f"Spark contract test cannot run in CI: {msg}")
        pytest.skip(msg)


# -- the queries ---------------------------------------------------------------------------------
Q = Callable[[Store, str], QueryResult]
W0, W1 = "2026-03-02T06:00:00Z", "2026-03-02T11:30:00Z"
QUERY_TRAJ = [(116.36, 39.88), (116.38, 39.90), (116.41, 39.91), (116.43, 39.94), (116.44, 39.97)]
GRID = Grid.from_metres(BBOX, 2000)

CASES: dict[str, tuple[Q, tuple[str, ...]]] = {
    "read": (lambda s, e: s.scan("cars", engine=e), ()),
    "scan_bbox": (
        lambda s, e: s.scan("cars", geometry=(116.35, 39.88, 116.45, 39.95), engine=e),
        (),
    ),
    "scan_polygon_time_ids_columns": (
        lambda s, e: s.scan(
            "cars",
            geometry=TRIANGLE,
            start=W0,
            end="2026-03-03T03:00Z",
            ids=["v01", "v02", "v03", "v07", "v15"],
            columns=["speed", "t"],
            engine=e,
        ),
        (),
    ),
    "range_bbox": (lambda s, e: s.range("cars", (116.38, 39.90, 116.42, 39.94), engine=e), ()),
    "range_polygon": (lambda s, e: s.range("cars", TRIANGLE, engine=e), ()),
    "st_range_bbox": (
        lambda s, e: s.st_range("cars", (116.35, 39.88, 116.45, 39.95), W0, W1, engine=e),
        (),
    ),
    "st_range_polygon": (
        lambda s, e: s.st_range("cars", TRIANGLE, W0, "2026-03-03T02:00Z", engine=e),
        (),
    ),
    "st_range_empty": (
        lambda s, e: s.st_range("cars", BBOX, "2026-04-01", "2026-04-02", engine=e),
        (),
    ),
    "st_range_empty_dataset": (lambda s, e: s.st_range("nothing", BBOX, W0, W1, engine=e), ()),
    "regions_range_polygon": (lambda s, e: s.range("districts", TRIANGLE, engine=e), ()),
    "roads_range_bbox": (
        lambda s, e: s.range("roads", (116.31, 39.86, 116.34, 39.88), engine=e),
        (),
    ),
    "id_temporal": (lambda s, e: s.id_temporal("cars", ["v03", "v11"], W0, W1, engine=e), ()),
    "id_temporal_all_time": (lambda s, e: s.id_temporal("cars", "v05", engine=e), ()),
    "knn_1": (lambda s, e: s.knn("cars", 116.41, 39.93, 1, engine=e), ()),
    "knn_parked_ties": (lambda s, e: s.knn("cars", 116.40, 39.92, 30, engine=e), ()),
    "knn_window": (lambda s, e: s.knn("cars", 116.37, 39.89, 25, start=W0, end=W1, engine=e), ()),
    "knn_outside": (lambda s, e: s.knn("cars", 116.70, 40.20, 5, engine=e), ()),
    "knn_more_than_all": (
        lambda s, e: s.knn("cars", 116.40, 39.90, 200, start=W0, end="2026-03-02T07:00Z", engine=e),
        (),
    ),
    "knn_empty": (
        lambda s, e: s.knn(
            "cars", 116.40, 39.90, 3, start="2026-05-01", end="2026-05-02", engine=e
        ),
        (),
    ),
    "knn_trajectories": (
        lambda s, e: s.knn_trajectories("cars", 116.41, 39.93, 6, start=W0, end=W1, engine=e),
        (),
    ),
    "knn_trajectories_all": (
        lambda s, e: s.knn_trajectories("cars", 116.45, 39.87, 50, engine=e),
        (),
    ),
    "similar_dtw": (
        lambda s, e: s.similar("cars", QUERY_TRAJ, 5, start=W0, end=W1, metric="dtw", engine=e),
        (),
    ),
    "similar_frechet": (
        lambda s, e: s.similar("cars", QUERY_TRAJ, 5, start=W0, end=W1, metric="frechet", engine=e),
        (),
    ),
    "join_regions": (
        lambda s, e: s.join_regions("cars", "districts", start=W0, end=W1, engine=e),
        (),
    ),
    "join_regions_polygon": (
        lambda s, e: s.join_regions("cars", "districts", geometry=TRIANGLE, engine=e),
        (),
    ),
    "join_nearest": (
        lambda s, e: s.join_nearest(
            "cars", "roads", max_distance_m=300, start=W0, end=W1, engine=e
        ),
        (),
    ),
    "aggregate_grid": (
        lambda s, e: s.aggregate(
            "cars",
            grid=GRID,
            time_bin="1h",
            aggs={
                "n": "count",
                "total": ("speed", "sum"),
                "avg": ("speed", "mean"),
                "top": ("speed", "max"),
            },
            engine=e,
        ),
        ("total", "avg"),
    ),
    "aggregate_grid_window_no_bin": (
        lambda s, e: s.aggregate(
            "cars",
            grid=GRID,
            time_bin=None,
            start=W0,
            end=W1,
            geometry=TRIANGLE,
            aggs={"n": "count", "avg": ("speed", "mean")},
            engine=e,
        ),
        ("avg",),
    ),
    "aggregate_regions": (
        lambda s, e: s.aggregate(
            "cars",
            regions="districts",
            time_bin="6h",
            aggs={"n": "count", "total": ("speed", "sum"), "avg": ("speed", "mean")},
            engine=e,
        ),
        ("total", "avg"),
    ),
    "aggregate_empty": (
        lambda s, e: s.aggregate("cars", grid=GRID, start="2026-05-01", end="2026-05-02", engine=e),
        (),
    ),
}


def assert_same_table(a: pa.Table, b: pa.Table, rel: tuple[str, ...] = ()) -> None:
    """Same columns and types, same rows in the same order; ``rel`` columns to 1e-9 relative."""
    assert a.schema.names == b.schema.names
    assert [f.type for f in a.schema] == [f.type for f in b.schema], (a.schema, b.schema)
    assert a.num_rows == b.num_rows
    for name in a.column_names:
        if name in rel:
            np.testing.assert_allclose(
                a[name].to_numpy(), b[name].to_numpy(), rtol=1e-9, err_msg=name
            )
        else:
            assert a[name].to_pylist() == b[name].to_pylist(), name


# -- tests ---------------------------------------------------------------------------------------
@pytest.mark.spark
@pytest.mark.parametrize("case", list(CASES))
def test_engines_agree(city: Store, spark_ready: None, case: str) -> None:
    query, rel = CASES[case]
    want = query(city, "duckdb")
    got = query(city, "spark")
    assert got.stats["engine"] == "spark" and want.stats["engine"] == "duckdb"
    assert_same_table(want.table, got.table, rel)
    assert got.crs == want.crs


def test_cases_have_answers(city: Store) -> None:
    """The contract would be vacuous if the queries found nothing."""
    empty = {k for k in CASES if "empty" in k}
    for case, (query, _) in CASES.items():
        n = len(query(city, "duckdb"))
        assert (n == 0) == (case in empty), (case, n)


def _brute(full: pd.DataFrame, geometry: Any, start: str | None, end: str | None) -> pd.DataFrame:
    g = shapely.box(*geometry) if isinstance(geometry, tuple) else shapely.from_wkt(geometry)
    m = shapely.intersects_xy(g, full["x"].to_numpy(), full["y"].to_numpy())
    if start is not None:
        m &= (full["t"] >= pd.Timestamp(start)).to_numpy()
    if end is not None:
        m &= (full["t"] < pd.Timestamp(end)).to_numpy()
    return full[m].sort_values(["id", "t"]).reset_index(drop=True)


RANGES = {
    "bbox": ((116.38, 39.90, 116.42, 39.94), None, None),
    "polygon": (TRIANGLE, None, None),
    "st_bbox": ((116.35, 39.88, 116.45, 39.95), W0, W1),
    "st_polygon": (TRIANGLE, W0, "2026-03-03T02:00Z"),
}


@pytest.mark.parametrize("engine", ["duckdb", pytest.param("spark", marks=pytest.mark.spark)])
@pytest.mark.parametrize("which", list(RANGES))
def test_range_matches_brute_force(
    city: Store, cars_df: pd.DataFrame, request: pytest.FixtureRequest, engine: str, which: str
) -> None:
    if engine == "spark":
        request.getfixturevalue("spark_ready")
    geometry, start, end = RANGES[which]
    # brute force over the input, with coordinates snapped to the storage grid (2^-23 degree)
    q = 2.0**-23
    snapped = cars_df.assign(
        x=np.round(cars_df["x"] / q) * q,
        y=np.round(cars_df["y"] / q) * q,
        t=cars_df["t"].astype("datetime64[ms, UTC]"),
    )
    want = _brute(snapped, geometry, start, end)
    got = (
        city.st_range("cars", geometry, start, end, engine=engine)
        if start is not None
        else city.range("cars", geometry, engine=engine)
    ).to_pandas()
    assert len(want) > 0
    pd.testing.assert_frame_equal(got.reset_index(drop=True), want, check_exact=True)


@pytest.mark.spark
def test_spark_stats_and_pruning(city: Store, spark_ready: None) -> None:
    res = city.st_range("cars", (116.35, 39.88, 116.45, 39.95), W0, W1, engine="spark")
    st = res.stats
    assert st["files_total"] >= 3 and 0 < st["files_read"] < st["files_total"]
    assert 0 < st["row_groups_read"] < st["row_groups_total"]
    assert st["rows_out"] == len(res)


@pytest.mark.spark
def test_spark_knn_search_rounds(city: Store, spark_ready: None) -> None:
    """The search box starts at the size the density predicts and grows a few times at most
    (row groups of this small city each span all of it, so they cannot be pruned by space)."""
    for k in (1, 3, 40):
        res = city.knn("cars", 116.41, 39.93, k, engine="spark")
        assert len(res) == k
        assert 1 <= res.stats["search_rounds"] <= 3, res.stats
    far = city.knn("cars", 118.0, 41.0, 2, engine="spark")
    assert far.stats["search_rounds"] <= 3, far.stats


@pytest.mark.spark
def test_one_spark_session_per_process(
    city: Store, spark_ready: None, tmp_path_factory: pytest.TempPathFactory
) -> None:
    city.id_temporal("cars", "v01", engine="spark")
    shared = city.engine("spark").spark  # type: ignore[attr-defined]
    other = cityos.open_city(tmp_path_factory.mktemp("other_city"))
    other.create_dataset("pts", DatasetSchema(ModelKind.POINT_ST))
    other.append("pts", [{"id": "a", "t": "2026-03-02T08:00Z", "x": 116.4, "y": 39.9}])
    assert len(other.knn("pts", 116.4, 39.9, 1, engine="spark")) == 1
    assert other.engine("spark").spark is shared  # type: ignore[attr-defined]
    other.close()
    # closing one store leaves the session to the others still using it
    assert len(city.id_temporal("cars", "v01", engine="spark")) == 288

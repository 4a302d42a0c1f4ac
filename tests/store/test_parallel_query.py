"""Queries split across the query threads give exactly what one thread gives, and what a
brute-force scan of the stored rows (or GEOS, for the joins) gives: the parallel scan of
range queries, points-in-regions and nearest-line joins, the plan splitter, the worker
map, the linear-time nearest-pair choice, and the chunk-wise decode of point coordinates."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
import shapely
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_index_properties import _brute  # the brute-force filter of the stored rows

from builders import make_points
from cityos.model import DatasetSchema, Field, ModelKind
from cityos.store import Store
from cityos.store import _duckdb as duck
from cityos.store import _engine as eng
from cityos.store._kernels import _nearest_per_point, utm_crs
from cityos.store._layout import decode
from cityos.store._plan import ScanPlan
from strategies import boxes, windows

SETTINGS = settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
CENTER = (116.4, 39.9)


@pytest.fixture
def serial(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setattr(eng, "QUERY_THREADS", 1)
    yield


@pytest.fixture(scope="module")
def city(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Store, pd.DataFrame]]:
    s = Store(tmp_path_factory.mktemp("par") / "city")
    s.create_dataset(
        "cars",
        DatasetSchema(
            ModelKind.POINT_ST,
            fields=(Field("speed", "float64"),),
            row_group_rows=256,
            time_partition="1D",
            time_bin="1h",
        ),
    )
    df = make_points(30, 300, step_s=400, center=CENTER, spread=0.1)  # ~33 h, 9k points
    for i in range(0, len(df), 3000):  # several files per partition
        s.append("cars", df.iloc[i : i + 3000])
    rng = np.random.default_rng(3)
    regions = []
    for _ in range(6):
        x, y = CENTER[0] + rng.uniform(-0.12, 0.08), CENTER[1] + rng.uniform(-0.12, 0.08)
        g = shapely.box(x, y, x + rng.uniform(0.02, 0.1), y + rng.uniform(0.02, 0.1))
        regions.append(g.difference(shapely.box(x + 0.005, y + 0.005, x + 0.01, y + 0.01)))
    s.create_dataset("districts", DatasetSchema(ModelKind.POINT_STATIC, geometry_type="region"))
    s.append(
        "districts",
        pd.DataFrame(
            {"id": [f"d{i}" for i in range(len(regions))], "geometry": shapely.to_wkb(regions)}
        ),
    )
    lines = []
    for _ in range(60):
        x, y = CENTER[0] + rng.uniform(-0.12, 0.12), CENTER[1] + rng.uniform(-0.12, 0.12)
        steps = rng.uniform(-0.01, 0.01, size=(rng.integers(1, 4), 2)).cumsum(axis=0)
        lines.append(shapely.LineString([(x, y), *((x + a, y + b) for a, b in steps)]))
    lines.append(lines[0])  # a duplicate geometry: exact ties, broken by the smaller id
    s.create_dataset("roads", DatasetSchema(ModelKind.NETWORK_STATIC))
    s.append(
        "roads",
        pd.DataFrame(
            {
                "id": [f"r{i:03d}" for i in range(len(lines))],
                "from_node": np.arange(len(lines)),
                "to_node": np.arange(len(lines)) + 1,
                "geometry": shapely.to_wkb(lines),
            }
        ),
    )
    stored = s.read("cars").to_pandas()
    assert len(stored) == len(df) and s.describe("cars").files > 2
    yield s, stored
    s.close()


@pytest.fixture
def split_small(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Split every plan of two or more row groups across two threads, and record how many
    parts each parallel map ran (so a test can tell the parallel path was taken)."""
    monkeypatch.setattr(eng, "QUERY_THREADS", 2)
    monkeypatch.setattr(eng, "PARALLEL_MIN_ROW_GROUPS", 2)
    monkeypatch.setattr(eng, "MIN_PART_ROW_GROUPS", 1)
    seen: list[int] = []
    real = duck.parallel_map

    def spy(fn: Any, items: Any) -> Any:
        seen.append(len(items))
        return real(fn, items)

    monkeypatch.setattr(duck, "parallel_map", spy)
    return seen


def _serially(fn: Any) -> Any:
    old = eng.QUERY_THREADS
    eng.QUERY_THREADS = 1
    try:
        return fn()
    finally:
        eng.QUERY_THREADS = old


@SETTINGS
@given(box=boxes(), win=windows(hours=36))
def test_parallel_range_equals_serial_and_brute_force(
    city: tuple[Store, pd.DataFrame],
    split_small: list[int],
    box: tuple[float, float, float, float],
    win: tuple[pd.Timestamp | None, pd.Timestamp | None],
) -> None:
    s, stored = city
    got = s.scan("cars", geometry=box, start=win[0], end=win[1])
    one = _serially(lambda: s.scan("cars", geometry=box, start=win[0], end=win[1]))
    assert got.table.equals(one.table)  # same rows, same order, same types
    assert got.stats["rows_scanned"] == one.stats["rows_scanned"]
    pd.testing.assert_frame_equal(got.to_pandas(), _brute(stored, box, *win))
    cols = s.scan("cars", geometry=box, start=win[0], end=win[1], columns=["id", "t"])
    assert cols.table.select(["id", "t"]).equals(got.table.select(["id", "t"]))


def test_parallel_paths_are_taken(city: tuple[Store, pd.DataFrame], split_small: list[int]) -> None:
    s, stored = city
    got = s.scan("cars", geometry=(116.0, 39.5, 117.0, 40.5)).to_pandas()
    pd.testing.assert_frame_equal(got, _brute(stored, None, None, None))
    s.join_regions("cars", "districts")
    s.join_nearest("cars", "roads", max_distance_m=200.0)
    # the three point scans were split (the regions and roads, one row group each, were not)
    assert len([n for n in split_small if n > 2]) == 3


def _regions_brute(s: Store, pts: pd.DataFrame) -> set[tuple[str, int, str]]:
    reg = s.read("districts").to_pandas()
    geoms = shapely.from_wkb(reg["geometry"].to_numpy())
    t = pts["t"].astype("int64").to_numpy()
    out = set()
    for rid, g in zip(reg["id"], geoms, strict=True):
        hit = shapely.intersects_xy(g, pts["x"].to_numpy(), pts["y"].to_numpy())
        out |= {(i, int(tt), rid) for i, tt in zip(pts["id"][hit], t[hit], strict=True)}
    return out


def _nearest_brute(s: Store, pts: pd.DataFrame, max_d: float) -> dict[tuple[str, int], str]:
    """Per point the nearest road within ``max_d`` m (ties: smallest id), by GEOS distances
    to every road in the same metric frame the store uses."""
    roads = s.read("roads").to_pandas()
    st = s.context("cars", None).stats
    from cityos.geo.crs import transform_xy
    from cityos.store._kernels import reference_point

    crs = utm_crs(*reference_point(st))
    geoms = shapely.transform(
        shapely.from_wkb(roads["geometry"].to_numpy()),
        lambda c: np.column_stack(transform_xy(c[:, 0], c[:, 1], "EPSG:4326", crs)),
    )
    mx, my = transform_xy(pts["x"].to_numpy(), pts["y"].to_numpy(), "EPSG:4326", crs)
    d = shapely.distance(shapely.points(mx, my)[:, None], geoms[None, :])
    ids = roads["id"].to_numpy()
    order = np.argsort(ids, kind="stable")
    d, ids = d[:, order], ids[order]
    best = np.argmin(d, axis=1)  # first of the smallest: the smallest id among ties
    ok = d[np.arange(len(d)), best] <= max_d
    t = pts["t"].astype("int64").to_numpy()
    return {(pts["id"].iloc[i], int(t[i])): ids[best[i]] for i in np.flatnonzero(ok)}


@settings(
    max_examples=12,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(win=windows(hours=36), max_d=st.sampled_from([5.0, 60.0, 400.0]))
def test_parallel_joins_equal_serial_and_geos(
    city: tuple[Store, pd.DataFrame],
    split_small: list[int],
    win: tuple[pd.Timestamp | None, pd.Timestamp | None],
    max_d: float,
) -> None:
    s, stored = city
    pts = _brute(stored, None, *win)
    reg = s.join_regions("cars", "districts", start=win[0], end=win[1])
    reg1 = _serially(lambda: s.join_regions("cars", "districts", start=win[0], end=win[1]))
    assert reg.table.equals(reg1.table)
    r = reg.to_pandas()
    assert set(zip(r["id"], r["t"].astype("int64"), r["region_id"], strict=True)) == (
        _regions_brute(s, pts)
    )
    near = s.join_nearest("cars", "roads", max_distance_m=max_d, start=win[0], end=win[1])
    near1 = _serially(
        lambda: s.join_nearest("cars", "roads", max_distance_m=max_d, start=win[0], end=win[1])
    )
    assert near.table.equals(near1.table)
    n = near.to_pandas()
    got = dict(zip(zip(n["id"], n["t"].astype("int64"), strict=True), n["edge_id"], strict=True))
    assert got == _nearest_brute(s, pts, max_d)


# -- the pieces ------------------------------------------------------------------------------


@given(
    files=st.lists(st.sets(st.integers(0, 40), min_size=1, max_size=30), min_size=1, max_size=5),
    parts=st.integers(1, 9),
)
def test_split_plan_keeps_every_row_group_once_in_read_order(
    files: list[set[int]], parts: int
) -> None:
    plan = ScanPlan({f"f{i}": list(v) for i, v in enumerate(files)}, 200, len(files), 0)
    out = eng.split_plan(plan, parts)
    # read_plan reads each file's row groups in sorted order
    flat = [(rel, rg) for p in out for rel, rgs in p.files.items() for rg in sorted(rgs)]
    assert flat == [(rel, rg) for rel, rgs in plan.files.items() for rg in sorted(rgs)]
    if plan.row_groups >= max(2, eng.PARALLEL_MIN_ROW_GROUPS):
        assert len(out) == min(parts, plan.row_groups)
        sizes = [p.row_groups for p in out]
        assert max(sizes) - min(sizes) <= 1
    else:
        assert out == [plan]


def test_parallel_map_keeps_order_and_uses_a_second_thread(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(eng, "QUERY_THREADS", 2)
    names: set[str] = set()
    both = threading.Barrier(2, timeout=10)

    def fn(v: int) -> int:
        names.add(threading.current_thread().name)
        if v < 2:
            both.wait()  # the first two items run at the same time, on two threads
        time.sleep(0.001 * (7 - v))
        return v * 10

    assert eng.parallel_map(fn, list(range(8))) == [v * 10 for v in range(8)]
    assert len(names) == 2


def test_parallel_map_raises_the_first_error_after_the_others_stop(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(eng, "QUERY_THREADS", 2)
    ran: list[int] = []
    running = threading.Lock()

    def fn(v: int) -> int:
        with running:
            ran.append(v)
        if v == 3:
            raise ValueError("part 3")
        time.sleep(0.002)
        return v

    with pytest.raises(ValueError, match="part 3"):
        eng.parallel_map(fn, list(range(40)))
    n = len(ran)
    time.sleep(0.05)
    assert len(ran) == n < 40  # nothing still running, and the rest never started


def test_serial_query_threads_stay_on_the_caller(serial: None) -> None:
    names = eng.parallel_map(lambda _: threading.current_thread().name, [1, 2, 3])
    assert set(names) == {threading.current_thread().name}


@settings(max_examples=200, deadline=None)
@given(
    pairs=st.lists(
        st.tuples(st.integers(0, 6), st.sampled_from([0.0, 1.0, 1.5, 2.0]), st.integers(0, 3)),
        min_size=1,
        max_size=40,
    ),
    grouped=st.booleans(),
)
def test_nearest_pair_choice_equals_the_stable_sort(
    pairs: list[tuple[int, float, int]], grouped: bool
) -> None:
    if grouped:
        pairs = sorted(pairs, key=lambda p: p[0])
    pi = np.array([p[0] for p in pairs])
    d = np.array([p[1] for p in pairs])
    r = np.array([p[2] for p in pairs])
    order = np.lexsort((r, d, pi))
    first = np.ones(len(order), dtype=bool)
    first[1:] = pi[order][1:] != pi[order][:-1]
    assert np.array_equal(_nearest_per_point(pi, d, r), order[first])


def test_decode_of_many_chunks_equals_decode_of_one(city: tuple[Store, pd.DataFrame]) -> None:
    s, _ = city
    ctx = s.context("cars", None)
    pf = eng.parquet_file(str(ctx.data_dir / ctx.stats.paths[0]))
    chunks = [pf.read_row_group(i) for i in range(min(4, pf.num_row_groups))]
    many = pa.concat_tables(chunks)
    assert many["geometry"].num_chunks > 1
    got = decode(ctx.schema, many)
    exp = decode(ctx.schema, many.combine_chunks())
    assert got.equals(exp)
    assert got.column_names[:4] == ["id", "t", "x", "y"]

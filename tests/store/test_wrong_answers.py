"""Answers that used to be silently wrong, each checked against brute force, on geographic
(EPSG:4326) and projected (UTM zone 50N, EPSG:32650) data: st_range on a network series,
grid aggregation in the dataset's CRS, ids of the other type, and in-batch
de-duplication under a forced 64-bit hash collision."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import shapely
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cityos.errors import QueryError
from cityos.geo.crs import transform_xy
from cityos.model import DatasetSchema, Field, ModelKind
from cityos.store import Grid, Store
from cityos.store import _store as store_module
from strategies import T0, boxes, utm_boxes

UTM = "EPSG:32650"
PROPS = settings(
    max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


# -- a small city in both CRSs -------------------------------------------------------------------
def _roads(crs: str) -> pd.DataFrame:
    """A 6 x 6 lattice of road segments around Beijing, in ``crs``."""
    rows = []
    xs, ys = np.linspace(116.30, 116.50, 7), np.linspace(39.85, 40.00, 7)
    for i in range(6):
        for j in range(7):
            rows.append((f"h{i}_{j}", [(xs[i], ys[j]), (xs[i + 1], ys[j])]))
            rows.append((f"v{j}_{i}", [(xs[j], ys[i]), (xs[j], ys[i + 1])]))
    out = []
    for n, (rid, pts) in enumerate(rows):
        a = np.array(pts)
        x, y = transform_xy(a[:, 0], a[:, 1], "EPSG:4326", crs)
        out.append(
            {
                "id": rid,
                "from_node": n,
                "to_node": n + 1,
                "geometry": shapely.LineString(np.column_stack([x, y])).wkb,
            }
        )
    return pd.DataFrame(out)


def _points(crs: str, n_obj: int = 12, n_t: int = 60) -> pd.DataFrame:
    rng = np.random.default_rng(3)
    lon = rng.uniform(116.30, 116.50, (n_obj, n_t))
    lat = rng.uniform(39.85, 40.00, (n_obj, n_t))
    x, y = transform_xy(lon.ravel(), lat.ravel(), "EPSG:4326", crs)
    return pd.DataFrame(
        {
            "id": np.repeat(np.arange(n_obj), n_t),
            "t": np.tile(T0 + pd.to_timedelta(np.arange(n_t) * 5, unit="min"), n_obj),
            "x": x,
            "y": y,
            "speed": rng.uniform(0, 60, n_obj * n_t).round(2),
        }
    )


@pytest.fixture(scope="module", params=["EPSG:4326", UTM])
def city(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Store, str, pd.DataFrame, pd.DataFrame]]:
    crs = request.param
    store = Store(tmp_path_factory.mktemp("wrong"))
    roads = _roads(crs)
    store.create_dataset("roads", DatasetSchema(ModelKind.NETWORK_STATIC, crs=crs))
    store.append("roads", roads)
    store.create_dataset(
        "flow",
        DatasetSchema(
            ModelKind.NETWORK_SERIES, crs=crs, network="roads", fields=(Field("count", "int64"),)
        ),
    )
    flow = pd.DataFrame(
        {
            "id": np.repeat(roads["id"].to_numpy(), 4),
            "t": np.tile(T0 + pd.to_timedelta(np.arange(4), unit="h"), len(roads)),
            "count": np.arange(len(roads) * 4) % 17,
        }
    )
    store.append("flow", flow)
    pts = _points(crs)
    store.create_dataset(
        "cars",
        DatasetSchema(
            ModelKind.POINT_ST, crs=crs, id_type="int64", fields=(Field("speed", "float64"),)
        ),
    )
    store.append("cars", pts)
    stored = store.read("cars").to_pandas()
    yield store, crs, roads, stored
    store.close()


def _box(crs: str, lonlat_box: tuple[float, float, float, float]) -> tuple[float, ...]:
    x, y = transform_xy(
        np.array([lonlat_box[0], lonlat_box[2]]),
        np.array([lonlat_box[1], lonlat_box[3]]),
        "EPSG:4326",
        crs,
    )
    return (float(x.min()), float(y.min()), float(x.max()), float(y.max()))


# -- st_range on a network series -----------------------------------------------------------------
def _edges_meeting(roads: pd.DataFrame, box: tuple[float, ...]) -> set[str]:
    g = shapely.box(*box)
    geoms = shapely.from_wkb(roads["geometry"].to_numpy())
    return set(roads["id"][shapely.intersects(geoms, g)])


def test_network_series_st_range_keeps_only_edges_in_the_box(city: tuple) -> None:
    store, crs, roads, _ = city
    box = _box(crs, (116.30, 39.85, 116.36, 39.88))
    got = store.st_range("flow", box, T0, T0 + pd.Timedelta("2h")).to_pandas()
    want = _edges_meeting(roads, box)
    assert 0 < len(want) < len(roads)
    assert set(got["id"]) == want
    assert len(got) == 2 * len(want)
    # a box meeting no edge answers nothing (it used to answer every edge)
    far = _box(crs, (117.5, 41.0, 117.6, 41.1))
    assert len(store.st_range("flow", far, T0, T0 + pd.Timedelta("2h"))) == 0


@PROPS
@given(data=st.data())
def test_network_series_range_matches_brute_force(city: tuple, data: st.DataObject) -> None:
    store, crs, roads, _ = city
    box = data.draw(boxes() if crs == "EPSG:4326" else utm_boxes())
    got = store.scan("flow", geometry=box).to_pandas()
    want = _edges_meeting(roads, box)
    assert set(got["id"]) == want
    assert len(got) == 4 * len(want)


def test_a_series_without_network_refuses_an_area(tmp_path: Path) -> None:
    store = Store(tmp_path / "c")
    store.create_dataset("flow", DatasetSchema(ModelKind.NETWORK_SERIES))
    store.append("flow", [{"id": "e1", "t": "2026-03-02T00:00Z"}])
    with pytest.raises(QueryError, match="no geometry"):
        store.st_range("flow", (116, 39, 117, 40), "2026-03-01", "2026-03-03")
    store.close()


# -- grid aggregation follows the dataset's CRS ---------------------------------------------------
@PROPS
@given(cell=st.sampled_from([500.0, 1000.0, 2500.0]), bin_=st.sampled_from(["15min", "1h"]))
def test_grid_from_metres_follows_the_dataset_crs(city: tuple, cell: float, bin_: str) -> None:
    store, crs, _, stored = city
    bbox = _box(crs, (116.28, 39.83, 116.52, 40.02))
    grid = Grid.from_metres(bbox, cell)  # no CRS named: the dataset's
    got = store.aggregate("cars", grid=grid, time_bin=bin_).to_pandas()
    # brute force: cells of about `cell` metres in the dataset's own units
    if crs == UTM:
        dx = dy = cell
    else:
        lat0 = (bbox[1] + bbox[3]) / 2
        dy = cell / 111_320.0
        dx = cell / (111_320.0 * np.cos(np.radians(lat0)))
    ix = np.floor((stored.x - bbox[0]) / dx).astype(int)
    iy = np.floor((stored.y - bbox[1]) / dy).astype(int)
    exp = pd.DataFrame({"cx": ix, "cy": iy, "t": stored.t.dt.floor(bin_)}).value_counts()
    assert got["n"].sum() == len(stored)
    assert len(got) == len(exp)
    assert sorted(got["n"]) == sorted(exp.to_numpy())
    # on UTM data the old lon/lat assumption made cells of ~1e-2 m: one point each
    assert got["n"].max() > 1


def test_grid_in_a_named_crs_matches_the_same_grid_on_lonlat(city: tuple) -> None:
    store, crs, _, stored = city
    grid = Grid.from_metres((116.28, 39.83, 116.52, 40.02), 2000, crs="EPSG:4326")
    got = store.aggregate("cars", grid=grid, time_bin=None).to_pandas()
    lon, lat = transform_xy(stored.x.to_numpy(), stored.y.to_numpy(), crs, "EPSG:4326")
    ix, iy = grid.cells(lon, lat)
    exp = pd.DataFrame({"cx": ix, "cy": iy}).value_counts()
    assert dict(zip(zip(got.cell_x, got.cell_y, strict=True), got.n, strict=True)) == {
        k: int(v) for k, v in exp.items()
    }
    # cell centres come back in the dataset's CRS
    cx, cy = transform_xy(got.x.to_numpy(), got.y.to_numpy(), crs, "EPSG:4326")
    assert np.all((cx > 116.2) & (cx < 116.6) & (cy > 39.8) & (cy < 40.1))


# -- ids of the other type ------------------------------------------------------------------------
@PROPS
@given(ids=st.lists(st.integers(0, 14), min_size=1, max_size=5), as_text=st.booleans())
def test_id_temporal_converts_exact_ids(city: tuple, ids: list[int], as_text: bool) -> None:
    store, _, _, stored = city
    query = [str(i) for i in ids] if as_text else ids
    got = store.id_temporal("cars", query).to_pandas()
    want = stored[stored["id"].isin(ids)]
    assert len(got) == len(want)
    assert set(got["id"]) == set(want["id"])


def test_id_temporal_on_text_ids_accepts_integers(tmp_path: Path) -> None:
    store = Store(tmp_path / "c")
    store.create_dataset("buses", DatasetSchema(ModelKind.POINT_ST))
    store.append(
        "buses",
        [
            {"id": "7", "t": "2026-03-02T08:00Z", "x": 116.4, "y": 39.9},
            {"id": "8", "t": "2026-03-02T08:00Z", "x": 116.5, "y": 39.9},
        ],
    )
    assert store.id_temporal("buses", 7).table["id"].to_pylist() == ["7"]
    assert store.id_temporal("buses", [7, "8"]).table["id"].to_pylist() == ["7", "8"]
    store.close()


def test_id_temporal_refuses_inexact_ids(city: tuple) -> None:
    store = city[0]
    with pytest.raises(QueryError, match="not an integer"):
        store.id_temporal("cars", "bus-7")
    with pytest.raises(QueryError, match="not an integer"):
        store.id_temporal("cars", 1.5)
    with pytest.raises(QueryError, match="string or an integer"):
        store.id_temporal("cars", [True])


# -- in-batch de-duplication under a hash collision ------------------------------------------------
def test_a_key_hash_collision_never_drops_a_distinct_record(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every key hashes to the same 64-bit value: only real key values can tell them apart."""
    monkeypatch.setattr(
        store_module, "_key_hash", lambda tbl, keys: np.zeros(tbl.num_rows, dtype=np.uint64)
    )
    store = Store(tmp_path / "c")
    store.create_dataset("cars", DatasetSchema(ModelKind.POINT_ST))
    rows = [
        {"id": f"v{i % 3}", "t": f"2026-03-02T08:0{i // 3}Z", "x": 116.4, "y": 39.9}
        for i in range(9)
    ]
    res = store.append("cars", rows + rows[:2])  # two true repeats in the batch
    assert (res.rows_written, res.duplicates) == (9, 2)
    again = store.append(
        "cars", [*rows[3:], {"id": "v9", "t": "2026-03-02T09:00Z", "x": 1, "y": 1}]
    )
    assert (again.rows_written, again.duplicates) == (1, 6)
    assert len(store.read("cars")) == 10
    store.close()

"""Queries that touch several datasets, aggregations over masked columns, bad input and
unbounded work, over HTTP: every dataset a query touches is authorised and row-filtered,
masked columns are never aggregated, bad input is a 4xx naming the field, and a query past
its time budget is a 503."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import shapely

from cityos import access
from cityos.config import Settings
from cityos.geo.crs import transform_xy
from cityos.model import DatasetSchema, Field, ModelKind
from cityos.server import create_app

from .conftest import PASSWORD, SECRET, WEST, ServedCity, TestClient, point_rows

WINDOW = {"start": "2026-03-02T00:00:00Z", "end": "2026-03-03T00:00:00Z"}
UTM = "EPSG:32650"


@pytest.fixture(scope="module")
def city(served: ServedCity) -> Iterator[ServedCity]:
    """The served city plus: a second road (west only), a numeric dataset, a UTM dataset
    with integer ids, and role ``westie`` limited to the west on every dataset it reads."""
    s, db = served.store, served.store.db
    s.append(
        "roads",
        [
            {
                "id": "r2",
                "from_node": 3,
                "to_node": 4,
                "geometry": shapely.LineString([(116.30, 39.91), (116.39, 39.91)]).wkb,
            }
        ],
    )
    s.create_dataset(
        "speeds",
        DatasetSchema(ModelKind.POINT_ST, fields=(Field("speed", "float64"), Field("district"))),
    )
    s.append(
        "speeds",
        [
            {k: v for k, v in r.items() if k not in ("phone", "owner")} | {"speed": float(i)}
            for i, r in enumerate(point_rows())
        ],
    )
    lon, lat = np.linspace(116.3, 116.5, 30), np.linspace(39.9, 39.98, 30)
    x, y = transform_xy(lon, lat, "EPSG:4326", UTM)
    s.create_dataset("utm_pts", DatasetSchema(ModelKind.POINT_ST, crs=UTM, id_type="int64"))
    s.append(
        "utm_pts",
        [
            {"id": i % 3, "t": f"2026-03-02T08:{i:02d}Z", "x": float(x[i]), "y": float(y[i])}
            for i in range(30)
        ],
    )
    for name in ("districts", "roads", "speeds", "utm_pts"):
        access.set_dataset_policy(db, name, "internal")
    access.create_role(db, "westie")
    for name in ("pts_internal", "pts_sensitive", "districts", "roads", "speeds"):
        access.grant(db, "westie", name, "read")
    access.add_row_filter(db, "westie", "pts_internal", access.RowFilter("bbox", {"bbox": WEST}))
    access.add_row_filter(
        db, "westie", "districts", access.RowFilter("column", {"column": "id", "values": ["west"]})
    )
    access.add_row_filter(
        db, "westie", "roads", access.RowFilter("column", {"column": "id", "values": ["r2"]})
    )
    access.create_user(db, "westie", PASSWORD, roles=["westie"])
    served.tokens["westie"] = access.issue_token(access.principal_for(db, "westie"), SECRET)
    for name in ("districts", "roads", "speeds", "utm_pts"):
        access.grant(db, "reader", name, "read")
    yield served


def _post(c: ServedCity, role: str, path: str, body: dict[str, Any]) -> Any:
    return c.client.post(f"/datasets/{path}", json=body, headers=c.auth(role))


# -- every dataset a query touches -------------------------------------------------------------
def test_join_regions_filters_the_regions_too(city: ServedCity) -> None:
    # pts_sensitive is not filtered for westie: only the regions are
    r = _post(city, "westie", "pts_sensitive/query/join_regions", {"regions": "districts"})
    assert r.status_code == 200, r.text
    assert {row["region_id"] for row in r.json()["rows"]} == {"west"}
    # the reader, unfiltered, sees both: the filter is what narrowed it
    full = _post(city, "reader", "pts_sensitive/query/join_regions", {"regions": "districts"})
    assert {row["region_id"] for row in full.json()["rows"]} == {"west", "east"}


def test_aggregate_over_regions_filters_both_datasets(city: ServedCity) -> None:
    body = {"regions": "districts", "time_bin": None, "aggs": {"n": "count"}}
    r = _post(city, "westie", "pts_sensitive/query/aggregate", body)
    assert r.status_code == 200, r.text
    rows = r.json()["rows"]
    assert [row["id"] for row in rows] == ["west"]
    # pts_sensitive is not filtered for westie, the regions are: every west point counted
    full = _post(city, "reader", "pts_sensitive/query/aggregate", body).json()["rows"]
    assert rows == [row for row in full if row["id"] == "west"]


def test_join_nearest_filters_the_lines_too(city: ServedCity) -> None:
    body = {"edges": "roads", "max_distance_m": 50_000}
    r = _post(city, "westie", "pts_sensitive/query/join_nearest", body)
    assert r.status_code == 200, r.text
    assert {row["edge_id"] for row in r.json()["rows"]} == {"r2"}
    full = _post(city, "reader", "pts_sensitive/query/join_nearest", body)
    assert {row["edge_id"] for row in full.json()["rows"]} == {"r1", "r2"}


def test_a_second_dataset_needs_its_own_grant(city: ServedCity) -> None:
    r = _post(city, "westie", "pts_internal/query/join_regions", {"regions": "utm_pts"})
    assert r.status_code == 403


def test_describe_under_a_row_filter_shows_only_visible_rows(city: ServedCity) -> None:
    mine = city.client.get("/datasets/pts_internal", headers=city.auth("westie")).json()
    full = city.client.get("/datasets/pts_internal", headers=city.auth("reader")).json()
    assert full["rows"] == 40 and mine["rows"] == 21
    assert mine["bbox"][2] <= WEST[2] < full["bbox"][2]
    assert mine["t_max"] < full["t_max"]
    listed = city.client.get("/datasets", headers=city.auth("westie")).json()
    assert next(d for d in listed if d["name"] == "pts_internal")["rows"] == 21


# -- aggregations over masked personal columns ------------------------------------------------
@pytest.mark.parametrize("fn", ["max", "min", "count"])
def test_aggregates_over_masked_columns_are_refused(city: ServedCity, fn: str) -> None:
    body = {
        "grid": {"bbox": [116.2, 39.8, 116.7, 40.1], "cell_m": 5000},
        "aggs": {"v": ["phone", fn]},
    }
    r = _post(city, "reader", "pts_internal/query/aggregate", body)
    assert r.status_code == 403, r.text
    assert "138" not in r.text and "masked" in r.json()["detail"]


def test_a_type_error_never_prints_row_values(city: ServedCity) -> None:
    body = {
        "grid": {"bbox": [116.2, 39.8, 116.7, 40.1], "cell_m": 5000},
        "aggs": {"v": ["phone", "sum"]},
    }
    r = _post(city, "admin", "pts_internal/query/aggregate", body)
    assert r.status_code == 422
    assert "138" not in r.text and "numeric" in r.text


def test_the_http_aggregation_spec_expresses_every_function(city: ServedCity) -> None:
    rows = point_rows()
    body = {
        "grid": {"bbox": [116.2, 39.8, 116.7, 40.1], "cell_m": 100_000},
        "time_bin": None,
        "aggs": {
            "n": "count",
            "speed": "mean",
            "total": ["speed", "sum"],
            "low": {"column": "speed", "fn": "min"},
            "high": ["speed", "max"],
            "districts_seen": ["district", "count"],
        },
    }
    r = _post(city, "reader", "speeds/query/aggregate", body)
    assert r.status_code == 200, r.text
    (row,) = r.json()["rows"]
    sp = np.arange(len(rows), dtype=float)
    assert (row["n"], row["total"], row["low"], row["high"]) == (40, sp.sum(), 0.0, 39.0)
    assert row["speed"] == pytest.approx(sp.mean()) and row["districts_seen"] == 40


def test_the_documented_http_example_is_accepted(city: ServedCity) -> None:
    import json
    import re

    doc = (Path(__file__).resolve().parents[2] / "docs" / "store-api.md").read_text()
    body = json.loads(re.search(r"```json\n(.*?)```", doc, re.S).group(1))  # type: ignore[union-attr]
    r = _post(city, "reader", "speeds/query/aggregate", body)
    assert r.status_code == 200, r.text
    assert {"n", "speed", "top"} <= set(r.json()["columns"])


@pytest.mark.parametrize(
    "aggs",
    [
        {"x": "count"},
        {"id": ["speed", "max"]},
        {"t": "count"},
        {"n\" FROM read_csv('/etc/hostname') --": "count"},
        {"n": ["speed\") FROM read_csv('/etc/hostname') --", "max"]},
    ],
)
def test_reserved_and_injected_output_names_are_refused(
    city: ServedCity, aggs: dict[str, Any]
) -> None:
    body = {"grid": {"bbox": [116.2, 39.8, 116.7, 40.1], "cell_m": 5000}, "aggs": aggs}
    r = _post(city, "admin", "speeds/query/aggregate", body)
    assert r.status_code == 422, r.text


def test_the_http_grid_follows_the_dataset_crs(city: ServedCity) -> None:
    store = city.store
    b = store.describe("utm_pts").bbox
    body = {"grid": {"bbox": list(b), "cell_m": 5000}, "time_bin": None}
    got = _post(city, "reader", "utm_pts/query/aggregate", body).json()["rows"]
    pts = store.read("utm_pts").to_pandas()
    cells = {
        (int((x - b[0]) // 5000), int((y - b[1]) // 5000))
        for x, y in zip(pts.x, pts.y, strict=True)
    }
    assert {(r["cell_x"], r["cell_y"]) for r in got} == cells
    assert sum(r["n"] for r in got) == 30 and len(got) < 30
    # or a CRS the caller names
    lonlat = {"grid": {"bbox": [116.2, 39.8, 116.7, 40.1], "cell_m": 5000, "crs": "EPSG:4326"}}
    r = _post(city, "reader", "utm_pts/query/aggregate", lonlat)
    assert r.status_code == 200 and sum(row["n"] for row in r.json()["rows"]) == 30


def test_ids_of_the_other_type_are_converted_over_http(city: ServedCity) -> None:
    r = _post(city, "reader", "utm_pts/query/id_temporal", {"ids": ["1"]})
    assert r.status_code == 200 and r.json()["total"] == 10
    r = _post(city, "reader", "utm_pts/query/id_temporal", {"ids": ["bus-1"]})
    assert r.status_code == 422 and "integer" in r.text


# -- bad input: 4xx naming the field --------------------------------------------------------------
BBOX = {"bbox": [116.0, 39.0, 117.0, 41.0]}
BAD: dict[str, tuple[str, dict[str, Any], str]] = {
    "time as an object": (
        "pts_public/query/st_range",
        {"region": BBOX, "start": {"a": 1}, "end": "2026-03-03T00:00Z"},
        "start",
    ),
    "time as a list": (
        "pts_public/query/st_range",
        {"region": BBOX, "start": ["2026-03-02"], "end": "2026-03-03T00:00Z"},
        "start",
    ),
    "region as a number": ("pts_public/query/range", {"region": 5}, "region"),
    "region GeoJSON with bad coordinates": (
        "pts_public/query/range",
        {"region": {"geojson": {"type": "Polygon", "coordinates": 5}}},
        "region.geojson",
    ),
    "region GeoJSON Feature without geometry": (
        "pts_public/query/range",
        {"region": {"geojson": {"type": "Feature", "geometry": 5}}},
        "region.geojson",
    ),
    "unknown EPSG": ("pts_public/query/range", {"region": {**BBOX, "crs": "EPSG:999999"}}, "crs"),
    "non-Earth CRS": (
        "pts_public/query/range",
        {"region": {**BBOX, "crs": "IAU_2015:49900"}},
        "crs",
    ),
    "grid in a non-Earth CRS": (
        "pts_public/query/aggregate",
        {"grid": {"bbox": [0, 0, 1, 1], "cell_m": 10, "crs": "IAU_2015:49900"}},
        "crs",
    ),
    "point dataset as regions": (
        "pts_public/query/join_regions",
        {"regions": "pts_public"},
        "regions",
    ),
    "point dataset as aggregation regions": (
        "pts_public/query/aggregate",
        {"regions": "pts_public"},
        "regions",
    ),
    "st_range on a static dataset": (
        "districts/query/st_range",
        {"region": BBOX, **WINDOW},
        "st_range",
    ),
    "a too long query trajectory": (
        "pts_public/query/similar",
        {"coords": [[116.3, 39.9]] * 3000, "k": 1},
        "coords",
    ),
}


@pytest.mark.parametrize("case", list(BAD))
def test_bad_input_is_a_4xx_naming_the_field(city: ServedCity, case: str) -> None:
    path, body, field = BAD[case]
    r = _post(city, "admin", path, body)
    assert 400 <= r.status_code < 500, (r.status_code, r.text[:300])
    assert field in r.text, r.text[:300]


def test_a_window_from_year_1_to_9999_is_answered(city: ServedCity) -> None:
    body = {"region": BBOX, "start": "0001-01-01T00:00:00Z", "end": "9999-12-31T23:59:59Z"}
    r = _post(city, "admin", "pts_public/query/st_range", body)
    assert r.status_code == 200, r.text
    assert r.json()["total"] == 40


def test_the_secured_store_does_not_hand_out_the_raw_store(city: ServedCity) -> None:
    ss = access.SecureStore(city.store, access.principal_for(city.store.db, "westie"))
    assert not hasattr(ss, "store")
    public = {k: v for k, v in vars(ss).items() if not k.startswith("_")}
    assert all(v is not city.store for v in public.values())
    assert len(ss.st_range("pts_internal", BBOX["bbox"], **WINDOW)) == 21  # still queries


# -- unbounded work ---------------------------------------------------------------------------
def test_a_query_past_its_time_budget_is_a_503(city: ServedCity, tmp_path: Path) -> None:
    settings = Settings(
        home=city.store.settings.home,
        database_url=city.store.settings.database_url,
        secret_key=SECRET,
        query_timeout_s=1e-9,
    )
    client = TestClient(create_app(settings, store=city.store))
    r = client.post(
        "/datasets/pts_public/query/similar",
        json={"coords": [[116.3, 39.9]] * 500, "k": 3},
        headers=city.auth("admin"),
    )
    assert r.status_code == 503, r.text
    assert "time budget" in r.json()["detail"]
    client.close()

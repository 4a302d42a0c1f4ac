"""The twin's map services (Arrow layers, OGC API – Features, vector tiles): what each
returns, and that each is authorised, row-filtered and masked as the dataset routes are."""

from __future__ import annotations

from typing import Any

import pandas as pd
import pyarrow as pa
import pytest
import shapely
from tests.server.conftest import WEST, ServedCity, point_rows

ARROW_URL = "/twin/layers/pts_{c}.arrow"
ITEMS_URL = "/ogc/collections/pts_{c}/items"
# tile 10/843/387 covers lon 116.367..116.719, lat 39.909..40.178
TILE = (10, 843, 387)
TILE_URL = "/tiles/pts_{c}/10/843/387.mvt"


def arrow(content: bytes) -> pa.Table:
    return pa.ipc.open_stream(content).read_all()


def tile_features(content: bytes, layer: str) -> list[dict[str, Any]]:
    """The features of one tile as GDAL's MVT driver decodes it (an independent reader)."""
    import tempfile
    from pathlib import Path

    import pyogrio

    z, x, y = TILE
    with tempfile.TemporaryDirectory() as d:
        f = Path(d) / str(z) / str(x) / f"{y}.pbf"
        f.parent.mkdir(parents=True)
        f.write_bytes(content)
        if layer not in [n for n, _ in pyogrio.list_layers(f)]:
            return []
        df = pyogrio.read_dataframe(f, layer=layer).to_crs(4326)
    return [
        {"geometry": g, "properties": {k: v for k, v in r.items() if k != "geometry"}}
        for g, (_, r) in zip(df.geometry, df.iterrows(), strict=True)
    ]


# -- what the services answer ------------------------------------------------------------


def test_layers_lists_only_readable_datasets_with_their_kind(served: ServedCity) -> None:
    r = served.client.get("/twin/layers", headers=served.auth("outsider"))
    assert r.status_code == 200
    kinds = {d["name"]: d["kind"] for d in r.json()}
    assert kinds == {"pts_public": "moving", "districts": "regions", "roads": "lines"}
    assert served.client.get("/twin/layers").status_code == 401


def test_arrow_layer_filters_by_bbox_and_time_server_side(served: ServedCity) -> None:
    rows = point_rows()
    bbox, start, end = (
        (116.302, 39.9005, 116.362, 39.9305),
        "2026-03-02T08:00Z",
        "2026-03-02T09:00Z",
    )
    r = served.client.get(
        ARROW_URL.format(c="public"),
        params={"bbox": ",".join(map(str, bbox)), "start": start, "end": end},
        headers=served.auth("admin"),
    )
    assert r.status_code == 200 and r.headers["content-type"].startswith(
        "application/vnd.apache.arrow.stream"
    )
    t = arrow(r.content)
    want = sorted(
        (p["id"], p["t"])
        for p in rows
        if bbox[0] <= p["x"] <= bbox[2]
        and bbox[1] <= p["y"] <= bbox[3]
        and str(p["t"]) < "2026-03-02T09:00Z"
    )
    assert 0 < len(want) < len(rows)
    got = sorted(
        (i, pd.Timestamp(ms, unit="ms", tz="UTC").strftime("%Y-%m-%dT%H:%MZ"))
        for i, ms in zip(t["id"].to_pylist(), t["t"].to_pylist(), strict=True)
    )
    assert got == want
    # exactly what the store's own spatio-temporal range answers
    ref = served.store.st_range("pts_public", bbox, start, end).table
    assert sorted(t["x"].to_pylist()) == sorted(ref["x"].to_pylist())
    assert t.schema.field("t").type == pa.float64()  # epoch ms, ready for the GPU
    assert r.headers["x-total-count"] == str(len(want))


def test_arrow_layer_limit_and_sorted_paths(served: ServedCity) -> None:
    r = served.client.get(
        ARROW_URL.format(c="public"), params={"limit": 7}, headers=served.auth("admin")
    )
    t = arrow(r.content)
    assert t.num_rows == 7 and r.headers["x-truncated"] == "1"
    assert r.headers["x-total-count"] == "40"
    keys = list(zip(t["id"].to_pylist(), t["t"].to_pylist(), strict=True))
    assert keys == sorted(keys)


@pytest.mark.parametrize("role", ["admin", "district", "reader"])
@pytest.mark.parametrize("columns", ["phone", "owner,district", "district,nosuch"])
def test_arrow_layer_columns_are_the_full_answer_projected(
    served: ServedCity, role: str, columns: str
) -> None:
    # the store reads only the asked-for columns; the answer (rows, order, values, masks
    # and row filters) is the full layer's, with the other fields left out
    h = served.auth(role)
    url = ARROW_URL.format(c="sensitive")
    full = served.client.get(url, params={"bbox": "116.3,39.9,116.6,40.0"}, headers=h)
    part = served.client.get(
        url, params={"bbox": "116.3,39.9,116.6,40.0", "columns": columns}, headers=h
    )
    assert full.status_code == part.status_code == 200
    a, b = arrow(full.content), arrow(part.content)
    assert b.num_rows > 0 and b.equals(a.select(b.column_names))
    assert set(b.column_names) == {"id", "t", "x", "y"} | (set(columns.split(",")) - {"nosuch"})
    assert part.headers["x-total-count"] == full.headers["x-total-count"]
    assert part.headers["x-masked-columns"] == full.headers["x-masked-columns"]


def test_arrow_regions_and_lines_as_flat_paths(served: ServedCity) -> None:
    t = arrow(
        served.client.get("/twin/layers/districts.arrow", headers=served.auth("admin")).content
    )
    west = t.filter(pa.compute.equal(t["id"], "west"))["path"][0].as_py()
    xs, ys = west[0::2], west[1::2]
    assert (min(xs), min(ys), max(xs), max(ys)) == tuple(WEST)
    t = arrow(served.client.get("/twin/layers/roads.arrow", headers=served.auth("admin")).content)
    assert t["path"][0].as_py() == [116.3, 39.9, 116.5, 39.98]


def test_bad_parameters_are_422_naming_them(served: ServedCity) -> None:
    h = served.auth("admin")
    r = served.client.get(ARROW_URL.format(c="public"), params={"bbox": "1,2"}, headers=h)
    assert r.status_code == 422 and "bbox" in r.json()["detail"]
    r = served.client.get(ITEMS_URL.format(c="public"), params={"datetime": "soon"}, headers=h)
    assert r.status_code == 422 and "datetime" in r.json()["detail"]
    r = served.client.get("/tiles/pts_public/3/9/0.mvt", headers=h)
    assert r.status_code == 422 and "3/9/0" in r.json()["detail"]


def test_ogc_landing_conformance_collections(served: ServedCity) -> None:
    c, h = served.client, served.auth("outsider")
    rels = {link["rel"] for link in c.get("/ogc").json()["links"]}
    assert {"conformance", "data", "service-desc"} <= rels
    conf = c.get("/ogc/conformance").json()["conformsTo"]
    assert any(x.endswith("conf/core") for x in conf) and any(
        x.endswith("conf/geojson") for x in conf
    )
    cols = c.get("/ogc/collections", headers=h).json()["collections"]
    assert sorted(x["id"] for x in cols) == ["districts", "pts_public", "roads"]
    one = c.get("/ogc/collections/pts_public", headers=h).json()
    assert one["extent"]["temporal"]["interval"][0][0].startswith("2026-03-02T08:00")


def test_ogc_items_paging_bbox_datetime(served: ServedCity) -> None:
    c, h = served.client, served.auth("admin")
    seen: list[tuple[str, str]] = []
    url: str | None = ITEMS_URL.format(c="public") + "?limit=15"
    pages = 0
    while url:
        body = c.get(url, headers=h).json()
        pages += 1
        assert body["numberMatched"] == 40
        seen += [(f["properties"]["id"], f["properties"]["t"]) for f in body["features"]]
        url = next((lk["href"] for lk in body["links"] if lk["rel"] == "next"), None)
    assert pages == 3 and len(set(seen)) == 40
    body = c.get(
        ITEMS_URL.format(c="public"),
        params={"bbox": "116.298,39.8995,116.362,39.9305", "datetime": "2026-03-02T08:00:00Z/.."},
        headers=h,
    ).json()
    want = [p for p in point_rows() if p["x"] <= 116.362 and p["y"] <= 39.9305]
    assert body["numberMatched"] == len(want) > 0
    fid = body["features"][0]["id"]
    one = c.get(f"{ITEMS_URL.format(c='public')}/{fid}", headers=h)
    assert one.status_code == 200 and one.json()["id"] == fid
    assert c.get(f"{ITEMS_URL.format(c='public')}/nope~x", headers=h).status_code == 404


def test_vector_tile_has_the_points_in_the_tile_and_window(served: ServedCity) -> None:
    h = served.auth("admin")
    r = served.client.get(TILE_URL.format(c="public"), headers=h)
    assert (
        r.status_code == 200 and r.headers["content-type"] == "application/vnd.mapbox-vector-tile"
    )
    feats = tile_features(r.content, "pts_public")
    inside = [
        p for p in point_rows() if 116.367 <= p["x"] <= 116.719 and 39.909 <= p["y"] <= 40.178
    ]
    # the tile is read with a 1/64 buffer, so edge points may be added: never fewer
    assert len(feats) >= len(inside) > 0
    late = served.client.get(
        TILE_URL.format(c="public"), params={"start": "2026-03-02T11:00Z"}, headers=h
    )
    late_feats = tile_features(late.content, "pts_public")
    assert 0 < len(late_feats) < len(feats)
    assert all(f["properties"]["t"] >= "2026-03-02T11:00" for f in late_feats)
    roads = served.client.get("/tiles/roads/10/843/387.mvt", headers=h)
    road = tile_features(roads.content, "roads")[0]["geometry"]
    assert road.geom_type == "LineString"
    # GDAL clips to the tile; the part inside lies on the road from (116.3, 39.9) to (116.5, 39.98)
    assert road.distance(shapely.LineString([(116.3, 39.9), (116.5, 39.98)])) < 1e-4
    xs = [p["geometry"].x for p in feats]
    assert min(xs) >= 116.367 - 0.006 and max(xs) <= 116.719 + 0.006


# -- authorisation and masking, route by route --------------------------------------------

ROUTES = {
    "arrow": ARROW_URL,
    "ogc_items": ITEMS_URL,
    "ogc_collection": "/ogc/collections/pts_{c}",
    "tile": TILE_URL,
}


@pytest.mark.parametrize("route", sorted(ROUTES))
@pytest.mark.parametrize(
    ("role", "cls", "status"),
    [
        ("outsider", "public", 200),
        ("outsider", "internal", 403),
        ("member", "internal", 200),
        ("member", "sensitive", 403),
        ("reader", "secret", 200),
        ("wildcard", "secret", 403),
        ("admin", "secret", 200),
    ],
)
def test_authorisation_as_the_dataset_routes(
    served: ServedCity, route: str, role: str, cls: str, status: int
) -> None:
    url = ROUTES[route].format(c=cls)
    assert served.client.get(url, headers=served.auth(role)).status_code == status
    assert served.client.get(url).status_code == 401
    # and the same verdict as the store's own query route
    ref = served.client.post(
        f"/datasets/pts_{cls}/query/range",
        json={"region": {"bbox": [116.0, 39.0, 117.0, 41.0]}},
        headers=served.auth(role),
    )
    assert ref.status_code == status


def _phones(route: str, content: bytes) -> list[str]:
    if route == "arrow":
        return [str(v) for v in arrow(content)["phone"].to_pylist()]
    if route == "ogc_items":
        import json

        return [f["properties"]["phone"] for f in json.loads(content)["features"]]
    return [f["properties"]["phone"] for f in tile_features(content, "pts_sensitive")]


@pytest.mark.parametrize("route", ["arrow", "ogc_items", "tile"])
def test_masking_and_row_filters_as_the_dataset_routes(served: ServedCity, route: str) -> None:
    url = ROUTES[route].format(c="sensitive")
    raw = {p["phone"] for p in point_rows()}
    for role in ("reader", "district"):
        r = served.client.get(
            url, params={"limit": 1000} if route != "arrow" else None, headers=served.auth(role)
        )
        assert r.status_code == 200
        phones = _phones(route, r.content)
        assert phones and not (set(phones) & raw), f"{route} leaked a phone number to {role}"
        assert "phone" in r.headers["x-masked-columns"]
        ref = served.client.post(
            "/datasets/pts_sensitive/query/range",
            json={"region": {"bbox": [116.0, 39.0, 117.0, 41.0]}},
            params={"limit": 1000},
            headers=served.auth(role),
        ).json()
        ref_phones = sorted(row["phone"] for row in ref["rows"])
        if route == "arrow" or route == "ogc_items":
            assert sorted(phones) == ref_phones  # same rows, masked the same way
    # the district role sees only the west: every point it gets is inside WEST
    r = served.client.get(ARROW_URL.format(c="sensitive"), headers=served.auth("district"))
    t = arrow(r.content)
    assert t.num_rows > 0 and max(t["x"].to_pylist()) <= WEST[2]
    admin = served.client.get(ARROW_URL.format(c="sensitive"), headers=served.auth("admin"))
    assert set(arrow(admin.content)["phone"].to_pylist()) == raw

"""GeoJSON features are built by one helper for the dataset routes (``?format=geojson``)
and for OGC API – Features: both outputs are pinned here on a corpus of geometries and
property types, as they were before the two builders were merged."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pyarrow as pa
import shapely

from cityos.access import SecureResult
from cityos.server._render import render
from cityos.twin._ogc import features

POLY = shapely.Polygon(
    [(116.3, 39.9), (116.4, 39.9), (116.4, 40.0), (116.3, 40.0)],
    [[(116.32, 39.92), (116.34, 39.92), (116.34, 39.94)]],
)
GEOMS = [
    shapely.LineString([(116.1, 39.1), (116.2, 39.25), (116.123456789012, 39.98765432101)]),
    POLY,
    shapely.MultiPolygon([POLY, shapely.box(117.0, 40.0, 117.1, 40.1)]),
    shapely.MultiLineString([[(0.1, 0.2), (0.3, 0.4)], [(1e-7, -2.5e-5), (180.0, -90.0)]]),
    None,
]


def shapes() -> pa.Table:
    return pa.table(
        {
            "id": pa.array([1, 2, 3, 4, 5], pa.int64()),
            "geometry": pa.array([None if g is None else shapely.to_wkb(g) for g in GEOMS]),
            "name": ["a", "b", None, "d", "é"],
            "v": [1.5, float("nan"), float("inf"), -0.0, None],
            "t": pa.array(
                [datetime(2026, 3, 2, 8, 0, 0, 123000, tzinfo=UTC)] * 4 + [None],
                pa.timestamp("ms", tz="UTC"),
            ),
            "flag": [True, False, None, True, False],
        }
    )


def points() -> pa.Table:
    return pa.table(
        {
            "id": ["p1", "p2", "p3"],
            "t": pa.array(
                [datetime(2026, 3, 2, 8, tzinfo=UTC), datetime(2026, 3, 2, 9, tzinfo=UTC), None],
                pa.timestamp("ms", tz="UTC"),
            ),
            "x": [116.391234567891, None, 0.0],
            "y": [39.9, 40.0, -0.0],
            "n": pa.array([7, None, -3], pa.int32()),
            "blob": [b"\x00\x01", b"not wkb", None],
            "kind": pa.array(["taxi", "bus", "taxi"]).dictionary_encode(),
        }
    )


def server_geojson(table: pa.Table) -> str:
    """The body of a dataset route's ``format=geojson`` page, as sent."""
    r = render(SecureResult(table, [], 0), fmt="geojson", accept=None, offset=0, limit=None)
    return bytes(r.body).decode("utf-8")


def ogc(table: pa.Table, key: tuple[str, ...]) -> str:
    """OGC items' features, serialised as the items route serialises them."""
    return json.dumps(features(table, key), ensure_ascii=False, allow_nan=False)


SERVER_SHAPES = (
    '{"type":"FeatureCollection","features":[{"type":"Feature","geometry":{"type":"LineSt'
    'ring","coordinates":[[116.1,39.1],[116.2,39.25],[116.123456789012,39.98765432101]]},'
    '"properties":{"id":1,"name":"a","v":1.5,"t":"2026-03-02T08:00:00.123000+00:00","flag'
    '":true}},{"type":"Feature","geometry":{"type":"Polygon","coordinates":[[[116.3,39.9]'
    ",[116.4,39.9],[116.4,40.0],[116.3,40.0],[116.3,39.9]],[[116.32,39.92],[116.34,39.92]"
    ',[116.34,39.94],[116.32,39.92]]]},"properties":{"id":2,"name":"b","v":null,"t":"2026'
    '-03-02T08:00:00.123000+00:00","flag":false}},{"type":"Feature","geometry":{"type":"M'
    'ultiPolygon","coordinates":[[[[116.3,39.9],[116.4,39.9],[116.4,40.0],[116.3,40.0],[1'
    "16.3,39.9]],[[116.32,39.92],[116.34,39.92],[116.34,39.94],[116.32,39.92]]],[[[117.1,"
    '40.0],[117.1,40.1],[117.0,40.1],[117.0,40.0],[117.1,40.0]]]]},"properties":{"id":3,"'
    'name":null,"v":null,"t":"2026-03-02T08:00:00.123000+00:00","flag":null}},{"type":"Fe'
    'ature","geometry":{"type":"MultiLineString","coordinates":[[[0.1,0.2],[0.3,0.4]],[[1'
    'e-7,-0.000025],[180.0,-90.0]]]},"properties":{"id":4,"name":"d","v":-0.0,"t":"2026-0'
    '3-02T08:00:00.123000+00:00","flag":true}},{"type":"Feature","geometry":null,"propert'
    'ies":{"id":5,"name":"é","v":null,"t":null,"flag":false}}],"total":5,"offset":0,"next'
    '_offset":null}'
)
SERVER_POINTS = (
    '{"type":"FeatureCollection","features":[{"type":"Feature","geometry":{"type":"Point"'
    ',"coordinates":[116.391234567891,39.9]},"properties":{"id":"p1","t":"2026-03-02T08:0'
    '0:00+00:00","n":7,"blob":"0001","kind":"taxi"}},{"type":"Feature","geometry":null,"p'
    'roperties":{"id":"p2","t":"2026-03-02T09:00:00+00:00","n":null,"blob":"6e6f7420776b6'
    '2","kind":"bus"}},{"type":"Feature","geometry":{"type":"Point","coordinates":[0.0,-0'
    '.0]},"properties":{"id":"p3","t":null,"n":-3,"blob":null,"kind":"taxi"}}],"total":3,'
    '"offset":0,"next_offset":null}'
)
OGC_SHAPES = (
    '[{"type": "Feature", "id": 1, "geometry": {"type": "LineString", "coordinates": [[11'
    '6.1, 39.1], [116.2, 39.25], [116.123456789012, 39.98765432101]]}, "properties": {"id'
    '": 1, "name": "a", "v": 1.5, "t": "2026-03-02T08:00:00.123000Z", "flag": true}}, {"t'
    'ype": "Feature", "id": 2, "geometry": {"type": "Polygon", "coordinates": [[[116.3, 3'
    "9.9], [116.4, 39.9], [116.4, 40.0], [116.3, 40.0], [116.3, 39.9]], [[116.32, 39.92],"
    ' [116.34, 39.92], [116.34, 39.94], [116.32, 39.92]]]}, "properties": {"id": 2, "name'
    '": "b", "v": null, "t": "2026-03-02T08:00:00.123000Z", "flag": false}}, {"type": "Fe'
    'ature", "id": 3, "geometry": {"type": "MultiPolygon", "coordinates": [[[[116.3, 39.9'
    "], [116.4, 39.9], [116.4, 40.0], [116.3, 40.0], [116.3, 39.9]], [[116.32, 39.92], [1"
    "16.34, 39.92], [116.34, 39.94], [116.32, 39.92]]], [[[117.1, 40.0], [117.1, 40.1], ["
    '117.0, 40.1], [117.0, 40.0], [117.1, 40.0]]]]}, "properties": {"id": 3, "name": null'
    ', "v": null, "t": "2026-03-02T08:00:00.123000Z", "flag": null}}, {"type": "Feature",'
    ' "id": 4, "geometry": {"type": "MultiLineString", "coordinates": [[[0.1, 0.2], [0.3,'
    ' 0.4]], [[1e-07, -2.5e-05], [180.0, -90.0]]]}, "properties": {"id": 4, "name": "d", '
    '"v": -0.0, "t": "2026-03-02T08:00:00.123000Z", "flag": true}}, {"type": "Feature", "'
    'id": 5, "geometry": null, "properties": {"id": 5, "name": "é", "v": null, "t": null,'
    ' "flag": false}}]'
)
OGC_POINTS = (
    '[{"type": "Feature", "id": "p1~2026-03-02T08:00:00Z", "geometry": {"type": "Point", '
    '"coordinates": [116.391234567891, 39.9]}, "properties": {"id": "p1", "t": "2026-03-0'
    '2T08:00:00Z", "n": 7, "blob": "0001", "kind": "taxi"}}, {"type": "Feature", "id": "p'
    '2~2026-03-02T09:00:00Z", "geometry": null, "properties": {"id": "p2", "t": "2026-03-'
    '02T09:00:00Z", "n": null, "blob": "6e6f7420776b62", "kind": "bus"}}, {"type": "Featu'
    're", "id": "p3~None", "geometry": {"type": "Point", "coordinates": [0.0, -0.0]}, "pr'
    'operties": {"id": "p3", "t": null, "n": -3, "blob": null, "kind": "taxi"}}]'
)


def test_the_dataset_routes_geojson_is_unchanged() -> None:
    assert server_geojson(shapes()) == SERVER_SHAPES
    assert server_geojson(points()) == SERVER_POINTS


def test_the_ogc_features_are_unchanged() -> None:
    assert ogc(shapes(), ("id",)) == OGC_SHAPES
    assert ogc(points(), ("id", "t")) == OGC_POINTS

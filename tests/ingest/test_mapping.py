"""Mappings: every mistake reported with its path; renames, units, time zones and formats,
nested JSON paths, EPSG and GCJ-02/BD-09 coordinates."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from cityos.ingest import (
    Mapping,
    MappingError,
    convert_units,
    gcj02_to_wgs84,
    load_mapping,
    transform_coords,
    wgs84_to_bd09,
    wgs84_to_gcj02,
)


def _m(**over: Any) -> dict[str, Any]:
    d: dict[str, Any] = {
        "dataset": {"name": "obs", "model": "point_series"},
        "id": {"from": "sensor"},
        "time": {"from": "ts"},
        "geometry": {"x": "lon", "y": "lat"},
    }
    d.update(over)
    return d


def test_every_mistake_is_reported_with_its_path() -> None:
    doc = _m(
        fields={
            "pm25": {"type": "float", "unit": "furlongs"},
            "co": {"type": "float64", "unit": "mg/m3", "source_unit": "km/h"},
        },
        time={"from": "ts", "timezone": "Mars/Olympus"},
    )
    doc["geometry"] = {"x": "lon", "y": "lat", "crs": "EPSG:999999"}
    with pytest.raises(MappingError) as e:
        Mapping.from_dict(doc, origin="air.yaml")
    paths = {p for p, _ in e.value.mistakes}
    assert {
        "fields.pm25.type",
        "fields.pm25.unit",
        "fields.co.source_unit",
        "time.timezone",
        "geometry.crs",
    } <= paths
    assert "air.yaml has" in str(e.value) and "fields.pm25.unit" in str(e.value)


def test_structural_mistakes_name_their_path() -> None:
    with pytest.raises(MappingError) as e:
        load_mapping("dataset: {name: obs, model: hexagons}\nid: {frm: k}\n")
    paths = {p for p, _ in e.value.mistakes}
    assert "dataset.model" in paths and "id.from" in paths and "id.frm" in paths


def test_units_time_zone_and_format() -> None:
    m = Mapping.from_dict(
        _m(
            time={"from": "ts", "format": "%d/%m/%Y %H:%M", "timezone": "Asia/Shanghai"},
            fields={
                "co": {"from": "CO", "type": "float64", "unit": "mg/m3", "source_unit": "ug/m3"},
                "wind": {"from": "w", "type": "float64", "unit": "m/s", "source_unit": "km/h"},
                "temp": {"from": "tf", "type": "float64", "unit": "degC", "source_unit": "degF"},
            },
        )
    )
    out = m.apply(
        [
            {
                "sensor": 7,
                "ts": "02/03/2026 08:30",
                "lon": 116.4,
                "lat": 39.9,
                "CO": 1200,
                "w": 36,
                "tf": 212,
            }
        ]
    )
    assert not out.problems
    r = out.table.to_pylist()[0]
    assert r["id"] == "7"
    assert r["t"].isoformat() == "2026-03-02T00:30:00+00:00"
    assert (r["co"], r["wind"], r["temp"]) == pytest.approx((1.2, 10.0, 100.0))


def test_iso_times_with_and_without_offsets_and_dst() -> None:
    m = Mapping.from_dict(_m(time={"from": "ts", "timezone": "America/New_York"}))
    out = m.apply(
        [
            {"sensor": "a", "ts": t, "lon": 1, "lat": 2}
            for t in (
                "2026-01-15T12:00:00",
                "2026-07-15T12:00:00",
                "2026-07-15T12:00:00+02:00",
                "2026-07-15T12:00:00Z",
                "not a time",
            )
        ]
    )
    ts = [v.isoformat() if v else None for v in out.table["t"].to_pylist()]
    assert ts[:4] == [
        "2026-01-15T17:00:00+00:00",
        "2026-07-15T16:00:00+00:00",
        "2026-07-15T10:00:00+00:00",
        "2026-07-15T12:00:00+00:00",
    ]
    assert [(p.row, p.rule) for p in out.problems] == [(4, "time")]


def test_epoch_and_nested_json_paths() -> None:
    m = Mapping.from_dict(
        _m(
            time={"from": "obs.when", "format": "epoch_ms"},
            geometry={"x": "loc.coordinates[0]", "y": "loc.coordinates[1]"},
            fields={"v": {"from": "obs.value", "type": "float64"}},
        )
    )
    out = m.apply(
        [
            {
                "sensor": "a",
                "obs": {"when": 1_772_409_600_000, "value": 3.5},
                "loc": {"type": "Point", "coordinates": [116.4, 39.9]},
            }
        ]
    )
    r = out.table.to_pylist()[0]
    assert r["t"].isoformat() == "2026-03-02T00:00:00+00:00"
    assert (r["x"], r["y"], r["v"]) == (116.4, 39.9, 3.5)


def test_bad_numbers_are_row_problems_not_batch_failures() -> None:
    m = Mapping.from_dict(
        _m(fields={"v": {"type": "float64", "unit": "m/s", "source_unit": "km/h"}})
    )
    out = m.apply(
        [
            {"sensor": "a", "ts": "2026-01-01", "lon": 1, "lat": 2, "v": "fast"},
            {"sensor": "b", "ts": "2026-01-01", "lon": 1, "lat": 2, "v": 36},
        ]
    )
    assert [(p.row, p.rule) for p in out.problems] == [(0, "fields.v")]
    assert out.table["v"].to_pylist()[1] == pytest.approx(10.0)


def test_epsg_and_chinese_crs_on_ingest() -> None:
    x, y = transform_coords(116.404, 39.915, "EPSG:4326", "EPSG:3857")
    proj = Mapping.from_dict(_m(geometry={"x": "e", "y": "n", "crs": "EPSG:3857"}))
    r = proj.apply(
        [{"sensor": "a", "ts": "2026-01-01", "e": float(x), "n": float(y)}]
    ).table.to_pylist()[0]
    assert (r["x"], r["y"]) == pytest.approx((116.404, 39.915), abs=1e-9)
    gx, gy = wgs84_to_gcj02(116.404, 39.915)
    gcj = Mapping.from_dict(_m(geometry={"x": "lng", "y": "lat", "crs": "GCJ-02"}))
    r = gcj.apply(
        [{"sensor": "a", "ts": "2026-01-01", "lng": float(gx), "lat": float(gy)}]
    ).table.to_pylist()[0]
    assert (r["x"], r["y"]) == pytest.approx((116.404, 39.915), abs=1e-8)
    bx, by = wgs84_to_bd09(116.404, 39.915)
    bd = Mapping.from_dict(_m(geometry={"x": "lng", "y": "lat", "crs": "bd09"}))
    r = bd.apply(
        [{"sensor": "a", "ts": "2026-01-01", "lng": float(bx), "lat": float(by)}]
    ).table.to_pylist()[0]
    assert (r["x"], r["y"]) == pytest.approx((116.404, 39.915), abs=1e-8)


# published reference values of the public formulas (WGS84 -> GCJ-02, GCJ-02 <-> BD-09)
REFERENCE = [
    ("wgs84_to_gcj02", (121.5272106, 31.1774276), (121.531541859215, 31.17530398364597)),
    ("wgs84_to_gcj02", (113.912316, 22.543847), (113.9171764808363, 22.540796131694766)),
    ("wgs84_to_gcj02", (116.377817, 39.911954), (116.38404722455657, 39.91334545536069)),
    ("wgs84_to_gcj02", (116.404, 39.915), (116.41024449916938, 39.91640428150164)),
    ("gcj02_to_bd09", (116.404, 39.915), (116.41036949371029, 39.92133699351021)),
    ("bd09_to_gcj02", (116.404, 39.915), (116.39762729119315, 39.90865673957631)),
]


@pytest.mark.parametrize(("fn", "src", "want"), REFERENCE)
def test_reference_points(fn: str, src: tuple[float, float], want: tuple[float, float]) -> None:
    import cityos.ingest as ing

    got = getattr(ing, fn)(*src)
    # bd09_to_gcj02 is refined by iteration, the reference used the one-step inverse (~1e-6°)
    tol = 2e-6 if fn == "bd09_to_gcj02" else 1e-9
    assert (float(got[0]), float(got[1])) == pytest.approx(want, abs=tol)


def _metres(lon1: np.ndarray, lat1: np.ndarray, lon2: np.ndarray, lat2: np.ndarray) -> np.ndarray:
    from cityos.geo.distance import haversine

    return np.asarray(haversine(lon1, lat1, lon2, lat2))


def test_round_trips_are_sub_half_metre_across_china() -> None:
    rng = np.random.default_rng(0)
    lon = rng.uniform(74, 134, 5000)
    lat = rng.uniform(18, 53, 5000)
    back = gcj02_to_wgs84(*wgs84_to_gcj02(lon, lat))
    assert _metres(lon, lat, *back).max() < 0.5
    via_bd = transform_coords(
        *transform_coords(lon, lat, "EPSG:4326", "BD-09"), "BD-09", "EPSG:4326"
    )
    assert _metres(lon, lat, *via_bd).max() < 0.5
    # the offset itself is hundreds of metres, so the test would notice a missing inverse
    assert _metres(lon, lat, *wgs84_to_gcj02(lon, lat)).min() > 10


def test_outside_china_is_unchanged() -> None:
    lon, lat = wgs84_to_gcj02(-73.98, 40.75)
    assert (float(lon), float(lat)) == (-73.98, 40.75)


def test_convert_units_refuses_other_dimensions() -> None:
    with pytest.raises(ValueError, match="cannot convert"):
        convert_units(np.array([1.0]), "km/h", "ug/m3")

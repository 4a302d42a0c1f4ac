"""The dashboard as shipped in the package (served at ``/`` with its assets under
``/twin/assets``, naming no other host), and the twin's flows between regions, read
through access like every other layer."""

from __future__ import annotations

import re
from pathlib import Path

import pandas as pd
import pytest
import shapely
from tests.server.conftest import ServedCity

from cityos.twin import static_dir
from cityos.twin._flows import road_speeds

STATIC = static_dir()
# an absolute URL naming a host; XML namespace identifiers (never fetched) are the only ones allowed
URL = re.compile(rb"(?:https?|wss?)://([A-Za-z0-9.-]+)")
NAMESPACES = {b"www.w3.org"}
WINDOW = {"start": "2026-03-02T08:00Z", "end": "2026-03-02T12:00Z"}


def bundle_files() -> list[Path]:
    return [p for p in STATIC.rglob("*") if p.is_file()]


def test_the_built_dashboard_is_in_the_package() -> None:
    index = (STATIC / "index.html").read_text()
    scripts = re.findall(r'src="(/twin/assets/[^"]+\.js)"', index)
    assert scripts, "index.html loads no bundled script (run `npm run build` in web/)"
    for s in scripts:
        assert (STATIC / s.removeprefix("/twin/")).is_file()
    assert any(p.name.startswith("maplibre-gl-worker") for p in bundle_files())


def test_the_bundle_names_no_external_host() -> None:
    files = bundle_files()
    assert len(files) >= 3
    hosts = {
        (p.name, h.decode())
        for p in files
        for h in URL.findall(p.read_bytes())
        if h not in NAMESPACES
    }
    assert not hosts, f"the bundle names external hosts: {sorted(hosts)}"


def test_the_bundle_is_built_from_the_current_sources() -> None:
    # scripts/setup.sh rebuilds when this stamp differs from the hash of web/'s sources
    stamp = STATIC / "SOURCE_HASH"
    assert stamp.is_file()
    web = Path(__file__).resolve().parents[2] / "web"
    if not web.is_dir():
        pytest.skip("not a source checkout")
    import subprocess

    out = subprocess.run(
        ["bash", "scripts/web-hash.sh"], cwd=web.parent, capture_output=True, text=True, check=True
    )
    assert stamp.read_text().strip() == out.stdout.strip(), "web/ changed: run scripts/setup.sh"


def test_dashboard_is_served_at_root_and_assets_under_twin(served: ServedCity) -> None:
    c = served.client
    for path in ("/", "/twin/"):
        r = c.get(path)
        assert r.status_code == 200 and "text/html" in r.headers["content-type"]
        assert 'id="login-form"' in r.text
    js = re.findall(r'src="(/twin/assets/[^"]+\.js)"', c.get("/").text)[0]
    r = c.get(js)
    assert r.status_code == 200 and "javascript" in r.headers["content-type"]
    assert b"/auth/token" in r.content and b"/twin/layers" in r.content


def test_flows_count_trips_between_regions(served: ServedCity) -> None:
    # each object c0..c4 starts in the west box and ends in the east one (tests/server/conftest)
    r = served.client.get(
        "/twin/flows/pts_public",
        params={**WINDOW, "regions": "districts"},
        headers=served.auth("admin"),
    )
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["trips"] == 5 and body["points"] == 40
    assert [(d["origin"], d["destination"], d["trips"]) for d in body["od"]] == [
        ("west", "east", 5)
    ]
    by = {x["id"]: (x["inflow"], x["outflow"]) for x in body["regions"]}
    assert by == {"west": (0, 5), "east": (5, 0)}


def test_flows_see_only_the_rows_the_caller_may_read(served: ServedCity) -> None:
    # 'district' may read pts_* only inside the west box: its trips never leave it
    h = served.auth("district")
    body = served.client.get("/twin/flows/pts_internal", params=WINDOW, headers=h).json()
    seen = served.client.get("/twin/layers/pts_internal.arrow", params=WINDOW, headers=h)
    assert 0 < body["points"] == int(seen.headers["X-Total-Count"]) < 40
    assert [(d["origin"], d["destination"]) for d in body["od"]] == [("west", "west")]
    assert all(x["inflow"] == 0 for x in body["regions"])
    assert (
        served.client.get(
            "/twin/flows/pts_secret", params=WINDOW, headers=served.auth("outsider")
        ).status_code
        == 403
    )


def test_flows_bbox_and_bad_requests(served: ServedCity) -> None:
    h = served.auth("admin")
    far = {**WINDOW, "bbox": "0,0,1,1"}
    assert served.client.get("/twin/flows/pts_public", params=far, headers=h).json()["trips"] == 0
    r = served.client.get("/twin/flows/districts", params=WINDOW, headers=h)
    assert r.status_code == 422 and "point_st" in r.text
    assert served.client.get("/twin/flows/pts_public", headers=h).status_code == 422


def test_road_speeds_match_fixes_to_the_nearest_segment() -> None:
    roads = pd.DataFrame(
        {
            "id": [10, 20],
            "geometry": [
                shapely.LineString([(116.30, 39.90), (116.31, 39.90)]).wkb,
                shapely.LineString([(116.30, 39.91), (116.31, 39.91)]).wkb,
            ],
        }
    )
    t = pd.to_datetime(
        [
            "2026-03-02T08:01Z",
            "2026-03-02T08:05Z",
            "2026-03-02T08:20Z",
            "2026-03-02T08:02Z",
            "2026-03-02T08:03Z",
        ]
    )
    pts = pd.DataFrame(
        {
            "t": t,
            "x": [116.301, 116.305, 116.305, 116.305, 116.305],
            "y": [39.90001, 39.89999, 39.9, 39.90999, 39.95],  # the last is 4 km from any road
            "speed_kmh": [20.0, 40.0, 50.0, 0.0, 70.0],  # a parked fix does not count
        }
    )
    got = road_speeds(pts, roads, "15min")
    assert got.to_dict("records") == [
        {"id": 10, "t": pd.Timestamp("2026-03-02T08:00Z"), "speed_kmh": 30.0, "n_points": 2},
        {"id": 10, "t": pd.Timestamp("2026-03-02T08:15Z"), "speed_kmh": 50.0, "n_points": 1},
    ]

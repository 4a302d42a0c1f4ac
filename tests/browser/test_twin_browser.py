"""The dashboard in headless Chromium: log in, every layer, the basemap from the city's vector
tiles (with the token), the water, the time slider, the station forecast from the deployed
model, trajectory playback, brushing, live positions, the citizen's narrower view, both
languages, and acting on events from the map (when the governance routes are served)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from tests.browser.conftest import Dashboard, TwinCity

pytestmark = pytest.mark.browser

LAYERS = [
    "districts",
    "water",
    "flows",
    "roads",
    "speed",
    "labels",
    "pois",
    "hexagon",
    "od",
    "trips",
    "vehicles",
    "series",
    "forecast",
    "events",
    "warnings",
]
GOVERN = ("events", "warnings")
THEMES = ("all", "traffic", "safety", "environment", "hazmat")
#: the station chart has its forecast (from the predict endpoint or, failing that, a fallback)
FORECAST_DONE = (
    "['predict', 'dataset', 'none'].includes("
    "document.querySelector('#chart-station').dataset.forecast)"
)


def wait_layer(d: Dashboard, layer: str, present: bool = True) -> None:
    d.page.wait_for_function(
        "([k, on]) => window.twin.layerIds().includes(k) === on",
        arg=[layer, present],
        timeout=30_000,
    )


def test_login_every_layer_toggles_and_a_screenshot_per_view(
    dashboard: Any, twin_city: TwinCity, artifacts: Path
) -> None:
    d = dashboard().login("commander")
    assert d.page.locator("#who").inner_text().startswith("commander")
    # every request went to the CityOS API itself, with the token (no other host)
    assert all(u.startswith(twin_city.url) for u in d.requests)
    with twin_city.api("commander") as api:
        readable = {x["name"] for x in api.get("/twin/layers").json()}
        govern = api.get("/govern/events").status_code != 404
    assert {"districts", "roads", "pois", "vehicles", "road_speeds", "sensor_readings"} <= readable
    for k in LAYERS:
        box = d.page.locator(f"#layer-{k}")
        note = d.page.locator(f"#note-{k}").inner_text()
        if k in GOVERN and not govern:
            assert "not available" in note  # degrades cleanly without /govern
            continue
        box.check()
        wait_layer(d, k)
        box.uncheck()
        wait_layer(d, k, False)
    d.page.locator("#time").fill("500")  # mid-window: the fleet is on the road
    for th in THEMES:
        d.page.click(f"#theme-{th}")
        d.settle(800)
        d.js("window.twin.idle()")  # every basemap tile in view drawn
        d.page.screenshot(path=str(artifacts / f"view-{th}.png"))
    assert set(d.layer_ids()) >= {"districts", "roads", "labels", "trips"}  # the hazmat view


def test_time_slider_changes_sensor_colours(dashboard: Any, artifacts: Path) -> None:
    d = dashboard().login("commander")
    d.page.click("#theme-environment")
    # the station's lowest and highest reading inside the window, as slider positions
    lo, hi, lon, lat, sid = d.js(
        """() => {
      const s = window.twin.state.series, st = s.stations[0];
      let best = [null, null];
      for (let i = 0; i <= 100; i++) {
        const f = i / 100, tm = s.win[0] + f * (s.win[1] - s.win[0]);
        let v = NaN, bt = -Infinity;
        for (const r of st.rows) if (s.t[r] <= tm && s.t[r] > bt) { bt = s.t[r]; v = s.v[r]; }
        if (!Number.isFinite(v) || tm - bt > 3600000) continue;
        if (best[0] === null || v < best[0][1]) best[0] = [f, v];
        if (best[1] === null || v > best[1][1]) best[1] = [f, v];
      }
      return [best[0][0], best[1][0], st.x, st.y, String(st.id)];
    }"""
    )
    colours = {}
    for name, f in (("low", lo), ("high", hi)):
        d.page.locator("#time").fill(str(round(f * 1000)))
        d.settle(600)
        colours[name] = d.pixel(lon, lat)
        d.page.screenshot(path=str(artifacts / f"slider-{name}.png"))
    low, high = colours["low"], colours["high"]
    # green for the low reading, red for the high one (the ramp of the series layer)
    assert low[1] - high[1] > 60 and high[0] > low[0], colours
    x, y = d.js("([a, b]) => window.twin.project(a, b)", [lon, lat])
    picked = d.js("([x, y]) => window.twin.pick(x, y, ['series'])", [x, y])
    assert picked and str(picked["object"]["id"]) == sid
    # clicking the station charts its series with the deployed model's forecast
    d.page.mouse.click(x, y)
    d.page.wait_for_function(
        f"document.querySelector('#chart-station').dataset.station === '{sid}'"
    )
    d.page.wait_for_function(FORECAST_DONE)
    assert "predicted" in d.page.locator("#chart-station").inner_text()


def test_trajectory_playback_moves_the_trips(dashboard: Any, artifacts: Path) -> None:
    d = dashboard().login("commander")
    d.page.click("#theme-traffic")
    wait_layer(d, "trips")
    d.page.locator("#time").fill("300")
    d.settle(500)
    t0 = d.js("window.twin.trips()")
    before = d.page.locator("#map").screenshot()
    d.page.click("#play")
    d.page.wait_for_function(f"window.twin.trips() > {t0} + 60", timeout=20_000)
    d.page.click("#play")  # pause
    assert d.js("window.twin.state.playing") is False
    d.settle(300)
    after = d.page.locator("#map").screenshot(path=str(artifacts / "playback.png"))
    assert before != after
    assert d.js("window.twin.state.moving.n") > 0


def test_brushing_a_region_requeries_and_updates_the_chart(
    dashboard: Any, twin_city: TwinCity
) -> None:
    d = dashboard().login("commander")
    box = d.page.locator("#map").bounding_box()
    assert box is not None
    d.page.click("#brush")
    seen = []
    for fx0, fy0, fx1, fy1 in ((0.35, 0.35, 0.55, 0.55), (0.2, 0.2, 0.8, 0.8)):
        m = d.page.mouse
        m.move(box["x"] + box["width"] * fx0, box["y"] + box["height"] * fy0)
        m.down()
        m.move(box["x"] + box["width"] * fx1, box["y"] + box["height"] * fy1, steps=5)
        m.up()
        prev = seen[-1][0] if seen else ""
        d.page.wait_for_function(
            f"(document.querySelector('#chart-region').dataset.bbox || '') !== '{prev}'"
        )
        d.page.wait_for_function(
            "Number(document.querySelector('#chart-region').dataset.points) > 0"
        )
        bbox = d.page.locator("#chart-region").get_attribute("data-bbox")
        rows = int(d.page.locator("#chart-region").get_attribute("data-rows") or -1)
        w0, w1 = d.js("window.twin.state.moving.win")
        with twin_city.api("commander") as api:
            r = api.get(
                "/twin/layers/vehicles.arrow",
                params={"bbox": bbox, "start": int(w0), "end": int(w1) + 1, "columns": "id"},
            )
        assert rows == int(r.headers["X-Total-Count"]) > 0
        seen.append((bbox, rows))
    assert seen[0][1] < seen[1][1]  # the larger region holds more fixes
    # brushing a time range on the chart narrows the window and re-queries every layer
    w0, w1 = d.js("window.twin.state.moving.win")
    chart = d.page.locator("#chart-region svg").bounding_box()
    assert chart is not None
    m = d.page.mouse
    m.move(chart["x"] + chart["width"] * 0.3, chart["y"] + chart["height"] * 0.5)
    m.down()
    m.move(chart["x"] + chart["width"] * 0.6, chart["y"] + chart["height"] * 0.5, steps=4)
    m.up()
    d.page.wait_for_function(f"window.twin.state.moving.win[0] > {w0}")
    n0, n1 = d.js("window.twin.state.moving.win")
    assert w0 < n0 < n1 < w1


def test_live_positions_from_the_store(dashboard: Any, twin_city: TwinCity) -> None:
    d = dashboard().login("commander")
    store = twin_city.store
    info = store.describe("vehicles").to_dict()
    t = pd.Timestamp(info["t_max"]) + pd.Timedelta("30s")
    cx, cy = d.js("[window.twin.map().getCenter().lng, window.twin.map().getCenter().lat]")
    d.page.check("#live")
    d.page.wait_for_function("window.twin.state.frac === 1")
    store.append(
        "vehicles",
        pd.DataFrame(
            {
                "id": ["live-7"],
                "t": [t],
                "x": [cx],
                "y": [cy],
                "kind": ["taxi"],
                "speed_kmh": [30.0],
                "heading": [0.0],
                "trip_id": [1],
            }
        ),
    )
    d.page.wait_for_function("window.twin.state.moving.ids.includes('live-7')", timeout=30_000)
    d.page.uncheck("#live")


def test_citizen_sees_only_what_it_may_read(dashboard: Any, twin_city: TwinCity) -> None:
    d = dashboard().login("citizen")
    with twin_city.api("citizen") as api:
        readable = {x["name"] for x in api.get("/twin/layers").json()}
        assert api.get("/twin/layers/vehicles.arrow").status_code == 403
    assert "vehicles" not in readable and "districts" in readable
    d.page.click("#theme-traffic")
    d.settle(500)
    assert "vehicles" not in d.layer_ids() and "trips" not in d.layer_ids()
    assert "roads" in d.layer_ids()
    fetched = {u.split("/twin/layers/")[1].split(".arrow")[0] for u in d.requests if ".arrow" in u}
    assert fetched and fetched <= readable


def test_chinese_and_english(dashboard: Any, artifacts: Path) -> None:
    d = dashboard().login("commander")
    d.page.click("header button.lang[data-lang='zh']")
    assert d.page.locator("header strong").inner_text() == "CityOS 城市数字孪生"
    assert d.page.locator("#theme-traffic").inner_text() == "交通"
    assert "今日事件" in d.page.locator("#kpis").inner_text()
    d.page.screenshot(path=str(artifacts / "view-zh.png"))
    d.page.click("header button.lang[data-lang='en']")
    assert d.page.locator("#theme-traffic").inner_text() == "Traffic"


def test_dispatch_an_event_from_the_map_seen_on_a_second_page(
    dashboard: Any, twin_city: TwinCity, artifacts: Path
) -> None:
    from tests.conftest import require

    with twin_city.api("commander") as api:
        r = api.get("/govern/events", params={"status": "received", "limit": 50})
        require(
            r.status_code != 404, "the governance routes (/govern/*, branch govcore) are not served"
        )
        events = r.json() if isinstance(r.json(), list) else r.json().get("events", [])
        require(bool(events), "no received event in the demo city")
        ev = events[0]
        depts = [d["code"] for d in api.get("/govern/departments").json()]
        dept = next(d for d in depts if d.startswith("city-"))
    a = dashboard().login("commander")
    b = dashboard().login("commander")
    a.page.click("#theme-safety")
    a.settle(500)
    # an event the click lands on (events near the same POI overlap)
    for cand in events:
        x, y = a.js("([p, q]) => window.twin.project(p, q)", [cand["x"], cand["y"]])
        hit = a.js("([x, y]) => window.twin.pick(x, y, ['events'])", [x, y])
        if hit and hit["object"]["id"] == cand["id"]:
            ev = cand
            break
    else:
        raise AssertionError("no received event can be clicked on its own")
    a.page.mouse.click(x, y)
    a.page.wait_for_selector("#ev-dispatch")
    a.page.select_option("#ev-dept", dept)
    a.page.click("#ev-dispatch")
    with twin_city.api("commander") as api:
        try:
            a.page.wait_for_function(
                f"window.twin.state.events.find(e => e.id === '{ev['id']}').status === 'dispatched'"
            )
        except Exception:
            a.page.screenshot(path=str(artifacts / "dispatch-failed.png"))
            raise AssertionError(
                a.js(f"JSON.stringify(window.twin.state.events.filter(e => e.id === '{ev['id']}'))")
                + a.page.locator("#ev-error").inner_text()
            ) from None
        got = api.get(f"/govern/events/{ev['id']}").json()
        got = got.get("event", got)
        assert got["status"] == "dispatched" and got["department"] == dept
    # the second page learns it over the live stream
    b.page.wait_for_function(
        f"window.twin.state.events.find(e => e.id === '{ev['id']}').status === 'dispatched'",
        timeout=20_000,
    )
    a.page.screenshot(path=str(artifacts / "dispatch.png"))
    # acknowledge an open warning from the map, seen through the API and on the other page
    with twin_city.api("commander") as api:
        ws = [w for w in api.get("/govern/warnings", params={"status": "open"}).json()]
    for w in ws:
        x, y = a.js("([p, q]) => window.twin.project(p, q)", [w["x"], w["y"]])
        hit = a.js("([x, y]) => window.twin.pick(x, y, ['warnings'])", [x, y])
        if hit and hit["object"]["id"] == w["id"]:
            break
    else:
        raise AssertionError("no open warning can be clicked on its own")
    a.page.mouse.click(x, y)
    a.page.click("#w-ack")
    with twin_city.api("commander") as api:
        a.page.wait_for_function(
            "document.querySelector('#w-status')?.textContent === 'acknowledged'"
        )
        got = next(q for q in api.get("/govern/warnings").json() if q["id"] == w["id"])
        assert got["status"] == "acknowledged"
    b.page.wait_for_function(
        f"window.twin.state.warnings.find(q => q.id === '{w['id']}').status === 'acknowledged'",
        timeout=20_000,
    )


def _water_point(twin_city: TwinCity) -> tuple[float, float]:
    """A point well inside the largest lake (nothing else is drawn there in the test)."""
    import shapely

    w = twin_city.store.scan("water").table.to_pandas()
    lakes = w[w["kind"] == "lake"]
    g = shapely.from_wkb(lakes.sort_values("area_m2")["geometry"].iloc[-1])
    p = shapely.buffer(g, -0.0008).representative_point()
    return (p.x, p.y)


def test_water_from_vector_tiles_toggles_and_is_drawn(
    dashboard: Any, twin_city: TwinCity, artifacts: Path
) -> None:
    d = dashboard().login("commander")
    lon, lat = _water_point(twin_city)
    d.js("window.twin.only(['water'])")
    d.js("window.twin.idle()")
    assert d.js("window.twin.rendered('water')") > 0
    assert d.layer_ids() == ["water"]
    on = d.pixel(lon, lat)
    d.page.screenshot(path=str(artifacts / "water.png"))
    assert on[2] > on[0] + 60 and on[2] > 140, on  # the lake's blue
    d.page.locator("#layer-water").uncheck()
    wait_layer(d, "water", False)
    d.js("window.twin.idle()")
    off = d.pixel(lon, lat)
    assert off[2] < 60 and abs(off[2] - on[2]) > 80, (on, off)  # the dark background
    assert d.js("window.twin.rendered('water')") == 0
    d.page.locator("#layer-water").check()
    wait_layer(d, "water")


def test_basemap_tiles_are_requested_with_the_token(dashboard: Any, twin_city: TwinCity) -> None:
    import httpx

    d = dashboard()
    tiles: list[tuple[str, str | None]] = []
    d.page.on(
        "request",
        lambda r: (
            tiles.append((r.url, r.headers.get("authorization"))) if "/tiles/" in r.url else None
        ),
    )
    d.login("commander")
    d.js("window.twin.idle()")
    asked = {u.split("/tiles/")[1].split("/")[0] for u, _ in tiles}
    assert {"districts", "water", "roads", "pois"} <= asked
    # every tile request carried the logged-in user's own token
    sent = {a for _, a in tiles}
    assert len(sent) == 1 and None not in sent
    auth = sent.pop()
    assert auth is not None and auth.startswith("Bearer ")
    me = httpx.get(f"{twin_city.url}/auth/me", headers={"Authorization": auth})
    assert me.json()["username"] == "commander"
    token = auth.removeprefix("Bearer ")
    url = next(u for u, _ in tiles if "/tiles/water/" in u)
    # the same tile: refused without the token, answered with it
    assert httpx.get(url).status_code == 401
    r = httpx.get(url, headers={"Authorization": f"Bearer {token}"})
    assert r.status_code == 200 and b"water" in r.content
    # and a citizen may not read the fleet's tiles
    z, x, y = url.split("/tiles/water/")[1].removesuffix(".mvt").split("/")
    r = httpx.get(
        f"{twin_city.url}/tiles/vehicles/{z}/{x}/{y}.mvt",
        headers={"Authorization": f"Bearer {twin_city.token('citizen')}"},
    )
    assert r.status_code == 403


def _click_station(d: Dashboard) -> str:
    d.page.click("#theme-environment")
    sid, lon, lat = d.js(
        "(() => { const s = window.twin.state.series.stations[1]; return [String(s.id), s.x, s.y]; })()"
    )
    x, y = d.js("([a, b]) => window.twin.project(a, b)", [lon, lat])
    d.page.mouse.click(x, y)
    d.page.wait_for_function(
        f"document.querySelector('#chart-station').dataset.station === '{sid}'"
    )
    return str(sid)


def test_station_forecast_comes_from_the_predict_endpoint(
    dashboard: Any, twin_city: TwinCity
) -> None:
    d = dashboard().login("commander")
    d.page.locator("#time").fill("400")
    asked: list[dict[str, Any]] = []
    d.page.on(
        "request",
        lambda r: (
            asked.append({"url": r.url, "body": r.post_data_json}) if "/predict" in r.url else None
        ),
    )
    sid = _click_station(d)
    d.page.wait_for_function(FORECAST_DONE)
    box = d.page.locator("#chart-station")
    assert box.get_attribute("data-forecast") == "predict", box.inner_text()
    req = next(a for a in asked if a["body"] and a["body"].get("ids") == [sid])
    # the chart holds exactly what the endpoint answers for that station and time
    with twin_city.api("commander") as api:
        r = api.post(req["url"].removeprefix(twin_city.url), json=req["body"])
    assert r.status_code == 200
    preds = [p for p in r.json()["predictions"] if p["id"] == sid]
    assert preds and int(box.get_attribute("data-predicted") or -1) == len(preds)
    assert "predicted" in box.inner_text() and r.json()["model"] in box.inner_text()


def test_station_forecast_falls_back_clearly_without_a_deployed_model(
    dashboard: Any, twin_city: TwinCity
) -> None:
    from cityos.ai._registry import ModelRegistry

    reg = ModelRegistry.of(twin_city.store)
    deployed = [v for v in reg.list_models() if v.stage == "production"]
    assert deployed
    for v in deployed:
        reg.transition(v.name, v.version, "staging", actor="test", reason="fallback test")
    try:
        d = dashboard().login("commander")
        _click_station(d)
        d.page.wait_for_function(FORECAST_DONE)
        box = d.page.locator("#chart-station")
        assert box.get_attribute("data-forecast") in ("dataset", "none")
        assert "no deployed model" in d.page.locator("#station-note").inner_text()
    finally:
        for v in deployed:
            reg.transition(v.name, v.version, "production", actor="test", reason="restore")

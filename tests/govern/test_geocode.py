"""The local geocoder over the generated city's own gazetteer (POIs, enterprises, the
organisation's districts, streets and grids): real names in English and Chinese, in
the generated reports' own landmark phrasing, with typos; refusals below the threshold;
Open311 address-only requests over HTTP (and reverse-filled addresses) on SQLite and
PostgreSQL."""

from __future__ import annotations

import random
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

from cityos import access
from cityos.config import Settings
from cityos.govern import Governance, IntakeError, generate_organisation
from cityos.govern._geocode import Geocoder, geocoder_for, parse, reverse_geocode, to_zh
from cityos.govern._tables import EventRow
from cityos.govern.hazchem import load_world
from cityos.store import Store
from cityos.synth import make_city
from cityos.synth._hazchem import make_hazchem
from cityos.synth._reports import _EN_LANDMARK, _ZH_LANDMARK
from cityos.testing.postgres import fresh_database

from .conftest import SECRET, add_places


@dataclass
class Named:
    store: Store
    gov: Governance
    client: Any
    key: str


def _build(home: Path, url: str) -> Named:
    from cityos.server import create_app

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from fastapi.testclient import TestClient

    settings = Settings(home=home, database_url=url, secret_key=SECRET)
    store = Store(settings=settings)
    city = make_city(seed=7, size_km=8.0, n_districts=6)
    add_places(store, city)
    load_world(store, make_hazchem(city, 6, days=1, seed=1))  # enterprises
    generate_organisation(store.db, store, streets_per_district=2, grids_per_street=4)
    gov = Governance(store.db, store, webhooks=False)
    app = create_app(settings, store=store)
    app.state.governance = gov
    key = access.create_api_key(store.db, "citizen1")[1]
    return Named(store, gov, TestClient(app), key)


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def named(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Named]:
    home = tmp_path_factory.mktemp("geo")
    url = (
        f"sqlite:///{home / 'cityos.db'}"
        if request.param == "sqlite"
        else fresh_database(request.getfixturevalue("pg_url"))
    )
    n = _build(home, url)
    yield n
    n.client.close()
    n.store.close()


def _points(n: Named) -> list[Any]:
    return [f for f in geocoder_for(n.gov).features if f.kind == "poi"]


def test_parse_and_chinese_names() -> None:
    assert parse("东城区第十二学校南边路口").numbers == ("12",)
    assert parse("near #7, by the gate of Haidian Park").words == ("haidian", "park")
    assert to_zh("Haidian Gas Station No.7") == "海淀加油站7号"
    assert to_zh("Small chemical site 3") == "小化工点3号"
    assert to_zh("Atlantis Temple No.1") is None  # no word for it: no Chinese name


def test_every_real_name_in_report_phrasing_is_found(named: Named) -> None:
    g = geocoder_for(named.gov)
    pts = _points(named)
    assert {f.dataset for f in pts} == {"pois", "enterprises"}
    assert {f.kind for f in g.features} == {"poi", "district", "street", "community"}
    rng = random.Random(5)
    wrong, refused, n = [], [], 0
    for f in pts:
        zh = to_zh(f.name)
        assert zh is not None, f.name
        for q in (
            rng.choice(_EN_LANDMARK).format(p=f.name),
            rng.choice(_ZH_LANDMARK).format(p=zh),
            f.name.upper().replace("NO.", "#"),
        ):
            n += 1
            hit = g.geocode(q)
            if hit is None or hit.confidence < g.threshold:
                refused.append(q)
            elif (hit.x, hit.y) != (f.x, f.y) and hit.feature.name != f.name:
                wrong.append((q, hit.feature.name))
    assert not wrong and not refused, (wrong[:5], refused[:5], n)


def test_typos_grids_and_refusals(named: Named) -> None:
    g = geocoder_for(named.gov)
    f = next(p for p in _points(named) if "School" in p.name)
    district = f.name.split()[0]
    typo = f.name.replace("School", "Shool").replace(district, district[:-1])
    hit = g.locate(typo)
    assert hit.feature == f and hit.confidence < 1.0
    grid = next(x for x in g.features if x.kind == "community")
    for q in (grid.name, to_zh(grid.name) or "", f"{grid.name} 社区"):
        hit = g.locate(q)
        assert hit.feature == grid and hit.confidence == pytest.approx(0.85)
    # a district or a street is an area, not a place: never good enough
    for unit in (next(x for x in g.features if x.kind == k) for k in ("district", "street")):
        h = g.geocode(unit.name)
        assert h is not None and h.feature == unit and h.confidence < g.threshold
        with pytest.raises(IntakeError) as exc:
            g.locate(unit.name)
        assert exc.value.field == "address_string"
    # a house number this city does not have, words of no place, a bare kind of place
    for q in (f"{district} School No.999", "路灯不亮了，晚上很黑", "the park", "1 Main St"):
        with pytest.raises(IntakeError, match="address_string"):
            g.locate(q)
    # two places alike (the same name at two far-apart sites): ambiguous, refused
    two = Geocoder(
        [
            type(f)("poi", "a", "1", "Riverside Park", 116.30, 39.90),
            type(f)("poi", "a", "2", "Riverside Park", 116.50, 39.90),
        ]
    )
    h = two.geocode("Riverside Park")
    assert h is not None and h.runner_up is not None and h.confidence < two.threshold


def test_python_intake_with_an_address_only(named: Named) -> None:
    g = named.gov
    f = next(p for p in _points(named) if p.dataset == "enterprises")
    r = g.intake("hazchem", address=f"{to_zh(f.name)}附近有刺鼻气味", description="气味")
    assert (r.event.x, r.event.y) == (f.x, f.y) and r.event.district is not None
    before = g.events(limit=None)
    with pytest.raises(IntakeError) as exc:
        g.intake("hazchem", address="somewhere over the rainbow")
    assert exc.value.field == "address"
    assert len(g.events(limit=None)) == len(before)


def _n_events(n: Named) -> int:
    with n.store.db.session() as s:
        return int(s.scalar(select(func.count()).select_from(EventRow)) or 0)


def test_open311_address_only_over_http(named: Named) -> None:
    c, g = named.client, named.gov
    f = next(p for p in _points(named) if "Hospital" in p.name)
    form = {"api_key": named.key, "service_code": "road", "description": "deep hole"}
    r = c.post("/open311/v2/requests.json", data={**form, "address_string": f"opposite {f.name}"})
    assert r.status_code == 201, r.text
    body = r.json()[0]
    e = g.event(body["service_request_id"])
    assert (e.x, e.y) == (f.x, f.y) and e.address == f"opposite {f.name}"
    assert f"located at {f.name}" in body["service_notice"]
    # a gazetteer id as address_id is exact
    r = c.post("/open311/v2/requests.json", data={**form, "address_id": f"{f.dataset}:{f.id}"})
    assert r.status_code == 201 and g.event(r.json()[0]["service_request_id"]).x == f.x
    # below the threshold: the spec's 400 naming address_string; nothing stored
    before = _n_events(named)
    for data in ({"address_string": "the big tree"}, {"address_id": "pois:nope"}):
        bad = c.post("/open311/v2/requests.json", data={**form, **data})
        assert bad.status_code == 400
        (err,) = bad.json()
        assert err["code"] == 400 and next(iter(data)) in err["description"]
    x = c.post("/open311/v2/requests.xml", data={**form, "address_string": "nowhere at all"})
    assert x.status_code == 400 and b"<errors><error><code>400</code>" in x.content
    assert b"address_string" in x.content
    assert _n_events(named) == before
    # lat/long without an address: the address is filled in from the gazetteer
    r = c.post(
        "/open311/v2/requests.json",
        data={**form, "lat": str(f.y + 0.0004), "long": str(f.x)},
    )
    e = g.event(r.json()[0]["service_request_id"])
    assert e.address.startswith(f"near {f.name}, ") and e.address == reverse_geocode(g, e.x, e.y)
    public = c.get(f"/open311/v2/requests/{e.id}.json").json()[0]
    assert public["address"] == e.address

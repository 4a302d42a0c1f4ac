"""GET /govern/search and GET /govern/enterprises/{id} through access: authenticated,
rights-bounded (a user never finds what they may not read), 4xx naming the field."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from cityos import access
from cityos.govern.hazchem import load_world
from cityos.synth import make_city
from cityos.synth._hazchem import make_hazchem

from .conftest import SECRET, Served, build_served


@pytest.fixture(scope="module")
def served_intel(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Served, str]]:
    home = tmp_path_factory.mktemp("intel")
    s, live = build_served(home, f"sqlite:///{home / 'cityos.db'}")
    store = s.city.store
    w = make_hazchem(make_city(size_km=6.0), 3, days=1, seed=2)
    load_world(store, w)
    db = store.db
    for ds in ("enterprises", "permits", "hazchem_vehicles", "hazchem_gps"):
        access.set_dataset_policy(db, ds, "sensitive")
    access.create_role(db, "hazchem_inspector")
    for ds in ("enterprises", "permits", "hazchem_vehicles"):
        access.grant(db, "hazchem_inspector", ds, "read")
    access.assign_role(db, "disp", "hazchem_inspector")
    access.grant(db, "dispatcher", "events", "read")  # the events dataset is internal
    s.tokens["disp"] = access.issue_token(access.principal_for(db, "disp"), SECRET)
    s.city.gov.intake(
        "garbage",
        x=0.3,
        y=0.3,
        description="垃圾桶满了没人清 rubbish bins overflowing",
        reporter="ann",
    )
    plant = str(w.enterprises[w.enterprises["kind"] == "chemical_plant"]["id"].iloc[0])
    yield s, plant
    live.stop()
    s.client.close()
    store.close()


def test_search_finds_only_what_the_caller_may_read(served_intel: tuple[Served, str]) -> None:
    s, plant = served_intel
    r = s.client.get("/govern/search", params={"q": "chemical plant"}, headers=s.auth("disp"))
    assert r.status_code == 200, r.text
    hits = r.json()["hits"]
    assert hits and hits[0]["kind"] == "enterprise" and hits[0]["id"] == plant
    r = s.client.get("/govern/search", params={"q": "chemical plant"}, headers=s.auth("ann"))
    assert r.status_code == 200 and all(h["kind"] != "enterprise" for h in r.json()["hits"])
    r = s.client.get("/govern/search", params={"q": "垃圾桶"}, headers=s.auth("disp"))
    assert [h["kind"] for h in r.json()["hits"]][:1] == ["event"]
    r = s.client.get("/govern/search", params={"q": "垃圾桶"}, headers=s.auth("road1"))
    assert r.status_code == 200 and r.json()["hits"] == []  # no read on events: finds nothing
    assert s.client.get("/govern/search", params={"q": "x"}).status_code == 401


def test_search_rejects_bad_filters_naming_the_field(served_intel: tuple[Served, str]) -> None:
    s, _ = served_intel
    for params, field in (
        ({"q": "a", "bbox": "1,2,3"}, "bbox"),
        ({"q": "a", "start": "yesterday-ish"}, "start"),
        ({"q": "a", "kinds": "events"}, "kinds"),
    ):
        r = s.client.get("/govern/search", params=params, headers=s.auth("disp"))
        assert r.status_code == 422 and r.json()["field"] == field, r.text


def test_enterprise_archive_route(served_intel: tuple[Served, str]) -> None:
    s, plant = served_intel
    r = s.client.get(f"/govern/enterprises/{plant}", headers=s.auth("disp"))
    assert r.status_code == 200, r.text
    a = r.json()
    assert a["enterprise"]["id"] == plant and a["permits"] and a["vehicles"]
    assert s.client.get(f"/govern/enterprises/{plant}", headers=s.auth("ann")).status_code == 403
    assert s.client.get("/govern/enterprises/ENT-9999", headers=s.auth("disp")).status_code == 404

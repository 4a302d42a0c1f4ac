"""Open311 GeoReport v2 conformance, written from the spec (wiki.open311.org/GeoReport_v2)
and checked with an existing client (``georeport``, over real HTTP) and FixMyStreet's
request shapes (form-encoded ``attribute[code]``, ``api_key``, ``jurisdiction_id``; the
``servicerequestupdates`` extension). JSON and XML; the spec's error format."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from datetime import timedelta
from typing import Any

import pytest
import xmltodict
from georeport import GeoReport
from sqlalchemy import func, select

from cityos.govern import load_organisation
from cityos.govern._tables import EventRow

from .conftest import Served

SERVICE_FIELDS = {
    "service_code",
    "service_name",
    "description",
    "metadata",
    "type",
    "keywords",
    "group",
}
REQUEST_FIELDS = {
    "service_request_id",
    "status",
    "status_notes",
    "service_name",
    "service_code",
    "description",
    "agency_responsible",
    "service_notice",
    "requested_datetime",
    "updated_datetime",
    "expected_datetime",
    "address",
    "address_id",
    "zipcode",
    "lat",
    "long",
    "media_url",
}


def post(s: Served, fmt: str = "json", headers: dict[str, str] | None = None, **form: Any) -> Any:
    data = {"api_key": s.keys["app"], "jurisdiction_id": "city", **form}
    data = {k: v for k, v in data.items() if v is not None}
    return s.client.post(f"/open311/v2/requests.{fmt}", data=data, headers=headers or {})


def n_events(s: Served) -> int:
    with s.city.db.session() as ss:
        return int(ss.scalar(select(func.count()).select_from(EventRow)) or 0)


def errors_of(r: Any) -> list[dict[str, Any]]:
    if r.headers["content-type"].startswith("text/xml"):
        root = ET.fromstring(r.content)
        assert root.tag == "errors"
        return [
            {"code": int(e.findtext("code") or 0), "description": e.findtext("description")}
            for e in root
        ]
    body = r.json()
    assert isinstance(body, list)
    return body


def test_service_list_and_definition_with_a_client(served: Served) -> None:
    for fmt in ("json", "xml"):
        c = GeoReport(served.base_url + "/open311/v2", jurisdiction="city", output_format=fmt)
        services = c.get_service_list()
        by = {s["service_code"]: s for s in services}
        assert set(by) == {"pothole", "garbage", "leak"}
        assert set(by["pothole"]) == SERVICE_FIELDS
        assert (
            str(by["pothole"]["metadata"]).lower() == "true"
            and str(by["garbage"]["metadata"]).lower() == "false"
        )
        assert by["pothole"]["type"] == "realtime" and by["pothole"]["group"] == "roads"
        d = c.get_service_definition("pothole")
        assert d["service_code"] == "pothole"
        attrs = d["attributes"] if fmt == "json" else d["attributes"]["attribute"]
        sev = next(a for a in attrs if a["code"] == "severity")
        assert sev["datatype"] == "singlevaluelist" and str(sev["required"]).lower() == "true"
        values = sev["values"] if fmt == "json" else sev["values"]["value"]
        assert [v["key"] for v in values] == ["1", "2"] and [v["name"] for v in values] == [
            "minor",
            "bad",
        ]
        assert [int(a["order"]) for a in attrs] == sorted(int(a["order"]) for a in attrs)
    r = served.client.get("/open311/v2/services.xml")
    assert r.headers["content-type"] == "text/xml; charset=utf-8"
    assert r.content.startswith(b'<?xml version="1.0" encoding="utf-8"?>')
    for fmt in ("json", "xml"):
        r = served.client.get(f"/open311/v2/services/nosuch.{fmt}")
        assert (
            r.status_code == 404
            and errors_of(r)[0]["code"] == 404
            and "nosuch" in errors_of(r)[0]["description"]
        )
    r = served.client.get("/open311/v2/services.json?jurisdiction_id=atlantis")
    assert r.status_code == 404 and "atlantis" in r.json()[0]["description"]
    assert served.client.get("/open311/v2/services.csv").status_code == 404
    d = served.client.get("/open311/v2/discovery.json").json()
    assert d["endpoints"][0]["specification"] == "http://wiki.open311.org/GeoReport_v2"


def test_post_request_fixmystreet_shape_json_and_xml(served: Served) -> None:
    r = post(
        served,
        service_code="pothole",
        lat="0.25",
        long="0.25",
        **{"attribute[severity]": "2"},
        email="ann@example.org",
        first_name="Ann",
        last_name="Lee",
        phone="555-0100",
        description="Deep pothole by the school",
        media_url="https://img.example.org/p.jpg",
        address_string="1 School Lane",
        device_id="dev-1",
    )
    assert r.status_code == 201, r.text
    body = r.json()
    assert len(body) == 1 and set(body[0]) == {"service_request_id", "service_notice", "account_id"}
    rid = body[0]["service_request_id"]
    e = served.city.gov.event(rid)
    assert (e.service_code, e.channel, e.attributes, e.address) == (
        "pothole",
        "open311",
        {"severity": "2"},
        "1 School Lane",
    )
    rep = served.city.gov.reports(rid)[0]
    assert (
        rep.contact
        == {
            "email": "ann@example.org",
            "first_name": "Ann",
            "last_name": "Lee",
            "phone": "555-0100",
            "device_id": "dev-1",
        }
        and rep.reporter == "app"
    )
    rx = post(served, "xml", service_code="garbage", lat="0.3", long="0.31", description="bins")
    assert rx.status_code == 201
    doc = xmltodict.parse(rx.content)
    assert doc["service_requests"]["request"]["service_request_id"].startswith("E-")
    # one request shows the spec's fields, in JSON and in XML
    one = served.client.get(f"/open311/v2/requests/{rid}.json").json()
    assert len(one) == 1 and set(one[0]) == REQUEST_FIELDS
    assert (
        one[0]["status"] == "open"
        and one[0]["lat"] == pytest.approx(0.25)
        and one[0]["long"] == pytest.approx(0.25)
    )
    assert one[0]["requested_datetime"] == "2026-03-02T08:00:00Z" or one[0][
        "requested_datetime"
    ].endswith("Z")
    assert one[0]["media_url"] == "https://img.example.org/p.jpg"
    assert "ann@example.org" not in served.client.get(f"/open311/v2/requests/{rid}.json").text
    xr = xmltodict.parse(served.client.get(f"/open311/v2/requests/{rid}.xml").content)
    assert set(xr["service_requests"]["request"]) == REQUEST_FIELDS
    c = GeoReport(served.base_url + "/open311/v2", jurisdiction="city")
    assert c.get_service_request(rid)["service_request_id"] == rid
    r404 = served.client.get("/open311/v2/requests/E-999999.xml")
    assert r404.status_code == 404 and errors_of(r404)[0]["code"] == 404


@pytest.mark.parametrize("fmt", ["json", "xml"])
def test_post_errors_spec_format_and_nothing_stored(served: Served, fmt: str) -> None:
    before = n_events(served)
    cases: list[tuple[dict[str, Any], int, str]] = [
        ({"api_key": None, "service_code": "garbage", "lat": "0.5", "long": "0.5"}, 403, "api_key"),
        (
            {"api_key": "ck_bogus_key", "service_code": "garbage", "lat": "0.5", "long": "0.5"},
            403,
            "api_key",
        ),
        (
            {
                "api_key": served.keys["nobody"],
                "service_code": "garbage",
                "lat": "0.5",
                "long": "0.5",
            },
            403,
            "governance role",
        ),
        ({"service_code": "unicorn", "lat": "0.5", "long": "0.5"}, 400, "service_code"),
        ({"lat": "0.5", "long": "0.5"}, 400, "service_code"),
        ({"service_code": "garbage"}, 400, "location"),
        ({"service_code": "garbage", "lat": "0.5"}, 400, "lat and long"),
        ({"service_code": "garbage", "address_string": "1 Main St"}, 400, "address_string"),
        ({"service_code": "garbage", "lat": "north", "long": "0.5"}, 400, "lat/long"),
        ({"service_code": "garbage", "lat": "45", "long": "45"}, 400, "outside every jurisdiction"),
        ({"service_code": "pothole", "lat": "0.5", "long": "0.5"}, 400, "attribute[severity]"),
        (
            {"service_code": "pothole", "lat": "0.5", "long": "0.5", "attribute[severity]": "7"},
            400,
            "attribute[severity]",
        ),
        ({"service_code": "garbage", "lat": "0.5", "long": "0.5", "email": "nope"}, 400, "email"),
        (
            {"service_code": "garbage", "lat": "0.5", "long": "0.5", "jurisdiction_id": "atlantis"},
            404,
            "jurisdiction_id",
        ),
    ]
    for form, code, needle in cases:
        r = post(served, fmt, **form)
        assert r.status_code == code, (form, r.text)
        errs = errors_of(r)
        assert errs[0]["code"] == code and needle in errs[0]["description"], (form, errs)
    assert n_events(served) == before


def test_idempotency_and_tokens(served: Served) -> None:
    a = post(
        served,
        headers={"Idempotency-Key": "fms-123"},
        service_code="garbage",
        lat="0.6",
        long="0.6",
    )
    b = post(
        served,
        headers={"Idempotency-Key": "fms-123"},
        service_code="garbage",
        lat="0.6",
        long="0.6",
    )
    assert a.status_code == 201 and b.status_code == 200
    assert a.json()[0]["service_request_id"] == b.json()[0]["service_request_id"]
    c = post(
        served,
        headers={"Idempotency-Key": "fms-123"},
        service_code="garbage",
        lat="0.7",
        long="0.6",
    )
    assert c.status_code == 409 and errors_of(c)[0]["code"] == 409
    load_organisation(
        served.city.db,
        {
            "services": [
                {"code": "bulky", "name": "Bulky waste", "type": "batch", "function": "sanitation"}
            ]
        },
    )
    served.city.gov.reload()
    r = post(served, service_code="bulky", lat="0.6", long="0.2")
    body = r.json()[0]
    assert "service_request_id" not in body and len(body["token"]) == 32
    for fmt in ("json", "xml"):
        t = served.client.get(f"/open311/v2/tokens/{body['token']}.{fmt}")
        assert t.status_code == 200
        row = (
            t.json()[0]
            if fmt == "json"
            else xmltodict.parse(t.content)["service_requests"]["request"]
        )
        assert row["token"] == body["token"] and row["service_request_id"].startswith("E-")
    assert served.client.get("/open311/v2/tokens/nope.json").status_code == 404


def test_get_requests_every_filter(served: Served) -> None:
    g, clock = served.city.gov, served.city.clock
    old = g.intake("leak", x=1.5, y=0.5, received_at=clock.now() - timedelta(days=100)).event.id
    a = g.intake("leak", x=1.5, y=0.6).event
    b = g.intake("garbage", x=0.5, y=0.6).event
    e = g.dispatch(b.id, "d1-sanitation", "disp", b.version, "on our way")
    e = g.transition(b.id, "accept", "san1", e.version)
    e = g.transition(b.id, "resolve", "san1", e.version, "collected")
    client = GeoReport(served.base_url + "/open311/v2", jurisdiction="city")
    ids = {r["service_request_id"] for r in client.get_service_requests()}
    assert {a.id, b.id} <= ids and old not in ids  # the default window is the last 90 days
    got = client.get_service_requests(service_request_id=f"{a.id},{b.id},{old}")
    assert {r["service_request_id"] for r in got} == {a.id, b.id, old}  # ids override the window
    leaks = {r["service_request_id"] for r in client.get_service_requests(service_code="leak")}
    assert a.id in leaks and b.id not in leaks
    closed = {r["service_request_id"]: r for r in client.get_service_requests(status="closed")}
    assert b.id in closed and a.id not in closed and closed[b.id]["status_notes"] == "collected"
    assert closed[b.id]["agency_responsible"] == "d1-sanitation"
    opened = {r["service_request_id"] for r in client.get_service_requests(status="open")}
    assert a.id in opened and b.id not in opened
    both = {r["service_request_id"] for r in client.get_service_requests(status="open,closed")}
    assert {a.id, b.id} <= both
    iso = (clock.now() - timedelta(days=101)).strftime("%Y-%m-%dT%H:%M:%SZ")
    iso2 = (clock.now() - timedelta(days=99)).strftime("%Y-%m-%dT%H:%M:%SZ")
    window = {
        r["service_request_id"] for r in client.get_service_requests(start_date=iso, end_date=iso2)
    }
    assert window == {old}
    xml_client = GeoReport(
        served.base_url + "/open311/v2", jurisdiction="city", output_format="xml"
    )
    xml_rows = xml_client.get_service_requests(service_code="leak")
    xml_rows = xml_rows if isinstance(xml_rows, list) else [xml_rows]
    assert a.id in {r["service_request_id"] for r in xml_rows}
    page = served.client.get("/open311/v2/requests.json?page_size=1&page=1").json()
    assert len(page) == 1
    for q, needle in [
        ("status=pending", "status"),
        ("start_date=yesterday", "start_date"),
        ("start_date=2026-03-01T00:00:00", "timezone"),
        ("start_date=2025-01-01T00:00:00Z&end_date=2026-01-01T00:00:00Z", "90 days"),
        ("service_code=unicorn", "service_code"),
        ("service_request_id=banana", "service_request_id"),
    ]:
        r = served.client.get(f"/open311/v2/requests.xml?{q}")
        assert r.status_code == 400 and needle in errors_of(r)[0]["description"], (q, r.text)


def test_fixmystreet_request_updates(served: Served) -> None:
    g, clock = served.city.gov, served.city.clock
    start = clock.now()
    rid = post(served, service_code="garbage", lat="0.45", long="0.45").json()[0][
        "service_request_id"
    ]
    clock.advance(minutes=5)
    e = g.event(rid)
    e = g.dispatch(rid, "d1-sanitation", "disp", e.version, "sent to sanitation")
    clock.advance(minutes=5)
    e = g.transition(rid, "accept", "san1", e.version)
    e = g.transition(rid, "resolve", "san1", e.version, "bins emptied")
    clock.advance(minutes=5)
    q = {
        "jurisdiction_id": "city",
        "api_key": served.keys["app"],
        "start_date": start.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "end_date": clock.now().strftime("%Y-%m-%dT%H:%M:%SZ"),
    }
    r = served.client.get("/open311/v2/servicerequestupdates.xml", params=q)
    assert r.status_code == 200
    ups = xmltodict.parse(r.content)["service_request_updates"]["request_update"]
    ups = ups if isinstance(ups, list) else [ups]
    mine = [u for u in ups if u["service_request_id"] == rid]
    assert [u["status"] for u in mine] == ["INVESTIGATING", "ACTION_SCHEDULED", "FIXED"]
    assert (
        mine[0]["description"] == "sent to sanitation" and mine[-1]["description"] == "bins emptied"
    )
    assert all(
        set(u)
        == {
            "update_id",
            "service_request_id",
            "status",
            "updated_datetime",
            "description",
            "media_url",
        }
        for u in mine
    )
    # the citizen says it is not fixed: FixMyStreet posts an OPEN update, the request reopens
    p = served.client.post(
        "/open311/v2/servicerequestupdates.xml",
        data={
            "api_key": served.keys["app"],
            "jurisdiction_id": "city",
            "service_request_id": rid,
            "status": "OPEN",
            "description": "still overflowing",
            "updated_datetime": clock.now().strftime("%Y-%m-%dT%H:%M:%SZ"),
            "email": "ann@example.org",
            "first_name": "Ann",
            "last_name": "Lee",
        },
    )
    assert p.status_code == 200, p.text
    assert xmltodict.parse(p.content)["service_request_updates"]["request_update"]["update_id"]
    assert g.event(rid).status == "reopened"
    bad = served.client.post(
        "/open311/v2/servicerequestupdates.json",
        data={"api_key": served.keys["app"], "service_request_id": rid, "status": "MAYBE"},
    )
    assert bad.status_code == 400 and "status" in bad.json()[0]["description"]
    noauth = served.client.post(
        "/open311/v2/servicerequestupdates.json", data={"service_request_id": rid, "status": "OPEN"}
    )
    assert noauth.status_code == 403

"""The one push endpoint, `POST /datasets/{name}/records`: authenticated and authorised by
access (write grants, audit), through the ingest pipeline (saved mapping, dead letters,
lineage), with strict JSON types."""

from __future__ import annotations

from typing import Any

import pytest

from cityos import access
from cityos.ingest import DeadLetters, Mapping
from cityos.ingest._base import ensure_dataset
from cityos.ingest._state import IngestState

from .conftest import ServedCity

READINGS: dict[str, Any] = {
    "dataset": {"name": "readings", "model": "point_series"},
    "id": {"from": "sensor"},
    "time": {"from": "ts", "timezone": "Asia/Shanghai"},
    "geometry": {"x": "lon", "y": "lat"},
    "fields": {
        "pm25": {
            "from": "pm25_mg",
            "type": "float64",
            "unit": "ug/m3",
            "source_unit": "mg/m3",
            "minimum": 0,
        },
        "label": {"type": "string"},
        "raw": {"type": "json"},
    },
}
URL = "/datasets/readings/records"


def reading(sensor: str, hour: int, **extra: Any) -> dict[str, Any]:
    return {
        "sensor": sensor,
        "ts": f"2026-03-02 {hour:02d}:00:00",
        "lon": 116.4,
        "lat": 39.9,
        "pm25_mg": 0.035,
        **extra,
    }


@pytest.fixture(scope="module")
def push_city(served: ServedCity) -> ServedCity:
    store = served.store
    ensure_dataset(store, Mapping.from_dict(READINGS), IngestState(store.db))
    access.set_dataset_policy(store.db, "readings", "sensitive")
    access.grant(store.db, "writer", "readings", "write")
    return served


def _rows(city: ServedCity) -> int:
    return city.store.describe("readings").rows


def test_push_goes_through_the_mapping_dead_letters_lineage_and_audit(
    push_city: ServedCity,
) -> None:
    c = push_city
    before = len(access.read_audit(c.store.db, limit=100_000))
    r = c.client.post(
        URL,
        headers=c.auth("writer"),
        json={"records": [reading("s1", 8), reading("s2", 8, lat=120.0)], "source": "gw-7"},
    )
    assert r.status_code == 200, r.text
    body = r.json()
    assert (body["rows_in"], body["rows_written"], body["rejected"]) == (2, 1, 1)
    assert body["problems"][0]["rule"].startswith("y:")
    # the saved mapping applied: mg/m3 -> ug/m3, local time -> UTC
    df = c.store.scan("readings").to_pandas()
    assert df["pm25"].tolist() == [35.0] and str(df["t"].iloc[0]).startswith("2026-03-02 00:00")
    [d] = [d for d in DeadLetters(c.store).list() if d.dataset == "readings"]
    assert d.source == "http:gw-7" and d.position.startswith("http:")
    assert any(e.source == "http:gw-7" for e in IngestState(c.store.db).lineage("readings"))
    writes = [
        e for e in access.read_audit(c.store.db, after=before, limit=100_000) if e.action == "write"
    ]
    assert [(e.actor, e.dataset, e.detail["rows_written"]) for e in writes] == [
        ("writer", "readings", 1)
    ]
    assert writes[0].detail["source"] == "http:gw-7"
    again = c.client.post(URL, headers=c.auth("writer"), json={"records": [reading("s1", 8)]})
    assert (again.json()["rows_written"], again.json()["duplicates"]) == (0, 1)


@pytest.mark.parametrize(
    ("extra", "field", "expected"),
    [
        ({"pm25_mg": True}, "pm25_mg", "a number"),
        ({"label": {"a": 1}}, "label", "a string or an integer"),
        ({"label": False}, "label", "a string or an integer"),
        ({"colour": "red"}, "colour", "a field the mapping reads"),
        ({"sensor": ["s1", "s2"]}, "sensor", "a string or an integer"),
        ({"lon": "116.4"}, "lon", "a number"),
    ],
)
def test_wrong_types_refuse_the_batch_naming_dataset_row_and_field(
    push_city: ServedCity, extra: dict[str, Any], field: str, expected: str
) -> None:
    c = push_city
    rows, dead = _rows(c), len(DeadLetters(c.store).list())
    good = reading("s9", 20)
    r = c.client.post(
        URL, headers=c.auth("writer"), json={"records": [good, {**reading("s9", 21), **extra}]}
    )
    assert r.status_code == 422, r.text
    body = r.json()
    assert f"dataset 'readings', record 1, field {field!r}" in body["detail"]
    assert [(p["row"], p["field"], p["expected"]) for p in body["problems"]] == [
        (1, field, expected)
    ]
    assert "nothing was stored" in body["detail"]
    assert (_rows(c), len(DeadLetters(c.store).list())) == (rows, dead)


def test_json_fields_keep_objects_as_json(push_city: ServedCity) -> None:
    c = push_city
    r = c.client.post(
        URL, headers=c.auth("writer"), json={"records": [reading("s3", 9, raw={"k": [1, "二"]})]}
    )
    assert r.status_code == 200 and r.json()["rows_written"] == 1, r.text
    df = c.store.scan("readings").to_pandas()
    assert df.loc[df["id"] == "s3", "raw"].tolist() == ['{"k": [1, "二"]}']


def test_push_needs_a_write_grant_and_no_static_key_works(push_city: ServedCity) -> None:
    c = push_city
    rows = _rows(c)
    body = {"records": [reading("s4", 10)]}
    assert c.client.post(URL, json=body).status_code == 401
    for key in ("static-key-123", "dev-ingest-key"):
        assert c.client.post(URL, json=body, headers={"X-API-Key": key}).status_code == 401
    before = len(access.read_audit(c.store.db, limit=100_000))
    r = c.client.post(URL, json=body, headers=c.auth("reader"))
    assert r.status_code == 403
    denied = access.read_audit(c.store.db, after=before, limit=100_000)
    assert [(e.action, e.actor, e.dataset) for e in denied] == [
        ("write.denied", "reader", "readings")
    ]
    assert _rows(c) == rows


def test_the_server_has_one_push_endpoint(push_city: ServedCity) -> None:
    paths = push_city.client.app.openapi()["paths"]  # type: ignore[attr-defined]
    assert [p for p in paths if p.endswith("/records")] == ["/datasets/{name}/records"]
    assert not [p for p in paths if p.startswith("/ingest")]

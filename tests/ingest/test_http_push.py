"""The HTTP push router: authenticated, answers after the records are durable, reports the
records it dead-lettered."""

from __future__ import annotations

import warnings

import pytest
from fastapi import FastAPI

with warnings.catch_warnings():
    # starlette asks for `httpx2` in the test client; the project depends on httpx
    warnings.simplefilter("ignore")
    from fastapi.testclient import TestClient

from cityos.ingest import DeadLetters, Mapping
from cityos.ingest._base import ensure_dataset
from cityos.ingest._state import IngestState
from cityos.ingest.http import make_router, router
from cityos.store import Store

from .builders import READINGS_MAPPING, reading


def _client(city: Store, app_router: object = router, **state: object) -> TestClient:
    app = FastAPI()
    app.include_router(app_router)  # type: ignore[arg-type]
    app.state.store = city
    for k, v in state.items():
        setattr(app.state, k, v)
    return TestClient(app)


def test_push_is_durable_when_answered_and_uses_the_saved_mapping(city: Store) -> None:
    ensure_dataset(city, Mapping.from_dict(READINGS_MAPPING), IngestState(city.db))
    c = _client(city, ingest_api_key_verifier=lambda k: k == "k-1")
    r = c.post(
        "/ingest/readings/records",
        headers={"X-API-Key": "k-1"},
        json={"records": [reading("s1", 8), reading("s2", 8, lat=120.0)], "source": "gateway-7"},
    )
    assert r.status_code == 200, r.text
    body = r.json()
    assert (body["accepted"], body["rejected"]) == (1, 1)
    assert body["problems"][0]["rule"].startswith("y:")
    # queryable as soon as the answer arrives
    assert city.scan("readings").to_pandas()["pm25"].tolist() == [35.0]
    [d] = DeadLetters(city).list()
    assert d.source == "http:gateway-7" and d.position.startswith("http:")
    again = c.post(
        "/ingest/readings/records",
        headers={"Authorization": "Bearer k-1"},
        json={"records": [reading("s1", 8)]},
    ).json()
    assert (again["accepted"], again["duplicates"]) == (0, 1)


def test_keys_are_checked(city: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    c = _client(city)
    assert c.post("/ingest/readings/records", json={"records": []}).status_code == 401
    monkeypatch.delenv("CITYOS_INGEST_API_KEY", raising=False)
    assert (
        c.post(
            "/ingest/readings/records", headers={"X-API-Key": "x"}, json={"records": []}
        ).status_code
        == 401
    )
    monkeypatch.setenv("CITYOS_INGEST_API_KEY", "static-key-123")
    assert (
        c.post(
            "/ingest/readings/records", headers={"X-API-Key": "wrong"}, json={"records": []}
        ).status_code
        == 401
    )
    r = c.post(
        "/ingest/nowhere/records", headers={"X-API-Key": "static-key-123"}, json={"records": []}
    )
    assert r.status_code == 404 and "nowhere" in r.json()["detail"]
    custom = _client(city, make_router(verifier=lambda k: k == "from-access-layer"))
    assert (
        custom.post(
            "/ingest/nowhere/records", headers={"X-API-Key": "static-key-123"}, json={"records": []}
        ).status_code
        == 401
    )

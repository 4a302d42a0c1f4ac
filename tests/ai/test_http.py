"""The AI REST routes over HTTP with authentication: list, describe, predict (fresh and
real inputs), authorisation on the model's datasets, audit, and 4xx for bad input."""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from pathlib import Path

import pytest
from tests.ai.builders import air_city
from tests.ai.test_registry import LGB, SPEC

from cityos import access
from cityos.ai._lifecycle import train
from cityos.ai._registry import ModelRegistry
from cityos.config import Settings
from cityos.server import create_app
from cityos.store import Store

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from fastapi.testclient import TestClient

access.configure_password_hashing(time_cost=1, memory_cost_kib=8, parallelism=1)
SECRET = "ai-test-secret-" + "q" * 40


@pytest.fixture(scope="module")
def served(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[TestClient, Store, dict[str, dict[str, str]], object]]:
    home: Path = tmp_path_factory.mktemp("city")
    settings = Settings(
        home=home, database_url=f"sqlite:///{home / 'cityos.db'}", secret_key=SECRET
    )
    store = Store(settings=settings)
    p = air_city(store, 300)
    access.set_dataset_policy(store.db, "air", "sensitive")
    for role, grants in (("analyst", [("air", "read")]), ("outsider", [])):
        access.create_role(store.db, role)
        for ds, perm in grants:
            access.grant(store.db, role, ds, perm)
        access.create_user(store.db, role, "pass-word-123", roles=[role])
    train(
        store,
        SPEC,
        "lightgbm",
        horizon=6,
        params=LGB,
        train_end=p.times[200],
        val_end=p.times[260],
        name="pm",
    )
    ModelRegistry.of(store).deploy("pm")
    client = TestClient(create_app(settings, store=store))
    hdr = {
        r: {
            "Authorization": f"Bearer {access.issue_token(access.principal_for(store.db, r), SECRET)}"
        }
        for r in ("analyst", "outsider")
    }
    yield client, store, hdr, p
    store.close()


def test_list_and_describe(served: tuple) -> None:
    client, _, hdr, _ = served
    assert client.get("/ai/models").status_code == 401
    r = client.get("/ai/models", headers=hdr["analyst"])
    assert r.status_code == 200 and [m["name"] for m in r.json()] == ["pm"]
    assert r.json()[0]["metrics"]["test"]["mae"]["6"] > 0
    assert client.get("/ai/models", headers=hdr["outsider"]).json() == []
    d = client.get("/ai/models/pm", headers=hdr["analyst"]).json()
    assert d["current"]["stage"] == "production" and d["stages"][-1]["to"] == "production"
    assert client.get("/ai/models/pm", headers=hdr["outsider"]).status_code == 403
    assert client.get("/ai/models/nope", headers=hdr["analyst"]).status_code == 404


def test_predict_fresh_and_inputs_agree_and_are_audited(served: tuple) -> None:
    client, store, hdr, p = served
    before = len(access.read_audit(store.db))
    r = client.post("/ai/models/pm/predict", json={}, headers=hdr["analyst"])
    assert r.status_code == 200, r.text
    fresh = r.json()
    assert fresh["mode"] == "fresh" and len(fresh["predictions"]) == 6 * 12
    actions = [e.action for e in access.read_audit(store.db)[before:]]
    assert "ai.predict" in actions and "read" in actions  # the store read and the prediction
    m, _ = ModelRegistry.of(store).load("pm")
    L = m.lookback() + 1
    order = [list(map(str, p.nodes)).index(n) for n in m.meta["nodes"]]
    window = p.values[-L:][:, order]
    body = {
        "inputs": {
            "values": [
                [[None if v != v else v for v in row] for row in step] for step in window.tolist()
            ],
            "start": p.times[-L].isoformat(),
        }
    }
    r2 = client.post("/ai/models/pm/predict", json=body, headers=hdr["analyst"])
    assert r2.status_code == 200, r2.text
    assert [x["yhat"] for x in r2.json()["predictions"]] == pytest.approx(
        [x["yhat"] for x in fresh["predictions"]]
    )
    one = client.post(
        "/ai/models/pm/predict", json={"ids": ["s1"], "horizon": 3}, headers=hdr["analyst"]
    ).json()
    assert {x["id"] for x in one["predictions"]} == {"s1"} and len(one["predictions"]) == 3


def test_predict_refusals(served: tuple) -> None:
    client, store, hdr, _p = served
    url = "/ai/models/pm/predict"
    assert client.post(url, json={}).status_code == 401
    assert client.post(url, json={}, headers=hdr["outsider"]).status_code == 403
    assert (
        client.post("/ai/models/ghost/predict", json={}, headers=hdr["analyst"]).status_code == 404
    )
    assert client.post(url, json={"version": 9}, headers=hdr["analyst"]).status_code == 404
    r = client.post(
        url,
        json={"inputs": {"values": [[[1.0]]], "start": "2026-03-02T00:00Z"}},
        headers=hdr["analyst"],
    )
    assert r.status_code == 422 and "shape" in r.json()["detail"]
    assert client.post(url, json={"horizon": 99}, headers=hdr["analyst"]).status_code == 422
    assert client.post(url, json={"ids": ["nowhere"]}, headers=hdr["analyst"]).status_code == 422
    assert [v.version for v in ModelRegistry.of(store).versions("pm")] == [1]

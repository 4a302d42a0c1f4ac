"""Horizontal training (Flower) as a gateway job: three district gateways, each holding its
own sensors, train one model over mutual TLS; compared against pooled and local-only
training; schema mismatches and a district that drops out fail the job clearly."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from cityos.federation import horizontal as hfl
from cityos.federation._certs import create_federation
from cityos.federation.gateway import Gateway, _held_out
from cityos.store import Store

from ._gw import make_party_data, make_user, op

DISTRICTS = ("dongcheng", "haidian", "chaoyang")
W, B = np.array([3.0, -2.0]), 1.0
PARAMS = {"strategy": "fedavg", "rounds": 30, "epochs": 5, "lr": 0.2}


def district_rows(i: int, n: int = 80) -> dict[str, Any]:
    """District ``i``'s sensors, the same relation to the label everywhere but each
    district sees only part of it: in the first one wind barely varies, in the second
    temperature, in the third both move together (so no district alone can tell the two
    effects apart)."""
    rng = np.random.default_rng(10 + i)
    X = rng.normal(size=(n, 2)) * np.array([(1.0, 0.05), (0.05, 1.0), (0.7, 0.0)][i])
    if i == 2:
        X[:, 1] = X[:, 0] + rng.normal(scale=0.05, size=n)
    y = X @ W + B + rng.normal(scale=0.1, size=n)
    return {
        "ids": [f"{DISTRICTS[i]}-{k:03d}" for k in range(n)],
        "cols": {"temp": X[:, 0], "wind": X[:, 1], "pm25": y},
    }


def make_districts(root: Path) -> dict[str, dict[str, Any]]:
    create_federation(root / "certs", "beijing", list(DISTRICTS))
    data = {}
    for i, d in enumerate(DISTRICTS):
        data[d] = district_rows(i)
        make_party_data(root / d, "sensors", data[d]["ids"], data[d]["cols"])
    return data


def split(data: dict[str, dict[str, Any]]) -> tuple[Any, Any, dict[str, Any]]:
    """Pooled training rows, the union of every district's held-out rows, and each
    district's own training rows (the held-out rule is the gateway's)."""
    tr, te, own = [], [], {}
    for d, v in data.items():
        X = np.column_stack([v["cols"]["temp"], v["cols"]["wind"]])
        y = v["cols"]["pm25"]
        held = np.array([_held_out(i) for i in v["ids"]])
        tr.append((X[~held], y[~held]))
        te.append((X[held], y[held]))
        own[d] = (X[~held], y[~held])
    cat = lambda parts: (np.vstack([p[0] for p in parts]), np.concatenate([p[1] for p in parts]))  # noqa: E731
    return cat(tr), cat(te), own


def rmse(params: Any, X: np.ndarray, y: np.ndarray) -> float:
    return float(np.sqrt(np.mean((hfl.predict_linear(params, X) - y) ** 2)))


@pytest.fixture
def districts(tmp_path: Path) -> Iterator[tuple[dict[str, Gateway], dict[str, Any]]]:
    data = make_districts(tmp_path)
    for d in DISTRICTS:
        make_user(tmp_path / d, read=("sensors",), write=("pm25_fed",))
    gws = {
        d: Gateway(d, tmp_path / d, tmp_path / "certs", recv_timeout=30, peer_retry_s=2.0).start()
        for d in DISTRICTS
    }
    for d, gw in gws.items():
        gw.peers.update({q: g.url for q, g in gws.items() if q != d})
    yield gws, data
    for gw in gws.values():
        gw.stop()


def _horizontal_project(gws: dict[str, Gateway]) -> str:
    guest = gws["dongcheng"]
    p = guest.create_project(
        "pm25 districts", ["haidian", "chaoyang"], kind="horizontal", user=op(guest)
    )
    for d in ("haidian", "chaoyang"):
        assert gws[d].book.get(p["id"])["kind"] == "horizontal"
        gws[d].answer(p["id"], accept=True, user=op(gws[d]))
    for gw in gws.values():
        gw.bind(
            p["id"], "sensors", id_field="id", fields=["temp", "wind"], label="pm25", user=op(gw)
        )
    return str(p["id"])


def test_horizontal_training_is_a_gateway_job(
    districts: tuple[dict[str, Gateway], dict[str, Any]],
) -> None:
    from cityos.ai._registry import ModelRegistry

    gws, data = districts
    guest = gws["dongcheng"]
    pid = _horizontal_project(gws)
    with pytest.raises(Exception, match="horizontal"):  # a vertical algorithm is refused
        guest.train(pid, algorithm="secureboost", user=op(guest))
    (Xtr, ytr), (Xte, yte), own = split(data)
    pooled = hfl.train_linear(Xtr, ytr, PARAMS["rounds"], PARAMS["epochs"], lr=PARAMS["lr"])
    local = {
        d: hfl.train_linear(X, y, PARAMS["rounds"], PARAMS["epochs"], lr=PARAMS["lr"])
        for d, (X, y) in own.items()
    }
    results, weights = {}, {}
    for strategy in ("fedavg", "fedmedian"):
        job = guest.train(
            pid, algorithm="flower-linear", params={**PARAMS, "strategy": strategy}, user=op(guest)
        )
        done = guest.wait(job["id"], 120)
        assert done["state"] == "succeeded", done["error"]
        for d in ("haidian", "chaoyang"):
            assert gws[d].wait(job["id"], 10)["state"] == "succeeded"
        res = done["result"]
        assert set(res["parties"]) == set(DISTRICTS)
        assert res["parties"]["haidian"]["rows"] == len(own["haidian"][1])
        model = guest.publish(job["id"], user=op(guest), name=f"pm25-districts-{strategy}")
        part = guest._part(model)
        fed = [part["weights"], np.array([part["bias"]])]
        results[strategy] = rmse(fed, Xte, yte)
        weights[strategy] = fed[0]
        # every district holds the same global model, registered in its own registry
        for d in DISTRICTS:
            v = ModelRegistry.of(gws[d].store).get(f"pm25-districts-{strategy}")
            assert v.family == "federated-flower-linear" and v.lineage is not None
            assert v.lineage["project_kind"] == "horizontal" and v.lineage["job"] == job["id"]
            assert np.array_equal(
                gws[d]._part(gws[d].book.model(model["id"]))["weights"], part["weights"]
            )
        # online serving scores the guest's own rows with the global model
        ids = data["dongcheng"]["ids"][:3]
        X0 = np.column_stack(
            [data["dongcheng"]["cols"]["temp"][:3], data["dongcheng"]["cols"]["wind"][:3]]
        )
        got = guest.predict(f"pm25-districts-{strategy}", ids, user=op(guest))
        assert np.allclose(got, hfl.predict_linear(fed, X0))
    # federated is as good as pooled, and far better than any district alone on the
    # union of every district's held-out rows
    r_pooled = rmse(pooled, Xte, yte)
    r_local = {d: rmse(w, Xte, yte) for d, w in local.items()}
    assert results["fedavg"] <= 1.2 * r_pooled + 0.05, (results, r_pooled)
    # the robust strategy really ran: the coordinate-wise median of the districts' models,
    # which on districts this different costs accuracy (the price of robustness; see
    # docs/federation.md)
    assert not np.allclose(weights["fedmedian"], weights["fedavg"], atol=1e-3)
    print(f"held-out RMSE: {results} pooled {r_pooled:.4f} local-only {r_local}")
    assert results["fedavg"] < 0.5 * min(r_local.values()), (results, r_local)
    # batch inference writes the guest's scores to its store, as the launcher
    inf = guest.wait(
        guest.infer("pm25-districts-fedavg", output="pm25_fed", user=op(guest))["id"], 60
    )
    assert inf["state"] == "succeeded", inf["error"]
    scores = Store(guest.home).read("pm25_fed").table.to_pandas()
    assert len(scores) == len(data["dongcheng"]["ids"])


def test_mismatched_schemas_fail_the_job_naming_the_party(
    districts: tuple[dict[str, Gateway], dict[str, Any]],
) -> None:
    gws, data = districts
    guest = gws["dongcheng"]
    h = gws["chaoyang"]
    make_party_data(
        h.home,
        "other",
        data["chaoyang"]["ids"],
        {
            "temp": data["chaoyang"]["cols"]["temp"],
            "rain": data["chaoyang"]["cols"]["wind"],
            "pm25": data["chaoyang"]["cols"]["pm25"],
        },
    )
    from cityos.access import grant

    grant(h.store.db, "op_data", "other", "read")
    p = guest.create_project("mismatch", ["haidian", "chaoyang"], kind="horizontal", user=op(guest))
    for d in ("haidian", "chaoyang"):
        gws[d].answer(p["id"], accept=True, user=op(gws[d]))
    with pytest.raises(Exception, match="label"):  # every party of a horizontal project binds it
        h.bind(p["id"], "other", id_field="id", fields=["temp", "rain"], user=op(h))
    h.bind(p["id"], "other", id_field="id", fields=["temp", "rain"], label="pm25", user=op(h))
    for d in ("dongcheng", "haidian"):
        gws[d].bind(
            p["id"],
            "sensors",
            id_field="id",
            fields=["temp", "wind"],
            label="pm25",
            user=op(gws[d]),
        )
    job = guest.wait(
        guest.train(p["id"], algorithm="flower-linear", params=PARAMS, user=op(guest))["id"], 60
    )
    assert job["state"] == "failed"
    assert (
        "SchemaMismatch" in job["error"] and "chaoyang" in job["error"] and "rain" in job["error"]
    )
    assert guest.book.models() == []


@pytest.mark.integration
def test_three_district_gateway_processes(tmp_path: Path) -> None:
    """Three ``cityos gateway serve`` processes on loopback: a horizontal project driven
    through the operator API, FedAvg equal in quality to pooled training, publishing to
    the registry, and a district that drops out mid-job failing the job, naming it."""
    from cityos.federation.cli import GatewayClient
    from cityos.federation.gateway_procs import gateway_processes

    data = make_districts(tmp_path)
    keys = {d: make_user(tmp_path / d, "li", read=("sensors",)) for d in DISTRICTS}
    homes = {d: tmp_path / d for d in DISTRICTS}
    with gateway_processes(tmp_path / "certs", homes, extra=["--recv-timeout", "20"]) as procs:
        c = {d: GatewayClient(homes[d], api_key=keys[d]) for d in DISTRICTS}
        p = c["dongcheng"].call(
            "POST",
            "projects",
            {"name": "pm25 districts", "hosts": ["haidian", "chaoyang"], "kind": "horizontal"},
        )
        pid = p["id"]
        for d in ("haidian", "chaoyang"):
            c[d].call("POST", f"projects/{pid}/accept")
        for d in DISTRICTS:
            c[d].call(
                "POST",
                f"projects/{pid}/bind",
                {"dataset": "sensors", "fields": ["temp", "wind"], "label": "pm25"},
            )
        job = c["dongcheng"].call(
            "POST", f"projects/{pid}/train", {"algorithm": "flower-linear", "params": PARAMS}
        )
        job = _ended(c["dongcheng"], job["id"], 120)
        assert job["state"] == "succeeded", job["error"]
        for d in DISTRICTS:  # each district's own comparison, on its own held-out rows
            r = job["result"]["parties"][d]
            assert r["holdout_rows"] > 0 and r["holdout_rmse"] > 0
        model = c["dongcheng"].call("POST", f"jobs/{job['id']}/publish", {"name": "pm25-districts"})
        assert model["registry_name"] == "pm25-districts"
        (Xtr, ytr), (Xte, yte), own = split(data)
        pooled = hfl.train_linear(Xtr, ytr, PARAMS["rounds"], PARAMS["epochs"], lr=PARAMS["lr"])
        local = [
            hfl.train_linear(X, y, PARAMS["rounds"], PARAMS["epochs"], lr=PARAMS["lr"])
            for X, y in own.values()
        ]
        # the global model, as registered in the guest's AI registry (what it serves)
        from cityos.ai._registry import ModelRegistry
        from cityos.federation._jobs import read_part

        store = Store(homes["dongcheng"])
        folder = ModelRegistry.of(store).artefact("pm25-districts", 1)
        part = read_part(folder / "dongcheng.part", model["sha256"])
        store.close()
        fed = [part["weights"], np.array([part["bias"]])]
        assert rmse(fed, Xte, yte) <= 1.2 * rmse(pooled, Xte, yte) + 0.05
        assert rmse(fed, Xte, yte) < 0.5 * min(rmse(w, Xte, yte) for w in local)
        ids = [i for i in data["dongcheng"]["ids"] if _held_out(i)]
        got = c["dongcheng"].call("POST", "models/pm25-districts/predict", {"ids": ids})["scores"]
        v = data["dongcheng"]
        idx = [v["ids"].index(i) for i in ids]
        X0 = np.column_stack([v["cols"]["temp"][idx], v["cols"]["wind"][idx]])
        fed_rmse = float(np.sqrt(np.mean((np.asarray(got) - v["cols"]["pm25"][idx]) ** 2)))
        assert fed_rmse <= 1.2 * rmse(pooled, X0, v["cols"]["pm25"][idx]) + 0.05

        # a district drops out mid-job: the job fails, naming it
        slow = {**PARAMS, "rounds": 100000}
        job2 = c["dongcheng"].call(
            "POST",
            f"projects/{pid}/train",
            {"algorithm": "flower-linear", "params": slow, "max_retries": 0},
        )
        deadline = time.monotonic() + 30
        while not any(
            j["id"] == job2["id"] and j["state"] == "running"
            for j in c["haidian"].call("GET", "status")["jobs"]
        ):
            assert time.monotonic() < deadline
            time.sleep(0.1)
        procs["haidian"].kill()
        st = _ended(c["dongcheng"], job2["id"], 60)
        assert st["state"] == "failed" and "haidian" in st["error"], st["error"]
        assert c["chaoyang"].call("GET", f"jobs/{job2['id']}")["state"] in ("failed", "cancelled")


def _ended(client: Any, job_id: str, timeout: float) -> Any:
    """The job once it left waiting and running (through the operator API)."""
    deadline = time.monotonic() + timeout
    while (job := client.call("GET", f"jobs/{job_id}"))["state"] in ("waiting", "running"):
        assert time.monotonic() < deadline, job
        time.sleep(0.2)
    return job

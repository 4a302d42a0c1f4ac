"""Every party's gateway as a separate process on loopback (``cityos gateway serve``),
driven by the ``cityos gateway`` client commands: the seven steps with SecureBoost, a
party that drops out mid-job and its restart, and a certificate of another federation."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from cityos.access import read_audit, verify_audit
from cityos.db import Database
from cityos.federation._certs import create_federation, load_identity
from cityos.federation._transport import PeerClient
from cityos.federation.cli import GatewayClient
from cityos.federation.gateway_errors import FederationError
from cityos.federation.gateway_procs import gateway_processes, restart
from cityos.store import Store

from ._gw import make_party_data, make_user

pytestmark = pytest.mark.integration
N = 80
PARAMS = {"n_trees": 2, "max_depth": 2, "key_bits": 512, "min_child_samples": 5}


def cli(*args: str, key: str | None, ok: bool | None = True, layer: str = "gateway") -> Any:
    env = {k: v for k, v in os.environ.items() if k != "CITYOS_API_KEY"}
    if key:
        env["CITYOS_API_KEY"] = key
    res = subprocess.run(
        [sys.executable, "-m", "cityos.cli", layer, *args],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )
    if ok is None:  # a command that prints text
        assert res.returncode == 0, res.stdout + res.stderr
        return res.stdout
    if ok:
        assert res.returncode == 0, res.stdout + res.stderr
        return json.loads(res.stdout)
    assert res.returncode != 0
    return res.stdout + res.stderr


def test_two_gateway_processes(tmp_path: Path) -> None:
    certs = tmp_path / "certs"
    out = cli(
        "certs",
        "--out",
        str(certs),
        "--federation",
        "beijing",
        "--party",
        "env",
        "--party",
        "weather",
        key=None,
    )
    assert set(out["parties"]) == {"env", "weather"}
    ids = [f"s{i:03d}" for i in range(N)]
    rng = np.random.default_rng(3)
    env_home, w_home = tmp_path / "env", tmp_path / "weather"
    make_party_data(
        env_home,
        "readings",
        ids,
        {"pm10": rng.random(N), "no2": rng.random(N), "pm25": rng.random(N) * 100},
    )
    make_party_data(
        w_home, "meteo", ids[4:], {"temp": rng.random(N - 4), "wspm": rng.random(N - 4)}
    )
    ek = make_user(env_home, "zhang", read=("readings",), write=("pm25_scores",))
    wk = make_user(w_home, "wang", read=("meteo",))

    with gateway_processes(
        certs, {"env": env_home, "weather": w_home}, extra=["--recv-timeout", "20"]
    ) as procs:
        e, w = str(env_home), str(w_home)
        p = cli("project", "create", "pm25", "--host", "weather", "--home", e, key=ek)
        pid = p["id"]
        wc, ec = GatewayClient(w_home, api_key=wk), GatewayClient(env_home, api_key=ek)
        # no key, or another city's key: refused, nothing created
        err = cli("project", "create", "x", "--host", "weather", "--home", e, key=None, ok=False)
        assert "CITYOS_API_KEY" in err
        err = cli("project", "create", "x", "--host", "weather", "--home", e, key=wk, ok=False)
        assert "401" in err or "invalid" in err.lower() or "unknown" in err.lower()
        assert wc.call("GET", f"projects/{pid}")["status"] == "proposed"
        assert cli("project", "accept", pid, "--home", w, key=wk)["status"] == "active"
        cli("bind", pid, "readings", "--fields", "pm10,no2", "--label", "pm25", "--home", e, key=ek)
        err = cli(
            "bind",
            pid,
            "meteo",
            "--fields",
            "temp",
            "--label",
            "wspm",
            "--home",
            w,
            key=wk,
            ok=False,
        )
        assert "hosts hold features" in err
        cli("bind", pid, "meteo", "--fields", "temp,wspm", "--home", w, key=wk)
        meta = cli(
            "metadata", pid, "--share", "temp=air_temperature:2 m temperature", "--home", w, key=wk
        )
        assert meta["weather"][0]["name"] == "air_temperature"
        shown = cli("project", "show", pid, "--home", e, key=ek)
        assert shown["metadata"]["weather"][0]["description"] == "2 m temperature"

        err = cli("predict", "m-nothing", "s010", "--home", e, key=ek, ok=False)
        assert "not published" in err
        job = cli("train", pid, "--params", json.dumps(PARAMS), "--home", e, key=ek)
        assert job["state"] == "succeeded" and job["result"]["rows"] == N - 4
        model = cli("publish", job["id"], "--home", e, key=ek)
        # the joint model is a version of the environment bureau's AI registry
        (listed,) = cli("models", "fed-pm25", "--json", "--home", e, key=None, layer="ai")
        assert listed["family"] == "federated-secureboost" and listed["version"] == 1
        assert listed["lineage"]["job"] == job["id"] and listed["lineage"]["project"] == pid
        assert listed["datasets"] == {"readings": 1}
        assert listed["lineage"]["parties"]["weather"]["dataset"] == "meteo"
        cli("deploy", "fed-pm25", "--home", e, key=None, layer="ai", ok=None)
        assert set(model["data_versions"]) == {"env", "weather"}
        inf = cli("infer", model["id"], "--output", "pm25_scores", "--home", e, key=ek)
        assert inf["result"]["output"] == "pm25_scores"
        online = cli("predict", "fed-pm25:production", "s010", "s042", "--home", e, key=ek)
        batch = Store(env_home).read("pm25_scores").table.to_pandas().set_index("id")["score"]
        assert len(batch) == N - 4
        assert online["scores"] == [batch["s010"], batch["s042"]]

        # a certificate of another federation is refused by the gateway
        create_federation(tmp_path / "sh", "shanghai", ["env"])
        with pytest.raises(FederationError):
            PeerClient(
                load_identity(tmp_path / "sh", "env"), "weather", procs["weather"].url, retry_s=0.5
            ).call("GET", "/fed/v1/ping")

        # the weather bureau drops out mid-job: the job fails, naming it
        slow = {**PARAMS, "n_trees": 500, "max_depth": 3}
        job2 = ec.call("POST", f"projects/{pid}/train", {"params": slow, "max_retries": 0})
        deadline = time.monotonic() + 20
        while not any(
            j["id"] == job2["id"] and j["state"] == "running"
            for j in wc.call("GET", "status")["jobs"]
        ):
            assert time.monotonic() < deadline
            time.sleep(0.05)
        procs["weather"].kill()
        deadline = time.monotonic() + 40
        while (st := ec.call("GET", f"jobs/{job2['id']}"))["state"] in ("running", "waiting"):
            assert time.monotonic() < deadline
            time.sleep(0.2)
        assert st["state"] == "failed"
        assert "weather" in st["error"]
        # it comes back: its interrupted job is failed cleanly, and training works again
        procs["weather"] = restart(
            procs["weather"], certs, {"env": procs["env"].url}, extra=["--recv-timeout", "20"]
        )
        wc = GatewayClient(w_home, api_key=wk)
        assert wc.call("GET", f"jobs/{job2['id']}")["state"] == "failed"
        job3 = ec.call("POST", f"projects/{pid}/train", {"params": PARAMS})
        deadline = time.monotonic() + 40
        while (job3 := ec.call("GET", f"jobs/{job3['id']}"))["state"] in ("waiting", "running"):
            assert time.monotonic() < deadline
            time.sleep(0.2)
        assert job3["state"] == "succeeded", job3["error"]

    for home, must in (
        (env_home, "federation.project.create"),
        (w_home, "federation.project.accept"),
    ):
        db = Database(f"sqlite:///{home / 'cityos.db'}")
        actions = {x.action for x in read_audit(db, limit=10_000)}
        assert {
            must,
            "federation.bind",
            "federation.job.succeeded",
            "federation.model.publish",
        } <= actions
        assert verify_audit(db).ok
        db.dispose()

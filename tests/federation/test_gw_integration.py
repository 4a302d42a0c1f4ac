"""Every party's gateway as a separate process on loopback (``cityos gateway serve``),
driven by the ``cityos gateway`` client commands: the seven steps with SecureBoost, a
party that drops out mid-job and its restart, and a certificate of another federation."""

from __future__ import annotations

import json
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

from ._gw import make_party_data

pytestmark = pytest.mark.integration
N = 80
PARAMS = {"n_trees": 2, "max_depth": 2, "key_bits": 512, "min_child_samples": 5}


def cli(*args: str, ok: bool = True) -> Any:
    res = subprocess.run(
        [sys.executable, "-m", "cityos.cli", "gateway", *args],
        capture_output=True,
        text=True,
        timeout=120,
    )
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

    with gateway_processes(
        certs, {"env": env_home, "weather": w_home}, extra=["--recv-timeout", "20"]
    ) as procs:
        e, w = str(env_home), str(w_home)
        p = cli("project", "create", "pm25", "--host", "weather", "--home", e)
        pid = p["id"]
        wc, ec = GatewayClient(w_home), GatewayClient(env_home)
        assert wc.call("GET", f"projects/{pid}")["status"] == "proposed"
        assert cli("project", "accept", pid, "--home", w)["status"] == "active"
        cli("bind", pid, "readings", "--fields", "pm10,no2", "--label", "pm25", "--home", e)
        err = cli(
            "bind", pid, "meteo", "--fields", "temp", "--label", "wspm", "--home", w, ok=False
        )
        assert "hosts hold features" in err
        cli("bind", pid, "meteo", "--fields", "temp,wspm", "--home", w)
        meta = cli("metadata", pid, "--share", "temp=air_temperature:2 m temperature", "--home", w)
        assert meta["weather"][0]["name"] == "air_temperature"
        shown = cli("project", "show", pid, "--home", e)
        assert shown["metadata"]["weather"][0]["description"] == "2 m temperature"

        err = cli("predict", "m-nothing", "s010", "--home", e, ok=False)
        assert "not published" in err
        job = cli("train", pid, "--params", json.dumps(PARAMS), "--home", e)
        assert job["state"] == "succeeded" and job["result"]["rows"] == N - 4
        model = cli("publish", job["id"], "--home", e)
        assert set(model["data_versions"]) == {"env", "weather"}
        inf = cli("infer", model["id"], "--output", "pm25_scores", "--home", e)
        assert inf["result"]["output"] == "pm25_scores"
        online = cli("predict", model["id"], "s010", "s042", "--home", e)
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
        assert GatewayClient(w_home).call("GET", f"jobs/{job2['id']}")["state"] == "failed"
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

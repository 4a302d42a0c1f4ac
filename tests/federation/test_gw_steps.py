"""The seven steps between two gateways over mutual TLS (in one process, each gateway with
its own city home): project, binding, metadata, jobs, publishing, batch and online
inference, and the bad inputs of the issue."""

from __future__ import annotations

import struct
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from cityos.access import PermissionDenied, read_audit, verify_audit
from cityos.errors import DatasetNotFound, ValidationError
from cityos.federation._certs import create_federation, load_identity
from cityos.federation.gateway import Gateway, make_operator
from cityos.federation.gateway_errors import NotPublished, ProjectConflict, UnboundDataset
from cityos.model import PlainTable
from cityos.store import Store

from ._gw import SumAlgorithm, make_party_data, make_user, op

ALGOS = {"sum": SumAlgorithm()}
N = 60


@pytest.fixture
def parties(tmp_path: Path) -> Iterator[tuple[Gateway, Gateway]]:
    create_federation(tmp_path / "certs", "beijing", ["env", "weather"])
    ids = [f"station-{i:03d}" for i in range(N)]
    rng = np.random.default_rng(1)
    make_party_data(
        tmp_path / "env",
        "readings",
        ids,
        {"pm10": rng.random(N), "no2": rng.random(N), "pm25": rng.random(N) * 100},
    )
    # the weather bureau has a few extra ids and lacks the first five
    wids = ids[5:] + [f"weather-only-{i}" for i in range(7)]
    make_party_data(
        tmp_path / "weather",
        "meteo",
        wids,
        {"temp": rng.random(len(wids)), "wspm": rng.random(len(wids))},
    )
    make_user(tmp_path / "env", write=("pm25_scores",))
    make_user(tmp_path / "weather")
    env = Gateway(
        "env",
        tmp_path / "env",
        tmp_path / "certs",
        algorithms=ALGOS,
        recv_timeout=20,
        peer_retry_s=2.0,
        retry_delay=0.1,
    ).start()
    weather = Gateway(
        "weather",
        tmp_path / "weather",
        tmp_path / "certs",
        algorithms=ALGOS,
        recv_timeout=20,
        peer_retry_s=2.0,
        retry_delay=0.1,
    ).start()
    env.peers["weather"], weather.peers["env"] = weather.url, env.url
    yield env, weather
    env.stop()
    weather.stop()


def _project(env: Gateway, weather: Gateway) -> str:
    p = env.create_project("pm25 next day", ["weather"], description="forecast", user=op(env))
    weather.answer(p["id"], accept=True, user=op(weather))
    assert env.book.get(p["id"])["status"] == "active"
    env.bind(p["id"], "readings", id_field="id", fields=["pm10", "no2"], label="pm25", user=op(env))
    weather.bind(p["id"], "meteo", id_field="id", fields=["temp", "wspm"], user=op(weather))
    return str(p["id"])


def test_the_seven_steps(parties: tuple[Gateway, Gateway]) -> None:
    env, weather = parties
    p = env.create_project("pm25 next day", ["weather"], user=op(env))
    invited = weather.book.get(p["id"])
    assert invited["guest"] == "env" and invited["my_role"] == "host"
    assert invited["status"] == "proposed"
    with pytest.raises(ProjectConflict, match="waiting for weather"):
        env.train(p["id"], algorithm="sum", user=op(env))
    weather.answer(p["id"], accept=True, user=op(weather))
    assert env.book.get(p["id"])["status"] == weather.book.get(p["id"])["status"] == "active"

    env.bind(p["id"], "readings", id_field="id", fields=["pm10", "no2"], label="pm25", user=op(env))
    weather.bind(p["id"], "meteo", id_field="id", fields=["temp", "wspm"], user=op(weather))
    shared = weather.share_metadata(
        p["id"],
        {"temp": {"as": "air_temperature", "description": "2 m air temperature"}},
        user=op(weather),
    )
    assert shared[0]["name"] == "air_temperature" and "mean" in shared[0]["stats"]
    env.share_metadata(p["id"], ["pm10", "pm25"], user=op(env))
    meta = env.book.metadata(p["id"])
    assert [f["name"] for f in meta["weather"]] == ["air_temperature"]  # only what was chosen
    assert set(weather.book.metadata(p["id"])) == {"env", "weather"}

    job = env.train(p["id"], algorithm="sum", user=op(env))
    assert job["state"] == "waiting"
    done = env.wait(job["id"], 30)
    assert done["state"] == "succeeded", done["error"]
    assert done["result"]["rows"] == N - 5  # aligned by PSI
    assert weather.wait(job["id"], 10)["state"] == "succeeded"

    with pytest.raises(NotPublished, match="not published"):
        env.predict(f"m-{job['id'][2:]}", ["station-010"], user=op(env))
    model = env.publish(job["id"], user=op(env))
    assert model["data_versions"]["weather"]["dataset"] == "meteo"
    assert weather.book.model(model["id"])["data_versions"] == model["data_versions"]
    assert Path(weather.book.model(model["id"])["part_path"]).is_file()

    inf = env.wait(env.infer(model["id"], output="pm25_scores", user=op(env))["id"], 30)
    assert inf["state"] == "succeeded", inf["error"]
    store = Store(env.home)
    scores = store.read("pm25_scores").table.to_pandas().set_index("id")["score"]
    store.close()
    assert len(scores) == N - 5
    env_rows = Store(env.home).read("readings").table.to_pandas().set_index("id")
    w_rows = Store(weather.home).read("meteo").table.to_pandas().set_index("id")
    expect = (
        env_rows.loc["station-010", ["pm10", "no2"]].sum()
        + w_rows.loc["station-010", ["temp", "wspm"]].sum()
    )
    assert scores["station-010"] == pytest.approx(expect)

    online = env.predict(model["id"], ["station-010", "station-020"], user=op(env))
    assert online[0] == pytest.approx(expect)
    assert online[1] == pytest.approx(scores["station-020"])

    env.flush_audit()
    weather.flush_audit()
    for gw, expected in (
        (
            env,
            {
                "federation.project.create",
                "federation.member.accepted",
                "federation.bind",
                "federation.metadata",
                "federation.job.train",
                "federation.job.running",
                "federation.job.succeeded",
                "federation.model.publish",
                "federation.serve",
            },
        ),
        (
            weather,
            {
                "federation.project.invited",
                "federation.project.accept",
                "federation.bind",
                "federation.metadata",
                "federation.job.train",
                "federation.job.succeeded",
                "federation.model.publish",
                "federation.serve.partial",
            },
        ),
    ):
        actions = {e.action for e in read_audit(gw.store.db, limit=1000)}
        assert expected <= actions, expected - actions
        assert verify_audit(gw.store.db).ok


def test_decline_and_bad_input_change_nothing(parties: tuple[Gateway, Gateway]) -> None:
    env, weather = parties
    p = env.create_project("declined", ["weather"], user=op(env))
    weather.answer(p["id"], accept=False, user=op(weather))
    assert env.book.get(p["id"])["status"] == "declined"
    with pytest.raises(ProjectConflict, match="already declined"):
        weather.answer(p["id"], accept=True, user=op(weather))

    p2 = env.create_project("unbound", ["weather"], user=op(env))
    weather.answer(p2["id"], accept=True, user=op(weather))
    with pytest.raises(UnboundDataset, match="no dataset bound"):
        env.train(p2["id"], algorithm="sum", user=op(env))
    with pytest.raises(DatasetNotFound):
        env.bind(p2["id"], "nope", id_field="id", fields=["pm10"], label="pm25", user=op(env))
    with pytest.raises(ValidationError, match="has no field 'rain'"):
        env.bind(p2["id"], "readings", id_field="id", fields=["rain"], label="pm25", user=op(env))
    with pytest.raises(ValidationError, match="hosts hold features"):
        weather.bind(
            p2["id"], "meteo", id_field="id", fields=["temp"], label="temp", user=op(weather)
        )
    env.bind(p2["id"], "readings", id_field="id", fields=["pm10"], label="pm25", user=op(env))
    # the host has no bound dataset: the job fails naming the party, nothing is published
    jobs_before = len(weather.book.jobs())
    job = env.wait(env.train(p2["id"], algorithm="sum", max_retries=2, user=op(env))["id"], 30)
    assert job["state"] == "failed"
    assert "weather" in job["error"] and "no dataset bound" in job["error"]
    assert job["attempt"] == 1  # a missing binding is not retried
    assert len(weather.book.jobs()) == jobs_before
    with pytest.raises(ProjectConflict, match="only a succeeded training job"):
        env.publish(job["id"], user=op(env))
    assert env.book.models() == [] and weather.book.models() == []


def test_no_overlap_fails_the_job_clearly(parties: tuple[Gateway, Gateway], tmp_path: Path) -> None:
    env, weather = parties
    make_party_data(weather.home, "elsewhere", ["q1", "q2", "q3"], {"temp": [1.0, 2.0, 3.0]})
    p = env.create_project("disjoint", ["weather"], user=op(env))
    weather.answer(p["id"], accept=True, user=op(weather))
    env.bind(p["id"], "readings", id_field="id", fields=["pm10"], label="pm25", user=op(env))
    weather.bind(p["id"], "elsewhere", id_field="id", fields=["temp"], user=op(weather))
    job = env.wait(env.train(p["id"], algorithm="sum", user=op(env))["id"], 30)
    assert job["state"] == "failed"
    assert "NoOverlap" in job["error"] or "overlap" in job["error"].lower()
    assert env.book.models() == []


def test_a_host_that_drops_out_fails_or_retries_the_job(parties: tuple[Gateway, Gateway]) -> None:
    env, weather = parties
    pid = _project(env, weather)
    weather.server.stop()  # the weather bureau's gateway goes away
    job = env.wait(env.train(pid, algorithm="sum", max_retries=1, user=op(env))["id"], 60)
    assert job["state"] == "failed"
    assert job["attempt"] == 2  # retried once
    assert "weather" in job["error"] and (
        "unreachable" in job["error"] or "dropped" in job["error"]
    )


def test_cancel(parties: tuple[Gateway, Gateway]) -> None:
    env, weather = parties
    pid = _project(env, weather)

    class Slow(SumAlgorithm):
        def train(self, ch, role, X, y, params, **kw):  # type: ignore[no-untyped-def]
            if role == "host":
                time.sleep(30)
            return super().train(ch, role, X, y, params, **kw)

    env.algorithms["slow"] = weather.algorithms["slow"] = Slow()
    job = env.train(pid, algorithm="slow", user=op(env))
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if any(j["id"] == job["id"] and j["state"] == "running" for j in weather.book.jobs()):
            break
        time.sleep(0.05)
    out = env.cancel(job["id"], user=op(env))
    assert out["state"] == "cancelled"
    assert weather.book.job(job["id"])["state"] == "cancelled"


def test_secureboost_through_the_gateways_equals_pooled_training(
    parties: tuple[Gateway, Gateway],
) -> None:
    from cityos.federation import secureboost as sb

    env, weather = parties
    wire: list[bytes] = []
    for gw in (env, weather):
        gw.server.on_message = lambda frm, to, tag, raw: wire.append(raw)
    pid = _project(env, weather)
    params = {"n_trees": 3, "max_depth": 2, "key_bits": 512, "min_child_samples": 5}
    job = env.wait(env.train(pid, algorithm="secureboost", params=params, user=op(env))["id"], 120)
    assert job["state"] == "succeeded", job["error"]
    model = env.publish(job["id"], user=op(env))
    ids = [f"station-{i:03d}" for i in range(5, N)]  # the aligned rows, sorted
    e = Store(env.home).read("readings").table.to_pandas().set_index("id").loc[ids]
    w = Store(weather.home).read("meteo").table.to_pandas().set_index("id").loc[ids]
    pooled = sb.train_pooled(
        np.column_stack([e[["pm10", "no2"]].to_numpy(), w[["temp", "wspm"]].to_numpy()]),
        e["pm25"].to_numpy(),
        sb.BoostParams(**params),
    )
    expect = sb.predict_pooled(
        pooled, np.column_stack([e[["pm10", "no2"]].to_numpy(), w[["temp", "wspm"]].to_numpy()])
    )
    online = env.predict(model["id"], ids, user=op(env))
    assert np.array_equal(np.asarray(online), expect)

    # what crossed between the gateways: no raw feature value or label, no id outside the
    # intersection (the envelopes as received, headers and bodies)
    assert len(wire) > 10
    blob = b"".join(wire)
    outside = [f"station-{i:03d}" for i in range(5)] + [f"weather-only-{i}" for i in range(7)]
    for i in outside:
        assert i.encode() not in blob
    e_all = Store(env.home).read("readings").table.to_pandas()
    w_all = Store(weather.home).read("meteo").table.to_pandas()
    for v in [*e_all["pm25"], *e_all["pm10"], *w_all["temp"], *w_all["wspm"]]:
        assert struct.pack("<d", v) not in blob and repr(float(v)).encode() not in blob


@pytest.mark.integration
def test_a_party_on_postgresql(tmp_path: Path, pg_url: str) -> None:
    """The gateway's state (Alembic branch ``federation``) on PostgreSQL: one party's
    database is PostgreSQL, the other's SQLite."""
    from cityos.testing.postgres import fresh_database

    create_federation(tmp_path / "certs", "beijing", ["env", "weather"])
    url = fresh_database(pg_url)
    ids = [f"station-{i:03d}" for i in range(30)]
    rng = np.random.default_rng(2)
    store = Store(tmp_path / "env", database_url=url)
    store.create_dataset("readings", PlainTable.schema("pm10", "pm25"))
    store.append(
        "readings", pd.DataFrame({"id": ids, "pm10": rng.random(30), "pm25": rng.random(30)})
    )
    store.close()
    make_party_data(tmp_path / "weather", "meteo", ids, {"temp": rng.random(30)})
    make_user(tmp_path / "weather")
    env = Gateway(
        "env", tmp_path / "env", tmp_path / "certs", algorithms=ALGOS, database_url=url
    ).start()
    weather = Gateway("weather", tmp_path / "weather", tmp_path / "certs", algorithms=ALGOS).start()
    try:
        assert env.store.db.dialect == "postgresql"
        make_operator(env.store.db, "op", read=["*"])
        env.peers["weather"], weather.peers["env"] = weather.url, env.url
        p = env.create_project("pg", ["weather"], user=op(env))
        weather.answer(p["id"], accept=True, user=op(weather))
        env.bind(p["id"], "readings", id_field="id", fields=["pm10"], label="pm25", user=op(env))
        weather.bind(p["id"], "meteo", id_field="id", fields=["temp"], user=op(weather))
        weather.share_metadata(p["id"], ["temp"], user=op(weather))
        job = env.wait(env.train(p["id"], algorithm="sum", user=op(env))["id"], 30)
        assert job["state"] == "succeeded", job["error"]
        model = env.publish(job["id"], user=op(env))
        assert env.book.model(model["id"])["data_versions"]["weather"]["dataset"] == "meteo"
        assert set(env.book.metadata(p["id"])) == {"weather"}
        env.flush_audit()
        assert verify_audit(env.store.db).ok
        assert "federation.model.publish" in {e.action for e in read_audit(env.store.db, limit=500)}
    finally:
        env.stop()
        weather.stop()


def test_vertical_logistic_regression_through_the_gateways(
    parties: tuple[Gateway, Gateway],
) -> None:
    from cityos.federation import vlr

    env, weather = parties
    s = Store(env.home)
    ids = [f"station-{i:03d}" for i in range(N)]
    e = s.read("readings").table.to_pandas().set_index("id").loc[ids]
    s.create_dataset("classes", PlainTable.schema("pm10", "no2", "high"))
    s.append(
        "classes",
        pd.DataFrame(
            {"id": ids, "pm10": e["pm10"], "no2": e["no2"], "high": (e["pm25"] > 50).astype(float)}
        ),
    )
    s.close()
    p = env.create_project("high pm25", ["weather"], user=op(env))
    weather.answer(p["id"], accept=True, user=op(weather))
    env.bind(p["id"], "classes", id_field="id", fields=["pm10", "no2"], label="high", user=op(env))
    weather.bind(p["id"], "meteo", id_field="id", fields=["temp", "wspm"], user=op(weather))
    params = {"iterations": 3, "key_bits": 1024}
    job = env.wait(env.train(p["id"], algorithm="vlr", params=params, user=op(env))["id"], 120)
    assert job["state"] == "succeeded", job["error"]
    model = env.publish(job["id"], user=op(env))
    aligned = ids[5:]
    w = Store(weather.home).read("meteo").table.to_pandas().set_index("id").loc[aligned]
    ea = e.loc[aligned]
    pooled = vlr.train_pooled(
        np.column_stack([ea[["pm10", "no2"]], w[["temp", "wspm"]]]),
        (ea["pm25"] > 50).astype(float).to_numpy(),
        vlr.VLRParams(**params),
    )
    expect = vlr.predict_pooled(pooled, np.column_stack([ea[["pm10", "no2"]], w[["temp", "wspm"]]]))
    got = env.predict(model["id"], aligned, user=op(env))
    assert np.allclose(got, expect, atol=1e-3)


def test_a_guest_that_restarts_resumes_its_job(parties: tuple[Gateway, Gateway]) -> None:
    env, weather = parties
    pid = _project(env, weather)

    class Slow(SumAlgorithm):
        def train(self, ch, role, X, y, params, **kw):  # type: ignore[no-untyped-def]
            if role == "host":
                time.sleep(1.5)
            return super().train(ch, role, X, y, params, **kw)

    env.algorithms["slow"] = weather.algorithms["slow"] = Slow()
    job = env.train(pid, algorithm="slow", max_retries=1, user=op(env))
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if any(j["id"] == job["id"] and j["state"] == "running" for j in weather.book.jobs()):
            break
        time.sleep(0.05)
    port, home, certs = env.server.port, env.home, env.certs
    env.stop()  # the guest's gateway goes down mid-job ...
    env2 = Gateway(
        "env",
        home,
        certs,
        port=port,
        peers={"weather": weather.url},
        algorithms={"slow": Slow()},
        recv_timeout=20,
        peer_retry_s=2.0,
    )
    assert env2.book.job(job["id"])["state"] == "waiting"
    env2.start()  # ... and comes back: the job resumes as a new attempt
    try:
        done = env2.wait(job["id"], 40)
        assert done["state"] == "succeeded", done["error"]
        assert done["attempt"] == 2
        assert weather.wait(job["id"], 10)["state"] == "succeeded"
    finally:
        env2.stop()


def test_three_parties_two_hosts(tmp_path: Path) -> None:
    """A guest and two hosts: alignment over all three, SecureBoost equal to pooled."""
    from cityos.federation import secureboost as sb

    create_federation(tmp_path / "certs", "beijing", ["env", "weather", "traffic"])
    ids = [f"station-{i:03d}" for i in range(50)]
    rng = np.random.default_rng(5)
    make_party_data(
        tmp_path / "env", "readings", ids, {"pm10": rng.random(50), "pm25": rng.random(50)}
    )
    make_party_data(tmp_path / "weather", "meteo", ids[3:], {"temp": rng.random(47)})
    make_party_data(tmp_path / "traffic", "flows", ids[:45], {"cars": rng.random(45)})
    for p in ("env", "weather", "traffic"):
        make_user(tmp_path / p)
    gws = {
        p: Gateway(p, tmp_path / p, tmp_path / "certs", recv_timeout=30, peer_retry_s=2.0).start()
        for p in ("env", "weather", "traffic")
    }
    try:
        for p, gw in gws.items():
            gw.peers.update({q: g.url for q, g in gws.items() if q != p})
        env = gws["env"]
        pr = env.create_project("three", ["weather", "traffic"], user=op(env))
        gws["weather"].answer(pr["id"], accept=True, user=op(gws["weather"]))
        assert env.book.get(pr["id"])["status"] == "proposed"  # traffic has not answered
        gws["traffic"].answer(pr["id"], accept=True, user=op(gws["traffic"]))
        assert {g.book.get(pr["id"])["status"] for g in gws.values()} == {"active"}
        env.bind(pr["id"], "readings", id_field="id", fields=["pm10"], label="pm25", user=op(env))
        gws["weather"].bind(
            pr["id"], "meteo", id_field="id", fields=["temp"], user=op(gws["weather"])
        )
        gws["traffic"].bind(
            pr["id"], "flows", id_field="id", fields=["cars"], user=op(gws["traffic"])
        )
        params = {"n_trees": 2, "max_depth": 2, "key_bits": 512, "min_child_samples": 3}
        job = env.wait(env.train(pr["id"], params=params, user=op(env))["id"], 120)
        assert job["state"] == "succeeded", job["error"]
        assert job["result"]["rows"] == 42  # ids 3..44
        model = env.publish(job["id"], user=op(env))
        assert set(model["data_versions"]) == {"env", "weather", "traffic"}
        common = ids[3:45]
        cols = []
        for p, ds, f in (
            ("env", "readings", "pm10"),
            ("weather", "meteo", "temp"),
            ("traffic", "flows", "cars"),
        ):
            cols.append(
                Store(tmp_path / p).read(ds).table.to_pandas().set_index("id").loc[common, f]
            )
        y = (
            Store(tmp_path / "env")
            .read("readings")
            .table.to_pandas()
            .set_index("id")
            .loc[common, "pm25"]
        )
        X = np.column_stack(cols)
        expect = sb.predict_pooled(sb.train_pooled(X, y.to_numpy(), sb.BoostParams(**params)), X)
        assert np.array_equal(np.asarray(env.predict(model["id"], common, user=op(env))), expect)

        # each host's contribution: exact Shapley over the hosts, the guest in every coalition
        c = env.contributions(model["id"], user=op(env))
        assert c["method"] == "shapley" and set(c["values"]) == {"weather", "traffic"}
        assert set(c["coalitions"]) == {"env", "env+weather", "env+traffic", "env+traffic+weather"}
        assert sum(c["values"].values()) == pytest.approx(c["grand"] - c["coalitions"]["env"])
        for gw in gws.values():
            entries = [
                e
                for e in read_audit(gw.store.db, limit=2000)
                if e.action == "federation.contribution"
            ]
            assert len(entries) == 1 and entries[0].detail["contributions"] == c["values"]
    finally:
        for gw in gws.values():
            gw.stop()


def test_every_operator_call_needs_an_authorised_user(tmp_path: Path) -> None:
    """The operator API needs this party's certificate *and* an access API key or token of a
    user of its city; each action is authorised by role, each dataset by the user's rights;
    refusals change nothing and actions are audited as the user."""
    from cityos.access import issue_token, principal_for
    from cityos.config import city_secret
    from cityos.federation._transport import PeerClient, RpcError

    create_federation(tmp_path / "certs", "beijing", ["env", "weather"])
    ids = [f"s{i}" for i in range(20)]
    make_party_data(
        tmp_path / "env", "readings", ids, {"pm10": np.arange(20.0), "pm25": np.ones(20)}
    )
    make_party_data(
        tmp_path / "env", "secret_permits", ids, {"n": np.arange(20.0), "y": np.ones(20)}
    )
    li_key = make_user(tmp_path / "env", "li", read=("readings",))
    zhao_key = make_user(tmp_path / "env", "zhao", roles=(), read=("readings",))
    view_key = make_user(tmp_path / "env", "wang", roles=("federation_viewer",))
    app_key = make_user(tmp_path / "env", "app", roles=("federation_client",), read=())
    gw = Gateway("env", tmp_path / "env", tmp_path / "certs").start()
    make_party_data(tmp_path / "weather", "meteo", ids, {"temp": np.arange(20.0)})
    make_user(tmp_path / "weather")
    weather = Gateway("weather", tmp_path / "weather", tmp_path / "certs").start()
    gw.peers["weather"], weather.peers["env"] = weather.url, gw.url
    try:
        db = gw.store.db
        c = PeerClient(gw.identity, "env", gw.url)
        status, body = c.request("GET", "/gw/v1/status")  # no key: the certificate is not enough
        assert status == 401 and b"needs an access API key" in body
        c.auth = "Bearer not-a-key"
        assert c.request("GET", "/gw/v1/status")[0] == 401
        c.auth = f"Bearer {zhao_key}"  # a user without a gateway role
        status, body = c.request("GET", "/gw/v1/status")
        assert status == 403 and b"federation_operator" in body and b"zhao" in body
        c.auth = f"Bearer {view_key}"  # a viewer reads, but does not act
        assert c.call("GET", "/gw/v1/status")["party"] == "env"
        status, body = _req(c, "POST", "/gw/v1/projects", {"name": "x", "hosts": ["weather"]})
        assert status == 403 and b"project.create" in body
        assert gw.book.all() == []
        # a token of the city works like a key
        token = issue_token(principal_for(db, "li"), city_secret(gw.store.settings)[0])
        c.auth = f"Bearer {token}"
        assert c.call("GET", "/gw/v1/status")["party"] == "env"
        c.auth = f"Bearer {li_key}"
        # another party's certificate never reaches the operator API, key or not
        other = PeerClient(load_identity(tmp_path / "certs", "weather"), "env", gw.url)
        other.auth = f"Bearer {li_key}"
        assert other.request("GET", "/gw/v1/status")[0] == 403
        gw.peers["weather"] = "https://127.0.0.1:9"  # nobody there: nothing is created
        gw.peer_retry_s = 0.3
        with pytest.raises(RpcError, match="inviting host 'weather' failed"):
            c.call("POST", "/gw/v1/projects", {"name": "x", "hosts": ["weather"]})
        assert gw.book.all() == []
        gw.peers["weather"] = weather.url
        gw._clients.pop("weather")
        pid = c.call("POST", "/gw/v1/projects", {"name": "x", "hosts": ["weather"]})["id"]
        weather.answer(pid, accept=True, user=op(weather))
        # binding a dataset the user may not read: 403 naming it, nothing bound
        status, body = _req(
            c,
            "POST",
            f"/gw/v1/projects/{pid}/bind",
            {"dataset": "secret_permits", "fields": ["n"], "label": "y"},
        )
        assert status == 403 and b"secret_permits" in body and b"li" in body
        with pytest.raises(UnboundDataset):
            gw.book.binding(pid)
        c.call(
            "POST",
            f"/gw/v1/projects/{pid}/bind",
            {"dataset": "readings", "fields": ["pm10"], "label": "pm25"},
        )
        assert gw.book.binding(pid)["bound_by"] == "li"
        created = [e for e in read_audit(db, limit=500) if e.action == "federation.project.create"]
        assert [e.actor for e in created] == ["user:li", "user:li"]  # the first abandoned
        actions = {e.action: e.actor for e in read_audit(db, limit=500)}
        assert actions["federation.bind"] == "user:li"
        assert "federation.project.abandon" in actions and "federation.denied" in actions
        # an application may score online, but only rows of datasets it may read
        weather.bind(pid, "meteo", id_field="id", fields=["temp"], user=op(weather))
        gw.algorithms["sum"] = weather.algorithms["sum"] = SumAlgorithm()
        job = gw.wait(gw.train(pid, algorithm="sum", user=op(gw, "li"))["id"], 30)
        assert job["state"] == "succeeded", job["error"]
        model = gw.publish(job["id"], user=op(gw, "li"))
        c.auth = f"Bearer {app_key}"
        status, body = _req(c, "POST", f"/gw/v1/models/{model['id']}/predict", {"ids": ["s1"]})
        assert status == 403 and b"readings" in body
        status, body = _req(c, "POST", f"/gw/v1/jobs/{job['id']}/publish", {})
        assert status == 403 and b"model.publish" in body
    finally:
        gw.stop()
        weather.stop()


def test_jobs_read_a_dataset_as_the_user_who_bound_it(parties: tuple[Gateway, Gateway]) -> None:
    """No machine user: a host's rows are read as the user who bound them, so revoking
    that user's grant stops the next job, naming the dataset; a row filter of that user
    applies to what the job sees."""
    from cityos.access import RowFilter, add_row_filter, revoke

    env, weather = parties
    pid = _project(env, weather)
    job = env.wait(env.train(pid, algorithm="sum", user=op(env))["id"], 30)
    assert job["state"] == "succeeded" and job["result"]["rows"] == N - 5
    add_row_filter(
        weather.store.db,
        "op_data",
        "meteo",
        RowFilter("column", {"column": "id", "values": [f"station-{i:03d}" for i in range(5, 25)]}),
    )
    job = env.wait(env.train(pid, algorithm="sum", user=op(env))["id"], 30)
    assert job["state"] == "succeeded" and job["result"]["rows"] == 20
    revoke(weather.store.db, "op_data", "*", "read")
    job = env.wait(env.train(pid, algorithm="sum", user=op(env))["id"], 30)
    assert job["state"] == "failed"
    assert "weather" in job["error"] and "meteo" in job["error"], job["error"]
    # and the guest's own launcher must be allowed to read the guest's bound dataset
    make_user(env.home, "lin", read=())
    with pytest.raises(PermissionDenied, match="readings"):
        env.train(pid, algorithm="sum", user=op(env, "lin"))


def _req(c: Any, method: str, path: str, payload: Any = None) -> tuple[int, bytes]:
    import json

    return c.request(method, path, b"" if payload is None else json.dumps(payload).encode())  # type: ignore[no-any-return]


def test_published_models_are_ai_registry_versions(parties: tuple[Gateway, Gateway]) -> None:
    """Publishing registers the joint model in the guest's AI registry and each host's part
    in the host's, with every party's data versions and the federation, project and job as
    lineage; the registry's lifecycle governs serving."""
    from cityos.ai._registry import ModelRegistry

    env, weather = parties
    pid = _project(env, weather)
    job = env.wait(env.train(pid, algorithm="sum", user=op(env))["id"], 30)
    model = env.publish(job["id"], user=op(env))
    reg = ModelRegistry.of(env.store)
    v = reg.get("fed-pm25-next-day")
    assert (v.version, v.family, v.stage) == (1, "federated-sum", "none")
    assert v.datasets == {"readings": 1}  # its own; every party's in the lineage
    assert {k: x["version"] for k, x in v.lineage["parties"].items()} == {"env": 1, "weather": 1}  # type: ignore[index]
    assert v.lineage is not None
    assert {k: v.lineage[k] for k in ("federation", "project", "job", "model", "part")} == {
        "federation": "beijing",
        "project": pid,
        "job": job["id"],
        "model": model["id"],
        "part": "joint model (guest)",
    }
    assert v.lineage["parties"]["weather"]["dataset"] == "meteo"
    assert v.created_by == "user:op"
    hv = ModelRegistry.of(weather.store).get("fed-pm25-next-day")
    assert hv.family == "federated-sum" and hv.lineage["part"] == "host part"  # type: ignore[index]
    assert model["registry_name"] == "fed-pm25-next-day" and model["registry_version"] == 1
    # the registry is what serves: by name (production, else latest), and not once retired
    ids = ["station-010", "station-011"]
    by_id = env.predict(model["id"], ids, user=op(env))
    assert env.predict("fed-pm25-next-day", ids, user=op(env)) == by_id
    reg.deploy("fed-pm25-next-day", 1)
    assert env.predict("fed-pm25-next-day:production", ids, user=op(env)) == by_id
    reg.transition("fed-pm25-next-day", 1, "archived", reason="retired")
    with pytest.raises(NotPublished, match="retired"):
        env.predict(model["id"], ids, user=op(env))
    with pytest.raises(NotPublished, match="retired"):
        env.infer("fed-pm25-next-day", user=op(env))
    reg.transition("fed-pm25-next-day", 1, "production")
    assert env.predict(model["id"], ids, user=op(env)) == by_id
    # a host that retires its part stops the joint model's serving, naming the host
    ModelRegistry.of(weather.store).transition("fed-pm25-next-day", 1, "archived")
    with pytest.raises(Exception, match="retired"):
        env.predict(model["id"], ids, user=op(env))
    # a zoo-style load of a federated version says where it is served
    from cityos.ai import AIError

    with pytest.raises(AIError, match="gateway"):
        reg.load("fed-pm25-next-day", 1)
    # a second publication of the project's next job is the next version
    job2 = env.wait(env.train(pid, algorithm="sum", user=op(env))["id"], 30)
    assert env.publish(job2["id"], user=op(env))["registry_version"] == 2
    assert [x.version for x in reg.versions("fed-pm25-next-day")] == [1, 2]

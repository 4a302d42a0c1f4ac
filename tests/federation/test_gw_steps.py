"""The seven steps between two gateways over mutual TLS (in one process, each gateway with
its own city home): project, binding, metadata, jobs, publishing, batch and online
inference, and the bad inputs of the issue."""

from __future__ import annotations

import struct
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from cityos.access import read_audit, verify_audit
from cityos.errors import DatasetNotFound, ValidationError
from cityos.federation._certs import create_federation
from cityos.federation.gateway import Gateway
from cityos.federation.gateway_errors import NotPublished, ProjectConflict, UnboundDataset
from cityos.model import PlainTable
from cityos.store import Store

from ._gw import SumAlgorithm, make_party_data

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
    p = env.create_project("pm25 next day", ["weather"], description="forecast")
    weather.answer(p["id"], accept=True)
    assert env.book.get(p["id"])["status"] == "active"
    env.bind(p["id"], "readings", id_field="id", fields=["pm10", "no2"], label="pm25")
    weather.bind(p["id"], "meteo", id_field="id", fields=["temp", "wspm"])
    return str(p["id"])


def test_the_seven_steps(parties: tuple[Gateway, Gateway]) -> None:
    env, weather = parties
    p = env.create_project("pm25 next day", ["weather"])
    invited = weather.book.get(p["id"])
    assert invited["guest"] == "env" and invited["my_role"] == "host"
    assert invited["status"] == "proposed"
    with pytest.raises(ProjectConflict, match="waiting for weather"):
        env.train(p["id"], algorithm="sum")
    weather.answer(p["id"], accept=True)
    assert env.book.get(p["id"])["status"] == weather.book.get(p["id"])["status"] == "active"

    env.bind(p["id"], "readings", id_field="id", fields=["pm10", "no2"], label="pm25")
    weather.bind(p["id"], "meteo", id_field="id", fields=["temp", "wspm"])
    shared = weather.share_metadata(
        p["id"], {"temp": {"as": "air_temperature", "description": "2 m air temperature"}}
    )
    assert shared[0]["name"] == "air_temperature" and "mean" in shared[0]["stats"]
    env.share_metadata(p["id"], ["pm10", "pm25"])
    meta = env.book.metadata(p["id"])
    assert [f["name"] for f in meta["weather"]] == ["air_temperature"]  # only what was chosen
    assert set(weather.book.metadata(p["id"])) == {"env", "weather"}

    job = env.train(p["id"], algorithm="sum")
    assert job["state"] == "waiting"
    done = env.wait(job["id"], 30)
    assert done["state"] == "succeeded", done["error"]
    assert done["result"]["rows"] == N - 5  # aligned by PSI
    assert weather.wait(job["id"], 10)["state"] == "succeeded"

    with pytest.raises(NotPublished, match="not published"):
        env.predict(f"m-{job['id'][2:]}", ["station-010"])
    model = env.publish(job["id"])
    assert model["data_versions"]["weather"]["dataset"] == "meteo"
    assert weather.book.model(model["id"])["data_versions"] == model["data_versions"]
    assert Path(weather.book.model(model["id"])["part_path"]).is_file()

    inf = env.wait(env.infer(model["id"], output="pm25_scores")["id"], 30)
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

    online = env.predict(model["id"], ["station-010", "station-020"])
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
    p = env.create_project("declined", ["weather"])
    weather.answer(p["id"], accept=False)
    assert env.book.get(p["id"])["status"] == "declined"
    with pytest.raises(ProjectConflict, match="already declined"):
        weather.answer(p["id"], accept=True)

    p2 = env.create_project("unbound", ["weather"])
    weather.answer(p2["id"], accept=True)
    with pytest.raises(UnboundDataset, match="no dataset bound"):
        env.train(p2["id"], algorithm="sum")
    with pytest.raises(DatasetNotFound):
        env.bind(p2["id"], "nope", id_field="id", fields=["pm10"], label="pm25")
    with pytest.raises(ValidationError, match="has no field 'rain'"):
        env.bind(p2["id"], "readings", id_field="id", fields=["rain"], label="pm25")
    with pytest.raises(ValidationError, match="hosts hold features"):
        weather.bind(p2["id"], "meteo", id_field="id", fields=["temp"], label="temp")
    env.bind(p2["id"], "readings", id_field="id", fields=["pm10"], label="pm25")
    # the host has no bound dataset: the job fails naming the party, nothing is published
    jobs_before = len(weather.book.jobs())
    job = env.wait(env.train(p2["id"], algorithm="sum", max_retries=2)["id"], 30)
    assert job["state"] == "failed"
    assert "weather" in job["error"] and "no dataset bound" in job["error"]
    assert job["attempt"] == 1  # a missing binding is not retried
    assert len(weather.book.jobs()) == jobs_before
    with pytest.raises(ProjectConflict, match="only a succeeded training job"):
        env.publish(job["id"])
    assert env.book.models() == [] and weather.book.models() == []


def test_no_overlap_fails_the_job_clearly(parties: tuple[Gateway, Gateway], tmp_path: Path) -> None:
    env, weather = parties
    make_party_data(weather.home, "elsewhere", ["q1", "q2", "q3"], {"temp": [1.0, 2.0, 3.0]})
    p = env.create_project("disjoint", ["weather"])
    weather.answer(p["id"], accept=True)
    env.bind(p["id"], "readings", id_field="id", fields=["pm10"], label="pm25")
    weather.bind(p["id"], "elsewhere", id_field="id", fields=["temp"])
    job = env.wait(env.train(p["id"], algorithm="sum")["id"], 30)
    assert job["state"] == "failed"
    assert "NoOverlap" in job["error"] or "overlap" in job["error"].lower()
    assert env.book.models() == []


def test_a_host_that_drops_out_fails_or_retries_the_job(parties: tuple[Gateway, Gateway]) -> None:
    env, weather = parties
    pid = _project(env, weather)
    weather.server.stop()  # the weather bureau's gateway goes away
    job = env.wait(env.train(pid, algorithm="sum", max_retries=1)["id"], 60)
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
    job = env.train(pid, algorithm="slow")
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if any(j["id"] == job["id"] and j["state"] == "running" for j in weather.book.jobs()):
            break
        time.sleep(0.05)
    out = env.cancel(job["id"])
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
    job = env.wait(env.train(pid, algorithm="secureboost", params=params)["id"], 120)
    assert job["state"] == "succeeded", job["error"]
    model = env.publish(job["id"])
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
    online = env.predict(model["id"], ids)
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
    env = Gateway(
        "env", tmp_path / "env", tmp_path / "certs", algorithms=ALGOS, database_url=url
    ).start()
    weather = Gateway("weather", tmp_path / "weather", tmp_path / "certs", algorithms=ALGOS).start()
    try:
        assert env.store.db.dialect == "postgresql"
        env.peers["weather"], weather.peers["env"] = weather.url, env.url
        p = env.create_project("pg", ["weather"])
        weather.answer(p["id"], accept=True)
        env.bind(p["id"], "readings", id_field="id", fields=["pm10"], label="pm25")
        weather.bind(p["id"], "meteo", id_field="id", fields=["temp"])
        weather.share_metadata(p["id"], ["temp"])
        job = env.wait(env.train(p["id"], algorithm="sum")["id"], 30)
        assert job["state"] == "succeeded", job["error"]
        model = env.publish(job["id"])
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
    p = env.create_project("high pm25", ["weather"])
    weather.answer(p["id"], accept=True)
    env.bind(p["id"], "classes", id_field="id", fields=["pm10", "no2"], label="high")
    weather.bind(p["id"], "meteo", id_field="id", fields=["temp", "wspm"])
    params = {"iterations": 3, "key_bits": 1024}
    job = env.wait(env.train(p["id"], algorithm="vlr", params=params)["id"], 120)
    assert job["state"] == "succeeded", job["error"]
    model = env.publish(job["id"])
    aligned = ids[5:]
    w = Store(weather.home).read("meteo").table.to_pandas().set_index("id").loc[aligned]
    ea = e.loc[aligned]
    pooled = vlr.train_pooled(
        np.column_stack([ea[["pm10", "no2"]], w[["temp", "wspm"]]]),
        (ea["pm25"] > 50).astype(float).to_numpy(),
        vlr.VLRParams(**params),
    )
    expect = vlr.predict_pooled(pooled, np.column_stack([ea[["pm10", "no2"]], w[["temp", "wspm"]]]))
    got = env.predict(model["id"], aligned)
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
    job = env.train(pid, algorithm="slow", max_retries=1)
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

"""One contract every registered source passes: good records stored once, bad ones
dead-lettered with payload, rule and position, lineage kept, re-delivery stores nothing twice,
and a fixed dead letter replays."""

from __future__ import annotations

import json
import sqlite3
import uuid
from pathlib import Path
from typing import Any

import pytest

from cityos.ingest import (
    SOURCES,
    DeadLetters,
    FileSource,
    HttpPushSource,
    Mapping,
    MqttSource,
    Source,
    SQLSource,
    lineage,
)
from cityos.store import Store

from .builders import READINGS_MAPPING, need_mosquitto, reading

GOOD = [reading("s1", 8), reading("s1", 9), reading("s2", 8)]
BAD_LAT = reading("s3", 8, lat=95.0)
BAD_TIME = {**reading("s4", 8), "ts": "the day after tomorrow"}
RECORDS = [GOOD[0], BAD_LAT, GOOD[1], BAD_TIME, GOOD[2]]


class Feeder:
    """Delivers records through a source's real medium and builds the source."""

    def __init__(self, tmp: Path, mapping: Mapping) -> None:
        self.tmp = tmp
        self.mapping = mapping

    def prepare(self, store: Store) -> None:
        """Anything needed before the first delivery (e.g. a subscription)."""

    def deliver(self, records: list[dict[str, Any]]) -> None:
        raise NotImplementedError

    def source(self) -> Source:
        raise NotImplementedError


class FilesFeeder(Feeder):
    def deliver(self, records: list[dict[str, Any]]) -> None:
        d = self.tmp / "inbox"
        d.mkdir(exist_ok=True)
        p = d / f"batch-{uuid.uuid4().hex[:8]}.jsonl"
        p.write_text("".join(json.dumps(r) + "\n" for r in records))

    def source(self) -> Source:
        return FileSource(self.tmp / "inbox", self.mapping, name="contract-files")


class SQLFeeder(Feeder):
    def __init__(self, tmp: Path, mapping: Mapping) -> None:
        super().__init__(tmp, mapping)
        self.db = tmp / "agency.db"
        with sqlite3.connect(self.db) as con:
            con.execute(
                "create table readings (seq integer primary key autoincrement, sensor text, "
                "ts text, lon real, lat real, pm25_mg real)"
            )

    def deliver(self, records: list[dict[str, Any]]) -> None:
        with sqlite3.connect(self.db) as con:
            con.executemany(
                "insert into readings (sensor, ts, lon, lat, pm25_mg) values (?, ?, ?, ?, ?)",
                [(r["sensor"], r["ts"], r["lon"], r["lat"], r["pm25_mg"]) for r in records],
            )

    def source(self) -> Source:
        return SQLSource(
            f"sqlite:///{self.db}",
            self.mapping,
            table="readings",
            watermark="seq",
            name="contract-sql",
        )


class HttpFeeder(Feeder):
    def __init__(self, tmp: Path, mapping: Mapping) -> None:
        super().__init__(tmp, mapping)
        self.src = HttpPushSource(mapping, name="contract-http")

    def deliver(self, records: list[dict[str, Any]]) -> None:
        self.src.push(records)

    def source(self) -> Source:
        return self.src


class MqttFeeder(Feeder):
    def __init__(self, tmp: Path, mapping: Mapping) -> None:
        super().__init__(tmp, mapping)
        need_mosquitto()
        from cityos.testing.mosquitto import mosquitto_broker

        self._ctx = mosquitto_broker()
        self.broker = self._ctx.__enter__()
        self.client_id = f"contract-{uuid.uuid4().hex[:8]}"

    def prepare(self, store: Store) -> None:
        # the first connection creates the persistent session that queues later messages
        self.source().run(store)

    def deliver(self, records: list[dict[str, Any]]) -> None:
        import paho.mqtt.client as mqtt

        c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"pub-{uuid.uuid4().hex[:8]}")
        c.connect(self.broker.host, self.broker.port)
        c.loop_start()
        infos = [c.publish(f"city/air/{r['sensor']}", json.dumps(r), qos=1) for r in records]
        for i in infos:
            i.wait_for_publish(10)
            assert i.is_published()
        c.disconnect()
        c.loop_stop()

    def source(self) -> Source:
        return MqttSource(
            {"city/air/+": self.mapping},
            host=self.broker.host,
            port=self.broker.port,
            client_id=self.client_id,
            idle_timeout_s=1.0,
            name="contract-mqtt",
        )

    def close(self) -> None:
        self._ctx.__exit__(None, None, None)


FEEDERS: dict[str, type[Feeder]] = {
    "files": FilesFeeder,
    "sql": SQLFeeder,
    "http": HttpFeeder,
    "mqtt": MqttFeeder,
}


def test_every_registered_source_has_a_feeder() -> None:
    assert set(FEEDERS) == set(SOURCES)


@pytest.mark.parametrize("kind", sorted(SOURCES))
def test_source_contract(
    kind: str, city: Store, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    if kind == "mqtt":
        request.applymarker(pytest.mark.integration)
    mapping = Mapping.from_dict(READINGS_MAPPING)
    feeder = FEEDERS[kind](tmp_path, mapping)
    try:
        assert isinstance(feeder.source(), SOURCES[kind])
        feeder.prepare(city)
        feeder.deliver(RECORDS)
        report = feeder.source().run(city)

        # good records stored, converted and keyed; bad ones did not stop them
        assert (report.accepted, report.rejected) == (3, 2)
        rows = city.scan("readings").to_pandas().sort_values(["id", "t"])
        assert list(rows["id"]) == ["s1", "s1", "s2"]
        assert rows["pm25"].tolist() == pytest.approx([35.0, 35.0, 35.0])
        assert str(rows["t"].iloc[0]) == "2026-03-02 00:00:00+00:00"  # 08:00 in Beijing

        # dead letters: original payload, the rule broken, the source position
        dead = {d.payload["sensor"]: d for d in DeadLetters(city).list(dataset="readings")}
        assert set(dead) == {"s3", "s4"}
        assert dead["s3"].payload["lat"] == 95.0
        assert dead["s3"].rule.startswith("y:")
        assert dead["s4"].rule.startswith("time")
        assert all(d.position for d in dead.values())

        # lineage: this source fed the dataset, with its counts
        ln = [e for e in lineage(city, "readings") if e.source == feeder.source().name]
        assert sum(e.accepted for e in ln) == 3 and sum(e.rejected for e in ln) == 2

        # re-delivery stores nothing twice and dead letters are not duplicated
        feeder.deliver(GOOD)
        again = feeder.source().run(city)
        assert again.accepted == 0 and again.datasets["readings"].duplicates == 3
        assert len(city.scan("readings")) == 3
        assert len(DeadLetters(city).list(dataset="readings")) == 2

        # fix and replay a dead letter
        dl = DeadLetters(city)
        dl.fix(dead["s3"].id, {**dead["s3"].payload, "lat": 39.95})
        rep = dl.replay(dataset="readings")
        assert (rep.replayed, rep.failed) == (1, 1)
        assert sorted(city.scan("readings").to_pandas()["id"]) == ["s1", "s1", "s2", "s3"]
        [still] = dl.list(dataset="readings")
        assert still.payload["sensor"] == "s4" and still.attempts == 1
    finally:
        if isinstance(feeder, MqttFeeder):
            feeder.close()

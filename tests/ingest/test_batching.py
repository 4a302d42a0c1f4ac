"""Batching in the ingest loop: MQTT messages are decoded and stored a batch at a time and
acknowledged only after the batch's append has committed; sources that read ahead on a helper
thread commit positions strictly after storage and stop when storing fails; the vectorised
time conversions give the same instants and the same dead letters as the general path."""

from __future__ import annotations

import json
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest

from cityos.ingest import Batch, Mapping, MqttSource, Part, Source, SourceContext
from cityos.store import Store, open_city
from cityos.testing.mosquitto import Broker

from .builders import READINGS_MAPPING, reading


def _publish(broker: Broker, payloads: list[bytes], topic: str = "city/air/x") -> None:
    import paho.mqtt.client as mqtt

    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"pub-{uuid.uuid4().hex[:8]}")
    c.connect(broker.host, broker.port)
    c.loop_start()
    infos = [c.publish(topic, p, qos=1) for p in payloads]
    for i in infos:
        i.wait_for_publish(10)
        assert i.is_published()
    c.disconnect()
    c.loop_stop()


class _Crash(Exception):
    """Stands in for the process dying between the append and the acknowledgement."""


class _CrashBeforeAck(MqttSource):
    """Fails at the first acknowledgement, after noting how many rows were stored by then."""

    def __init__(self, store: Store, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.store = store
        self.rows_at_ack: int | None = None

    def _connect(self, inbox: Any, wake: threading.Event) -> Any:
        client = super()._connect(inbox, wake)

        def ack(mid: int, qos: int) -> None:
            self.rows_at_ack = self.store.describe("readings").rows
            raise _Crash("killed before acknowledging")

        client.ack = ack
        if hasattr(client, "ack_many"):  # CityOS's own client acknowledges a batch at once
            client.ack_many = lambda acks: ack(*acks[0])
        return client


def _source(
    broker: Broker, client_id: str, cls: type[MqttSource] = MqttSource, *pre: Any, **kw: Any
) -> MqttSource:
    return cls(
        *pre,
        {"city/air/+": Mapping.from_dict(READINGS_MAPPING)},
        host=broker.host,
        port=broker.port,
        client_id=client_id,
        idle_timeout_s=1.0,
        name="batching-mqtt",
        **kw,
    )


def test_mqtt_batch_acknowledged_only_after_append_and_redelivery_stores_nothing_twice(
    broker: Broker, tmp_path: Path
) -> None:
    city = open_city(tmp_path / "city")
    cid = f"batching-{uuid.uuid4().hex[:8]}"
    _source(broker, cid, max_records=0).run(city)  # the persistent session that queues messages
    n = 40
    _publish(broker, [json.dumps(reading(f"s{i % 4}", i // 4)).encode() for i in range(n)])

    crashing = _source(broker, cid, _CrashBeforeAck, city, batch_rows=1000, linger_s=0.3)
    with pytest.raises(_Crash):
        crashing.run(city)
    # the batch was committed to the store before any acknowledgement was attempted ...
    assert crashing.rows_at_ack == n
    # ... so the broker still holds every message and delivers them all again
    seen: list[int] = []
    rep = _source(broker, cid, batch_rows=1000, linger_s=0.3).run(
        city, on_batch=lambda res, batch: seen.append(len(batch))
    )
    assert sum(seen) == n
    assert rep.received == n and rep.accepted == 0 and rep.datasets["readings"].duplicates == n
    assert city.describe("readings").rows == n
    # now acknowledged: nothing comes a third time
    assert _source(broker, cid).run(city).received == 0


def test_mqtt_batch_with_bad_payloads_stores_the_good_and_dead_letters_the_rest(
    broker: Broker, tmp_path: Path
) -> None:
    city = open_city(tmp_path / "city")
    cid = f"batching-{uuid.uuid4().hex[:8]}"
    _source(broker, cid, max_records=0).run(city)
    good = [json.dumps(reading("a", h)).encode() for h in range(3)]
    listed = json.dumps([reading("b", 1), 7, reading("b", 2)]).encode()
    payloads = [
        good[0],
        b"{not json",
        good[1],
        listed,
        b'{"sensor": "c", "ts": "never", "lon": 1, "lat": 2}',
        b"NaN",
        good[2],
    ]
    _publish(broker, payloads)
    batches: list[int] = []
    rep = _source(broker, cid, batch_rows=1000, linger_s=0.3).run(
        city, on_batch=lambda r, b: batches.append(len(b))
    )
    assert len(batches) == 1  # one decode, one append for the whole burst
    assert rep.accepted == 5  # a0..a2, b1, b2
    problems = {(p["rule"], p["position"].split("#")[0]) for p in rep.datasets["readings"].problems}
    assert problems == {
        ("payload.json", "mqtt:city/air/x"),
        ("payload.object", "mqtt:city/air/x"),
        ("time", "mqtt:city/air/x"),
    }
    positions = [p["position"] for p in rep.datasets["readings"].problems]
    assert all("#mid=" in p for p in positions)
    # NaN is JSON to the standard library (a number, not an object), never "not JSON"
    assert sum(p["rule"] == "payload.object" for p in rep.datasets["readings"].problems) == 2
    assert city.describe("readings").rows == 5
    assert _source(broker, cid).run(city).received == 0  # the bad ones were acknowledged too


class _Listed(Source):
    """Yields ``n`` one-record batches; remembers which were committed and when reading stopped."""

    kind = "listed"
    prefetch = True

    def __init__(self, mapping: Mapping, n: int, fail_read_at: int | None = None) -> None:
        super().__init__(mapping, name="listed")
        self.n = n
        self.fail_read_at = fail_read_at
        self.committed: list[int] = []
        self.yielded: list[int] = []
        self.reader_done = threading.Event()

    def read(self, ctx: SourceContext) -> Iterator[Batch]:
        try:
            for i in range(self.n):
                if ctx.stopping:
                    return
                if i == self.fail_read_at:
                    raise RuntimeError("source broke")
                self.yielded.append(i)
                yield Batch(
                    "readings",
                    [Part([reading(f"s{i}", 1)], "memory", i)],
                    on_durable=lambda i=i: self.committed.append(i),
                )
        finally:
            self.reader_done.set()


def test_read_ahead_commits_in_order_after_storage(tmp_path: Path) -> None:
    city = open_city(tmp_path / "city")
    src = _Listed(Mapping.from_dict(READINGS_MAPPING), 6)
    stored_at_commit: list[int] = []
    rep = src.run(
        city, on_batch=lambda r, b: stored_at_commit.append(city.describe("readings").rows)
    )
    assert src.committed == list(range(6))
    assert stored_at_commit == [1, 2, 3, 4, 5, 6]
    assert rep.accepted == 6


def test_read_ahead_error_in_the_source_is_raised_and_earlier_batches_stay_committed(
    tmp_path: Path,
) -> None:
    city = open_city(tmp_path / "city")
    src = _Listed(Mapping.from_dict(READINGS_MAPPING), 6, fail_read_at=3)
    with pytest.raises(RuntimeError, match="source broke"):
        src.run(city)
    assert src.committed == [0, 1, 2]
    assert city.describe("readings").rows == 3


def test_read_ahead_stops_reading_when_storing_fails(tmp_path: Path) -> None:
    city = open_city(tmp_path / "city")
    src = _Listed(Mapping.from_dict(READINGS_MAPPING), 10_000)

    def fail(res: Any, batch: Batch) -> None:
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        src.run(city, on_batch=fail)
    assert src.reader_done.is_set()  # the helper thread ended with the run
    assert src.committed == [0]  # the batch read ahead was never committed
    assert len(src.yielded) < 10  # and reading stopped instead of running through the source


def _times(
    doc_time: dict[str, Any], cols: dict[str, Any]
) -> tuple[list[Any], list[tuple[int, str]]]:
    n = len(next(iter(cols.values())))
    m = Mapping.from_dict(
        {
            "dataset": {"name": "x", "model": "point_series"},
            "id": {"from": "k"},
            "time": doc_time,
            "geometry": {"x": "lon", "y": "lon"},
        }
    )
    out = m.apply(pa.table({"k": ["a"] * n, "lon": [1.0] * n, **cols}))
    t = [None if v is None else v.isoformat() for v in out.table["t"].to_pylist()]
    return t, sorted((p.row, p.message) for p in out.problems)


@pytest.mark.parametrize(("ambiguous", "fold"), [("earliest", "05:30"), ("latest", "06:30")])
def test_integer_time_parts_follow_the_zone_rules(ambiguous: str, fold: str) -> None:
    parts = {
        "year": pa.array([2021, 2021, 2021, 2021, 2021, None], pa.int64()),
        "month": pa.array([11, 3, 2, 12, 6, 1], pa.int64()),
        "day": pa.array([7, 14, 30, 31, 1, 1], pa.int64()),
        "hour": pa.array([1, 2, 0, 24, 12, 0], pa.int64()),
        "minute": pa.array([30, 30, 0, 0, 0, 0], pa.int64()),
    }
    t, problems = _times(
        {"from": {k: k for k in parts}, "timezone": "America/New_York", "ambiguous": ambiguous},
        parts,
    )
    assert t == [
        f"2021-11-07T{fold}:00+00:00",  # the repeated hour of the autumn change
        "2021-03-14T07:00:00+00:00",  # the skipped hour moves to its end (03:00 EDT)
        None,  # 30 February
        "2022-01-01T05:00:00+00:00",  # hour 24 is the next day, as with pandas
        "2021-06-01T16:00:00+00:00",
        None,
    ]
    assert problems == [
        (2, "cannot read the time: time parts do not form a valid date"),
        (5, "record has no time"),
    ]


def test_integer_epoch_seconds_are_exact_and_out_of_range_values_rejected() -> None:
    v = pa.array([1_772_409_600, None, -1, 2**62], pa.int64())
    t, problems = _times({"from": "ts", "format": "epoch_s"}, {"ts": v})
    assert t == ["2026-03-02T00:00:00+00:00", None, "1969-12-31T23:59:59+00:00", None]
    assert problems == [
        (1, "record has no time"),
        (3, "cannot read the time: not a number of seconds"),
    ]

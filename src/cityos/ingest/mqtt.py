"""MQTT source for IoT sensors: topic patterns mapped to datasets, QoS 1, JSON payloads (one
record or a list), acknowledged to the broker only after the records are durably stored.

Observations follow a format modelled on OGC SensorThings: ``{"datastream": ...,
"phenomenonTime": ..., "result": ..., "location": {"type": "Point", "coordinates": [x, y]}}``
(see ``examples/sensorthings_observations.yaml``); any JSON works with a matching mapping.
"""

from __future__ import annotations

import hashlib
import json
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, overload

from cityos.ingest._base import Batch, Part, Rejected, Source, SourceContext
from cityos.ingest._mapping import Mapping
from cityos.ingest.errors import SourceError

__all__ = ["MqttSource", "observation"]

_UNSEEN = object()


def observation(
    datastream: str,
    phenomenon_time: str,
    result: Any,
    *,
    x: float | None = None,
    y: float | None = None,
    **extra: Any,
) -> dict[str, Any]:
    """An observation in the SensorThings-like format this module documents.

    Examples
    --------
    >>> observation("aq-1/pm25", "2026-03-02T08:00:00Z", 35.0, x=116.4, y=39.9)["location"]
    {'type': 'Point', 'coordinates': [116.4, 39.9]}
    """
    o: dict[str, Any] = {
        "datastream": datastream,
        "phenomenonTime": phenomenon_time,
        "result": result,
    }
    if x is not None and y is not None:
        o["location"] = {"type": "Point", "coordinates": [x, y]}
    o.update(extra)
    return o


_fast_loads: Callable[[bytes], Any]
try:  # optional: several times faster than the standard library on small objects
    from orjson import loads as _fast_loads
except ImportError:  # pragma: no cover - orjson is not a dependency
    _fast_loads = json.loads


def _loads(payload: bytes) -> Any:
    """Decode one payload. orjson accepts a subset of what :func:`json.loads` does (no NaN,
    no integers beyond 64 bits), so anything it refuses is tried again with the standard
    library: the fast path never dead-letters a payload the slow one would have stored."""
    try:
        return _fast_loads(payload)
    except ValueError:
        return json.loads(payload)


class _Positions(Sequence[str]):
    """Source positions (``mqtt:<topic>#mid=<id>[k]``) of a batch's records, formatted only
    when one is needed (a dead letter), not for every message."""

    def __init__(self, topics: list[str], mids: list[int], idx: list[int], sub: list[int]) -> None:
        self._topics, self._mids, self._idx, self._sub = topics, mids, idx, sub

    def __len__(self) -> int:
        return len(self._idx)

    @overload
    def __getitem__(self, i: int) -> str: ...

    @overload
    def __getitem__(self, i: slice) -> Sequence[str]: ...

    def __getitem__(self, i: int | slice) -> str | Sequence[str]:
        if isinstance(i, slice):
            return [self[j] for j in range(*i.indices(len(self)))]
        m = self._idx[i]
        pos = f"mqtt:{self._topics[m]}#mid={self._mids[m]}"
        return pos if self._sub[i] < 0 else f"{pos}[{self._sub[i]}]"


@dataclass
class _Pending:
    """Messages received for one dataset and not yet handed on: raw payloads, decoded only
    when the batch is cut, in one pass."""

    topics: list[str] = field(default_factory=list)
    mids: list[int] = field(default_factory=list)
    qos: list[int] = field(default_factory=list)
    payloads: list[bytes] = field(default_factory=list)
    since: float = 0.0

    def __len__(self) -> int:
        return len(self.payloads)

    def decode(self) -> tuple[list[dict[str, Any]], _Positions, list[Rejected]]:
        records: list[dict[str, Any]] = []
        idx: list[int] = []  # message of each record
        sub: list[int] = []  # element of a list payload, -1 for a single object
        rejected: list[Rejected] = []
        for m, payload in enumerate(self.payloads):
            try:
                value = _loads(payload)
            except (ValueError, UnicodeDecodeError) as e:
                rejected.append(
                    Rejected(
                        f"mqtt:{self.topics[m]}#mid={self.mids[m]}",
                        payload.decode("utf8", "replace"),
                        "payload.json",
                        f"payload is not JSON: {e}",
                    )
                )
                continue
            if isinstance(value, dict):
                records.append(value)
                idx.append(m)
                sub.append(-1)
                continue
            recs = value if isinstance(value, list) else [value]
            for j, r in enumerate(recs):
                if isinstance(r, dict):
                    records.append(r)
                    idx.append(m)
                    sub.append(j if len(recs) > 1 else -1)
                else:
                    rejected.append(
                        Rejected(
                            f"mqtt:{self.topics[m]}#mid={self.mids[m]}",
                            r,
                            "payload.object",
                            "a record must be a JSON object",
                        )
                    )
        return records, _Positions(self.topics, self.mids, idx, sub), rejected


class MqttSource(Source):
    """Subscribe to MQTT topics and ingest their JSON payloads.

    The session is persistent (fixed client id, clean session off) and QoS 1 messages are
    acknowledged manually after their batch is stored, so a crash before the acknowledgement
    makes the broker deliver them again; the store's record keys drop the repeats.

    Parameters
    ----------
    topics:
        Topic pattern (``+``/``#`` wildcards) → mapping of the dataset it feeds.
    host, port, username, password:
        The broker.
    client_id:
        Stable id of the persistent session (default: derived from the source name).
    batch_rows, linger_s:
        A batch is stored when it has ``batch_rows`` records or its oldest record has waited
        ``linger_s`` seconds.
    max_records, idle_timeout_s:
        Stop after this many records, or after this long without a message (None: run until
        ``stop`` is set).

    Notes
    -----
    The broker must let enough unacknowledged messages be in flight for throughput (Mosquitto:
    ``max_inflight_messages 0`` or a few thousand) and queue messages for an offline
    subscriber (``max_queued_messages``) and persist them across restarts (``persistence true``).

    QoS 0 and 1 subscriptions use CityOS's own MQTT 3.1.1 client
    (:class:`cityos.ingest._mqttwire.WireClient`), which reads the socket in blocks and sends a
    batch's acknowledgements in one write; QoS 2 uses paho-mqtt.
    """

    kind = "mqtt"
    prefetch = True  # decode and map the next batch while the previous one is appended

    def __init__(
        self,
        topics: dict[str, Mapping],
        *,
        host: str = "127.0.0.1",
        port: int = 1883,
        username: str | None = None,
        password: str | None = None,
        client_id: str | None = None,
        qos: int = 1,
        batch_rows: int = 5000,
        linger_s: float = 0.05,
        max_records: int | None = None,
        idle_timeout_s: float | None = None,
        connect_timeout_s: float = 15.0,
        name: str | None = None,
    ) -> None:
        if not topics:
            raise SourceError("MqttSource needs at least one topic pattern → mapping")
        self.topics = dict(topics)
        self.host, self.port = host, port
        self.username, self.password = username, password
        self.qos = qos
        self.batch_rows = batch_rows
        self.linger_s = linger_s
        self.max_records = max_records
        self.idle_timeout_s = idle_timeout_s
        self.connect_timeout_s = connect_timeout_s
        super().__init__(
            list({m.dataset: m for m in topics.values()}.values()),
            name=name or f"mqtt:{host}:{port}/{','.join(topics)}",
        )
        self.client_id = client_id or "cityos-" + hashlib.sha1(self.name.encode()).hexdigest()[:16]
        self._client: Any = None
        self._routes: dict[str, str | None] = {}
        self.connected = threading.Event()

    def _dataset_for(self, topic: str) -> str | None:
        # topic matching is slow in paho (a trie per call); devices reuse few topics, so cache
        found = self._routes.get(topic, _UNSEEN)
        if found is not _UNSEEN:
            return found  # type: ignore[return-value]
        from paho.mqtt.client import topic_matches_sub

        ds = next(
            (m.dataset for pattern, m in self.topics.items() if topic_matches_sub(pattern, topic)),
            None,
        )
        if len(self._routes) >= 100_000:  # bounded: one entry per distinct topic
            self._routes.clear()
        self._routes[topic] = ds
        return ds

    def _connect(self, inbox: deque[tuple[str, int, int, bytes]], wake: threading.Event) -> Any:
        if self.qos <= 1:
            return self._connect_wire(inbox, wake)
        return self._connect_paho(inbox, wake)

    def _connect_wire(
        self, inbox: deque[tuple[str, int, int, bytes]], wake: threading.Event
    ) -> Any:
        """QoS 0/1: CityOS's own subscriber (:mod:`cityos.ingest._mqttwire`), which reads
        and acknowledges in bulk."""
        from cityos.ingest._mqttwire import WireClient

        def on_message(topic: str, mid: int, qos: int, payload: bytes) -> None:
            inbox.append((topic, mid, qos, payload))
            if not wake.is_set():
                wake.set()

        c = WireClient(
            self.host,
            self.port,
            self.client_id,
            [(t, self.qos) for t in self.topics],
            on_message,
            username=self.username,
            password=self.password,
        )
        c.connected = self.connected  # one event: set while subscribed
        c.start()
        if not self.connected.wait(self.connect_timeout_s):
            why = c.error
            c.stop()
            raise SourceError(
                f"cannot reach the MQTT broker at {self.host}:{self.port} within "
                f"{self.connect_timeout_s:.0f} s ({why or 'no answer'}); is it running?"
            )
        return c

    def _connect_paho(
        self, inbox: deque[tuple[str, int, int, bytes]], wake: threading.Event
    ) -> Any:
        """QoS 2 (exactly-once delivery handshakes): paho-mqtt."""
        try:
            import paho.mqtt.client as mqtt
        except ImportError as e:  # pragma: no cover - optional dependency
            from cityos.errors import MissingDependency

            raise MissingDependency("paho-mqtt", "the MQTT source", "mqtt") from e
        from paho.mqtt.enums import CallbackAPIVersion

        c = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=self.client_id,
            clean_session=False,
            manual_ack=True,
        )
        if self.username is not None:
            c.username_pw_set(self.username, self.password)
        c.reconnect_delay_set(min_delay=1, max_delay=2)
        # deliveries beyond this would wait in paho; the broker's limit is what matters
        c.max_inflight_messages_set(65535)

        def on_connect(client: Any, _u: Any, _flags: Any, reason: Any, _p: Any) -> None:
            if not reason.is_failure:
                client.subscribe([(t, self.qos) for t in self.topics])
                self.connected.set()

        def on_disconnect(_c: Any, _u: Any, _f: Any, _r: Any, _p: Any) -> None:
            self.connected.clear()

        def on_message(_c: Any, _u: Any, msg: Any) -> None:
            # runs on paho's network thread for every message: keep it to an append (atomic
            # under the GIL) and a flag, far cheaper than a queue.Queue's locks
            inbox.append((msg.topic, msg.mid, msg.qos, msg.payload))
            if not wake.is_set():
                wake.set()

        c.on_connect, c.on_disconnect, c.on_message = on_connect, on_disconnect, on_message
        c.connect_async(self.host, self.port, keepalive=30)
        c.loop_start()
        if not self.connected.wait(self.connect_timeout_s):
            c.loop_stop()
            raise SourceError(
                f"cannot reach the MQTT broker at {self.host}:{self.port} within "
                f"{self.connect_timeout_s:.0f} s; is it running?"
            )
        return c

    def read(self, ctx: SourceContext) -> Iterator[Batch]:
        inbox: deque[tuple[str, int, int, bytes]] = deque()
        wake = threading.Event()
        self._client = client = self._connect(inbox, wake)
        pending: dict[str, _Pending] = {}
        taken = 0
        last_msg = time.monotonic()

        def batch(ds: str) -> Batch:
            p = pending.pop(ds)
            records, positions, rejected = p.decode()
            acks = [(mid, qos) for mid, qos in zip(p.mids, p.qos, strict=True) if qos > 0]

            def ack() -> None:
                # called by the ingest loop only after the batch's append has committed (and
                # its dead letters are written): a crash before this point means the broker
                # delivers every message of the batch again, and record keys drop the repeats
                _ack(client, acks)

            return Batch(ds, [Part(records, "mqtt", 0, positions)], rejected, ack, len(p))

        while not ctx.stopping:
            # take everything that has arrived (bounded by a batch), instead of one message
            # per loop turn
            budget = max(1, self.batch_rows - max((len(p) for p in pending.values()), default=0))
            got = 0
            while inbox and got < budget:
                topic, mid, qos, payload = inbox.popleft()
                got += 1
                target = self._dataset_for(topic)
                if (
                    target is None
                ):  # subscribed pattern overlap with no mapping: acknowledge and drop
                    if qos > 0:
                        _ack(client, [(mid, qos)])
                    continue
                p = pending.get(target)
                if p is None:
                    p = pending[target] = _Pending(since=time.monotonic())
                p.topics.append(topic)
                p.mids.append(mid)
                p.qos.append(qos)
                p.payloads.append(payload)
                if len(p) >= self.batch_rows:
                    break
            now = time.monotonic()
            if got:
                last_msg = now
                taken += got
            due = [
                ds
                for ds, p in pending.items()
                if len(p) >= self.batch_rows or now - p.since >= self.linger_s
            ]
            for ds in due:
                yield batch(ds)
            if due or inbox:
                continue
            if self.max_records is not None and taken >= self.max_records and not pending:
                return
            if (
                self.idle_timeout_s is not None
                and now - last_msg > self.idle_timeout_s
                and not pending
            ):
                return
            wait = min((self.linger_s - (now - p.since) for p in pending.values()), default=0.2)
            # clear, then look again: a message appended in between is seen now or sets the
            # flag again, so the wait never sleeps on a non-empty inbox
            wake.clear()
            if not inbox:
                wake.wait(max(0.001, wait))
        for ds in list(pending):  # stopping: store what was received, so it can be acknowledged
            yield batch(ds)

    def close(self) -> None:
        from cityos.ingest._mqttwire import WireClient

        c, self._client = self._client, None
        if isinstance(c, WireClient):
            c.stop()
        elif c is not None:
            c.disconnect()
            c.loop_stop()


def _ack(client: Any, acks: Sequence[tuple[int, int]]) -> None:
    """Acknowledge messages ``(packet id, qos)``: in one write with CityOS's client, one by
    one with paho's."""
    from cityos.ingest._mqttwire import WireClient

    if isinstance(client, WireClient):
        client.ack_many(acks)
    else:
        for mid, qos in acks:
            client.ack(mid, qos)

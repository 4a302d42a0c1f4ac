"""Nothing acknowledged is lost: while observations stream over a real Mosquitto broker, the
ingest process is SIGKILLed at random points and restarted, and the broker restarted; in the
end every record whose publish the broker acknowledged is stored exactly once."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from cityos.ingest import EXAMPLES_DIR, observation
from cityos.store import open_city
from cityos.testing.mosquitto import Broker

pytestmark = pytest.mark.integration

TOPIC = "city/obs"
T0 = 1_772_409_600  # 2026-03-02T00:00:00Z


def _obs(i: int) -> dict[str, object]:
    sensor = f"aq-{i % 50:02d}"
    t = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(T0 + (i // 50) * 60))
    return observation(sensor, t, float(i), x=116.3 + (i % 50) * 0.001, y=39.9)


def _key(i: int) -> tuple[str, str]:
    o = _obs(i)
    return str(o["datastream"]), str(o["phenomenonTime"])


class Worker:
    """The ingest process, as an operator would run it (`python -m cityos.ingest ingest mqtt`)."""

    def __init__(self, home: Path, broker: Broker, log: Path) -> None:
        self.cmd = [
            sys.executable,
            "-m",
            "cityos.ingest",
            "ingest",
            "mqtt",
            "--topic",
            f"{TOPIC}/+={EXAMPLES_DIR / 'sensorthings_observations.yaml'}",
            "--host",
            broker.host,
            "--port",
            str(broker.port),
            "--client-id",
            "durability-worker",
            "--batch-rows",
            "300",
            "--linger",
            "0.02",
            "--quiet",
            "--home",
            str(home),
        ]
        self.log = log
        self.proc: subprocess.Popen[bytes] | None = None
        self.kills = 0

    def start(self) -> None:
        with open(self.log, "ab") as fh:
            self.proc = subprocess.Popen(self.cmd, stdout=fh, stderr=fh)

    def kill(self) -> None:
        if self.proc is not None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait()
            self.kills += 1

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait()


class Publisher(threading.Thread):
    """Publishes observations with QoS 1 and records which ones the broker acknowledged;
    unacknowledged ones (broker down) are published again, as a device would."""

    def __init__(self, broker: Broker, n: int, window: int = 250) -> None:
        super().__init__(daemon=True)
        self.broker, self.n, self.window = broker, n, window
        self.acked: set[int] = set()
        self.error: BaseException | None = None

    def run(self) -> None:
        import paho.mqtt.client as mqtt

        try:
            c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="durability-publisher")
            c.reconnect_delay_set(0.1, 1)
            pending: dict[int, int] = {}
            lock = threading.Lock()

            def on_publish(_c: object, _u: object, mid: int, _rc: object, _p: object) -> None:
                with lock:
                    i = pending.pop(mid, None)
                    if i is not None:
                        self.acked.add(i)

            c.on_publish = on_publish
            c.connect_async(self.broker.host, self.broker.port)
            c.loop_start()
            todo = list(range(self.n))
            deadline = time.monotonic() + 120
            while todo and time.monotonic() < deadline:
                chunk, todo = todo[: self.window], todo[self.window :]
                for i in chunk:
                    info = c.publish(f"{TOPIC}/{_obs(i)['datastream']}", json.dumps(_obs(i)), qos=1)
                    with lock:
                        if info.rc == mqtt.MQTT_ERR_SUCCESS or info.rc == mqtt.MQTT_ERR_NO_CONN:
                            pending[info.mid] = i
                t_end = time.monotonic() + 3
                while time.monotonic() < t_end:
                    with lock:
                        if not any(v in chunk for v in pending.values()):
                            break
                    time.sleep(0.01)
                with lock:
                    todo += [i for i in chunk if i not in self.acked]
                    for mid in [m for m, v in pending.items() if v in chunk]:
                        del pending[mid]
            c.disconnect()
            c.loop_stop()
        except BaseException as e:  # surfaced by the test
            self.error = e


def _stored(home: Path) -> list[tuple[str, str, int]]:
    with open_city(home) as store:
        df = store.scan("observations", columns=["id", "t"]).to_pandas()
    counts = df.groupby([df["id"], df["t"].dt.strftime("%Y-%m-%dT%H:%M:%SZ")]).size()
    return [(i, t, int(n)) for (i, t), n in counts.items()]


def _create_session(broker: Broker) -> None:
    """Subscribe as the worker's persistent session, so the broker queues from now on (an
    operator starts the ingest before the devices; here processes start concurrently)."""
    import paho.mqtt.client as mqtt

    c = mqtt.Client(
        mqtt.CallbackAPIVersion.VERSION2, client_id="durability-worker", clean_session=False
    )
    done = threading.Event()
    c.on_subscribe = lambda *_a: done.set()
    c.connect(broker.host, broker.port)
    c.loop_start()
    c.subscribe(f"{TOPIC}/+", qos=1)
    assert done.wait(10), "the broker did not confirm the subscription"
    c.disconnect()
    c.loop_stop()


def _chaos(
    tmp_path: Path, broker: Broker, n: int, kills: int, broker_restarts: int, seed: int
) -> None:
    home = tmp_path / "city"
    from cityos.ingest import example_mapping
    from cityos.ingest._base import ensure_dataset
    from cityos.ingest._state import IngestState

    with open_city(home) as store:  # migrate and create the dataset before workers race to
        ensure_dataset(store, example_mapping("sensorthings_observations"), IngestState(store.db))
    _create_session(broker)
    worker = Worker(home, broker, tmp_path / "worker.log")
    worker.start()
    pub = Publisher(broker, n)
    pub.start()
    rng = random.Random(seed)
    events = ["kill"] * kills + ["broker"] * broker_restarts
    rng.shuffle(events)
    for ev in events:
        time.sleep(rng.uniform(0.3, 1.5))
        if ev == "kill":
            worker.kill()
            time.sleep(rng.uniform(0.0, 0.5))
            worker.start()
        else:
            broker.restart()
    pub.join(180)
    assert pub.error is None, pub.error
    assert not pub.is_alive(), "publisher did not finish"
    try:
        deadline = time.monotonic() + 90
        want = {_key(i) for i in pub.acked}
        while time.monotonic() < deadline:
            got = {(i, t) for i, t, _ in _stored(home)}
            if want <= got:
                break
            assert worker.proc is not None and worker.proc.poll() is None, (
                tmp_path / "worker.log"
            ).read_text()[-3000:]
            time.sleep(0.5)
    finally:
        worker.stop()
    rows = _stored(home)
    assert worker.kills == kills
    assert len(pub.acked) == n  # the publisher got every record through in the end
    missing = want - {(i, t) for i, t, _ in rows}
    assert not missing, f"{len(missing)} acknowledged records lost, e.g. {sorted(missing)[:3]}"
    assert all(c == 1 for _, _, c in rows), "a record was stored twice"
    with open_city(home) as store:
        assert len(store.scan("observations")) == len(rows)


def test_kill_and_broker_restart_lose_nothing(tmp_path: Path, broker: Broker) -> None:
    _chaos(
        tmp_path, broker, n=3000, kills=3, broker_restarts=1, seed=int(os.environ.get("SEED", "3"))
    )


@pytest.mark.slow
def test_kill_and_broker_restart_lose_nothing_long(tmp_path: Path, broker: Broker) -> None:
    _chaos(tmp_path, broker, n=30_000, kills=12, broker_restarts=3, seed=11)

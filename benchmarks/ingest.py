"""How fast does data come in? CSV files into the store (rows/s) against a plain
pandas-to-Parquet baseline in the same run, and MQTT observations through a loopback Mosquitto
(sustained messages/s, p50/p99 delay from publish to queryable, loss).

    .venv/bin/python benchmarks/ingest.py [--copies 3] [--messages 60000] [--seconds 60]
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import shutil
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from cityos.ingest import EXAMPLES_DIR, FileSource, MqttSource, example_mapping, load_mapping
from cityos.store import open_city


def _shared_data() -> Path:
    env = os.environ.get("CITYOS_SHARED_DATA")
    return Path(env) if env else Path(__file__).resolve().parents[2] / "shared" / "data"


def bench_files(work: Path, copies: int) -> dict[str, Any]:
    """Beijing air quality (12 CSVs, 420,768 rows) repeated ``copies`` times with shifted
    station names, so each copy holds new records."""
    src = _shared_data() / "beijing-air-quality"
    data = work / "aq"
    data.mkdir()
    shutil.copy(src / "stations.csv", data / "stations.csv")
    st = pd.read_csv(src / "stations.csv")
    stations = pd.concat([st.assign(station=st["station"] + (f"-{k}" if k else "")) for k in range(copies)])
    stations.to_csv(data / "stations.csv", index=False)
    for k in range(copies):
        for f in sorted(src.glob("PRSA_Data_*.csv")):
            if k == 0:
                shutil.copy(f, data / f.name)
            else:
                df = pd.read_csv(f)
                df["station"] = df["station"] + f"-{k}"
                df.to_csv(data / f"{f.stem}-{k}.csv", index=False)
    files = sorted(data.glob("PRSA_Data_*.csv"))
    size = sum(f.stat().st_size for f in files)

    t0 = time.perf_counter()
    frames = [pd.read_csv(f) for f in files]
    base = pd.concat(frames, ignore_index=True)
    base.to_parquet(work / "baseline.parquet")
    t_base = time.perf_counter() - t0

    city = open_city(work / "city")
    m = example_mapping("beijing_air_quality", base_dir=data)
    t0 = time.perf_counter()
    rep = FileSource(data, m, batch_rows=2_000_000).run(city)
    t_city = time.perf_counter() - t0
    stored = city.describe("beijing_air_quality").rows
    assert stored == len(base) == rep.accepted, (stored, len(base), rep.accepted)
    city.close()
    return {"rows": len(base), "mb": size / 1e6, "t_city": t_city, "t_base": t_base}


def _publisher(host: str, port: int, n: int, seconds: float, out: Any) -> None:
    import paho.mqtt.client as mqtt

    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="bench-pub")
    c.max_inflight_messages_set(1000)
    c.max_queued_messages_set(0)
    acked = [0]
    c.on_publish = lambda *_a: acked.__setitem__(0, acked[0] + 1)
    c.connect(host, port)
    c.loop_start()
    t0 = time.time()
    t_base = 1_772_409_600
    sent = 0
    for i in range(n):
        if time.time() - t0 > seconds:
            break
        o = {"datastream": f"aq-{i % 1000:03d}", "phenomenonTime": t_base + (i // 1000) * 60,
             "result": float(i % 500), "location": {"type": "Point", "coordinates": [116.3 + (i % 1000) * 1e-4, 39.9]},
             "sent": time.time()}
        c.publish("bench/obs", json.dumps(o), qos=1)
        sent += 1
    deadline = time.time() + 30
    while acked[0] < sent and time.time() < deadline:
        time.sleep(0.01)
    out.put((sent, acked[0], t0, time.time()))
    c.disconnect()
    c.loop_stop()


def bench_mqtt(work: Path, n: int, seconds: float) -> dict[str, Any]:
    from cityos.testing.mosquitto import mosquitto_broker

    doc = json.loads(json.dumps(load_mapping(EXAMPLES_DIR / "sensorthings_observations.yaml").doc.model_dump(
        mode="json", by_alias=True, exclude_defaults=True)))
    doc["time"] = {"from": "phenomenonTime", "format": "epoch_s"}
    doc["dataset"]["time_partition"] = "30D"
    m = load_mapping(doc)
    city = open_city(work / "mqtt-city")
    with mosquitto_broker() as b:
        delays: list[np.ndarray] = []
        stored = [0]
        first_done = [0.0]
        last_done = [0.0]

        def on_batch(res: Any, batch: Any) -> None:
            now = time.time()
            sent = np.array([r["sent"] for p in batch.parts for r in p.records])
            delays.append(now - sent)
            stored[0] += res.accepted
            first_done[0] = first_done[0] or now
            last_done[0] = now

        src = MqttSource({"bench/obs": m}, host=b.host, port=b.port, client_id="bench-ingest",
                         batch_rows=20_000, linger_s=0.2, idle_timeout_s=10.0, max_records=n)
        stop = threading.Event()
        th = threading.Thread(target=lambda: src.run(city, stop=stop, on_batch=on_batch), daemon=True)
        th.start()
        src.connected.wait(15)
        q: Any = mp.get_context("spawn").Queue()
        pub = mp.get_context("spawn").Process(target=_publisher, args=(b.host, b.port, n, seconds, q))
        pub.start()
        sent, acked, t0, t_pub_end = q.get(timeout=seconds + 120)
        pub.join()
        deadline = time.time() + 60
        while stored[0] < sent and time.time() < deadline:
            time.sleep(0.05)
        stop.set()
        th.join(30)
    rows = city.describe("observations").rows
    city.close()
    d = np.concatenate(delays) if delays else np.array([np.nan])
    return {"sent": sent, "acked": acked, "stored": rows, "t_pub": t_pub_end - t0,
            "t_total": last_done[0] - t0, "p50": float(np.percentile(d, 50)), "p99": float(np.percentile(d, 99))}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--copies", type=int, default=3, help="copies of the Beijing data (420,768 rows each)")
    ap.add_argument("--messages", type=int, default=60_000)
    ap.add_argument("--seconds", type=float, default=60.0, help="bound on publishing time")
    ap.add_argument("--skip-mqtt", action="store_true")
    a = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="cityos-bench-ingest-"))
    try:
        f = bench_files(work, a.copies)
        print(f"\nCSV -> store: {f['rows']:,} rows, {f['mb']:.0f} MB of CSV")
        print("| path | seconds | rows/s |\n|---|---|---|")
        print(f"| CityOS FileSource (map, validate, Z2T layout, catalog) | {f['t_city']:.2f} | {f['rows'] / f['t_city']:,.0f} |")
        print(f"| pandas read_csv + to_parquet | {f['t_base']:.2f} | {f['rows'] / f['t_base']:,.0f} |")
        print(f"ratio CityOS / pandas-to-Parquet time: {f['t_city'] / f['t_base']:.2f}x")
        if not a.skip_mqtt:
            r = bench_mqtt(work, a.messages, a.seconds)
            print(f"\nMQTT (loopback Mosquitto, QoS 1): {r['sent']:,} published, {r['acked']:,} acknowledged by "
                  f"the broker, {r['stored']:,} stored (loss {r['sent'] - r['stored']:,})")
            print(f"publish rate {r['sent'] / r['t_pub']:,.0f} msg/s; sustained ingest "
                  f"{r['stored'] / r['t_total']:,.0f} msg/s (first publish to last stored)")
            print(f"delay publish -> queryable: p50 {r['p50'] * 1000:.0f} ms, p99 {r['p99'] * 1000:.0f} ms")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()

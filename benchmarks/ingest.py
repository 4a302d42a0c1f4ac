"""How fast does data come in? CSV files into the store (rows/s) against a plain
pandas-to-Parquet baseline in the same run, and MQTT observations through a loopback Mosquitto
(sustained messages/s and p50/p99 delay from publish to queryable at a fixed publish rate,
loss; and the drain rate of a queued backlog, which is CityOS's capacity without a publisher
competing for the CPU).

    .venv/bin/python benchmarks/ingest.py [--copies 3] [--messages 200000 --rate 12000]
        [--mqtt-runs 3] [--load-points 10000000] [--skip-files] [--skip-mqtt]
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
import pyarrow as pa

from cityos.ingest import EXAMPLES_DIR, FileSource, MqttSource, example_mapping, load_mapping
from cityos.ingest._files import read_file
from cityos.store import open_city


def _shared_data() -> Path:
    env = os.environ.get("CITYOS_SHARED_DATA")
    return Path(env) if env else Path(__file__).resolve().parents[2] / "shared" / "data"


def bench_files(work: Path, copies: int, batch_rows: int | None) -> dict[str, Any]:
    """Beijing air quality (12 CSVs, 420,768 rows) repeated ``copies`` times with shifted
    station names, so each copy holds new records."""
    src = _shared_data() / "beijing-air-quality"
    data = work / "aq"
    data.mkdir()
    shutil.copy(src / "stations.csv", data / "stations.csv")
    st = pd.read_csv(src / "stations.csv")
    stations = pd.concat(
        [st.assign(station=st["station"] + (f"-{k}" if k else "")) for k in range(copies)]
    )
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

    t0, c0 = time.perf_counter(), time.process_time()
    frames = [pd.read_csv(f) for f in files]
    base = pd.concat(frames, ignore_index=True)
    base.to_parquet(work / "baseline.parquet")
    t_base, c_base = time.perf_counter() - t0, time.process_time() - c0

    city = open_city(work / "city")
    m = example_mapping("beijing_air_quality", base_dir=data)
    kw = {} if batch_rows is None else {"batch_rows": batch_rows}
    t0, c0 = time.perf_counter(), time.process_time()
    # the readings take positions from the stations dataset (dataset.stations): ingest it first
    FileSource(data / "stations.csv", example_mapping("beijing_stations", base_dir=data)).run(city)
    rep = FileSource(data, m, **kw).run(city)
    t_city, c_city = time.perf_counter() - t0, time.process_time() - c0
    stored = city.describe("beijing_air_quality").rows
    assert stored == len(base) == rep.accepted, (stored, len(base), rep.accepted)

    # the store's share: the same rows, already mapped, in one append to a fresh dataset
    mapped = pa.concat_tables(
        [m.apply(t).table for f in files for t, _, _ in read_file(f, null_values=["NA", ""])],
        promote_options="permissive",
    )
    city.create_dataset("aq_append_only", m.schema())
    t0, c0 = time.perf_counter(), time.process_time()
    city.append("aq_append_only", mapped)
    t_append, c_append = time.perf_counter() - t0, time.process_time() - c0
    city.close()
    return {
        "rows": len(base),
        "mb": size / 1e6,
        "t_city": t_city,
        "t_base": t_base,
        "t_append": t_append,
        "c_city": c_city,
        "c_base": c_base,
        "c_append": c_append,
        "batches": rep.batches,
    }


def _varlen(n: int) -> bytes:
    out = bytearray()
    while True:
        n, b = divmod(n, 128)
        out.append(b | (128 if n else 0))
        if not n:
            return bytes(out)


def _publisher(
    host: str, port: int, k: int, lo: int, hi: int, rate: float, seconds: float, out: Any
) -> None:
    """Publish messages ``lo..hi`` with QoS 1 at ``rate`` msg/s over a bare MQTT 3.1.1 socket.

    A minimal client (CONNECT, PUBLISH QoS 1 written in bursts of 100, PUBACKs counted on a
    reader thread) costs a few microseconds per message, so the publisher is not what limits
    the figure; paho's publish path (a lock, a queue and a wake-up per message) topped out
    near 5,000 msg/s here. Each message carries its publish time."""
    import socket

    s = socket.create_connection((host, port))
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    cid = f"bench-pub-{k}".encode()
    body = (
        b"\x00\x04MQTT\x04\x02\x00\x00" + len(cid).to_bytes(2, "big") + cid
    )  # clean session, no keepalive
    s.sendall(b"\x10" + _varlen(len(body)) + body)
    ack = b""
    while len(ack) < 4:
        ack += s.recv(4 - len(ack))
    assert ack[3] == 0, f"broker refused the publisher: {ack!r}"
    acked = [0]

    def reader() -> None:
        buf = b""
        while acked[0] < hi - lo:
            chunk = s.recv(65536)
            if not chunk:
                return
            buf += chunk
            whole = len(buf) // 4 * 4  # PUBACK: 0x40 0x02 <packet id>
            acked[0] += whole // 4
            buf = buf[whole:]

    th = threading.Thread(target=reader, daemon=True)
    th.start()
    topic = b"bench/obs"
    head = len(topic).to_bytes(2, "big") + topic
    t0 = time.time()
    sent = 0
    burst = 100
    for start in range(lo, hi, burst):
        due = t0 + (start - lo) / rate
        now = time.time()
        if now - t0 > seconds:
            break
        if due > now:
            time.sleep(due - now)
        while sent - acked[0] > 20_000:  # bound the packets in flight (ids are 16 bit)
            time.sleep(0.001)
        now = time.time()
        pkts = []
        for i in range(start, min(start + burst, hi)):
            o = {
                "datastream": f"aq-{i % 1000:03d}",
                "phenomenonTime": 1_772_409_600 + (i // 1000) * 60,
                "result": float(i % 500),
                "location": {"type": "Point", "coordinates": [116.3 + (i % 1000) * 1e-4, 39.9]},
                "sent": now,
            }
            pid = i % 65535 + 1
            var = head + pid.to_bytes(2, "big") + json.dumps(o).encode()
            pkts.append(b"\x32" + _varlen(len(var)) + var)  # PUBLISH, QoS 1
            sent += 1
        s.sendall(b"".join(pkts))
    deadline = time.time() + 30
    while acked[0] < sent and time.time() < deadline:
        time.sleep(0.01)
    out.put((sent, acked[0], t0, time.time()))
    s.sendall(b"\xe0\x00")  # DISCONNECT
    s.close()


def _mqtt_mapping() -> Any:
    doc = json.loads(
        json.dumps(
            load_mapping(EXAMPLES_DIR / "sensorthings_observations.yaml").doc.model_dump(
                mode="json", by_alias=True, exclude_defaults=True
            )
        )
    )
    doc["time"] = {"from": "phenomenonTime", "format": "epoch_s"}
    doc["dataset"]["time_partition"] = "30D"
    return load_mapping(doc)


def bench_mqtt(
    work: Path,
    n: int,
    seconds: float,
    rate: float,
    publishers: int,
    batch_rows: int,
    linger_s: float,
) -> dict[str, Any]:
    """Sustained: ``publishers`` processes publish ``n`` messages at ``rate`` msg/s in total
    while ``MqttSource`` ingests them; delay = time the batch was committed − publish time."""
    from cityos.testing.mosquitto import mosquitto_broker

    m = _mqtt_mapping()
    city = open_city(work / "mqtt-city")
    with mosquitto_broker() as b:
        delays: list[np.ndarray] = []
        stored = [0]
        batches = [0]
        last_done = [0.0]

        def on_batch(res: Any, batch: Any) -> None:
            now = time.time()
            sent = np.array([r["sent"] for p in batch.parts for r in p.records])
            delays.append(now - sent)
            stored[0] += res.accepted
            batches[0] += 1
            last_done[0] = now

        src = MqttSource(
            {"bench/obs": m},
            host=b.host,
            port=b.port,
            client_id="bench-ingest",
            batch_rows=batch_rows,
            linger_s=linger_s,
            idle_timeout_s=10.0,
            max_records=n,
        )
        stop = threading.Event()
        failed: list[BaseException] = []

        def ingest() -> None:
            try:
                src.run(city, stop=stop, on_batch=on_batch)
            except BaseException as e:  # reported below, not lost with the thread
                failed.append(e)

        th = threading.Thread(target=ingest, daemon=True)
        th.start()
        if not src.connected.wait(60):
            raise RuntimeError(f"the MQTT source did not connect within 60 s: {failed}")
        ctx = mp.get_context("spawn")
        q: Any = ctx.Queue()
        cuts = np.linspace(0, n, publishers + 1).astype(int)
        procs = [
            ctx.Process(
                target=_publisher,
                args=(
                    b.host,
                    b.port,
                    k,
                    int(cuts[k]),
                    int(cuts[k + 1]),
                    rate / publishers,
                    seconds,
                    q,
                ),
            )
            for k in range(publishers)
        ]
        for pr in procs:
            pr.start()
        res = [q.get(timeout=seconds + 120) for _ in procs]
        for pr in procs:
            pr.join()
        sent, acked = sum(r[0] for r in res), sum(r[1] for r in res)
        t0, t_pub_end = min(r[2] for r in res), max(r[3] for r in res)
        deadline = time.time() + 60
        while stored[0] < sent and time.time() < deadline:
            time.sleep(0.05)
        stop.set()
        th.join(30)
    if failed:
        raise RuntimeError("the MQTT ingest failed") from failed[0]
    rows = city.describe("observations").rows
    files = len(city.catalog.files("observations")) if hasattr(city.catalog, "files") else None
    city.close()
    d = np.concatenate(delays) if delays else np.array([np.nan])
    return {
        "sent": sent,
        "acked": acked,
        "stored": rows,
        "t_pub": t_pub_end - t0,
        "batches": batches[0],
        "files": files,
        "t_total": last_done[0] - t0,
        "p50": float(np.percentile(d, 50)),
        "p99": float(np.percentile(d, 99)),
        "max": float(d.max()),
    }


def bench_mqtt_drain(work: Path, n: int, batch_rows: int, linger_s: float) -> dict[str, Any]:
    """Capacity: ``n`` messages queued by the broker for the (offline) persistent session,
    then ingested as fast as CityOS can; no publisher competes for the CPU meanwhile."""
    from cityos.testing.mosquitto import mosquitto_broker

    m = _mqtt_mapping()
    city = open_city(work / "mqtt-drain-city")
    with mosquitto_broker() as b:
        kw: dict[str, Any] = {
            "host": b.host,
            "port": b.port,
            "client_id": "bench-drain",
            "batch_rows": batch_rows,
            "linger_s": linger_s,
        }
        MqttSource({"bench/obs": m}, max_records=0, **kw).run(city)  # subscribe, then go offline
        ctx = mp.get_context("spawn")
        q: Any = ctx.Queue()
        procs = [
            ctx.Process(
                target=_publisher,
                args=(b.host, b.port, k, k * n // 2, (k + 1) * n // 2, 1e9, 600.0, q),
            )
            for k in range(2)
        ]
        for pr in procs:
            pr.start()
        sent = sum(q.get(timeout=300)[0] for _ in procs)
        for pr in procs:
            pr.join()
        done = [0.0]
        t0 = time.time()
        rep = MqttSource({"bench/obs": m}, max_records=n, idle_timeout_s=5.0, **kw).run(
            city, on_batch=lambda *_a: done.__setitem__(0, time.time())
        )
    rows = city.describe("observations").rows
    city.close()
    return {"sent": sent, "stored": rows, "accepted": rep.accepted, "t": done[0] - t0}


def bench_load(work: Path, points: int, seed: int = 1) -> dict[str, Any]:
    """Appends of generated vehicle points (the st_query benchmark's stream: cityos.synth,
    1M points per append, time order) to a point_st dataset, then one compaction, timed
    apart. Generating the points is not counted."""
    from cityos.model import DatasetSchema, ModelKind
    from cityos.synth import iter_vehicle_points, make_city

    store = open_city(work / "load")
    store.create_dataset("v", DatasetSchema(ModelKind.POINT_ST))
    q = 2.0**-23
    n = 0
    t_app = c_app = 0.0
    city = make_city(seed=seed)
    for chunk in iter_vehicle_points(city, points, chunk_points=1_000_000, seed=seed):
        tbl = pa.table(
            {
                "id": chunk["id"].astype(str).to_numpy(),
                "t": pa.array(chunk["t"]),
                "x": np.round(chunk["x"].to_numpy() / q) * q,
                "y": np.round(chunk["y"].to_numpy() / q) * q,
            }
        )
        t0, c0 = time.perf_counter(), time.process_time()
        store.append("v", tbl)
        t_app += time.perf_counter() - t0
        c_app += time.process_time() - c0
        n += tbl.num_rows
        print(f"  {n:,} points appended", end="\r", flush=True)
    t0, c0 = time.perf_counter(), time.process_time()
    store.compact("v")
    t_cmp, c_cmp = time.perf_counter() - t0, time.process_time() - c0
    info = store.describe("v")
    assert info.rows == n, (info.rows, n)
    store.close()
    return {"points": n, "t_append": t_app, "c_append": c_app, "t_compact": t_cmp,
            "c_compact": c_cmp, "bytes": info.bytes}  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument(
        "--copies", type=int, default=3, help="copies of the Beijing data (420,768 rows each)"
    )
    ap.add_argument(
        "--file-batch-rows", type=int, default=None, help="FileSource batch_rows (default: its own)"
    )
    ap.add_argument("--messages", type=int, default=200_000)
    ap.add_argument("--rate", type=float, default=12_000, help="total publish rate, msg/s")
    ap.add_argument("--publishers", type=int, default=2, help="publisher processes")
    ap.add_argument("--seconds", type=float, default=60.0, help="bound on publishing time")
    ap.add_argument("--batch-rows", type=int, default=50_000, help="MqttSource batch_rows")
    ap.add_argument("--linger", type=float, default=0.5, help="MqttSource linger_s")
    ap.add_argument(
        "--drain",
        type=int,
        default=100_000,
        help="messages for the drain (capacity) run; 0 skips it",
    )
    ap.add_argument(
        "--load-points", type=int, default=0, help="points for the append (load) run; 0 skips it"
    )
    ap.add_argument("--mqtt-runs", type=int, default=1, help="sustained MQTT runs")
    ap.add_argument("--skip-files", action="store_true")
    ap.add_argument("--skip-mqtt", action="store_true")
    a = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="cityos-bench-ingest-"))
    try:
        print(f"load average before: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
        if not a.skip_files:
            f = bench_files(work, a.copies, a.file_batch_rows)
            print(
                f"\nCSV -> store: {f['rows']:,} rows, {f['mb']:.0f} MB of CSV, {f['batches']} appends"
            )
            print("| path | seconds | rows/s | CPU seconds (all threads) |\n|---|---|---|---|")
            for label, t, c in (
                (
                    "CityOS FileSource (read, map, validate, Z2T layout, catalog)",
                    "t_city",
                    "c_city",
                ),
                (
                    "CityOS Store.append alone (the mapped table, one append)",
                    "t_append",
                    "c_append",
                ),
                ("pandas read_csv + to_parquet", "t_base", "c_base"),
            ):
                print(f"| {label} | {f[t]:.2f} | {f['rows'] / f[t]:,.0f} | {f[c]:.2f} |")
            print(
                f"ratio CityOS / pandas-to-Parquet: wall time {f['t_city'] / f['t_base']:.2f}x, "
                f"CPU time {f['c_city'] / f['c_base']:.2f}x"
            )
        if not a.skip_mqtt:
            met = 0
            for run in range(a.mqtt_runs):
                r = bench_mqtt(
                    work / f"mqtt{run}", a.messages, a.seconds, a.rate, a.publishers, a.batch_rows,
                    a.linger,
                )  # fmt: skip
                print(
                    f"\nMQTT sustained run {run + 1}/{a.mqtt_runs} (loopback Mosquitto, QoS 1, "
                    f"{a.publishers} publishers at {a.rate:,.0f} msg/s, batch_rows={a.batch_rows:,}, "
                    f"linger={a.linger}s; load {os.getloadavg()[0]:.1f}): {r['sent']:,} published, "
                    f"{r['acked']:,} acknowledged by the broker, {r['stored']:,} stored (loss "
                    f"{r['sent'] - r['stored']:,}) in {r['batches']:,} batches, {r['files']} files"
                )
                rate = r["stored"] / r["t_total"]
                print(
                    f"publish rate {r['sent'] / r['t_pub']:,.0f} msg/s; sustained ingest "
                    f"{rate:,.0f} msg/s (first publish to last stored)"
                )
                print(
                    f"delay publish -> queryable: p50 {r['p50'] * 1000:.0f} ms, p99 "
                    f"{r['p99'] * 1000:.0f} ms, max {r['max'] * 1000:.0f} ms"
                )
                ok = rate >= 10_000 and r["p99"] < 2.0 and r["sent"] == r["stored"]
                met += ok
                print(f"target (>= 10,000 msg/s, p99 < 2 s, no loss): {'met' if ok else 'NOT met'}")
            print(f"MQTT target met in {met} of {a.mqtt_runs} runs")
            if a.drain:
                d = bench_mqtt_drain(work, a.drain, a.batch_rows, a.linger)
                print(
                    f"\nMQTT drain (backlog of {d['sent']:,} queued messages, no publisher running): "
                    f"{d['stored']:,} stored in {d['t']:.2f} s = {d['stored'] / d['t']:,.0f} msg/s"
                )
        if a.load_points:
            ld = bench_load(work, a.load_points)
            print(
                f"\nLoad: {ld['points']:,} generated vehicle points in 1M-point appends: "
                f"{ld['t_append']:.1f} s = {ld['points'] / ld['t_append']:,.0f} points/s appending "
                f"(CPU {ld['c_append']:.1f} s); compaction {ld['t_compact']:.1f} s (CPU "
                f"{ld['c_compact']:.1f} s); {ld['points'] / (ld['t_append'] + ld['t_compact']):,.0f} "
                f"points/s with it; {ld['bytes'] / ld['points']:.2f} bytes/point"
            )
        print(f"\nload average after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()

"""Governance intake throughput and latency on PostgreSQL, duplicate detection and
auto-dispatch ON vs OFF in the same run (issue 12's target: >= 500 intakes/s sustained
with p99 < 200 ms on 2 cores).

The city is govern-intel's benchmark city (``benchmarks/govern.py``): the generated
organisation over the 12 districts of a 10 km city, 300 historical reports dispatched by
the routing table; "on" adds the duplicate detector trained on generated reports and the
dispatcher trained on that history (threshold for 95 % precision). The stream is one
generated day of citizen reports (paraphrased duplicates, Chinese and English; about
10,000 reports a day, the load of a real command centre), each taken in with its own
time and source id. Every run gets a fresh database, so ON and OFF see the same state.

Ways of taking the stream in, each measured with the intelligence off and on:

- ``one``: one caller, one intake at a time (the baseline: a group of one per intake);
- ``api``: ``--clients`` threads calling ``Governance.intake`` concurrently (group commit);
- ``many``: ``Governance.intake_many`` in batches of ``--batch`` (the Python API's batch);
- ``http``: ``--clients`` concurrent HTTP clients posting ``POST /govern/events`` with a
  bearer token to ``cityos``'s app under uvicorn in another process (write-behind store
  mirror, as ``cityos serve`` runs it); the server is stopped before the clock stops, and
  the store must then hold every event.

Latency is from the call (or the request) to its answer; throughput is the reports over
the wall time of the whole stream, including the final flush of the store mirror.

    PYTHONPATH=src python benchmarks/govern_intake.py [--n 10000] [--clients 32] [--pg URL]
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing as mp
import os
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

SECRET = "govern-intake-bench-" + "s" * 40


def _stream(city: Any, n: int, gov: Any) -> list[dict[str, Any]]:
    """About ``n`` generated reports of one day inside the city, in time order, as
    intake arguments (the generated category → the organisation's service)."""
    from cityos.synth._reports import make_reports
    from govern import _svc  # benchmarks/govern.py

    df = make_reports(city, max(int(n / 2.2) + 50, 50), days=1, seed=5)
    return [
        {
            "service_code": _svc(gov, r["category"]),
            "x": float(r["x"]),
            "y": float(r["y"]),
            "title": r["title"],
            "description": r["description"],
            "received_at": r["t"].to_pydatetime(),
            "source_id": str(r["id"]),
        }
        for r in df.to_dict("records")
        if gov.jurisdictions.inside(r["x"], r["y"])
    ][:n]


class Bench:
    """One fresh governed city per run (``intel``: the hooks on or off)."""

    def __init__(self, pg: str, city: Any, history: Any, detector: Any) -> None:
        self.pg, self.city, self.history, self.detector = pg, city, history, detector

    def city_for(self, intel: bool) -> tuple[Any, Any]:
        from cityos.govern import Governance
        from cityos.govern.dispatch import Dispatcher
        from govern import _governed_city

        store, _ = _governed_city(self.pg, self.city, self.history)
        # as `cityos serve` runs it: the store's events dataset written behind, every second
        gov = Governance(store.db, store, webhooks=False, mirror_every_s=1.0)
        if intel:
            gov.deduplicator = self.detector
            gov.dispatcher = Dispatcher.from_governance(gov)
            if np.isfinite(gov.dispatcher.threshold):
                gov.auto_dispatch_threshold = gov.dispatcher.threshold
        return store, gov


def _kw(r: dict[str, Any], intel: bool) -> dict[str, Any]:
    return {
        "service_code": r["service_code"],
        "x": r["x"],
        "y": r["y"],
        "title": r["title"],
        "description": r["description"],
        "received_at": r["received_at"],
        "source_id": r["source_id"],
        "channel": "app",
        "dedup": intel,
        "auto_dispatch": intel,
    }


def run_api(gov: Any, rows: list[dict[str, Any]], intel: bool, clients: int) -> tuple[float, Any]:
    """``clients`` threads, each taking every ``clients``-th report in turn."""
    lat = np.zeros(len(rows))
    out: list[Any] = [None] * len(rows)
    gate = threading.Barrier(clients + 1)

    def client(k: int) -> None:
        gate.wait()
        for i in range(k, len(rows), clients):
            kw = _kw(rows[i], intel)
            a = time.perf_counter()
            out[i] = gov.intake(kw.pop("service_code"), **kw)
            lat[i] = time.perf_counter() - a

    threads = [threading.Thread(target=client, args=(k,)) for k in range(clients)]
    for t in threads:
        t.start()
    gate.wait()
    t0 = time.perf_counter()
    for t in threads:
        t.join()
    gov.close()  # the store holds every event before the clock stops
    return time.perf_counter() - t0, (lat, out)


def run_many(gov: Any, rows: list[dict[str, Any]], intel: bool, batch: int) -> tuple[float, Any]:
    lat = np.zeros(len(rows))
    out: list[Any] = []
    t0 = time.perf_counter()
    for i in range(0, len(rows), batch):
        a = time.perf_counter()
        out.extend(gov.intake_many([_kw(r, intel) for r in rows[i : i + batch]]))
        lat[i : i + batch] = time.perf_counter() - a
    gov.close()
    return time.perf_counter() - t0, (lat, out)


# -- HTTP ------------------------------------------------------------------------------
def _serve(home: str, url: str, hooks: str | None, port: int, ready: Any) -> None:
    """The server process: cityos's app over the city, with the hooks when given."""
    import logging

    import joblib
    import uvicorn

    from cityos.config import Settings
    from cityos.govern import Governance
    from cityos.server import create_app
    from cityos.store import Store

    logging.getLogger("cityos").setLevel(logging.WARNING)
    settings = Settings(home=Path(home), database_url=url, secret_key=SECRET)
    store = Store(settings=settings)
    kw: dict[str, Any] = {}
    if hooks:
        det, disp, thr = joblib.load(hooks)
        kw = {"deduplicator": det, "dispatcher": disp, "auto_dispatch_threshold": thr}
    gov = Governance(store.db, store, mirror_every_s=1.0, webhooks=False, **kw)
    app = create_app(settings, store=store)
    app.state.governance = gov
    # uvicorn re-raises SIGTERM after its shutdown: the store is flushed in the shutdown
    app.router.add_event_handler("shutdown", gov.close)
    config = uvicorn.Config(
        app,
        host="127.0.0.1",
        port=port,
        log_level="warning",
        access_log=False,
        http="httptools",
        loop="uvloop",
        backlog=4096,
    )
    server = uvicorn.Server(config)
    app.router.add_event_handler("startup", lambda: ready.set())
    server.run()


def _wait_listening(base: str) -> None:
    """Until the server answers (its startup runs before it binds the port)."""
    import httpx

    for _ in range(600):
        try:
            httpx.get(base + "/health", timeout=5)
            return
        except httpx.TransportError:
            time.sleep(0.1)
    raise RuntimeError(f"{base} does not answer")


def run_http(
    store: Any, gov: Any, rows: list[dict[str, Any]], intel: bool, clients: int, tmp: Path
) -> tuple[float, Any]:
    import socket

    import httpx
    import joblib

    from cityos import access

    home, url = str(store.settings.home), store.db.url
    hooks = None
    if intel:
        hooks = str(tmp / "hooks.joblib")
        joblib.dump((gov.deduplicator, gov.dispatcher, gov.auto_dispatch_threshold), hooks)
    token = access.issue_token(access.principal_for(store.db, "dispatcher1"), SECRET)
    gov.close()
    store.close()
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    ctx = mp.get_context("spawn")
    ready = ctx.Event()
    proc = ctx.Process(target=_serve, args=(home, url, hooks, port, ready))
    proc.start()
    if not ready.wait(300):
        proc.kill()
        raise RuntimeError("the server did not start")
    base = f"http://127.0.0.1:{port}"
    _wait_listening(base)
    bodies = [
        {
            "service_code": r["service_code"],
            "long": r["x"],
            "lat": r["y"],
            "title": r["title"],
            "description": r["description"],
            "received_at": r["received_at"].isoformat(),
            "source_id": r["source_id"],
            "channel": "app",
        }
        for r in rows
    ]
    lat = np.zeros(len(rows))
    codes: list[int] = [0] * len(rows)

    async def drive() -> float:
        limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
        headers = {"Authorization": f"Bearer {token}"}
        async with httpx.AsyncClient(
            base_url=base, limits=limits, headers=headers, timeout=120
        ) as c:
            nxt = iter(range(len(rows)))

            async def client() -> None:
                for i in nxt:
                    a = time.perf_counter()
                    resp = await c.post("/govern/events", json=bodies[i])
                    lat[i] = time.perf_counter() - a
                    codes[i] = resp.status_code

            t0 = time.perf_counter()
            await asyncio.gather(*(client() for _ in range(clients)))
            return t0

    t0 = asyncio.run(drive())
    proc.terminate()  # SIGTERM: uvicorn shuts down, the server flushes the store mirror
    proc.join(120)
    dt = time.perf_counter() - t0
    bad = [c for c in codes if c not in (200, 201)]
    if bad:
        raise RuntimeError(f"{len(bad)} requests failed: {sorted(set(bad))}")
    return dt, (lat, None)


def _check(pg_home: Any, store_home: Path, url: str, n: int) -> tuple[int, int]:
    """Events in the relational state and in the store's ``events`` dataset."""
    from sqlalchemy import func, select

    from cityos.govern._tables import EventRow
    from cityos.store import Store

    store = Store(store_home, database_url=url)
    with store.db.session() as s:
        rel = int(s.scalar(select(func.count()).select_from(EventRow)) or 0)
    rows = store.describe("events").rows
    store.close()
    return rel, rows


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=10_000, help="reports per run")
    ap.add_argument("--n-one", type=int, default=500, help="reports of the one-caller baseline")
    ap.add_argument("--clients", type=int, default=32)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--modes", default="one,api,many,http")
    ap.add_argument("--pg", default=None, help="PostgreSQL URL (default: a private server)")
    args = ap.parse_args()
    from contextlib import ExitStack

    from cityos.govern.dedup import DuplicateDetector
    from cityos.synth import make_city
    from cityos.synth._reports import make_reports
    from cityos.testing.postgres import postgres_server

    print(f"load average at start: {os.getloadavg()} (2 cores shared with other jobs)")
    city = make_city(size_km=10.0)
    history = make_reports(city, 300, seed=21)
    t = time.perf_counter()
    detector = DuplicateDetector.pretrained()
    print(f"duplicate detector trained in {time.perf_counter() - t:.0f} s")
    results: dict[tuple[str, str], tuple[float, float, float, float, int, int, int]] = {}
    tmp = Path(tempfile.mkdtemp())
    with ExitStack() as stack:
        pg = args.pg or stack.enter_context(postgres_server())
        bench = Bench(pg, city, history, detector)
        store, gov = bench.city_for(False)
        rows = _stream(city, args.n, gov)
        store.close()
        print(
            f"stream: {len(rows)} reports over {rows[0]['received_at']} .. {rows[-1]['received_at']}"
        )
        for mode in args.modes.split(","):
            for label in ("off", "on"):
                intel = label == "on"
                use = rows[: args.n_one] if mode == "one" else rows
                store, gov = bench.city_for(intel)
                home, url = store.settings.home, store.db.url
                la = os.getloadavg()[0]
                before = len(gov._group.group_sizes)
                if mode == "one":
                    dt, (lat, out) = run_api(gov, use, intel, 1)
                elif mode == "api":
                    dt, (lat, out) = run_api(gov, use, intel, args.clients)
                elif mode == "many":
                    dt, (lat, out) = run_many(gov, use, intel, args.batch)
                elif mode == "http":
                    dt, (lat, out) = run_http(store, gov, use, intel, args.clients, tmp)
                else:
                    raise SystemExit(f"unknown mode {mode!r}")
                groups = list(gov._group.group_sizes)[before:] if mode != "http" else []
                if mode != "http":
                    store.close()
                rel, mirrored = _check(pg, home, url, len(use))
                hist = rel - len(use)
                merged = sum(1 for r in (out or []) if getattr(r, "merged_into", None))
                auto = sum(1 for r in (out or []) if getattr(r, "dispatched", False))
                ms = lat * 1000
                results[(mode, label)] = (
                    len(use) / dt,
                    float(np.percentile(ms, 50)),
                    float(np.percentile(ms, 95)),
                    float(np.percentile(ms, 99)),
                    merged,
                    auto,
                    len(use),
                )
                mean_g = f"{np.mean(groups):.1f}" if groups else "-"
                print(
                    f"  {mode:5s} {label:3s}: {len(use)} in {dt:.1f} s = {len(use) / dt:.1f}/s, "
                    f"p50 {np.percentile(ms, 50):.1f} p95 {np.percentile(ms, 95):.1f} "
                    f"p99 {np.percentile(ms, 99):.1f} ms; merged {merged} auto {auto}; "
                    f"mean group {mean_g}; store rows {mirrored} of {rel} ({hist} history); "
                    f"load {la:.1f} -> {os.getloadavg()[0]:.1f}",
                    flush=True,
                )
                if mirrored != rel:
                    raise SystemExit(f"the store lost events: {mirrored} rows for {rel} events")
    print(
        "\n| way in | intelligence | intakes | per s | p50 ms | p95 ms | p99 ms | merged "
        "| auto-dispatched | on / off |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|")
    for mode in args.modes.split(","):
        for label in ("off", "on"):
            r = results.get((mode, label))
            if r is None:
                continue
            ratio = r[0] / results[(mode, "off")][0]
            print(
                f"| {mode} | {label} | {r[6]} | {r[0]:.1f} | {r[1]:.1f} | {r[2]:.1f} | "
                f"{r[3]:.1f} | {r[4]} | {r[5]} | {ratio:.2f} |"
            )
    if ("one", "on") in results:
        for mode in ("api", "many", "http"):
            if (mode, "on") in results:
                print(
                    f"{mode} / one (intelligence on): "
                    f"{results[(mode, 'on')][0] / results[('one', 'on')][0]:.1f}x"
                )
    print(f"load average at end: {os.getloadavg()}")
    print("Target (issue 12): >= 500 intakes/s sustained with p99 < 200 ms, ON, PostgreSQL.")


if __name__ == "__main__":
    main()

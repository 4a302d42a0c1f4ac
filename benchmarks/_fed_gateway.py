"""The gateway parts of ``benchmarks/federation.py``: two ``cityos gateway serve`` processes
on loopback (mutual TLS), SecureBoost trained through them, then

* message bytes per tree as they crossed between the gateways (signed envelopes, both
  directions, entity alignment counted apart), and
* online inference latency (p50/p99) of one-row requests to the guest's gateway, which
  gathers the host's partial results — against, in the same run, a bare mutual-TLS round
  trip to the same gateway (the transport floor) and local plaintext prediction of the
  pooled model (no federation at all).

    .venv/bin/python benchmarks/federation.py --only gateway --gateway-rows 5000
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd


def _home(home: Path, name: str, df: pd.DataFrame) -> None:
    from cityos.model import PlainTable
    from cityos.store import Store

    store = Store(home)
    try:
        store.create_dataset(name, PlainTable.schema(*[c for c in df.columns if c != "id"]))
        store.append(name, df)
    finally:
        store.close()


def _operator(home: Path, dataset: str) -> str:
    """An API key of a federation operator of ``home`` who may read ``dataset``."""
    from cityos.federation.gateway import make_operator
    from cityos.store import Store

    store = Store(home)
    try:
        return make_operator(store.db, "bench", read=[dataset])
    finally:
        store.close()


def run_gateway(args: argparse.Namespace) -> dict[str, Any]:
    from cityos.federation import secureboost as sb
    from cityos.federation._certs import create_federation
    from cityos.federation.cli import GatewayClient
    from cityos.federation.gateway_procs import gateway_processes

    n, fg, fh = args.gateway_rows, args.gateway_guest_features, args.gateway_host_features
    rng = np.random.default_rng(0)
    Xg, Xh = rng.normal(size=(n, fg)), rng.normal(size=(n, fh))
    y = Xg[:, 0] + 2 * Xh[:, 0] - Xh[:, 1] * Xg[:, 1] + rng.normal(0, 0.3, n)
    ids = [f"e{i:07d}" for i in range(n)]
    guest = pd.DataFrame({"id": ids, **{f"g{j}": Xg[:, j] for j in range(fg)}, "label": y})
    host = pd.DataFrame({"id": ids, **{f"h{j}": Xh[:, j] for j in range(fh)}})
    params = {
        "n_trees": args.gateway_trees,
        "max_depth": args.depth,
        "max_bins": args.bins,
        "key_bits": args.key_bits,
        "min_child_samples": 20,
    }
    out: dict[str, Any] = {"rows": n, "guest_features": fg, "host_features": fh, **params}
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        create_federation(root / "certs", "bench", ["guest", "host"])
        _home(root / "guest", "g", guest)
        _home(root / "host", "h", host)
        keys = {p: _operator(root / p, d) for p, d in (("guest", "g"), ("host", "h"))}
        with gateway_processes(root / "certs", {"guest": root / "guest", "host": root / "host"}):
            gc = GatewayClient(root / "guest", api_key=keys["guest"])
            hc = GatewayClient(root / "host", api_key=keys["host"])
            pid = gc.call("POST", "projects", {"name": "bench", "hosts": ["host"]})["id"]
            hc.call("POST", f"projects/{pid}/accept")
            gc.call(
                "POST",
                f"projects/{pid}/bind",
                {"dataset": "g", "fields": [f"g{j}" for j in range(fg)], "label": "label"},
            )
            hc.call(
                "POST",
                f"projects/{pid}/bind",
                {"dataset": "h", "fields": [f"h{j}" for j in range(fh)]},
            )
            t0 = time.perf_counter()
            job = gc.call("POST", f"projects/{pid}/train", {"params": params})
            while job["state"] not in ("succeeded", "failed", "cancelled"):
                time.sleep(0.2)
                job = gc.call("GET", f"jobs/{job['id']}")
            if job["state"] != "succeeded":
                raise RuntimeError(f"training {job['state']}: {job['error']}")
            out["train_s"] = time.perf_counter() - t0
            r = job["result"]
            hr = r["parties"]["host"]
            train_bytes = (r["bytes_sent"] - r["align_bytes"]) + (
                hr["bytes_sent"] - hr["align_bytes"]
            )
            out["align_bytes"] = r["align_bytes"] + hr["align_bytes"]
            out["bytes_per_tree"] = train_bytes / args.gateway_trees
            out["guest_to_host_bytes_per_tree"] = (
                r["bytes_sent"] - r["align_bytes"]
            ) / args.gateway_trees
            out["host_to_guest_bytes_per_tree"] = (
                hr["bytes_sent"] - hr["align_bytes"]
            ) / args.gateway_trees
            model = gc.call("POST", f"jobs/{job['id']}/publish")["id"]

            reqs = [ids[i] for i in rng.integers(0, n, args.online_requests)]
            for i in reqs[:5]:  # warm up: caches of the bound rows and model parts
                gc.call("POST", f"models/{model}/predict", {"ids": [i]})
            lat, scores = [], []
            for i in reqs:
                t = time.perf_counter()
                scores.append(gc.call("POST", f"models/{model}/predict", {"ids": [i]})["scores"][0])
                lat.append((time.perf_counter() - t) * 1000)
            ping = []
            for _ in reqs:
                t = time.perf_counter()
                gc._client.call("GET", "/fed/v1/ping")
                ping.append((time.perf_counter() - t) * 1000)
    pooled = sb.train_pooled(np.column_stack([Xg, Xh]), y, sb.BoostParams(**params))
    pos = {v: k for k, v in enumerate(ids)}
    local = []
    expect = []
    for i in reqs:
        row = np.column_stack([Xg, Xh])[pos[i] : pos[i] + 1]
        t = time.perf_counter()
        expect.append(float(sb.predict_pooled(pooled, row)[0]))
        local.append((time.perf_counter() - t) * 1000)
    out["online_equal_to_pooled"] = bool(np.array_equal(np.asarray(scores), np.asarray(expect)))
    for name, v in (("online", lat), ("mtls_ping", ping), ("local_pooled", local)):
        out[f"{name}_p50_ms"] = float(np.percentile(v, 50))
        out[f"{name}_p99_ms"] = float(np.percentile(v, 99))
    out["requests"] = len(reqs)
    return out


def print_gateway(res: dict[str, Any]) -> None:
    from _common import print_table

    print(
        f"\ngateway: {res['rows']} rows, guest {res['guest_features']} + host "
        f"{res['host_features']} features, {res['n_trees']} trees depth {res['max_depth']}, "
        f"{res['key_bits']}-bit Paillier, two gateway processes over mutual TLS"
    )
    print_table(
        ["what", "value", "note"],
        [
            ["training through the gateways (s)", f"{res['train_s']:.1f}", "PSI + trees"],
            [
                "message bytes per tree (MB)",
                f"{res['bytes_per_tree'] / 1e6:.2f}",
                f"guest→host {res['guest_to_host_bytes_per_tree'] / 1e6:.2f}, host→guest "
                f"{res['host_to_guest_bytes_per_tree'] / 1e6:.2f}",
            ],
            ["alignment bytes (MB)", f"{res['align_bytes'] / 1e6:.2f}", "PSI, once per job"],
            [
                "online p50 / p99 (ms)",
                f"{res['online_p50_ms']:.1f} / {res['online_p99_ms']:.1f}",
                f"target p99 < 100 ms; {res['requests']} one-row requests",
            ],
            [
                "mTLS round trip p50 / p99 (ms)",
                f"{res['mtls_ping_p50_ms']:.1f} / {res['mtls_ping_p99_ms']:.1f}",
                f"online / floor = {res['online_p50_ms'] / max(res['mtls_ping_p50_ms'], 1e-9):.1f}×",
            ],
            [
                "local pooled predict p50 / p99 (ms)",
                f"{res['local_pooled_p50_ms']:.2f} / {res['local_pooled_p99_ms']:.2f}",
                f"online / local = {res['online_p50_ms'] / max(res['local_pooled_p50_ms'], 1e-9):.0f}×",
            ],
            ["online scores == pooled model's", str(res["online_equal_to_pooled"]), "lossless"],
        ],
    )

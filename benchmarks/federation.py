"""What does privacy cost in CityOS's federation? Vertical boosting at FATE 2.0's benchmark
shape against pooled plaintext boosting in the same run, and ECDH PSI on 1M × 1M ids.

Boosting: the guest holds ``--guest-features`` columns and the label, one host
``--host-features`` columns of the same ``--rows`` rows (FATE 2.0: 100k × 30 + label and
100k × 300). Both parties run in this process over :class:`LocalFederation` (every message
encoded and counted as on a wire), each with ``--workers`` worker processes for the
Paillier work; the pooled reference booster trains on the same columns, and the script
checks the two models predict identically (losslessness) before printing times, message
bytes per tree and the ratio against FATE's published 2 min 11 s per tree (16 cores).
PSI: two parties with ``--psi-ids`` ids each, half of them shared (FATE: 10M × 10M in
7 min 43 s on 16 cores).

    .venv/bin/python benchmarks/federation.py --rows 100000 --trees 2   # FATE's shape
    .venv/bin/python benchmarks/federation.py --rows 5000 --host-features 60 --trees 2 --only boost
"""

from __future__ import annotations

import argparse
import os
import resource
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from _common import print_table, save
from cityos.federation import psi
from cityos.federation import secureboost as sb
from cityos.testing.federation import LocalFederation

FATE_TREE_S = 131.0
FATE_PSI_S = 463.0  # 10M × 10M


def _cpu() -> float:
    me, kids = (
        resource.getrusage(resource.RUSAGE_SELF),
        resource.getrusage(resource.RUSAGE_CHILDREN),
    )
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


def boost(args: argparse.Namespace) -> dict[str, Any]:
    rng = np.random.default_rng(0)
    n = args.rows
    xg = rng.normal(size=(n, args.guest_features))
    xh = rng.normal(size=(n, args.host_features))
    y = (xg[:, :5].sum(axis=1) + np.tanh(xh[:, :20]).sum(axis=1) + rng.normal(size=n) > 0).astype(
        float
    )
    p = sb.BoostParams(
        n_trees=args.trees,
        max_depth=args.depth,
        learning_rate=0.3,
        max_bins=args.bins,
        objective="logistic",
        key_bits=args.key_bits,
        workers=args.workers,
    )
    fed = LocalFederation(["guest", "host"])
    cpu0 = _cpu()
    t0 = time.perf_counter()
    models = fed.run(
        {
            "guest": lambda ch: sb.train_guest(ch, xg, y, p),
            "host": lambda ch: sb.train_host(ch, xh, "guest"),
        }
    )
    fed_s = time.perf_counter() - t0
    fed_cpu = _cpu() - cpu0  # this process and its (finished) worker processes
    bytes_train = sum(fed.bytes_sent.values())
    cpu0 = _cpu()
    t0 = time.perf_counter()
    ref = sb.train_pooled(np.hstack([xg, xh]), y, p)
    pooled_s = time.perf_counter() - t0
    pooled_cpu = _cpu() - cpu0
    fed2 = LocalFederation(["guest", "host"])
    pred = fed2.run(
        {
            "guest": lambda ch: sb.predict_guest(ch, models["guest"], xg),
            "host": lambda ch: sb.predict_host(ch, models["host"], xh),
        }
    )["guest"]
    same = bool(np.array_equal(pred, sb.predict_pooled(ref, np.hstack([xg, xh]))))
    per_tree = fed_s / args.trees
    cores = os.cpu_count() or 1
    rows = [
        [
            "federated SecureBoost",
            fed_s,
            per_tree,
            fed_cpu / args.trees,
            fed_cpu / args.trees / cores,
            bytes_train / args.trees / 1e6,
        ],
        [
            "pooled plaintext booster",
            pooled_s,
            pooled_s / args.trees,
            pooled_cpu / args.trees,
            pooled_cpu / args.trees,
            0.0,
        ],
    ]
    print(
        f"\nVertical boosting: guest {n} × {args.guest_features} + label, host {n} × {args.host_features}, "
        f"{args.trees} trees, depth {args.depth}, {args.bins} bins, {args.key_bits}-bit Paillier, "
        f"{args.workers} workers per party"
    )
    print_table(
        [
            "model",
            "total s",
            "s per tree",
            "CPU s per tree",
            f"CPU s per tree / {cores} cores",
            "MB sent per tree",
        ],
        rows,
    )
    print("guest phases (s):", {k: round(v, 1) for k, v in models["guest"].timings.items()})
    print("host phases (s):", {k: round(v, 1) for k, v in models["host"].timings.items()})
    print(f"identical predictions (lossless): {same}")
    print(f"cost of privacy: {fed_s / pooled_s:.1f}× pooled plaintext boosting")
    print(
        f"per tree vs FATE 2.0 (131 s on 16 cores): {per_tree / FATE_TREE_S:.2f}× wall clock, "
        f"{fed_cpu / args.trees / cores / FATE_TREE_S:.2f}× CPU time spread over {cores} cores (load-independent)"
    )
    if not same:
        raise SystemExit("federated and pooled predictions differ")
    return {
        "rows": n,
        "guest_features": args.guest_features,
        "host_features": args.host_features,
        "trees": args.trees,
        "depth": args.depth,
        "federated_s": fed_s,
        "per_tree_s": per_tree,
        "cpu_per_tree_s": fed_cpu / args.trees,
        "pooled_s": pooled_s,
        "bytes_per_tree": bytes_train / args.trees,
        "lossless": same,
    }


def run_psi(args: argparse.Namespace) -> dict[str, Any]:
    n = args.psi_ids
    g = [f"id-{i:09d}" for i in range(n)]
    h = [f"id-{i:09d}" for i in range(n // 2, n + n // 2)]
    fed = LocalFederation(["guest", "host"])
    cpu0 = _cpu()
    t0 = time.perf_counter()
    out = fed.run(
        {
            "guest": lambda ch: psi.run_guest(ch, g, "host", workers=args.workers),
            "host": lambda ch: psi.run_host(ch, h, "guest", workers=args.workers),
        }
    )
    s = time.perf_counter() - t0
    cpu = _cpu() - cpu0
    ok = len(out["guest"]) == n - n // 2 and out["guest"] == out["host"]
    print(f"\nPSI: {n:,} × {n:,} ids, {n - n // 2:,} shared")
    cores = os.cpu_count() or 1
    print_table(
        ["protocol", "s", "CPU s", f"CPU s / {cores} cores", "MB sent", "correct"],
        [["ECDH edwards25519", s, cpu, cpu / cores, sum(fed.bytes_sent.values()) / 1e6, ok]],
    )
    fate = FATE_PSI_S * n / 1e7
    print(
        f"vs FATE 2.0 10M × 10M in 463 s on 16 cores, scaled linearly to {n:,} ({fate:.1f} s): "
        f"{s / fate:.2f}× wall clock, {cpu / cores / fate:.2f}× CPU time over {cores} cores"
    )
    return {
        "ids": n,
        "seconds": s,
        "cpu_seconds": cpu,
        "bytes": sum(fed.bytes_sent.values()),
        "correct": ok,
    }


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--rows", type=int, default=100_000)
    ap.add_argument("--guest-features", type=int, default=30)
    ap.add_argument("--host-features", type=int, default=300)
    ap.add_argument("--trees", type=int, default=2)
    ap.add_argument("--depth", type=int, default=3)
    ap.add_argument("--bins", type=int, default=32)
    ap.add_argument("--key-bits", type=int, default=2048)
    ap.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--psi-ids", type=int, default=1_000_000)
    ap.add_argument("--only", choices=["boost", "psi", "gateway"])
    # gateway parts (_fed_gateway.py): two gateway processes over mutual TLS
    ap.add_argument("--gateway-rows", type=int, default=5000)
    ap.add_argument("--gateway-guest-features", type=int, default=10)
    ap.add_argument("--gateway-host-features", type=int, default=10)
    ap.add_argument("--gateway-trees", type=int, default=3)
    ap.add_argument("--online-requests", type=int, default=300)
    args = ap.parse_args()
    print(
        f"machine: {os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f} (shared with other jobs)"
    )
    result: dict[str, Any] = {"load_average": os.getloadavg()}
    if args.only in (None, "boost"):
        result["boost"] = boost(args)
    if args.only in (None, "psi"):
        result["psi"] = run_psi(args)
    if args.only in (None, "gateway"):
        from _fed_gateway import print_gateway, run_gateway

        result["gateway"] = run_gateway(args)
        print_gateway(result["gateway"])
    save("federation", result)


if __name__ == "__main__":
    main()

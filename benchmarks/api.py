"""How much do HTTP, authentication and masking cost on top of the Python API?

Starts a throwaway PostgreSQL (or uses ``--database-url``), builds a city with one points
dataset, runs ``cityos serve`` on 127.0.0.1 and sends authorised spatio-temporal range
queries one at a time; the same queries run in-process through ``SecureStore`` (same
rights, same masking) and through the bare ``Store``. Bounded by ``--queries`` and
``--seconds``; everything stops by itself. Answers are checked to agree.

    .venv/bin/python benchmarks/api.py --rows 200000 --queries 400

``cityos serve`` runs without its access log; it uses httptools and uvloop when they are
installed, and the server encodes pages with orjson when it is installed.
"""

from __future__ import annotations

import argparse
import os
import secrets
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from cityos import access
from cityos.config import Settings
from cityos.model import DatasetSchema, Field, ModelKind
from cityos.store import Store
from cityos.testing.postgres import postgres_server

T0 = np.datetime64("2026-03-02T00:00:00", "ms")
BBOX = (116.20, 39.80, 116.60, 40.05)


def build(store: Store, rows: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    store.create_dataset(
        "taxis",
        DatasetSchema(
            ModelKind.POINT_ST, fields=(Field("speed", "float64"), Field("phone", personal="phone"))
        ),
    )
    import pyarrow as pa

    n_obj = max(rows // 200, 1)
    tbl = pa.table(
        {
            "id": pa.array([f"v{i}" for i in rng.integers(0, n_obj, rows)]),
            "t": pa.array(
                T0 + rng.integers(0, 86_400_000, rows).astype("timedelta64[ms]"),
                pa.timestamp("ms", tz="UTC"),
            ),
            "x": rng.uniform(BBOX[0], BBOX[2], rows),
            "y": rng.uniform(BBOX[1], BBOX[3], rows),
            "speed": rng.uniform(0, 80, rows),
            "phone": pa.array([f"138{v:08d}" for v in rng.integers(0, 10**8, rows)]),
        }
    )
    store.append("taxis", tbl)


def queries(n: int, seed: int) -> list[tuple[tuple[float, float, float, float], str, str]]:
    """Small answers: a ~1 km box over one hour."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        x, y = rng.uniform(BBOX[0], BBOX[2] - 0.012), rng.uniform(BBOX[1], BBOX[3] - 0.009)
        h = int(rng.integers(0, 23))
        start = str(T0 + np.timedelta64(h, "h")) + "Z"
        end = str(T0 + np.timedelta64(h + 1, "h")) + "Z"
        out.append(((float(x), float(y), float(x) + 0.012, float(y) + 0.009), start, end))
    return out


def timed(
    fns: dict[str, Callable[[int], int]], n: int, budget_s: float
) -> dict[str, tuple[np.ndarray, list[int]]]:
    """Run query ``i`` on every path in turn (rotating which goes first), so a change of
    machine load during the run hits all paths alike instead of whichever ran then."""
    lat: dict[str, list[float]] = {k: [] for k in fns}
    counts: dict[str, list[int]] = {k: [] for k in fns}
    names = list(fns)
    stop = time.perf_counter() + budget_s * len(fns)
    for i in range(n):
        k = i % len(names)
        for name in names[k:] + names[:k]:
            t = time.perf_counter()
            counts[name].append(fns[name](i))
            lat[name].append(time.perf_counter() - t)
        if time.perf_counter() > stop:
            break
    return {k: (np.array(lat[k]) * 1000, counts[k]) for k in fns}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def run(url: str, args: argparse.Namespace) -> None:
    import httpx

    home = Path(tempfile.mkdtemp(prefix="cityos-bench-api-"))
    secret = secrets.token_urlsafe(48)
    settings = Settings(home=home, database_url=url, secret_key=secret)
    store = Store(settings=settings)
    t = time.perf_counter()
    build(store, args.rows, args.seed)
    print(
        f"built {args.rows} rows in {time.perf_counter() - t:.1f} s "
        f"(catalog: PostgreSQL, {store.describe('taxis').files} files)"
    )
    db = store.db
    access.create_role(db, "analyst")
    access.grant(db, "analyst", "taxis", "read")
    access.create_user(db, "bench", "bench-password", roles=["analyst"])
    principal = access.principal_for(db, "bench")
    secure = access.SecureStore(store, principal, mask_key=secret.encode())

    port = free_port()
    env = {
        **os.environ,
        "CITYOS_SECRET_KEY": secret,
        "CITYOS_DATABASE_URL": url,
        "CITYOS_HOME": str(home),
    }
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "cityos.cli",
            "serve",
            "--home",
            str(home),
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--log-level",
            "warning",
            "--no-access-log",
        ],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        base = f"http://127.0.0.1:{port}"
        with httpx.Client(base_url=base, timeout=30.0) as client:
            deadline = time.monotonic() + 60
            while True:
                try:
                    if client.get("/health").status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                if time.monotonic() > deadline or server.poll() is not None:
                    raise SystemExit(
                        "server did not start: "
                        + (server.stderr.read().decode() if server.stderr else "")
                    )
                time.sleep(0.2)
            token = client.post(
                "/auth/token", data={"username": "bench", "password": "bench-password"}
            ).json()["access_token"]
            headers = {"Authorization": f"Bearer {token}"}
            qs = queries(args.queries, args.seed + 1)

            def http(i: int) -> int:
                box, start, end = qs[i]
                r = client.post(
                    "/datasets/taxis/query/st_range",
                    headers=headers,
                    json={"region": {"bbox": list(box)}, "start": start, "end": end},
                )
                r.raise_for_status()
                return int(r.json()["total"])

            def python_secure(i: int) -> int:
                box, start, end = qs[i]
                return len(secure.st_range("taxis", box, start, end))

            def python_bare(i: int) -> int:
                box, start, end = qs[i]
                return len(store.st_range("taxis", box, start, end))

            for fn in (http, python_secure, python_bare):  # warm caches and connections
                for i in range(min(10, len(qs))):
                    fn(i)
            results = timed(
                {
                    "HTTP (cityos serve)": http,
                    "Python SecureStore": python_secure,
                    "Python Store": python_bare,
                },
                len(qs),
                args.seconds,
            )
    finally:
        server.terminate()
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            server.kill()
        store.close()

    n = min(len(c) for _, c in results.values())
    ref = results["Python Store"][1][:n]
    for name, (_, counts) in results.items():
        assert counts[:n] == ref, f"{name} returned different answers"
    load = os.getloadavg()[0]
    print(
        f"\n{n} authorised st_range queries (~1 km x 1 h, mean "
        f"{np.mean(ref):.1f} rows per answer), one at a time, paths interleaved, "
        f"loopback; load average {load:.1f}\n"
    )
    print(f"{'path':<22}{'queries/s':>10}{'p50 ms':>9}{'p99 ms':>9}")
    p50 = {}
    for name, (lat, _) in results.items():
        lat = lat[:n]
        p50[name] = float(np.percentile(lat, 50))
        print(
            f"{name:<22}{1000 / lat.mean():>10.1f}{p50[name]:>9.2f}{np.percentile(lat, 99):>9.2f}"
        )
    print()
    for base_name in ("Python SecureStore", "Python Store"):
        ratio = p50["HTTP (cityos serve)"] / p50[base_name]
        print(f"ratio p50 HTTP / {base_name}: {ratio:.2f}x (target <= 2x vs SecureStore)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=200_000)
    ap.add_argument("--queries", type=int, default=400, help="per path (bounded)")
    ap.add_argument(
        "--seconds",
        type=float,
        default=60.0,
        help="time budget per path (the interleaved run gets the sum)",
    )
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument(
        "--database-url", default=None, help="PostgreSQL URL (default: a throwaway local cluster)"
    )
    args = ap.parse_args()
    access.configure_password_hashing()
    if args.database_url:
        run(args.database_url, args)
    else:
        with postgres_server() as url:
            run(url, args)


if __name__ == "__main__":
    main()

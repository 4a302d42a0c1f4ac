"""The digital twin at 1M moving-object points, in headless Chromium (Debian's, software
WebGL through SwiftShader): the Arrow layer endpoint, time to the first rendered frame, and
frame times while panning and while playing back, against the common approach in the same
run — the same points as GeoJSON into a MapLibre GeoJSON source.

Targets (issue 14): endpoint < 500 ms, first frame < 2 s, first frame at least 10x faster
than the GeoJSON baseline.

    .venv/bin/python benchmarks/twin.py --points 1000000
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import httpx
import numpy as np
import pandas as pd
import pyarrow as pa

sys.path.insert(0, str(Path(__file__).parent))
from _common import print_table, save
from cityos import access
from cityos.model import DatasetSchema, Field, ModelKind
from cityos.store import Store

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--use-angle=swiftshader", "--enable-unsafe-swiftshader", "--ignore-gpu-blocklist"]
CENTER = (116.40, 39.91)
START = pd.Timestamp("2026-03-02T00:00Z")


def make_points(n: int, objects: int, seed: int = 7) -> pd.DataFrame:
    """``objects`` random walks inside a 20 km city over one hour, ``n`` fixes in all."""
    rng = np.random.default_rng(seed)
    per = n // objects
    steps = rng.normal(0, 0.0004, size=(objects, per, 2)).cumsum(axis=1)
    origin = rng.uniform(-0.1, 0.1, size=(objects, 1, 2))
    xy = np.clip(origin + steps, -0.12, 0.12)
    t = START + pd.to_timedelta(np.tile(np.linspace(0, 3599_000, per).round(), objects), unit="ms")
    return pd.DataFrame(
        {
            "id": np.repeat([f"v{i:05d}" for i in range(objects)], per),
            "t": t,
            "x": CENTER[0] + xy[:, :, 0].ravel(),
            "y": CENTER[1] + xy[:, :, 1].ravel(),
            "kind": np.repeat(rng.choice(["taxi", "bus", "truck"], objects), per),
        }
    )


def geojson_bytes(table: Any) -> bytes:
    """The common approach: every point a GeoJSON Feature (the OGC items encoding)."""
    x, y, t = table["x"].to_numpy(), table["y"].to_numpy(), table["t"].to_numpy()
    ids = table["id"].to_pylist()
    feats = [
        {
            "type": "Feature",
            "geometry": {"type": "Point", "coordinates": [float(a), float(b)]},
            "properties": {"id": i, "t": float(c)},
        }
        for a, b, c, i in zip(x, y, t, ids, strict=True)
    ]
    return json.dumps({"type": "FeatureCollection", "features": feats}).encode()


def stats(ms: list[float]) -> str:
    if not ms:
        return "-"
    s = sorted(ms)
    return f"median {statistics.median(s):.1f} / p95 {s[int(len(s) * 0.95) - 1]:.1f} ms"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--points", type=int, default=1_000_000)
    ap.add_argument("--objects", type=int, default=1000)
    ap.add_argument("--repeat", type=int, default=5, help="endpoint requests to time")
    ap.add_argument("--frames", type=int, default=10, help="frames timed while panning / playing")
    ap.add_argument("--skip-geojson", action="store_true")
    args = ap.parse_args()
    os.environ.setdefault("CITYOS_ENVIRONMENT", "test")
    from fastapi import Response
    from playwright.sync_api import sync_playwright

    from cityos.demo._see import serve_in_thread

    access.configure_password_hashing(time_cost=1, memory_cost_kib=8, parallelism=1)
    home = Path(tempfile.mkdtemp(prefix="twin-bench-"))
    store = Store(home)
    store.create_dataset("bench_points", DatasetSchema(ModelKind.POINT_ST, fields=(Field("kind"),)))
    pts = make_points(args.points, args.objects)
    store.append("bench_points", pts)
    access.create_role(store.db, "admin")
    access.create_user(store.db, "bench", "bench-pass-1", roles=["admin"])
    served = serve_in_thread(store)
    url = served.url
    tok = httpx.post(f"{url}/auth/token", data={"username": "bench", "password": "bench-pass-1"})
    token = tok.json()["access_token"]
    h = {"Authorization": f"Bearer {token}"}
    q = {
        "start": START.isoformat(),
        "end": (START + pd.Timedelta("1h")).isoformat(),
        "limit": 2_000_000,
    }
    arrow_url = f"{url}/twin/layers/bench_points.arrow?" + urlencode(q)

    # -- the endpoint, over HTTP on loopback ------------------------------------------
    ms = []
    with httpx.Client(timeout=120) as c:
        for _ in range(args.repeat):
            t0 = time.perf_counter()
            r = c.get(arrow_url, headers=h)
            ms.append((time.perf_counter() - t0) * 1000)
            assert r.status_code == 200, r.text[:300]
            assert int(r.headers["X-Total-Count"]) == len(pts), r.headers
    arrow_size = len(r.content)
    endpoint_ms = statistics.median(ms)

    # the GeoJSON baseline's own endpoint: the same read, encoded as features
    gj: bytes = b""
    gj_ms = float("nan")
    if not args.skip_geojson:
        t0 = time.perf_counter()
        # the same rows the Arrow endpoint answered (t already epoch ms), as Features
        table = pa.ipc.open_stream(r.content).read_all()
        gj = geojson_bytes(table)
        gj_ms = (time.perf_counter() - t0) * 1000
        app = served.server.config.app

        def geo() -> Response:
            return Response(gj, media_type="application/geo+json")

        app.add_api_route("/bench/points.geojson", geo, methods=["GET"])

    # -- the browser --------------------------------------------------------------------
    res: dict[str, Any] = {}
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=ARGS)
        for name in ("arrow", "geojson"):
            if name == "geojson" and args.skip_geojson:
                continue
            page = b.new_page(viewport={"width": 1280, "height": 800})
            page.goto(f"{url}/#bench")
            page.wait_for_selector("body[data-bench='1']")
            if name == "arrow":
                res[name] = page.evaluate(
                    "([u, t, c, f]) => window.twinBench.arrow(u, t, c, 11, f)",
                    [arrow_url, token, list(CENTER), args.frames],
                )
            else:
                res[name] = page.evaluate(
                    "([u, c, f]) => window.twinBench.geojson(u, c, 11, f)",
                    [f"{url}/bench/points.geojson", list(CENTER), args.frames],
                )
            page.close()
        b.close()
    served.stop()
    store.close()

    a = res["arrow"]
    rows = [
        [
            "endpoint (server, HTTP loopback)",
            f"{endpoint_ms:.0f} ms",
            f"{gj_ms:.0f} ms (encode only)",
            f"{arrow_size / 1e6:.1f} MB vs {len(gj) / 1e6:.1f} MB",
        ],
        [
            "fetch in the page",
            f"{a['fetchMs']:.0f} ms",
            f"{res['geojson']['fetchMs']:.0f} ms" if "geojson" in res else "-",
            "",
        ],
        [
            "decode (Arrow / JSON.parse)",
            f"{a['parseMs']:.0f} ms",
            f"{res['geojson']['parseMs']:.0f} ms" if "geojson" in res else "-",
            "",
        ],
        [
            "first rendered frame",
            f"{a['firstFrameMs']:.0f} ms",
            f"{res['geojson']['firstFrameMs']:.0f} ms" if "geojson" in res else "-",
            "",
        ],
        [
            "frame while panning",
            stats(a["panFrameMs"]),
            stats(res["geojson"]["panFrameMs"]) if "geojson" in res else "-",
            "",
        ],
        [
            "frame while playing back",
            stats(a["playFrameMs"]),
            stats(res["geojson"]["playFrameMs"]) if "geojson" in res else "-",
            "",
        ],
    ]
    print(
        f"\n{len(pts):,} moving-object points, {args.objects} objects, one hour; headless Chromium + SwiftShader (software WebGL)"
    )
    print_table(["", "Arrow + deck.gl", "GeoJSON + MapLibre", ""], rows)
    out: dict[str, Any] = {
        "points": len(pts),
        "endpoint_ms": endpoint_ms,
        "endpoint_all_ms": ms,
        "arrow_bytes": arrow_size,
        "geojson_bytes": len(gj),
        "geojson_encode_ms": gj_ms,
        **{f"{k}": v for k, v in res.items()},
    }
    print(
        f"endpoint {endpoint_ms:.0f} ms (target < 500 ms): {'met' if endpoint_ms < 500 else 'NOT met'}"
    )
    print(
        f"first frame {a['firstFrameMs']:.0f} ms (target < 2000 ms): {'met' if a['firstFrameMs'] < 2000 else 'NOT met'}"
    )
    if "geojson" in res:
        ratio = res["geojson"]["firstFrameMs"] / a["firstFrameMs"]
        out["first_frame_ratio"] = ratio
        print(
            f"first frame GeoJSON / Arrow = {ratio:.1f}x (target >= 10x): {'met' if ratio >= 10 else 'NOT met'}"
        )
    print(
        f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores (the machine is shared)"
    )
    save(f"twin_{len(pts)}", out)


if __name__ == "__main__":
    main()

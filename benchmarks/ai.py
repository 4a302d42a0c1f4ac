"""How good and how fast are the AI engine's forecasters? Every zoo model on the Beijing
PM2.5 task (12 stations, hourly; train <= 2015-12, validation 2016-01..02, test
2016-03..2017-02; horizons 1, 6, 12, 24 h; other pollutants and weather as covariates) and on
grid inflow of a generated fleet, side by side with the persistence, historical-average and
LightGBM baselines in the same run; plus online prediction latency over HTTP.

    PYTHONPATH=src .venv/bin/python benchmarks/ai.py [--quick] [--skip-deep] [--skip-http]

Not a test: figures drift on a shared machine; the ratio lines compare models run together.
"""

from __future__ import annotations

import argparse
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

from cityos.ai import make_model, panel_from_frame
from cityos.ai._metrics import evaluate
from cityos.ai._panel import chrono_split

HS = (1, 6, 12, 24)
COVS = (
    "pm10",
    "so2",
    "no2",
    "co",
    "o3",
    "temperature",
    "pressure",
    "dew_point",
    "rain",
    "wind_direction",
    "wind_speed",
)
RENAME = {
    "PM2.5": "pm25",
    "PM10": "pm10",
    "SO2": "so2",
    "NO2": "no2",
    "CO": "co",
    "O3": "o3",
    "TEMP": "temperature",
    "PRES": "pressure",
    "DEWP": "dew_point",
    "RAIN": "rain",
    "wd": "wind_direction",
    "WSPM": "wind_speed",
}


def beijing_panel(source: str | None) -> Any:
    from cityos.datasets import read_beijing_air_quality

    df = read_beijing_air_quality(source).rename(columns=RENAME)
    return panel_from_frame(df, "pm25", COVS, "1h", timezone="Asia/Shanghai", country="CN")


def families(quick: bool, deep: bool, grid: bool) -> list[tuple[str, dict[str, Any]]]:
    out: list[tuple[str, dict[str, Any]]] = [
        ("persistence", {}),
        ("historical_average", {}),
        ("seasonal_naive", {"season": 24}),
        (
            "lightgbm",
            {"n_estimators": 60 if quick else 150, "max_rows": 100_000 if quick else 200_000},
        ),
    ]
    if deep:
        out += [
            (
                "stid",
                {
                    "epochs": 4 if quick else 10,
                    "max_batches_per_epoch": 150 if quick else 300,
                    "window": 24,
                },
            ),
            (
                "graph_wavenet",
                {
                    "epochs": 2 if quick else 5,
                    "max_batches_per_epoch": 80 if quick else 200,
                    "hidden": 16,
                },
            ),
        ]
        if grid:
            out.append(("st_resnet", {"epochs": 4 if quick else 10, "max_batches_per_epoch": 150}))
    return out


def run_task(
    title: str,
    panel: Any,
    splits: list[tuple[int, int]],
    horizon: int,
    hs: tuple[int, ...],
    fams: list[tuple[str, dict[str, Any]]],
    stride: int,
) -> dict[str, Any]:
    tr, va, te = splits
    print(f"\n## {title}: panel {panel.shape}, train {tr}, val {va}, test {te}")
    print(
        f"{'model':<20}{'train s':>9}"
        + "".join(f"{'MAE h' + str(h):>10}{'RMSE h' + str(h):>10}" for h in hs)
    )
    res: dict[str, Any] = {}
    for fam, params in fams:
        if fam == "st_resnet" and panel.grid is None:
            continue
        t0 = time.perf_counter()
        m = make_model(fam, horizon, seed=0, **params).fit(panel, train=tr, val=va)
        fit_s = time.perf_counter() - t0
        ev = evaluate(m, panel, te, hs, stride=stride)
        res[fam] = (fit_s, ev)
        print(
            f"{fam:<20}{fit_s:>9.1f}"
            + "".join(f"{ev.mae[h]:>10.2f}{ev.rmse[h]:>10.2f}" for h in hs),
            flush=True,
        )
    best = min(
        (f for f in res if f not in ("persistence", "historical_average", "seasonal_naive")),
        key=lambda f: np.mean([res[f][1].mae[h] for h in hs if h > 1] or [np.inf]),
        default=None,
    )
    for base in ("persistence", "historical_average", "lightgbm"):
        if base in res and best:
            r = " ".join(f"h{h}: {res[best][1].mae[h] / res[base][1].mae[h]:.3f}" for h in hs)
            print(f"ratio MAE {best} / {base}: {r}")
    return res


def grid_panel(vehicles: int, days: int) -> Any:
    from cityos.ai import Panel
    from cityos.analytics import CellGrid, flow_tensor, grid_flows
    from cityos.synth import make_city, simulate_vehicles

    city = make_city(seed=7)
    fleet = simulate_vehicles(city, vehicles, days=days, interval_s=60, seed=7)
    pts = fleet[["id", "t", "x", "y"]]
    bbox = (
        float(pts.x.min()),
        float(pts.y.min()),
        float(pts.x.max()) + 1e-9,
        float(pts.y.max()) + 1e-9,
    )
    g = CellGrid.from_metres(bbox, 1000.0, True)
    x, times = flow_tensor(grid_flows(pts, g, "1h"), g)
    t, _, ny, nx = x.shape
    v = x.reshape(t, 2, ny * nx).transpose(0, 2, 1)
    cx, cy = g.centres()
    return Panel.from_array(
        v,
        times[0],
        "1h",
        channels=("inflow", "outflow"),
        target="inflow",
        grid=(ny, nx),
        x=cx,
        y=cy,
    )


def http_latency(panel: Any, n: int = 200) -> tuple[float, float, float]:
    """p50 / p99 / mean ms of POST /ai/models/pm25/predict (one station, next 24 h, fresh
    from the store) over real HTTP on loopback (uvicorn + httpx)."""
    import httpx
    import uvicorn
    from tests.ai.builders import panel_rows

    from cityos import access
    from cityos.ai import FeatureSpec
    from cityos.ai._lifecycle import train
    from cityos.ai._registry import ModelRegistry
    from cityos.config import Settings
    from cityos.model import DatasetSchema, Field, ModelKind
    from cityos.server import create_app
    from cityos.store import Store

    home = Path(tempfile.mkdtemp())
    settings = Settings(
        home=home, database_url=f"sqlite:///{home / 'cityos.db'}", secret_key="b" * 48
    )
    store = Store(settings=settings)
    small = panel.slice(panel.shape[0] - 24 * 60, panel.shape[0])
    chans = [c for c in small.channels]
    store.create_dataset(
        "air",
        DatasetSchema(
            ModelKind.POINT_SERIES,
            fields=tuple(Field(c, "float64") for c in chans),
            time_partition="30D",
        ),
    )
    store.append("air", panel_rows(small))
    spec = FeatureSpec(
        "air",
        "pm25",
        covariates=tuple(c for c in chans if c != "pm25"),
        timezone="Asia/Shanghai",
        country="CN",
    )
    train(store, spec, "lightgbm", horizon=24, params={"n_estimators": 60}, name="pm25")
    ModelRegistry.of(store).deploy("pm25")
    access.configure_password_hashing(time_cost=1, memory_cost_kib=8, parallelism=1)
    access.create_role(store.db, "analyst")
    access.grant(store.db, "analyst", "air", "read")
    access.create_user(store.db, "ana", "pass-word-123", roles=["analyst"])
    tok = access.issue_token(access.principal_for(store.db, "ana"), settings.secret_key)
    server = uvicorn.Server(
        uvicorn.Config(
            create_app(settings, store=store),
            host="127.0.0.1",
            port=8765,
            log_level="warning",
            access_log=False,
        )
    )
    th = threading.Thread(target=server.run, daemon=True)
    th.start()
    while not server.started:
        time.sleep(0.05)
    ms = []
    with httpx.Client(
        base_url="http://127.0.0.1:8765", headers={"Authorization": f"Bearer {tok}"}
    ) as c:
        station = str(small.nodes[0])
        for i in range(n + 10):
            t0 = time.perf_counter()
            r = c.post("/ai/models/pm25/predict", json={"ids": [station]})
            dt = (time.perf_counter() - t0) * 1000
            assert r.status_code == 200 and len(r.json()["predictions"]) == 24, r.text
            if i >= 10:
                ms.append(dt)
    server.should_exit = True
    th.join(10)
    store.close()
    a = np.array(ms)
    return float(np.percentile(a, 50)), float(np.percentile(a, 99)), float(a.mean())


def onnx_latency(panel: Any, n: int = 300) -> None:
    """Single-origin predict latency of STID and Graph WaveNet: torch vs onnxruntime."""
    for fam, params in (
        ("stid", {"epochs": 1, "max_batches_per_epoch": 20}),
        ("graph_wavenet", {"epochs": 1, "max_batches_per_epoch": 10, "hidden": 16}),
    ):
        m = make_model(fam, 24, **params).fit(panel, train=(0, 24 * 60))
        o = np.array([panel.shape[0] - 1])
        times = {}
        for rt in ("torch", "onnx"):
            if rt == "onnx":
                path = Path(tempfile.mkdtemp()) / "m.onnx"
                m.export_onnx(path, panel)  # type: ignore[attr-defined]
                m.use_onnx(path)  # type: ignore[attr-defined]
            for _ in range(10):
                m.predict(panel, o)
            t0 = time.perf_counter()
            for _ in range(n):
                m.predict(panel, o)
            times[rt] = (time.perf_counter() - t0) / n * 1000
        print(
            f"{fam}: one forecast (12 stations x 24 h) torch {times['torch']:.2f} ms, "
            f"onnxruntime {times['onnx']:.2f} ms (ratio onnx/torch {times['onnx'] / times['torch']:.2f})"
        )


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--source", default=None, help="Beijing data folder (default: shared data)")
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--skip-deep", action="store_true")
    ap.add_argument("--skip-http", action="store_true")
    ap.add_argument("--skip-grid", action="store_true")
    ap.add_argument("--stride", type=int, default=1, help="score every n-th test origin")
    ap.add_argument("--onnx-only", action="store_true")
    ap.add_argument("--skip-beijing", action="store_true")
    a = ap.parse_args()
    t0 = time.perf_counter()
    p = beijing_panel(a.source)
    print(f"loaded Beijing in {time.perf_counter() - t0:.1f} s")
    if a.onnx_only:
        onnx_latency(p)
        return
    if not a.skip_beijing:
        splits = chrono_split(p, "2016-01-01", "2016-03-01")
        run_task(
            "Beijing PM2.5 (ug/m3), test 2016-03..2017-02",
            p,
            splits,
            24,
            HS,
            families(a.quick, not a.skip_deep, False),
            a.stride,
        )
    if not a.skip_grid:
        g = grid_panel(100 if a.quick else 150, 7)
        n = g.shape[0]
        gs = [(0, int(n * 0.7)), (int(n * 0.7), int(n * 0.8)), (int(n * 0.8), n)]
        run_task(
            "Grid inflow of a generated fleet (vehicles per cell-hour)",
            g,
            gs,
            12,
            (1, 3, 6, 12),
            families(a.quick, not a.skip_deep, True),
            1,
        )
    if not a.skip_http:
        p50, p99, mean = http_latency(p)
        print(
            f"\nPOST /ai/models/pm25/predict over HTTP (one station, 24 h, fresh from the store): "
            f"p50 {p50:.1f} ms, p99 {p99:.1f} ms, mean {mean:.1f} ms"
        )


if __name__ == "__main__":
    main()

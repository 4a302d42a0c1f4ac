"""The analytics stop of the demo: one vehicle's day cleaned, segmented, matched and
aggregated, each step timed, as printable lines."""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from cityos.analytics import (
    MapMatcher,
    filter_max_speed,
    grid_flows,
    segment_speeds,
    simplify,
    split_by_stays,
    stay_points,
)
from cityos.model import ID_COL

__all__ = ["analytics_tour"]


def analytics_tour(store: Any, vehicles_dataset: str, roads_dataset: str) -> list[str]:
    """Lines showing one vehicle's trajectory cleaned, segmented, map-matched and
    aggregated, with timings; the vehicle is the one with the most points.

    Examples
    --------
    >>> # for line in analytics_tour(store, "vehicles", "roads"): print(line)
    """
    lines: list[str] = []

    def step(label: str, t0: float, detail: str) -> None:
        lines.append(f"  {label:<28} {1000 * (time.perf_counter() - t0):8.1f} ms  {detail}")

    t0 = time.perf_counter()
    counts = store.sql(
        f'SELECT id, count(*) AS n FROM "{vehicles_dataset}" GROUP BY id ORDER BY n DESC, id LIMIT 1'
    )
    vid = counts.column(ID_COL)[0].as_py()
    pts = store.id_temporal(vehicles_dataset, [vid]).to_pandas()
    step("load one vehicle", t0, f"{vid}: {len(pts)} points")
    lines.insert(0, f"Analytics tour of vehicle {vid} ({vehicles_dataset} on {roads_dataset})")

    t0 = time.perf_counter()
    clean = filter_max_speed(pts, 150)
    step("clean (max 150 km/h)", t0, f"{len(pts) - len(clean)} noise points removed")
    t0 = time.perf_counter()
    simple = simplify(clean, 10.0, method="sed")
    step("simplify (SED, 10 m)", t0, f"{len(clean)} -> {len(simple)} points")
    t0 = time.perf_counter()
    stays = stay_points(clean, 100, "3min")
    trips = split_by_stays(clean, 100, "3min")
    step(
        "stay points and trips",
        t0,
        f"{len(stays)} stays, {trips['traj_id'].nunique() if len(trips) else 0} trips",
    )

    t0 = time.perf_counter()
    roads = store.scan(roads_dataset).to_geopandas()
    matcher = MapMatcher(roads)
    res = matcher.match(clean)
    matched = res.points
    ok = matched["edge_id"] >= 0
    route_edges = sum(len(e) for e in res.routes.to_arrow()["edges"].to_pylist() if e)
    step(
        "map matching (HMM)",
        t0,
        f"{int(ok.sum())}/{len(matched)} points matched, median offset "
        f"{float(np.nanmedian(matched['match_dist_m'])):.1f} m, route of {route_edges} road segments",
    )

    t0 = time.perf_counter()
    speeds = segment_speeds(matched, "15min")
    flows = grid_flows(clean, 500.0, "1h")
    fdf = flows.to_pandas()
    step(
        "aggregate",
        t0,
        f"{len(speeds)} segment-speed rows, {len(fdf)} grid cells x hours "
        f"(inflow {int(fdf['inflow'].sum())}, outflow {int(fdf['outflow'].sum())})",
    )
    return lines

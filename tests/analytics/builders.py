"""Small builders of test data for the analytics tests (in the spirit of movingpandas'
``make_traj``): point streams in metres or lon/lat, and a grid road network."""

from __future__ import annotations

import numpy as np
import pandas as pd
import shapely

T0 = pd.Timestamp("2026-03-01T08:00:00Z")


def make_traj(
    xy: list[tuple[float, float]] | np.ndarray,
    *,
    oid: str = "a",
    step_s: float = 10.0,
    t0: pd.Timestamp = T0,
) -> pd.DataFrame:
    """One object's points, one every ``step_s`` seconds."""
    xy = np.asarray(xy, dtype="float64")
    return pd.DataFrame(
        {
            "id": oid,
            "t": t0 + pd.to_timedelta(np.arange(len(xy)) * step_s, unit="s"),
            "x": xy[:, 0],
            "y": xy[:, 1],
        }
    )


def stop_and_go(
    rng: np.random.Generator,
    oid: str = "a",
    n_stops: int = 3,
    step_s: float = 30.0,
    stop_pts: int = 20,
    move_pts: int = 15,
    jitter_m: float = 5.0,
) -> pd.DataFrame:
    """Alternating moves (about 300 m per step) and stops (jitter only), in metres."""
    pos = np.zeros(2)
    pts = []
    for k in range(n_stops):
        for _ in range(move_pts):
            pos = pos + rng.normal(0, 1, 2) * 30 + np.array([300.0, 0.0])
            pts.append(pos.copy())
        for _ in range(stop_pts):
            pts.append(pos + rng.normal(0, jitter_m / 2, 2))
        pos = pos + np.array([0.0, 50.0 * (k + 1)])
    return make_traj(np.array(pts), oid=oid, step_s=step_s)


def grid_network(
    n: int = 6, spacing_deg: float = 0.004, lon0: float = 116.30, lat0: float = 39.90
) -> pd.DataFrame:
    """A Manhattan grid of two-way streets as a roads table (edge_id, from_node, to_node,
    geometry, length_m): one edge per block side, between nodes numbered row-major."""
    import geopandas as gpd

    from cityos.geo import haversine

    rows = []
    eid = 0
    for i in range(n):
        for j in range(n):
            a = i * n + j
            for di, dj in ((0, 1), (1, 0)):
                ii, jj = i + di, j + dj
                if ii < n and jj < n:
                    b = ii * n + jj
                    line = shapely.LineString(
                        [
                            (lon0 + j * spacing_deg, lat0 + i * spacing_deg),
                            (lon0 + jj * spacing_deg, lat0 + ii * spacing_deg),
                        ]
                    )
                    (x1, y1), (x2, y2) = line.coords
                    rows.append(
                        {
                            "edge_id": eid,
                            "from_node": a,
                            "to_node": b,
                            "geometry": line,
                            "length_m": float(haversine(x1, y1, x2, y2)),
                            "oneway": False,
                        }
                    )
                    eid += 1
    return gpd.GeoDataFrame(rows, geometry="geometry", crs="EPSG:4326")

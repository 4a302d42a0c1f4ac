"""Small builders of test data for the store and the layers above it."""

from __future__ import annotations

import numpy as np
import pandas as pd
import shapely

T0 = pd.Timestamp("2026-03-02T00:00:00Z")


def make_points(
    n_objects: int = 20,
    n_steps: int = 200,
    seed: int = 0,
    step_s: int = 30,
    center: tuple[float, float] = (116.40, 39.91),
    spread: float = 0.05,
) -> pd.DataFrame:
    """Random-walk GPS points of ``n_objects`` objects, canonical columns + ``speed``."""
    rng = np.random.default_rng(seed)
    ids = np.repeat([f"obj-{i:03d}" for i in range(n_objects)], n_steps)
    t = (
        np.tile(np.arange(n_steps) * step_s * 1000, n_objects)
        + np.repeat(rng.integers(0, step_s * 1000, n_objects), n_steps)
        + T0.value // 10**6
    )
    x0 = rng.uniform(center[0] - spread, center[0] + spread, n_objects)
    y0 = rng.uniform(center[1] - spread, center[1] + spread, n_objects)
    dx = rng.normal(0, 0.0005, (n_objects, n_steps)).cumsum(axis=1)
    dy = rng.normal(0, 0.0005, (n_objects, n_steps)).cumsum(axis=1)
    return pd.DataFrame(
        {
            "id": ids,
            "t": pd.to_datetime(t, unit="ms", utc=True),
            "x": (x0[:, None] + dx).ravel(),
            "y": (y0[:, None] + dy).ravel(),
            "speed": rng.uniform(0, 60, n_objects * n_steps).round(2),
        }
    )


def make_regions(
    center: tuple[float, float] = (116.40, 39.91), n: int = 3, size: float = 0.1
) -> pd.DataFrame:
    """An n x n tiling of square regions around ``center``, as WKB."""
    x0, y0 = center[0] - size * n / 2, center[1] - size * n / 2
    rows = []
    for i in range(n):
        for j in range(n):
            g = shapely.box(x0 + i * size, y0 + j * size, x0 + (i + 1) * size, y0 + (j + 1) * size)
            rows.append({"id": i * n + j, "name": f"d{i}{j}", "geometry": shapely.to_wkb(g)})
    return pd.DataFrame(rows)


def make_lines(
    center: tuple[float, float] = (116.40, 39.91), n: int = 10, size: float = 0.2
) -> pd.DataFrame:
    """A grid of horizontal and vertical road segments, as a network (WKB lines)."""
    rows = []
    x0, y0 = center[0] - size / 2, center[1] - size / 2
    step = size / n
    k = 0
    for i in range(n + 1):
        for j in range(n):
            for a, b in (
                ((x0 + i * step, y0 + j * step), (x0 + i * step, y0 + (j + 1) * step)),
                ((x0 + j * step, y0 + i * step), (x0 + (j + 1) * step, y0 + i * step)),
            ):
                rows.append(
                    {
                        "id": k,
                        "from_node": 2 * k,
                        "to_node": 2 * k + 1,
                        "geometry": shapely.to_wkb(shapely.LineString([a, b])),
                        "lanes": 2,
                    }
                )
                k += 1
    return pd.DataFrame(rows)

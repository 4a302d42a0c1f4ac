"""Small problems for the AI tests: a grid panel with a daily cycle, a covariate that leads
the target, noise and missing readings."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from cityos.ai import Panel

if TYPE_CHECKING:
    import pandas as pd

    from cityos.store import Store


def make_panel(
    steps: int = 400,
    ny: int = 3,
    nx: int = 4,
    *,
    seed: int = 0,
    missing: float = 0.05,
    stationary: bool = False,
) -> Panel:
    rng = np.random.default_rng(seed)
    n = ny * nx
    t = np.arange(steps)
    level = rng.uniform(20, 60, n)
    daily = np.sin(2 * np.pi * t / 24)[:, None] * rng.uniform(5, 15, n)[None, :]
    cov = np.cumsum(rng.normal(0, 1, (steps, n)), axis=0) * 0.5
    if stationary:  # AR(1) instead of a random walk: no drift between train and test
        e = rng.normal(0, 1, (steps, n))
        cov = np.zeros((steps, n))
        for i in range(1, steps):
            cov[i] = 0.8 * cov[i - 1] + e[i]
    target = level[None, :] + daily + np.roll(cov, 1, axis=0) + rng.normal(0, 1, (steps, n))
    v = np.stack([target, cov], axis=-1)
    v[rng.random(v.shape) < missing] = np.nan
    gx, gy = np.meshgrid(116.3 + 0.01 * np.arange(nx), 39.9 + 0.01 * np.arange(ny))
    return Panel.from_array(
        v,
        "2026-03-02",
        "1h",
        channels=("pm25", "temperature"),
        target="pm25",
        nodes=[f"s{i}" for i in range(n)],
        x=gx.ravel(),
        y=gy.ravel(),
        grid=(ny, nx),
        timezone="Asia/Shanghai",
        country="CN",
    )


def panel_rows(panel: Panel) -> pd.DataFrame:
    """Long rows (id, t, x, y, channels...) of a panel, missing readings left out of the target."""
    import pandas as pd

    t, n, _c = panel.shape
    df = pd.DataFrame(
        {
            "id": np.tile([str(v) for v in panel.nodes], t),
            "t": np.repeat(panel.times, n),
            "x": np.tile(panel.x, t),
            "y": np.tile(panel.y, t),
        }
    )
    for i, ch in enumerate(panel.channels):
        df[ch] = panel.values[:, :, i].ravel()
    return df


def air_city(store: Store, steps: int = 400, *, name: str = "air") -> Panel:
    """A point-series dataset ``name`` (pm25, temperature per station, hourly) in ``store``."""
    from cityos.model import DatasetSchema, Field, ModelKind

    p = make_panel(steps)
    store.create_dataset(
        name,
        DatasetSchema(
            ModelKind.POINT_SERIES,
            fields=(Field("pm25", "float64"), Field("temperature", "float64")),
            time_partition="30D",
        ),
    )
    store.append(name, panel_rows(p))
    return p


def road_city(
    store: Store, vehicles: int = 60, days: int = 4, *, size_km: float = 4.0, seed: int = 7
) -> tuple[object, pd.DataFrame]:
    """A generated city's road network (``roads``, NETWORK_STATIC) and the hourly mean speed
    of its simulated fleet per road segment (``road_speeds``, NETWORK_SERIES referring to
    ``roads``) in ``store``; returns the city and the speeds frame."""
    from cityos.model import DatasetSchema, Field, ModelKind
    from cityos.synth import make_city, make_road_speeds, simulate_vehicles

    city = make_city(seed=seed, size_km=size_km)
    store.create_dataset(
        "roads",
        DatasetSchema(
            ModelKind.NETWORK_STATIC,
            id_type="int64",
            fields=(Field("length_m", "float64"), Field("speed_limit_kmh", "float64")),
        ),
    )
    store.append(
        "roads",
        city.edges.rename(columns={"edge_id": "id"})[
            ["id", "from_node", "to_node", "geometry", "length_m", "speed_limit_kmh"]
        ],
    )
    fleet = simulate_vehicles(city, vehicles, days=days, interval_s=60, seed=seed)
    speeds = make_road_speeds(city, fleet, "1h").rename(columns={"edge_id": "id"})
    store.create_dataset(
        "road_speeds",
        DatasetSchema(
            ModelKind.NETWORK_SERIES,
            id_type="int64",
            network="roads",
            fields=(Field("speed_kmh", "float64"), Field("n_points", "int64")),
            time_partition="30D",
        ),
    )
    store.append("road_speeds", speeds[["id", "t", "speed_kmh", "n_points"]])
    return city, speeds

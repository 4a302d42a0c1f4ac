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

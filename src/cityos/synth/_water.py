"""The synthetic city's water: a meandering river across it and a few lakes and ponds.

Drawn from a random stream of its own (seeded from the city's seed and a fixed stream
number), so adding water never moves the streams the roads, POIs and fleet are drawn from.
Roads cross the river where they meet it (bridges)."""

from __future__ import annotations

from collections.abc import Callable

import geopandas as gpd
import numpy as np
import numpy.typing as npt
import shapely

__all__ = ["WATER_KINDS", "make_water"]

WATER_KINDS = ("river", "lake", "pond")
#: The water's own stream of the city's seed (any fixed number unlike the others).
_STREAM = 0x57A7E5
FloatArray = npt.NDArray[np.float64]
_LAKES = ("Beihai Lake", "Houhai Lake", "Qingnian Lake")


def _blob(
    rng: np.random.Generator, cx: float, cy: float, radius: float, points: int = 40
) -> shapely.Polygon:
    """A lake-like shape: an ellipse with a smoothly wobbling radius (metres)."""
    ang = np.linspace(0, 2 * np.pi, points, endpoint=False)
    wobble = np.zeros(points)
    for k in (2, 3, 5):
        wobble += rng.uniform(0.02, 0.12) * np.cos(k * ang + rng.uniform(0, 2 * np.pi))
    stretch = rng.uniform(0.6, 1.0)
    turn = rng.uniform(0, np.pi)
    r = radius * (1 + wobble)
    x, y = r * np.cos(ang), r * np.sin(ang) * stretch
    c, s = np.cos(turn), np.sin(turn)
    return shapely.Polygon(np.stack([cx + c * x - s * y, cy + s * x + c * y], 1))


def make_water(
    seed: int,
    half_m: float,
    to_lonlat: Callable[[FloatArray, FloatArray], tuple[FloatArray, FloatArray]],
    *,
    avoid: tuple[FloatArray, FloatArray] | None = None,
    n_lakes: int = 2,
    n_ponds: int = 3,
) -> gpd.GeoDataFrame:
    """Water bodies of a city spanning ``[-half_m, half_m]`` metres around its centre.

    Parameters
    ----------
    seed : int
        The city's seed; the water uses its own stream of it.
    half_m : float
        Half the side of the city's square extent, in metres.
    to_lonlat : callable
        ``(mx, my) -> (lon, lat)`` for arrays of metres east and north of the centre.
    avoid : (lon array, lat array), optional
        Places no lake or pond may cover (the city's POIs).
    n_lakes, n_ponds : int
        How many lakes (300-600 m across) and ponds (60-150 m across).

    Returns
    -------
    geopandas.GeoDataFrame
        ``water_id``, ``name``, ``kind`` (one of :data:`WATER_KINDS`), ``width_m`` (the
        river's width; the widest extent of a lake or pond), ``area_m2``, ``geometry``
        (polygons, EPSG:4326). The river enters on the west edge and leaves on the east,
        meandering; no lake or pond touches the river or another one, or covers a place
        in ``avoid``. Roads and POIs beside them are left where they are: a road crossing
        the river is a bridge.
    """

    def lonlat(g: shapely.Geometry) -> shapely.Geometry:
        def f(c: FloatArray) -> FloatArray:
            lon, lat = to_lonlat(c[:, 0], c[:, 1])
            return np.stack([lon, lat], 1)

        return shapely.transform(g, f)

    rng = np.random.default_rng([int(seed), _STREAM])
    # the river: a sum of two sine waves across the city, from edge to edge
    x = np.linspace(-half_m * 1.1, half_m * 1.1, 176)
    amp1, amp2 = rng.uniform(0.08, 0.16) * half_m, rng.uniform(0.02, 0.05) * half_m
    lam1, lam2 = rng.uniform(1.2, 1.8) * half_m, rng.uniform(0.4, 0.6) * half_m
    ph1, ph2 = rng.uniform(0, 2 * np.pi, 2)
    offset = rng.uniform(-0.3, 0.3) * half_m
    y = (
        offset
        + amp1 * np.sin(2 * np.pi * x / lam1 + ph1)
        + amp2 * np.sin(2 * np.pi * x / lam2 + ph2)
    )
    width = float(np.round(rng.uniform(120.0, 220.0)))
    line = shapely.LineString(np.stack([x, y], 1))
    # just past the districts, which pad the road grid by 2% of its side
    extent = shapely.box(-half_m * 1.05, -half_m * 1.05, half_m * 1.05, half_m * 1.05)
    river = shapely.intersection(shapely.buffer(line, width / 2, cap_style="flat"), extent)
    shapes: list[tuple[str, str, float, shapely.Geometry]] = [("Qing River", "river", width, river)]
    taken: list[shapely.Geometry] = [shapely.buffer(river, 150.0)]
    wanted = [("lake", r) for r in range(n_lakes)] + [("pond", r) for r in range(n_ponds)]
    counters = {"lake": 0, "pond": 0}
    for kind, _ in wanted:
        for _attempt in range(200):
            radius = rng.uniform(150, 300) if kind == "lake" else rng.uniform(30, 75)
            cx, cy = rng.uniform(-0.8, 0.8, 2) * half_m
            shape = _blob(rng, float(cx), float(cy), float(radius))
            if any(shapely.intersects(shape, t) for t in taken):
                continue
            if avoid is None or not shapely.intersects_xy(lonlat(shape), *avoid).any():
                break
        else:  # pragma: no cover - a 20 km city always has room
            continue
        taken.append(shapely.buffer(shape, 100.0))
        counters[kind] += 1
        k = counters[kind]
        name = _LAKES[k - 1] if kind == "lake" and k <= len(_LAKES) else f"{kind.title()} No.{k}"
        b = shape.bounds
        shapes.append((name, kind, float(round(max(b[2] - b[0], b[3] - b[1]))), shape))

    return gpd.GeoDataFrame(
        {
            "water_id": np.arange(len(shapes), dtype=np.int64),
            "name": [s[0] for s in shapes],
            "kind": [s[1] for s in shapes],
            "width_m": np.array([s[2] for s in shapes], dtype=np.float64),
            "area_m2": np.array([float(shapely.area(s[3])) for s in shapes]),
        },
        geometry=[lonlat(s[3]) for s in shapes],
        crs="EPSG:4326",
    )

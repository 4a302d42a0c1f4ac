"""Analytics on store datasets: thin wrappers that pull exactly the rows an operation needs
through the store's query API (or push the whole aggregation into the engine) and then run
the in-memory function."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from cityos.analytics._flows import CellGrid, grid_flows
from cityos.analytics._mapmatch import MapMatcher, MatchResult
from cityos.analytics._similarity import Metric, top_k_similar
from cityos.analytics._trajectory import split_by_gap, stay_points
from cityos.geo.distance import EARTH_RADIUS_M
from cityos.model import ID_COL, PointSeries

__all__ = [
    "aggregate_dataset",
    "load_points",
    "map_match_dataset",
    "similar_in_dataset",
    "split_dataset",
    "stay_points_dataset",
]


def load_points(
    store: Any,
    dataset: str,
    *,
    ids: Any = None,
    start: Any = None,
    end: Any = None,
    bbox: Any = None,
) -> pd.DataFrame:
    """Points of ``dataset`` for some objects / a time window / a box, via the store's
    index (``id_temporal`` when ids are given, else ``scan``).

    Examples
    --------
    >>> # load_points(store, "taxis", ids=["t1"], start="2026-03-02", end="2026-03-03")
    """
    if ids is not None and bbox is None:
        return store.id_temporal(dataset, ids, start, end).to_pandas()  # type: ignore[no-any-return]
    return store.scan(dataset, geometry=bbox, start=start, end=end, ids=ids).to_pandas()  # type: ignore[no-any-return]


def stay_points_dataset(
    store: Any,
    dataset: str,
    max_distance_m: float = 200.0,
    min_duration: Any = "5min",
    **query: Any,
) -> pd.DataFrame:
    """:func:`stay_points` over rows of a store dataset (``query``: ids, start, end, bbox)."""
    return stay_points(load_points(store, dataset, **query), max_distance_m, min_duration)


def split_dataset(store: Any, dataset: str, gap: Any = "10min", **query: Any) -> pd.DataFrame:
    """:func:`split_by_gap` over rows of a store dataset (``query``: ids, start, end, bbox)."""
    return split_by_gap(load_points(store, dataset, **query), gap)


def map_match_dataset(store: Any, dataset: str, roads: str | Any, **kw: Any) -> MatchResult:
    """Map-match rows of ``dataset`` to the road network dataset ``roads`` (its name in the
    store, a roads GeoDataFrame, or a prepared :class:`MapMatcher`). Keyword arguments
    ``ids``, ``start``, ``end``, ``bbox`` select rows; the rest go to the matcher."""
    query = {k: kw.pop(k) for k in ("ids", "start", "end", "bbox") if k in kw}
    if isinstance(roads, str):
        roads = store.scan(roads).to_geopandas()
    matcher = roads if isinstance(roads, MapMatcher) else MapMatcher(roads)
    return matcher.match(load_points(store, dataset, **query), **kw)


def aggregate_dataset(
    store: Any,
    dataset: str,
    grid: CellGrid | float,
    time_bin: Any = "1h",
    *,
    bbox: tuple[float, float, float, float] | None = None,
    start: Any = None,
    end: Any = None,
    flows: bool = False,
) -> PointSeries | pd.DataFrame:
    """Counts per grid cell and time bin of a store dataset.

    Without ``flows`` the whole aggregation runs in the store's engine
    (``store.aggregate``) and only one row per non-empty (cell, bin) comes back. Inflow and
    outflow need each object's consecutive points, so ``flows=True`` reads the points and
    uses :func:`grid_flows`.
    """
    if flows:
        return grid_flows(
            load_points(store, dataset, start=start, end=end, bbox=bbox), grid, time_bin, bbox=bbox
        )
    from cityos.store import Grid

    if isinstance(grid, CellGrid):
        g = Grid(grid.xmin, grid.ymin, grid.dx, grid.dy)
    else:
        if bbox is None:
            info = store.describe(dataset)
            bbox = tuple(info.bbox)
        g = Grid.from_metres(bbox, float(grid))
    out: pd.DataFrame = store.aggregate(
        dataset, grid=g, time_bin=time_bin, aggs={"n": "count"}, start=start, end=end, geometry=bbox
    ).to_pandas()
    return out


def similar_in_dataset(
    store: Any,
    dataset: str,
    query: np.ndarray,
    k: int = 5,
    metric: Metric = "dtw",
    *,
    start: Any = None,
    end: Any = None,
    eps_m: float = 50.0,
    radius_m: float = 500.0,
) -> pd.DataFrame:
    """Top-k similar objects in a store dataset.

    DTW and Fréchet run in the store (``store.similar``). For Hausdorff and LCSS the
    store's spatial index prunes: an object within distance r of the query has every point
    within r of the query's box, so only objects with points in the box grown by r are
    read (``st_range``), r doubling until k objects are within it; for LCSS objects with
    no point within ``eps_m`` of that box are at distance 1 and need not be read.
    """
    q = np.asarray(query, dtype="float64")
    if metric in ("dtw", "frechet"):
        return store.similar(dataset, q, k, start=start, end=end, metric=metric).to_pandas()  # type: ignore[no-any-return]
    r = eps_m if metric == "lcss" else radius_m
    deg = 180.0 / np.pi / EARTH_RADIUS_M
    while True:
        dy = r * deg
        dx = dy / max(np.cos(np.radians(float(q[:, 1].mean()))), 1e-6)
        box = (
            float(q[:, 0].min() - dx),
            float(q[:, 1].min() - dy),
            float(q[:, 0].max() + dx),
            float(q[:, 1].max() + dy),
        )
        if start is None and end is None:
            hits = store.range(dataset, box).to_pandas()
        else:
            hits = store.st_range(dataset, box, start, end).to_pandas()
        ids = pd.unique(hits[ID_COL]) if len(hits) else []
        pts = store.id_temporal(dataset, list(ids), start, end).to_pandas() if len(ids) else hits
        best = (
            top_k_similar(q, pts, k, metric, eps_m=eps_m)
            if len(pts)
            else pd.DataFrame({ID_COL: [], "distance": []})
        )
        if metric == "lcss" or (len(best) >= k and best["distance"].iloc[-1] <= r):
            return best
        r *= 2
        if r > 2 * EARTH_RADIUS_M:
            return best

"""Density-based clustering (DBSCAN) of points and of stay points, in metres: neighbours
from a spatial index, clusters as connected components of core points."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import shapely

from cityos.analytics._points import to_metres
from cityos.analytics.errors import AnalyticsError
from cityos.model import ID_COL, TIME_COL, X_COL, Y_COL

__all__ = ["cluster_stays", "dbscan"]


def dbscan(
    points: Any, eps_m: float, min_samples: int = 5, *, geographic: bool | None = None
) -> np.ndarray:
    """DBSCAN labels (-1 noise, clusters 0..k-1 by first point) for points with ``x``/``y``.

    A point is core when at least ``min_samples`` points (itself included) lie within
    ``eps_m`` metres; clusters are the connected groups of core points, and a non-core
    point within ``eps_m`` of a core point joins that core point's cluster (the nearest
    one, where several are in reach).

    Examples
    --------
    >>> df = pd.DataFrame({"x": [0.0, 1.0, 2.0, 50.0, 51.0, 52.0, 200.0], "y": 0.0})
    >>> dbscan(df, eps_m=1.5, min_samples=2, geographic=False).tolist()
    [0, 0, 0, 1, 1, 1, -1]
    """
    if eps_m <= 0 or min_samples < 1:
        raise AnalyticsError(f"need eps_m > 0 and min_samples >= 1, got {eps_m}, {min_samples}")
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    x = np.asarray(points[X_COL], dtype="float64")
    y = np.asarray(points[Y_COL], dtype="float64")
    if geographic is None:
        geographic = bool(len(x) == 0 or (np.abs(x).max() <= 180 and np.abs(y).max() <= 90))
    mx, my = to_metres(x, y, geographic)
    n = len(mx)
    if n == 0:
        return np.zeros(0, dtype=np.int64)
    pts = shapely.points(mx, my)
    i, j = shapely.STRtree(pts).query(pts, predicate="dwithin", distance=eps_m)
    core = np.bincount(i, minlength=n) >= min_samples
    cc = core[i] & core[j]
    g = coo_matrix((np.ones(int(cc.sum()), dtype=np.int8), (i[cc], j[cc])), shape=(n, n))
    _, comp = connected_components(g, directed=False)
    labels = np.full(n, -1, dtype=np.int64)
    labels[core] = comp[core]
    # border points: the cluster of their nearest core neighbour
    border = ~core[i] & core[j]
    if border.any():
        bi, bj = i[border], j[border]
        d = np.hypot(mx[bi] - mx[bj], my[bi] - my[bj])
        order = np.lexsort((bj, d, bi))
        bi, bj = bi[order], bj[order]
        first = np.ones(len(bi), bool)
        first[1:] = bi[1:] != bi[:-1]
        labels[bi[first]] = comp[bj[first]]
    # renumber clusters 0..k-1 in order of their first point
    seen = labels >= 0
    if seen.any():
        _, first_idx, inv = np.unique(labels[seen], return_index=True, return_inverse=True)
        rank = np.argsort(np.argsort(first_idx))
        labels[seen] = rank[inv]
    return labels


def cluster_stays(
    stays: pd.DataFrame,
    eps_m: float = 100.0,
    min_samples: int = 2,
    *,
    geographic: bool | None = None,
) -> pd.DataFrame:
    """Group stay points (from :func:`stay_points`) into places with :func:`dbscan`.

    Returns one row per place: ``cluster``, ``x``/``y`` (mean position), ``stays``,
    ``objects`` (distinct ids), ``total_duration_s``, ``first_t`` and ``last_t``.

    Examples
    --------
    >>> stays = pd.DataFrame({"id": ["a", "b", "a", "c"], "x": [0.0, 20.0, 10.0, 900.0],
    ...     "y": 0.0, "duration_s": [600.0, 300.0, 900.0, 400.0],
    ...     "t": pd.to_datetime([0, 1, 2, 3], unit="h", utc=True)})
    >>> cluster_stays(stays, 50, 2, geographic=False)[["cluster", "stays", "objects"]].values.tolist()
    [[0, 3, 2]]
    """
    labels = dbscan(stays, eps_m, min_samples, geographic=geographic)
    df = stays.assign(cluster=labels)
    df = df[df.cluster >= 0]
    agg: dict[str, Any] = {X_COL: (X_COL, "mean"), Y_COL: (Y_COL, "mean"), "stays": (X_COL, "size")}
    if ID_COL in df.columns:
        agg["objects"] = (ID_COL, "nunique")
    if "duration_s" in df.columns:
        agg["total_duration_s"] = ("duration_s", "sum")
    if TIME_COL in df.columns:
        agg["first_t"] = (TIME_COL, "min")
        agg["last_t"] = (TIME_COL, "max")
    out: pd.DataFrame = df.groupby("cluster").agg(**agg).reset_index()
    return out

"""Top-k trajectory similarity search (DTW, discrete Fréchet, Hausdorff, LCSS) with
lower bounds that skip most exact computations; the store variant prunes with its index."""

from __future__ import annotations

from typing import Any, Literal

import numpy as np
import pandas as pd

from cityos.analytics._points import as_points
from cityos.analytics.errors import AnalyticsError
from cityos.geo.distance import metric_distance
from cityos.geo.similarity import discrete_frechet, dtw, hausdorff, lcss
from cityos.model import ID_COL, TRAJ_COL

__all__ = ["Metric", "top_k_similar", "trajectory_distance"]

Metric = Literal["dtw", "frechet", "hausdorff", "lcss"]


def trajectory_distance(
    a: np.ndarray,
    b: np.ndarray,
    metric: Metric = "dtw",
    *,
    eps_m: float = 50.0,
    geographic: bool = True,
) -> float:
    """Distance between two (n, 2) coordinate arrays by ``metric`` (metres; LCSS in [0, 1]
    with matching threshold ``eps_m``).

    Examples
    --------
    >>> a = np.array([[0.0, 0.0], [10.0, 0.0]])
    >>> trajectory_distance(a, a + [0.0, 3.0], "hausdorff", geographic=False)
    3.0
    """
    if metric == "dtw":
        return dtw(a, b, geographic)
    if metric == "frechet":
        return discrete_frechet(a, b, geographic)
    if metric == "hausdorff":
        return hausdorff(a, b, geographic)
    if metric == "lcss":
        return lcss(a, b, eps_m, geographic=geographic)
    raise AnalyticsError(f"metric must be one of dtw, frechet, hausdorff, lcss; got {metric!r}")


def _lower_bounds(
    q: np.ndarray,
    xs: np.ndarray,
    ys: np.ndarray,
    starts: np.ndarray,
    metric: str,
    eps_m: float,
    geographic: bool,
) -> np.ndarray:
    """A lower bound of the distance from ``q`` to every candidate, all at once.

    DTW aligns first with first and last with last, so their distances add up; Fréchet is
    at least the larger of the two; Hausdorff is at least the farthest candidate point from
    the query's bounding box; LCSS is exactly 1 for candidates with no point within
    ``eps_m`` of that box, else bounded by 0.
    """
    first, last = starts[:-1], starts[1:] - 1
    d0 = metric_distance(q[0, 0], q[0, 1], xs[first], ys[first], geographic)
    d1 = metric_distance(q[-1, 0], q[-1, 1], xs[last], ys[last], geographic)
    if metric == "dtw":
        return np.asarray(d0 + d1)
    if metric == "frechet":
        return np.asarray(np.maximum(d0, d1))
    lo, hi = q.min(axis=0), q.max(axis=0)
    cx, cy = np.clip(xs, lo[0], hi[0]), np.clip(ys, lo[1], hi[1])
    dbox = np.asarray(metric_distance(xs, ys, cx, cy, geographic))
    if metric == "hausdorff":
        return np.asarray(np.maximum.reduceat(dbox, first))
    near = np.minimum.reduceat(dbox, first) <= eps_m
    return np.asarray(np.where(near, 0.0, 1.0))


def top_k_similar(
    query: Any,
    candidates: Any,
    k: int = 5,
    metric: Metric = "dtw",
    *,
    eps_m: float = 50.0,
    geographic: bool | None = None,
) -> pd.DataFrame:
    """The ``k`` trajectories in ``candidates`` most similar to ``query``.

    Parameters
    ----------
    query:
        (n, 2) array of x/y, or a point frame of one trajectory.
    candidates:
        Point frame; trajectories are its ``traj_id`` groups when present, else ``id``.
    metric:
        ``dtw``, ``frechet``, ``hausdorff`` (metres) or ``lcss`` (0..1, threshold ``eps_m``).

    Returns
    -------
    pandas.DataFrame
        ``id`` (the trajectory key) and ``distance``, nearest first; ties by key.
        Candidates are visited in order of a lower bound and the search stops once the bound
        exceeds the k-th best exact distance, so the answer equals a full scan's.

    Examples
    --------
    >>> df = pd.DataFrame({"id": list("aabbcc"), "t": [0, 1] * 3, "y": 0.0,
    ...                    "x": [0.0, 10.0, 0.0, 12.0, 50.0, 90.0]})
    >>> top_k_similar(np.array([[0.0, 0.0], [10.0, 0.0]]), df, 2, "frechet", geographic=False).values.tolist()
    [['a', 0.0], ['b', 2.0]]
    """
    by = TRAJ_COL if TRAJ_COL in getattr(candidates, "columns", []) else ID_COL
    p = as_points(candidates, geographic, by=by)
    if isinstance(query, pd.DataFrame):
        qp = as_points(query, p.geographic)
        q = np.column_stack([qp.x, qp.y])
    else:
        q = np.asarray(query, dtype="float64")
    if q.ndim != 2 or q.shape[1] != 2 or len(q) == 0:
        raise AnalyticsError(f"query must be a non-empty (n, 2) array of x/y, got shape {q.shape}")
    if p.n == 0:
        return pd.DataFrame({ID_COL: [], "distance": []})
    starts = p.run_starts()
    lb = _lower_bounds(q, p.x, p.y, starts, metric, eps_m, p.geographic)
    keys = p.frame[by].to_numpy()[starts[:-1]]
    order = np.lexsort((keys.astype(str), lb))
    best: list[tuple[float, str, Any]] = []
    for c in order:
        if len(best) >= k and lb[c] > best[-1][0]:
            break  # every remaining candidate's bound exceeds the k-th best distance
        s, e = starts[c], starts[c + 1]
        d = trajectory_distance(
            q, np.column_stack([p.x[s:e], p.y[s:e]]), metric, eps_m=eps_m, geographic=p.geographic
        )
        best.append((d, str(keys[c]), keys[c]))
        best.sort(key=lambda r: (r[0], r[1]))
        del best[k:]
    return pd.DataFrame({ID_COL: [b[2] for b in best], "distance": [b[0] for b in best]})

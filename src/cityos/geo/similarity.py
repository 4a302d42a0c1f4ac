"""Distances between trajectories (sequences of points), vectorised along anti-diagonals.

All functions take two arrays of shape (n, 2) and (m, 2) of x/y coordinates and a
``geographic`` flag (haversine metres for lon/lat, Euclidean otherwise).
"""

from __future__ import annotations

import numpy as np

from cityos.geo.distance import metric_distance

__all__ = ["discrete_frechet", "dtw", "pairwise_distance"]


def pairwise_distance(a: np.ndarray, b: np.ndarray, geographic: bool = True) -> np.ndarray:
    """Matrix of distances in metres between every point of ``a`` and every point of ``b``."""
    a = np.asarray(a, dtype="float64")
    b = np.asarray(b, dtype="float64")
    return metric_distance(a[:, None, 0], a[:, None, 1], b[None, :, 0], b[None, :, 1], geographic)


def _diagonal_dp(d: np.ndarray, combine: str) -> float:
    """Run the DTW (``sum``) or Fréchet (``max``) recurrence over cost matrix ``d``."""
    n, m = d.shape
    inf = np.inf
    acc = np.full((n, m), inf)
    for s in range(n + m - 1):
        i = np.arange(max(0, s - m + 1), min(n, s + 1))
        j = s - i
        if s == 0:
            acc[0, 0] = d[0, 0]
            continue
        up = np.where(i > 0, acc[np.maximum(i - 1, 0), j], inf)
        left = np.where(j > 0, acc[i, np.maximum(j - 1, 0)], inf)
        diag = np.where((i > 0) & (j > 0), acc[np.maximum(i - 1, 0), np.maximum(j - 1, 0)], inf)
        best = np.minimum(np.minimum(up, left), diag)
        acc[i, j] = best + d[i, j] if combine == "sum" else np.maximum(best, d[i, j])
    return float(acc[n - 1, m - 1])


def dtw(a: np.ndarray, b: np.ndarray, geographic: bool = True) -> float:
    """Dynamic time warping distance: the least total point-to-point distance (metres)
    of a monotone alignment of ``a`` and ``b``.

    Examples
    --------
    >>> a = np.array([[0.0, 0.0], [1.0, 0.0], [2.0, 0.0]])
    >>> dtw(a, a + [0.0, 1.0], geographic=False)
    3.0
    """
    if len(a) == 0 or len(b) == 0:
        raise ValueError("dtw needs two non-empty trajectories")
    return _diagonal_dp(pairwise_distance(a, b, geographic), "sum")


def discrete_frechet(a: np.ndarray, b: np.ndarray, geographic: bool = True) -> float:
    """Discrete Fréchet distance (metres): the least, over monotone alignments, of the
    largest distance between aligned points (Eiter and Mannila).

    Examples
    --------
    >>> a = np.array([[0.0, 0.0], [1.0, 0.0], [2.0, 0.0]])
    >>> discrete_frechet(a, a + [0.0, 1.0], geographic=False)
    1.0
    """
    if len(a) == 0 or len(b) == 0:
        raise ValueError("discrete_frechet needs two non-empty trajectories")
    return _diagonal_dp(pairwise_distance(a, b, geographic), "max")

"""Distances between trajectories (sequences of points), vectorised along anti-diagonals.

All functions take two arrays of shape (n, 2) and (m, 2) of x/y coordinates and a
``geographic`` flag (haversine metres for lon/lat, Euclidean otherwise).
"""

from __future__ import annotations

import numpy as np

from cityos.geo.distance import metric_distance

__all__ = ["discrete_frechet", "dtw", "hausdorff", "lcss", "pairwise_distance"]


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


def hausdorff(a: np.ndarray, b: np.ndarray, geographic: bool = True) -> float:
    """Hausdorff distance (metres): the farthest any point of one trajectory lies from the
    nearest point of the other, both ways. Order and timing are ignored.

    Examples
    --------
    >>> a = np.array([[0.0, 0.0], [1.0, 0.0], [2.0, 0.0]])
    >>> hausdorff(a, np.array([[0.0, 0.0], [5.0, 0.0]]), geographic=False)
    3.0
    """
    if len(a) == 0 or len(b) == 0:
        raise ValueError("hausdorff needs two non-empty trajectories")
    a = np.asarray(a, dtype="float64")
    b = np.asarray(b, dtype="float64")
    best_a = np.full(len(a), np.inf)
    worst_b = 0.0
    for lo in range(0, len(b), 2048):  # bounded memory on long trajectories
        d = pairwise_distance(a, b[lo : lo + 2048], geographic)
        best_a = np.minimum(best_a, d.min(axis=1))
        worst_b = max(worst_b, float(d.min(axis=0).max()))
    return max(float(best_a.max()), worst_b)


def lcss(
    a: np.ndarray, b: np.ndarray, eps_m: float, delta: int | None = None, geographic: bool = True
) -> float:
    """LCSS distance in [0, 1]: one minus the share of the shorter trajectory's points that
    a longest common subsequence matches, where points match when within ``eps_m`` metres
    (and, if ``delta`` is given, at most ``delta`` positions apart) (Vlachos et al. 2002).

    Rows are computed whole: ``L[i] = cummax(max(L[i-1], shift(L[i-1]) + match[i]))``.

    Examples
    --------
    >>> a = np.array([[0.0, 0.0], [1.0, 0.0], [2.0, 0.0], [3.0, 0.0]])
    >>> lcss(a, a + [0.0, 0.5], eps_m=1.0, geographic=False)
    0.0
    >>> lcss(a, np.array([[0.0, 0.0], [9.0, 9.0]]), eps_m=1.0, geographic=False)
    0.5
    """
    if len(a) == 0 or len(b) == 0:
        raise ValueError("lcss needs two non-empty trajectories")
    match = pairwise_distance(a, b, geographic) <= eps_m
    n, m = match.shape
    if delta is not None:
        ii, jj = np.indices((n, m))
        match &= np.abs(ii - jj) <= delta
    prev = np.zeros(m + 1, dtype=np.int64)
    for i in range(n):
        cur = np.maximum(prev, np.concatenate(([0], prev[:-1] + match[i])))
        prev = np.maximum.accumulate(cur)
    return 1.0 - float(prev[-1]) / float(min(n, m))

"""Quantile binning of one party's features (each party bins its own columns).

Binning is per column, so a party binning its own columns gets exactly the bins pooled
training would get. Real values fall in bins ``0 .. max_bins-2``; missing values (NaN) in
the last bin ``max_bins-1``, so a split ``bin <= t`` always sends missing values right.

>>> import numpy as np
>>> b = Binner.fit(np.array([[1.0], [2.0], [3.0], [np.nan]]), max_bins=4)
>>> b.transform(np.array([[1.0], [1.5], [9.0], [np.nan]])).ravel().tolist()
[0, 1, 2, 3]
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

__all__ = ["Binner"]


@dataclass(frozen=True)
class Binner:
    """Upper bin edges per column (``x <= edges[f][k]`` falls in bin ``k`` or lower)."""

    edges: tuple[npt.NDArray[np.float64], ...]
    max_bins: int

    @classmethod
    def fit(cls, X: npt.ArrayLike, max_bins: int = 32) -> Binner:
        a = np.asarray(X, dtype=np.float64)
        if a.ndim != 2:
            raise ValueError(f"features must be a 2-d array, got shape {a.shape}")
        if not 3 <= max_bins <= 256:
            raise ValueError(f"max_bins must be in [3, 256], got {max_bins}")
        edges = []
        qs = np.linspace(0, 1, max_bins)[1:-1]
        for f in range(a.shape[1]):
            col = a[:, f]
            col = col[~np.isnan(col)]
            if col.size == 0:
                edges.append(np.empty(0))
                continue
            uniq = np.unique(col)
            if uniq.size <= max_bins - 1:
                e = uniq[:-1]
            else:
                e = np.unique(np.quantile(col, qs, method="lower"))
                e = e[e < uniq[-1]]
            edges.append(e.astype(np.float64))
        return cls(tuple(edges), max_bins)

    def transform(self, X: npt.ArrayLike) -> npt.NDArray[np.uint8]:
        a = np.asarray(X, dtype=np.float64)
        if a.ndim != 2 or a.shape[1] != len(self.edges):
            raise ValueError(f"expected {len(self.edges)} feature columns, got shape {a.shape}")
        out = np.empty(a.shape, dtype=np.uint8)
        for f, e in enumerate(self.edges):
            col = a[:, f]
            b = np.searchsorted(e, col, side="left")
            b[np.isnan(col)] = self.max_bins - 1
            out[:, f] = b
        return out

    def threshold(self, feature: int, bin_: int) -> float:
        """The real value a split ``bin <= bin_`` of ``feature`` stands for (``x <= value``)."""
        e = self.edges[feature]
        return float(e[bin_]) if bin_ < e.size else float("inf")

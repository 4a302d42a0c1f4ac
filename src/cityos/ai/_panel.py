"""The :class:`Panel`: the one in-memory shape every zoo model reads — a regular time axis,
a set of places (stations, grid cells or road segments) and channels (the target and its
covariates), with NaN where a reading is missing."""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import pandas as pd

from cityos.ai._errors import FeatureSpecError, ShapeError

__all__ = ["Panel", "chrono_split"]


@dataclass(frozen=True, eq=False)
class Panel:
    """A spatial time series on a regular time axis: ``values[t, node, channel]``.

    Parameters
    ----------
    values:
        ``(T, N, C)`` float64; NaN marks a missing reading.
    times:
        ``T`` UTC timestamps, evenly spaced by ``freq``.
    nodes:
        ``N`` place ids (station names, grid cell ids, road segment ids).
    channels:
        ``C`` channel names; ``target`` is one of them, the others are covariates.
    x, y:
        Node positions (NaN when unknown).
    grid:
        ``(ny, nx)`` when the nodes are the cells of a grid, row-major from ``ymin``.
    datasets:
        The exact store dataset versions the panel was built from.
    timezone, country:
        The city's local time zone (for calendar features) and country (for holidays).
    adjacency:
        ``(N, N)`` weights between the nodes when they are places of a network (road
        segments: :func:`cityos.ai.road_adjacency`); None when only positions relate them.

    Examples
    --------
    >>> p = Panel.from_array(np.arange(12.0).reshape(6, 2, 1), "2026-03-02", "1h")
    >>> p.shape, p.target, [str(n) for n in p.nodes]
    ((6, 2, 1), 'value', ['0', '1'])
    """

    values: np.ndarray
    times: pd.DatetimeIndex
    nodes: np.ndarray
    channels: tuple[str, ...]
    target: str
    freq: pd.Timedelta
    x: np.ndarray
    y: np.ndarray
    grid: tuple[int, int] | None = None
    datasets: dict[str, int] = field(default_factory=dict)
    timezone: str = "UTC"
    country: str | None = None
    adjacency: np.ndarray | None = None

    def __post_init__(self) -> None:
        v = self.values
        if v.ndim != 3:
            raise ShapeError(f"panel values must be (time, node, channel); got shape {v.shape}")
        t, n, c = v.shape
        if len(self.times) != t or len(self.nodes) != n or len(self.channels) != c:
            raise ShapeError(
                f"panel values {v.shape} do not match {len(self.times)} times, "
                f"{len(self.nodes)} nodes and {len(self.channels)} channels"
            )
        if self.target not in self.channels:
            raise FeatureSpecError(
                f"target {self.target!r} is not a channel of the panel {list(self.channels)}"
            )
        if self.grid is not None and self.grid[0] * self.grid[1] != n:
            raise ShapeError(f"grid {self.grid} does not hold {n} nodes")
        if self.adjacency is not None and self.adjacency.shape != (n, n):
            raise ShapeError(f"adjacency {self.adjacency.shape} does not relate {n} nodes")

    @classmethod
    def from_array(
        cls,
        values: np.ndarray,
        start: Any,
        freq: str | pd.Timedelta,
        *,
        channels: tuple[str, ...] | None = None,
        target: str | None = None,
        nodes: Any = None,
        x: Any = None,
        y: Any = None,
        grid: tuple[int, int] | None = None,
        timezone: str = "UTC",
        country: str | None = None,
    ) -> Panel:
        """A panel from a ``(T, N, C)`` array starting at ``start`` every ``freq``."""
        v = np.asarray(values, dtype="float64")
        if v.ndim == 2:
            v = v[:, :, None]
        t, n, c = v.shape
        ch = channels or (("value",) if c == 1 else tuple(f"c{i}" for i in range(c)))
        step = pd.Timedelta(freq)
        first = pd.Timestamp(start)
        first = first.tz_localize("UTC") if first.tzinfo is None else first.tz_convert("UTC")
        times = pd.date_range(first, periods=t, freq=step)
        nd = np.asarray([str(i) for i in range(n)] if nodes is None else nodes)
        return cls(
            v,
            times,
            nd,
            tuple(ch),
            target or ch[0],
            step,
            np.full(n, np.nan) if x is None else np.asarray(x, dtype="float64"),
            np.full(n, np.nan) if y is None else np.asarray(y, dtype="float64"),
            grid,
            {},
            timezone,
            country,
        )

    @property
    def shape(self) -> tuple[int, int, int]:
        t, n, c = self.values.shape
        return int(t), int(n), int(c)

    @property
    def target_index(self) -> int:
        return self.channels.index(self.target)

    @property
    def series(self) -> np.ndarray:
        """The target channel, ``(T, N)``."""
        return self.values[:, :, self.target_index]

    def slice(self, start: int, stop: int) -> Panel:
        """Time steps ``start:stop`` (indices)."""
        return replace(self, values=self.values[start:stop], times=self.times[start:stop])

    def index_of(self, when: Any) -> int:
        """Index of the last step at or before ``when``."""
        ts = pd.Timestamp(when)
        ts = ts.tz_localize("UTC") if ts.tzinfo is None else ts.tz_convert("UTC")
        return int(self.times.searchsorted(ts, side="right")) - 1

    def truncated(self, last: int) -> Panel:
        """The same panel with every value after step ``last`` unknown (NaN): what was
        known at ``times[last]``."""
        v = self.values.copy()
        v[last + 1 :] = np.nan
        return replace(self, values=v)

    def meta(self) -> dict[str, Any]:
        """JSON-able description (no values; a network's adjacency as its non-zero
        ``[rows, cols, weights]``)."""
        adj = None
        if self.adjacency is not None:
            r, c = np.nonzero(self.adjacency)
            adj = [r.tolist(), c.tolist(), self.adjacency[r, c].tolist()]
        return {
            "nodes": [str(n) for n in self.nodes],
            "channels": list(self.channels),
            "target": self.target,
            "freq_s": self.freq.total_seconds(),
            "x": [None if np.isnan(v) else float(v) for v in self.x],
            "y": [None if np.isnan(v) else float(v) for v in self.y],
            "grid": list(self.grid) if self.grid else None,
            "datasets": dict(self.datasets),
            "timezone": self.timezone,
            "country": self.country,
            "adjacency": adj,
        }


def chrono_split(panel: Panel, *bounds: Any) -> list[tuple[int, int]]:
    """Chronological split of ``panel`` at the given times: index ranges ``[start, stop)``.

    ``chrono_split(p, "2016-01-01", "2016-03-01")`` gives train (before 2016-01), validation
    (2016-01 to 2016-02) and test (from 2016-03). Bounds must increase: there is no
    shuffled split.

    Examples
    --------
    >>> p = Panel.from_array(np.zeros((48, 1)), "2026-03-02", "1h")
    >>> chrono_split(p, "2026-03-02T12:00Z", "2026-03-03T00:00Z")
    [(0, 12), (12, 24), (24, 48)]
    """
    cuts = []
    for b in bounds:
        ts = pd.Timestamp(b)
        ts = ts.tz_localize("UTC") if ts.tzinfo is None else ts.tz_convert("UTC")
        cuts.append(int(panel.times.searchsorted(ts, side="left")))
    if any(b <= a for a, b in itertools.pairwise(cuts)):
        raise FeatureSpecError(f"split bounds must increase in time; got {list(bounds)}")
    edges = [0, *cuts, len(panel.times)]
    return [(edges[i], edges[i + 1]) for i in range(len(edges) - 1)]

"""Query specifications, predicates and the planner that prunes files and row groups.

A query names a dataset and what it wants; the planner turns its spatial and temporal
bounds into the row groups that may hold matching rows, using statistics from the
catalog alone (no file is opened). Engines then read those row groups and apply the
exact predicate, so pruning can only save work, never change an answer.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from cityos.errors import QueryError
from cityos.geo.crs import crs_from_user, to_crs
from cityos.model import GEOM_COL, ID_COL, TIME_COL, TIME_END_COL, X_COL, Y_COL, DatasetSchema
from cityos.store._catalog import StatsArrays
from cityos.store._layout import hash_ids

__all__ = [
    "KNN",
    "Aggregate",
    "Grid",
    "IDTemporal",
    "JoinNearest",
    "JoinRegions",
    "KNNTrajectories",
    "Predicate",
    "Range",
    "ScanPlan",
    "Similar",
    "plan_scan",
    "to_ms",
]


def to_ms(v: Any) -> int | None:
    """A time given as ISO string, datetime, pandas Timestamp or epoch ms, in UTC epoch ms.
    Naive times are taken as UTC."""
    if v is None:
        return None
    if isinstance(v, int | np.integer) and not isinstance(v, bool):
        return int(v)
    try:
        ts = pd.Timestamp(v)
    except (ValueError, TypeError) as exc:
        raise QueryError(
            f"cannot read {v!r} as a time; give an ISO 8601 string or a datetime"
        ) from exc
    if pd.isna(ts):
        raise QueryError(f"time {v!r} is not a valid timestamp")
    if ts.tzinfo is None:
        ts = ts.tz_localize("UTC")
    return int(ts.tz_convert("UTC").value // 10**6)


def query_geometry(geom: Any, crs: Any, schema: DatasetSchema) -> Any:
    """A shapely geometry in the dataset's CRS from a bbox tuple, shapely geometry or WKT."""
    import shapely

    if geom is None:
        return None
    if (
        isinstance(geom, tuple | list)
        and len(geom) == 4
        and all(isinstance(v, int | float) for v in geom)
    ):
        xmin, ymin, xmax, ymax = (float(v) for v in geom)
        if not all(np.isfinite([xmin, ymin, xmax, ymax])) or xmin > xmax or ymin > ymax:
            raise QueryError(
                f"bounding box {tuple(geom)} must be finite with xmin<=xmax and ymin<=ymax"
            )
        g = shapely.box(xmin, ymin, xmax, ymax)
    elif isinstance(geom, str):
        try:
            g = shapely.from_wkt(geom)
        except shapely.errors.GEOSException as exc:
            raise QueryError(f"query geometry is not valid WKT: {exc}") from exc
    elif hasattr(geom, "geom_type"):
        g = geom
    else:
        raise QueryError(
            "query geometry must be (xmin, ymin, xmax, ymax), WKT or a shapely geometry"
        )
    if g is None or g.is_empty or not shapely.is_valid(g):
        raise QueryError(
            f"query geometry is empty or invalid: {shapely.is_valid_reason(g) if g is not None else 'None'}"
        )
    src = crs_from_user(crs) if crs is not None else schema.crs
    return to_crs(g, src, schema.crs)


@dataclass(frozen=True)
class Predicate:
    """Which rows a query keeps: geometry (dataset CRS), time window [start, end) in ms, ids."""

    geometry: Any = None
    start: int | None = None
    end: int | None = None
    ids: tuple[Any, ...] | None = None

    @property
    def bbox(self) -> tuple[float, float, float, float] | None:
        if self.geometry is None:
            return None
        b = self.geometry.bounds
        return (float(b[0]), float(b[1]), float(b[2]), float(b[3]))

    @property
    def is_box(self) -> bool:
        g = self.geometry
        return (
            g is not None
            and g.geom_type == "Polygon"
            and abs(g.area - g.envelope.area) <= 1e-12 * max(g.area, 1e-300)
        )

    def mask(self, tbl: pa.Table) -> np.ndarray:
        """Exact row mask on a canonical table."""
        import shapely

        n = tbl.num_rows
        m = np.ones(n, dtype=bool)
        if self.start is not None or self.end is not None:
            t = tbl[TIME_COL].cast(pa.int64()).to_numpy()
            te = (
                tbl[TIME_END_COL].cast(pa.int64()).to_numpy()
                if TIME_END_COL in tbl.column_names
                else t
            )
            if self.start is not None:
                m &= te >= self.start
            if self.end is not None:
                m &= t < self.end
        if self.ids is not None:
            col = tbl[ID_COL]
            vt = col.type.value_type if pa.types.is_dictionary(col.type) else col.type
            values = pa.array(list(self.ids)).cast(vt) if len(self.ids) else pa.array([], vt)
            m &= pc.is_in(col, value_set=values).to_numpy(zero_copy_only=False)
        if self.geometry is not None:
            if X_COL in tbl.column_names:
                x = tbl[X_COL].to_numpy()
                y = tbl[Y_COL].to_numpy()
                b = self.bbox
                assert b is not None
                inbox = (x >= b[0]) & (x <= b[2]) & (y >= b[1]) & (y <= b[3])
                if not self.is_box:
                    sel = np.flatnonzero(m & inbox)
                    inbox[sel] = shapely.intersects_xy(self.geometry, x[sel], y[sel])
                m &= inbox
            elif GEOM_COL in tbl.column_names:
                sel = np.flatnonzero(m)
                geoms = shapely.from_wkb(
                    tbl[GEOM_COL].take(pa.array(sel)).to_numpy(zero_copy_only=False)
                )
                hit = np.zeros(n, dtype=bool)
                hit[sel] = shapely.intersects(self.geometry, geoms)
                m &= hit
        return m


@dataclass(frozen=True)
class ScanPlan:
    """Row groups to read, per file (paths relative to the data folder)."""

    files: dict[str, list[int]]
    row_groups_total: int
    files_total: int
    rows_candidate: int

    @property
    def row_groups(self) -> int:
        return sum(len(v) for v in self.files.values())


def prune_mask(stats: StatsArrays, pred: Predicate) -> np.ndarray:
    m = np.ones(len(stats.rg), dtype=bool)
    b = pred.bbox
    if b is not None:
        m &= (
            (stats.x_max >= b[0])
            & (stats.x_min <= b[2])
            & (stats.y_max >= b[1])
            & (stats.y_min <= b[3])
        )
    if pred.start is not None:
        m &= stats.t_max >= pred.start
    if pred.end is not None:
        m &= stats.t_min < pred.end
    if pred.ids is not None:
        m &= stats.rows_with_ids(np.unique(hash_ids(np.asarray(pred.ids))), pred.start, pred.end)
    return m


def plan_scan(stats: StatsArrays, pred: Predicate, mask: np.ndarray | None = None) -> ScanPlan:
    """The row groups that may hold rows matching ``pred``."""
    m = prune_mask(stats, pred) if mask is None else mask
    files: dict[str, list[int]] = {}
    for i in np.flatnonzero(m):
        files.setdefault(stats.paths[stats.file_index[i]], []).append(int(stats.rg[i]))
    return ScanPlan(files, len(stats.rg), len(stats.paths), int(stats.rows[m].sum()))


# -- query specifications ---------------------------------------------------------------------


@dataclass(frozen=True)
class Range:
    """Rows inside a geometry (and a time window when ``start``/``end`` are given)."""

    dataset: str
    geometry: Any = None
    start: Any = None
    end: Any = None
    crs: Any = None
    columns: tuple[str, ...] | None = None
    ids: tuple[Any, ...] | None = None


@dataclass(frozen=True)
class IDTemporal:
    """Every row of the given objects in a time window."""

    dataset: str
    ids: tuple[Any, ...]
    start: Any = None
    end: Any = None


@dataclass(frozen=True)
class KNN:
    """The ``k`` rows nearest to (x, y), optionally within a time window."""

    dataset: str
    x: float
    y: float
    k: int
    start: Any = None
    end: Any = None
    crs: Any = None


@dataclass(frozen=True)
class KNNTrajectories:
    """The ``k`` objects whose trajectories come nearest to (x, y) in a time window."""

    dataset: str
    x: float
    y: float
    k: int
    start: Any = None
    end: Any = None
    crs: Any = None


@dataclass(frozen=True)
class Similar:
    """The ``k`` objects whose trajectories in a time window are most similar to a query
    trajectory under DTW or discrete Fréchet distance."""

    dataset: str
    coords: Any
    k: int
    start: Any = None
    end: Any = None
    metric: str = "dtw"
    crs: Any = None


@dataclass(frozen=True)
class JoinRegions:
    """Points joined with the regions (of another dataset) that contain them."""

    dataset: str
    regions: str
    start: Any = None
    end: Any = None
    geometry: Any = None
    crs: Any = None


@dataclass(frozen=True)
class JoinNearest:
    """Points joined with the nearest line (e.g. road segment) within ``max_distance_m``."""

    dataset: str
    lines: str
    max_distance_m: float = 50.0
    start: Any = None
    end: Any = None
    geometry: Any = None
    crs: Any = None


@dataclass(frozen=True)
class Grid:
    """A regular grid in the dataset's CRS: origin (x0, y0), cell size (dx, dy).

    Examples
    --------
    >>> g = Grid.from_metres((116.0, 39.6, 116.8, 40.2), 1000)
    >>> round(g.dy, 5)
    0.00898
    """

    x0: float
    y0: float
    dx: float
    dy: float

    @classmethod
    def from_metres(
        cls, bbox: tuple[float, float, float, float], cell_m: float, geographic: bool = True
    ) -> Grid:
        """A grid of about ``cell_m`` metres over a lon/lat (or projected) bounding box."""
        if cell_m <= 0:
            raise QueryError(f"grid cell size must be positive, got {cell_m}")
        if not geographic:
            return cls(bbox[0], bbox[1], cell_m, cell_m)
        lat0 = (bbox[1] + bbox[3]) / 2
        dy = cell_m / 111_320.0
        dx = cell_m / (111_320.0 * float(np.cos(np.radians(lat0))))
        return cls(bbox[0], bbox[1], dx, dy)

    def cells(self, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return (
            np.floor((x - self.x0) / self.dx).astype(np.int64),
            np.floor((y - self.y0) / self.dy).astype(np.int64),
        )


_AGGS = {"count", "sum", "mean", "min", "max"}


@dataclass(frozen=True)
class Aggregate:
    """Counts, sums or means of points per grid cell (or region) and time bin: a spatial
    time series. ``aggs`` maps output column -> "count" or (column, "sum"|"mean"|"min"|"max")."""

    dataset: str
    grid: Grid | None = None
    regions: str | None = None
    time_bin: str | None = "1h"
    aggs: dict[str, Any] = field(default_factory=lambda: {"n": "count"})
    start: Any = None
    end: Any = None
    geometry: Any = None
    crs: Any = None

    def __post_init__(self) -> None:
        if (self.grid is None) == (self.regions is None):
            raise QueryError("aggregate needs exactly one of grid=Grid(...) or regions='<dataset>'")
        for out, spec in self.aggs.items():
            fn = (
                spec
                if isinstance(spec, str)
                else spec[1]
                if isinstance(spec, tuple | list) and len(spec) == 2
                else None
            )
            if fn not in _AGGS or (fn != "count" and isinstance(spec, str)):
                raise QueryError(
                    f"aggregate {out!r}: {spec!r} is not 'count' or (column, 'sum'|'mean'|'min'|'max')"
                )

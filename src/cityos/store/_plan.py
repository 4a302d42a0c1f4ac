"""Query specifications, predicates and the planner that prunes files and row groups.

A query names a dataset and what it wants; the planner turns its spatial and temporal
bounds into the row groups that may hold matching rows, using statistics from the
catalog alone (no file is opened). Engines then read those row groups and apply the
exact predicate, so pruning can only save work, never change an answer.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from functools import lru_cache
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

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

__all__ = ["Predicate", "ScanPlan", "plan_scan", "query_geometry", "to_ms", "user_crs"]

#: Times outside this window (years 1677-2262 are what 64-bit nanoseconds hold) are refused
#: rather than overflowing; a window reaching past either end is clipped to it.
_MS_MIN = -(2**63) // 10**6 + 1
_MS_MAX = (2**63 - 1) // 10**6


def user_crs(spec: Any, what: str = "crs") -> str:
    """A CRS given by a user, normalised; a :class:`QueryError` naming ``what`` when it is
    unknown or not on the Earth (a planetary CRS cannot be mixed with city data)."""
    if isinstance(spec, bool) or (not isinstance(spec, str | int) and not hasattr(spec, "to_wkt")):
        raise QueryError(
            f"{what}: give an EPSG code such as 'EPSG:4326', not {type(spec).__name__}"
        )
    try:
        norm = crs_from_user(spec)
        from pyproj import CRS

        c = CRS.from_user_input(norm)
    except Exception as exc:  # pyproj raises CRSError and others; none may escape raw
        raise QueryError(
            f"{what}: unknown coordinate reference system {str(spec)[:80]!r}; "
            "give an EPSG code such as 'EPSG:4326' or 'EPSG:32650'"
        ) from exc
    ell = c.ellipsoid
    a = None if ell is None else ell.semi_major_metre
    if a is None or not 6_300_000 < a < 6_400_000:
        raise QueryError(
            f"{what}: {str(spec)[:80]!r} is not a coordinate system of the Earth; "
            "give an Earth CRS such as 'EPSG:4326'"
        )
    return norm


def to_ms(v: Any) -> int | None:
    """A time given as ISO string, datetime, pandas Timestamp or epoch ms, in UTC epoch ms.
    Naive times are taken as UTC."""
    if v is None:
        return None
    if isinstance(v, bool) or not isinstance(
        v, str | int | float | np.integer | np.datetime64 | pd.Timestamp | datetime | date
    ):
        raise QueryError(
            f"a time must be an ISO 8601 string, a datetime or epoch milliseconds, "
            f"not {type(v).__name__}"
        )
    if isinstance(v, int | np.integer):
        if not _MS_MIN <= int(v) <= _MS_MAX:
            raise QueryError(f"time {int(v)} ms is outside the years 1677-2262")
        return int(v)
    if isinstance(v, float):
        raise QueryError("a time given as a number must be integer epoch milliseconds")
    if isinstance(v, datetime | date) and not isinstance(v, pd.Timestamp):
        # datetimes beyond what pandas holds (year 1, year 9999) are valid Python times:
        # convert exactly through the epoch, then bound
        if not isinstance(v, datetime):
            v = datetime(v.year, v.month, v.day)
        if v.tzinfo is None:
            v = v.replace(tzinfo=UTC)
        ms = (v - _EPOCH) // timedelta(milliseconds=1)
        return max(_MS_MIN, min(_MS_MAX, int(ms)))
    try:
        ts = pd.Timestamp(v)
    except (ValueError, TypeError, OverflowError) as exc:
        raise QueryError(
            f"cannot read {str(v)[:60]!r} as a time (years 1677-2262); give an ISO 8601 "
            "string or a datetime"
        ) from exc
    if pd.isna(ts):
        raise QueryError(f"time {str(v)[:60]!r} is not a valid timestamp")
    if ts.tzinfo is None:
        ts = ts.tz_localize("UTC")
    try:
        return int(ts.tz_convert("UTC").value // 10**6)
    except OverflowError:  # beyond 64-bit nanoseconds (year 1, year 9999): clip
        return to_ms(ts.to_pydatetime())


def query_geometry(geom: Any, crs: Any, schema: DatasetSchema) -> Any:
    """A shapely geometry in the dataset's CRS from a bbox tuple, shapely geometry or WKT."""
    import shapely

    if geom is None:
        return None
    if (
        isinstance(geom, tuple | list)
        and len(geom) == 4
        and all(isinstance(v, int | float) and not isinstance(v, bool) for v in geom)
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
        except Exception as exc:  # GEOSException, or a TypeError on odd input
            raise QueryError(f"query geometry is not valid WKT: {str(exc)[:120]}") from exc
    elif hasattr(geom, "geom_type"):
        g = geom
    elif isinstance(geom, dict) and "type" in geom:
        try:
            g = shapely.geometry.shape(geom)
        except Exception as exc:  # shapely raises several types for a bad mapping
            raise QueryError(f"query geometry is not valid GeoJSON: {str(exc)[:120]}") from exc
    else:
        raise QueryError(
            "query geometry must be (xmin, ymin, xmax, ymax), WKT, a GeoJSON geometry or a "
            f"shapely geometry, not {type(geom).__name__}"
        )
    if g is None or g.is_empty or not shapely.is_valid(g):
        raise QueryError(
            f"query geometry is empty or invalid: {shapely.is_valid_reason(g) if g is not None else 'None'}"
        )
    if not all(np.isfinite(g.bounds)):
        raise QueryError("query geometry has non-finite coordinates")
    src = user_crs(crs, "query crs") if crs is not None else schema.crs
    out = to_crs(g, src, schema.crs)
    if not all(np.isfinite(out.bounds)):
        raise QueryError(f"query geometry cannot be expressed in the dataset's CRS {schema.crs}")
    return out


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
            else:
                # never ignore a geometry: rows without coordinates cannot be tested
                raise QueryError(
                    "these rows have no coordinates or geometry to test against the query geometry"
                )
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
        m &= stats.rows_with_ids(_id_hashes(pred.ids), pred.start, pred.end, np.flatnonzero(m))
    return m


@lru_cache(maxsize=4096)
def _id_hashes(ids: tuple[Any, ...]) -> np.ndarray:
    """Distinct 32-bit hashes of a tuple of ids (a pure function of the values, cached)."""
    h = np.unique(hash_ids(np.asarray(ids)))
    h.setflags(write=False)
    return h


def plan_scan(stats: StatsArrays, pred: Predicate, mask: np.ndarray | None = None) -> ScanPlan:
    """The row groups that may hold rows matching ``pred``. Plans are cached with the
    statistics of the dataset version they were made from (so any write invalidates them);
    a repeated query shape is planned once."""
    if mask is not None or (pred.ids is not None and len(pred.ids) > 64):
        return _plan(stats, prune_mask(stats, pred) if mask is None else mask)
    key = ("plan", pred.bbox, pred.start, pred.end, pred.ids)
    plan: ScanPlan = stats.remember(key, lambda: _plan(stats, prune_mask(stats, pred)))
    return plan


def _plan(stats: StatsArrays, m: np.ndarray) -> ScanPlan:
    files: dict[str, list[int]] = {}
    for i in np.flatnonzero(m):
        files.setdefault(stats.paths[stats.file_index[i]], []).append(int(stats.rg[i]))
    return ScanPlan(files, len(stats.rg), len(stats.paths), int(stats.rows[m].sum()))

"""Flows and grids: counts, inflow/outflow (crowd-flow tensors), road speeds and
origin-destination matrices, binned in space and time and returned as the spatial- and
network-time-series models so they can be stored and served like any dataset."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import shapely

from cityos.analytics._points import Points, as_points, to_timedelta_ms
from cityos.analytics.errors import AnalyticsError
from cityos.geo.distance import EARTH_RADIUS_M
from cityos.model import (
    GEOM_COL,
    ID_COL,
    TIME_COL,
    TRAJ_COL,
    X_COL,
    Y_COL,
    Field,
    NetworkSeries,
    PointSeries,
)

__all__ = [
    "CellGrid",
    "flow_tensor",
    "grid_flows",
    "od_matrix",
    "region_flows",
    "segment_speeds",
]


@dataclass(frozen=True)
class CellGrid:
    """A regular grid over a bounding box: ``nx`` × ``ny`` cells of ``dx`` × ``dy`` CRS
    units. Cell ``id`` is ``row * nx + col`` with row 0 at ``ymin``.

    Examples
    --------
    >>> g = CellGrid.from_metres((116.3, 39.9, 116.4, 40.0), 1000)
    >>> g.nx, g.ny
    (9, 12)
    """

    xmin: float
    ymin: float
    xmax: float
    ymax: float
    nx: int
    ny: int

    @property
    def dx(self) -> float:
        return (self.xmax - self.xmin) / self.nx

    @property
    def dy(self) -> float:
        return (self.ymax - self.ymin) / self.ny

    @classmethod
    def from_metres(
        cls, bbox: tuple[float, float, float, float], cell_m: float, geographic: bool | None = None
    ) -> CellGrid:
        """Cells about ``cell_m`` metres on a side (exact in projected CRSs; at the box's
        mean latitude for lon/lat). The box is kept; the last cells may be smaller."""
        xmin, ymin, xmax, ymax = (float(v) for v in bbox)
        if not (xmax > xmin and ymax > ymin and cell_m > 0):
            raise AnalyticsError(
                f"grid needs a non-empty bbox and cell_m > 0, got {bbox}, {cell_m}"
            )
        if geographic is None:
            geographic = max(abs(xmin), abs(xmax)) <= 180 and max(abs(ymin), abs(ymax)) <= 90
        if geographic:
            k = np.pi / 180 * EARTH_RADIUS_M
            w = (xmax - xmin) * k * np.cos(np.radians((ymin + ymax) / 2))
            h = (ymax - ymin) * k
        else:
            w, h = xmax - xmin, ymax - ymin
        nx, ny = max(1, int(np.ceil(w / cell_m - 1e-9))), max(1, int(np.ceil(h / cell_m - 1e-9)))
        # keep cells square in metres: stretch the box to whole cells
        return cls(
            xmin,
            ymin,
            xmin + (xmax - xmin) * nx * cell_m / w,
            ymin + (ymax - ymin) * ny * cell_m / h,
            nx,
            ny,
        )

    def cell_of(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        """Cell id of each point, -1 outside the grid (max edges belong to the last cell)."""
        x = np.asarray(x, dtype="float64")
        y = np.asarray(y, dtype="float64")
        col = np.floor((x - self.xmin) / self.dx).astype(np.int64)
        row = np.floor((y - self.ymin) / self.dy).astype(np.int64)
        col = np.where(x == self.xmax, self.nx - 1, col)
        row = np.where(y == self.ymax, self.ny - 1, row)
        inside = (col >= 0) & (col < self.nx) & (row >= 0) & (row < self.ny)
        return np.where(inside, row * self.nx + col, -1)

    def centres(self) -> tuple[np.ndarray, np.ndarray]:
        """x, y of every cell centre, indexed by cell id."""
        cid = np.arange(self.nx * self.ny)
        return (
            self.xmin + (cid % self.nx + 0.5) * self.dx,
            self.ymin + (cid // self.nx + 0.5) * self.dy,
        )


def _bins(t: np.ndarray, time_bin: Any) -> tuple[np.ndarray, int]:
    step = to_timedelta_ms(time_bin, "time_bin")
    if step <= 0:
        raise AnalyticsError(f"time_bin must be positive, got {time_bin!r}")
    return np.floor_divide(t, step) * step, step


def _cell_flows(p: Points, cell: np.ndarray, tbin: np.ndarray) -> tuple[np.ndarray, ...]:
    """Per point: counts 1, and inflow/outflow events (Zhang et al., ST-ResNet): an object
    flows into cell c when its previous point was elsewhere and this one is in c; it
    flows out of c when this point is in c and its next one is elsewhere. Both are
    counted in the time bin of the point inside c."""
    same_prev = np.zeros(p.n, bool)
    same_prev[1:] = p.obj[1:] == p.obj[:-1]
    moved_in = np.zeros(p.n, bool)
    moved_in[1:] = same_prev[1:] & (cell[1:] != cell[:-1])
    moved_out = np.zeros(p.n, bool)
    moved_out[:-1] = same_prev[1:] & (cell[1:] != cell[:-1])
    return moved_in, moved_out


def grid_flows(
    points: Any,
    grid: CellGrid | float,
    time_bin: Any = "1h",
    *,
    values: dict[str, str] | None = None,
    bbox: tuple[float, float, float, float] | None = None,
    geographic: bool | None = None,
    crs: str | None = None,
) -> PointSeries:
    """Aggregate a point stream on a grid per time bin: ``n`` (points), ``objects``
    (distinct objects), ``inflow`` and ``outflow`` per cell, plus the mean of any
    numeric columns named in ``values`` (``{"speed_kmh": "mean"}``; also "sum", "max").

    Parameters
    ----------
    grid:
        A :class:`CellGrid`, or a cell size in metres over ``bbox`` (default: the data's
        extent).
    time_bin:
        Bin width (seconds, "15min", timedelta); bins start at multiples from the epoch.

    Returns
    -------
    PointSeries
        One row per (cell, bin) with any point or flow: ``id`` (cell id), ``t`` (bin start),
        ``x``/``y`` (cell centre), ``n``, ``objects``, ``inflow``, ``outflow`` and the
        requested values. Points outside the grid are not counted.

    Examples
    --------
    >>> df = pd.DataFrame({"id": ["a", "a", "b"], "t": [0, 60, 30], "x": [50.0, 150.0, 50.0],
    ...                    "y": [50.0, 50.0, 50.0]})
    >>> g = CellGrid(0, 0, 200, 100, 2, 1)
    >>> r = grid_flows(df, g, "1h", geographic=False).to_pandas()
    >>> r[["id", "n", "objects", "inflow", "outflow"]].values.tolist()
    [[0, 2, 2, 0, 1], [1, 1, 1, 1, 0]]
    """
    p = as_points(points, geographic)
    g = _grid(p, grid, bbox)
    cell = g.cell_of(p.x, p.y)
    tb, _ = _bins(p.t, time_bin)
    moved_in, moved_out = _cell_flows(p, cell, tb)
    ok = cell >= 0
    key_cell, key_t = cell[ok], tb[ok]
    tcode, t_uniq = _codes(key_t)
    ncell = g.nx * g.ny
    key = tcode * ncell + key_cell
    uk, inv = np.unique(key, return_inverse=True)
    n = np.bincount(inv, minlength=len(uk))
    inflow = np.bincount(inv, weights=moved_in[ok], minlength=len(uk)).astype(np.int64)
    outflow = np.bincount(inv, weights=moved_out[ok], minlength=len(uk)).astype(np.int64)
    # distinct objects: unique (key, object) pairs counted per key
    objects = _distinct_per_key(inv, p.obj[ok], len(uk))
    cid = uk % ncell
    cx, cy = g.centres()
    out = pd.DataFrame(
        {
            ID_COL: cid.astype(np.int64),
            TIME_COL: pd.to_datetime(
                t_uniq[uk // ncell] if len(uk) else np.zeros(0, np.int64), unit="ms", utc=True
            ),
            X_COL: cx[cid],
            Y_COL: cy[cid],
            "n": n.astype(np.int64),
            "objects": objects.astype(np.int64),
            "inflow": inflow,
            "outflow": outflow,
        }
    )
    fields: list[Field | str] = [
        Field("n", "int64"),
        Field("objects", "int64"),
        Field("inflow", "int64"),
        Field("outflow", "int64"),
    ]
    for col, how in (values or {}).items():
        out[f"{col}_{how}"] = _reduce(p.frame[col].to_numpy(dtype="float64")[ok], inv, len(uk), how)
        fields.append(f"{col}_{how}")
    schema = PointSeries.schema(
        *fields,
        id_type="int64",
        crs=crs or ("EPSG:4326" if p.geographic else "EPSG:3857"),
        extra={
            "grid": [g.xmin, g.ymin, g.xmax, g.ymax, g.nx, g.ny],
            "time_bin_ms": to_timedelta_ms(time_bin, "time_bin"),
        },
    )
    return PointSeries.from_pandas(out, schema)  # type: ignore[return-value]


def _grid(
    p: Points, grid: CellGrid | float, bbox: tuple[float, float, float, float] | None
) -> CellGrid:
    if isinstance(grid, CellGrid):
        return grid
    if bbox is None:
        if p.n == 0:
            raise AnalyticsError("no points: pass a CellGrid or a bbox to size the grid")
        pad = 1e-9
        bbox = (float(p.x.min()), float(p.y.min()), float(p.x.max()) + pad, float(p.y.max()) + pad)
    return CellGrid.from_metres(bbox, float(grid), p.geographic)


def _distinct_per_key(inv: np.ndarray, obj: np.ndarray, n: int) -> np.ndarray:
    """Number of distinct objects per key (one int64 pair code, not a 2-D unique)."""
    if not len(inv):
        return np.zeros(n, dtype=np.int64)
    m = int(obj.max()) + 1
    pair = np.sort(inv.astype(np.int64) * m + obj)
    first = np.concatenate(([True], pair[1:] != pair[:-1]))
    return np.bincount(pair[first] // m, minlength=n).astype(np.int64)


def _codes(v: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    uniq, inv = np.unique(v, return_inverse=True)
    return inv.astype(np.int64), uniq


def _reduce(v: np.ndarray, inv: np.ndarray, n: int, how: str) -> np.ndarray:
    if how == "sum":
        return np.bincount(inv, weights=v, minlength=n)
    if how == "mean":
        return np.bincount(inv, weights=v, minlength=n) / np.maximum(
            np.bincount(inv, minlength=n), 1
        )
    if how == "max":
        out = np.full(n, -np.inf)
        np.maximum.at(out, inv, v)
        return out
    raise AnalyticsError(f"aggregate {how!r} is not one of 'mean', 'sum', 'max'")


def flow_tensor(
    flows: PointSeries | pd.DataFrame,
    grid: CellGrid | None = None,
    start: Any = None,
    end: Any = None,
) -> tuple[np.ndarray, pd.DatetimeIndex]:
    """Crowd-flow tensor ``(T, 2, ny, nx)`` (channel 0 inflow, 1 outflow) from
    :func:`grid_flows` output, the input layout of ST-ResNet-style models; rows of the grid
    run from ``ymin`` upwards. Missing (cell, bin) pairs are zero.

    Examples
    --------
    >>> df = pd.DataFrame({"id": "a", "t": [0, 60], "x": [50.0, 150.0], "y": [50.0, 50.0]})
    >>> g = CellGrid(0, 0, 200, 100, 2, 1)
    >>> x, times = flow_tensor(grid_flows(df, g, "1h", geographic=False), g)
    >>> x.shape, x[0, :, 0, :].tolist()
    ((1, 2, 1, 2), [[0.0, 1.0], [1.0, 0.0]])
    """
    if isinstance(flows, PointSeries):
        extra = flows.schema_.extra
        df = flows.to_pandas()
    else:
        extra, df = {}, flows
    if grid is None:
        if "grid" not in extra:
            raise AnalyticsError(
                "pass the CellGrid used by grid_flows (the frame does not record it)"
            )
        x0, y0, x1, y1, nx, ny = extra["grid"]
        grid = CellGrid(x0, y0, x1, y1, int(nx), int(ny))
    step = (
        pd.Timedelta(milliseconds=int(extra.get("time_bin_ms", 0)))
        if extra.get("time_bin_ms")
        else None
    )
    t = pd.to_datetime(df[TIME_COL], utc=True)
    lo = pd.Timestamp(start, tz="UTC") if start is not None else t.min()
    hi = pd.Timestamp(end, tz="UTC") if end is not None else t.max()
    if step is None:
        diffs = np.diff(np.unique(t.to_numpy()))
        step = pd.Timedelta(diffs.min()) if len(diffs) else pd.Timedelta(hours=1)
    times = pd.date_range(lo, hi, freq=step) if len(df) else pd.DatetimeIndex([], tz="UTC")
    out = np.zeros((len(times), 2, grid.ny, grid.nx))
    if len(df):
        ti = ((t - lo) // step).to_numpy()
        sel = (ti >= 0) & (ti < len(times))
        cid = df[ID_COL].to_numpy()[sel]
        row, col = cid // grid.nx, cid % grid.nx
        np.add.at(out[:, 0], (ti[sel], row, col), df["inflow"].to_numpy()[sel])  # views of out
        np.add.at(out[:, 1], (ti[sel], row, col), df["outflow"].to_numpy()[sel])
    return out, times


def _region_of(p: Points, regions: Any) -> tuple[np.ndarray, np.ndarray]:
    """Index into ``regions`` of the region holding each point (-1 for none; the first
    region wins where they overlap) and the regions' ids."""
    if GEOM_COL not in regions.columns and not hasattr(regions, "geometry"):
        raise AnalyticsError(
            "regions need a geometry column of polygons (e.g. the districts dataset)"
        )
    geoms = np.asarray(
        regions.geometry.to_numpy()
        if hasattr(regions, "geometry")
        else regions[GEOM_COL].to_numpy()
    )
    if len(geoms) and isinstance(geoms[0], bytes | bytearray | memoryview):
        geoms = shapely.from_wkb(geoms)
    id_col = next((c for c in ("id", "district_id", "region_id") if c in regions.columns), None)
    rid = regions[id_col].to_numpy() if id_col else np.arange(len(geoms))
    tree = shapely.STRtree(geoms)
    pi, gi = tree.query(shapely.points(p.x, p.y), predicate="intersects")
    out = np.full(p.n, -1, dtype=np.int64)
    order = np.lexsort((gi, pi))
    pi, gi = pi[order], gi[order]
    first = np.ones(len(pi), bool)
    first[1:] = pi[1:] != pi[:-1]
    out[pi[first]] = gi[first]
    return out, rid


def region_flows(
    points: Any, regions: Any, time_bin: Any = "1h", *, geographic: bool | None = None
) -> PointSeries:
    """Counts, distinct objects, inflow and outflow per region and time bin (regions:
    GeoDataFrame of polygons with ``id``/``district_id``). Rows are placed at each region's
    representative point.

    Examples
    --------
    >>> import geopandas as gpd
    >>> regions = gpd.GeoDataFrame({"id": [10, 20]}, geometry=[shapely.box(0, 0, 1, 1),
    ...                            shapely.box(1, 0, 2, 1)])
    >>> df = pd.DataFrame({"id": "a", "t": [0, 60], "x": [0.5, 1.5], "y": [0.5, 0.5]})
    >>> region_flows(df, regions, geographic=False).to_pandas()[["id", "n", "inflow"]].values.tolist()
    [[10, 1, 0], [20, 1, 1]]
    """
    p = as_points(points, geographic)
    reg, rid = _region_of(p, regions)
    tb, step = _bins(p.t, time_bin)
    moved_in, moved_out = _cell_flows(p, reg, tb)
    ok = reg >= 0
    tcode, t_uniq = _codes(tb[ok])
    key = tcode * len(rid) + reg[ok]
    uk, inv = np.unique(key, return_inverse=True)
    geoms = np.asarray(regions.geometry.to_numpy())
    rep = shapely.point_on_surface(geoms)
    r = uk % len(rid)
    out = pd.DataFrame(
        {
            ID_COL: rid[r],
            TIME_COL: pd.to_datetime(
                t_uniq[uk // len(rid)] if len(uk) else np.zeros(0, np.int64), unit="ms", utc=True
            ),
            X_COL: shapely.get_x(rep)[r],
            Y_COL: shapely.get_y(rep)[r],
            "n": np.bincount(inv, minlength=len(uk)).astype(np.int64),
            "objects": _distinct_per_key(inv, p.obj[ok], len(uk)),
            "inflow": np.bincount(inv, weights=moved_in[ok], minlength=len(uk)).astype(np.int64),
            "outflow": np.bincount(inv, weights=moved_out[ok], minlength=len(uk)).astype(np.int64),
        }
    )
    id_type = "int64" if np.issubdtype(np.asarray(rid).dtype, np.integer) else "string"
    schema = PointSeries.schema(
        Field("n", "int64"),
        Field("objects", "int64"),
        Field("inflow", "int64"),
        Field("outflow", "int64"),
        id_type=id_type,
        crs="EPSG:4326" if p.geographic else "EPSG:3857",
        extra={"time_bin_ms": step},
    )
    return PointSeries.from_pandas(out, schema)  # type: ignore[return-value]


def segment_speeds(
    matched: Any,
    time_bin: Any = "15min",
    *,
    speed_col: str | None = None,
    geographic: bool | None = None,
) -> NetworkSeries:
    """Mean speed per road segment and time bin from map-matched points (``edge_id`` per
    point, e.g. ``map_match(...).points``): the network time-series model.

    Speeds come from ``speed_col`` when given, else from consecutive fixes of the same
    trajectory (metres over seconds, assigned to the later fix).

    Examples
    --------
    >>> df = pd.DataFrame({"id": "a", "t": [0, 10, 20], "x": [0.0, 100.0, 200.0], "y": 0.0,
    ...                    "edge_id": [5, 5, 6]})
    >>> r = segment_speeds(df, "1h", geographic=False).to_pandas()
    >>> r["id"].tolist(), r["speed_kmh"].tolist()
    ([5, 6], [36.0, 36.0])
    """
    by = TRAJ_COL if TRAJ_COL in getattr(matched, "columns", []) else ID_COL
    p = as_points(matched, geographic, by=by)
    if "edge_id" not in p.frame.columns:
        raise AnalyticsError("segment_speeds needs an edge_id per point: run map_match first")
    edge = p.frame["edge_id"].to_numpy(dtype=np.int64)
    if speed_col is not None:
        v = p.frame[speed_col].to_numpy(dtype="float64")
        ok = edge >= 0
    else:
        v = np.full(p.n, np.nan)
        if p.n > 1:
            d = np.hypot(np.diff(p.mx), np.diff(p.my))
            dt = np.diff(p.t) / 1000.0
            v[1:] = np.where(
                (p.obj[1:] == p.obj[:-1]) & (dt > 0), d / np.where(dt > 0, dt, 1) * 3.6, np.nan
            )
        ok = (edge >= 0) & np.isfinite(v)
    tb, step = _bins(p.t, time_bin)
    key = np.column_stack([edge[ok], tb[ok]])
    uk, inv = np.unique(key, axis=0, return_inverse=True)
    inv = inv.ravel()
    n = np.bincount(inv, minlength=len(uk))
    out = pd.DataFrame(
        {
            ID_COL: uk[:, 0] if len(uk) else np.zeros(0, np.int64),
            TIME_COL: pd.to_datetime(
                uk[:, 1] if len(uk) else np.zeros(0, np.int64), unit="ms", utc=True
            ),
            "speed_kmh": np.bincount(inv, weights=v[ok], minlength=len(uk)) / np.maximum(n, 1),
            "n": n.astype(np.int64),
        }
    )
    schema = NetworkSeries.schema(
        Field("speed_kmh", "float64", unit="km/h"),
        Field("n", "int64"),
        id_type="int64",
        extra={"time_bin_ms": step},
    )
    return NetworkSeries.from_pandas(out, schema)  # type: ignore[return-value]


def od_matrix(
    trips: Any, regions: Any | CellGrid, time_bin: Any = "1h", *, geographic: bool | None = None
) -> pd.DataFrame:
    """Origin-destination counts between regions (or grid cells) per departure time bin.

    ``trips`` are points with ``traj_id`` (e.g. from :func:`split_by_stays`); each trip's
    first point gives its origin and departure time, its last point its destination.
    Returns a DataFrame ``t, origin, destination, trips``; pivot it for a matrix.

    Examples
    --------
    >>> g = CellGrid(0, 0, 2, 1, 2, 1)
    >>> df = pd.DataFrame({"id": "a", "traj_id": ["a_0", "a_0", "a_1", "a_1"], "t": [0, 60, 600, 660],
    ...                    "x": [0.5, 1.5, 1.5, 0.5], "y": 0.5})
    >>> od_matrix(df, g, geographic=False)[["origin", "destination", "trips"]].values.tolist()
    [[0, 1, 1], [1, 0, 1]]
    """
    by = TRAJ_COL if TRAJ_COL in getattr(trips, "columns", []) else ID_COL
    p = as_points(trips, geographic, by=by)
    starts = p.run_starts()
    first, last = starts[:-1], starts[1:] - 1
    if isinstance(regions, CellGrid):
        reg, rid = regions.cell_of(p.x, p.y), np.arange(regions.nx * regions.ny)
    else:
        reg, rid = _region_of(p, regions)
    o, d = reg[first], reg[last]
    tb, _ = _bins(p.t[first], time_bin)
    ok = (o >= 0) & (d >= 0)
    df = pd.DataFrame({TIME_COL: tb[ok], "origin": rid[o[ok]], "destination": rid[d[ok]]})
    out = (
        df.groupby([TIME_COL, "origin", "destination"], sort=True)
        .size()
        .rename("trips")
        .reset_index()
    )
    out[TIME_COL] = pd.to_datetime(out[TIME_COL], unit="ms", utc=True)
    return out

"""Geometry kernels both engines share, so the same query gives the same numbers whatever
runs it: distances, nearest lines, regions containing points, trajectory similarity, and
the shape of aggregation output."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa

from cityos.errors import QueryError
from cityos.geo.crs import transform_xy
from cityos.geo.distance import metric_distance
from cityos.geo.similarity import discrete_frechet, dtw
from cityos.model import GEOM_COL, ID_COL, TIME_COL, X_COL, Y_COL
from cityos.store._catalog import StatsArrays
from cityos.store._spec import Aggregate, Grid

__all__ = [
    "LineIndex",
    "aggregate_frame",
    "aggregate_keys",
    "bin_ms",
    "distances",
    "group_trajectories",
    "lines_index",
    "nearest_lines",
    "reference_point",
    "regions_containing",
    "regions_index",
    "similarity_topk",
    "utm_crs",
]

DIST_COL = "distance_m"
REGION_COL = "region_id"
EDGE_COL = "edge_id"


def bin_ms(time_bin: str) -> int:
    """A time bin such as ``"15min"`` or ``"1h"`` in milliseconds.

    Examples
    --------
    >>> bin_ms("15min")
    900000
    """
    import pandas as pd

    try:
        ms = int(pd.Timedelta(time_bin).total_seconds() * 1000)
    except (ValueError, TypeError, OverflowError) as exc:
        raise QueryError(
            f"time_bin {str(time_bin)[:40]!r} is not a duration such as '15min', '1h' or '1D'"
        ) from exc
    if ms <= 0:
        raise QueryError(f"time_bin {time_bin!r} must be a positive duration")
    return ms


def reference_point(stats: StatsArrays) -> tuple[float, float]:
    """The centre of a dataset's extent (from its statistics), the origin of the local
    metric frame that geographic joins are computed in."""
    if len(stats.rg) == 0:
        return (0.0, 0.0)
    x0, x1 = np.nanmin(stats.x_min), np.nanmax(stats.x_max)
    y0, y1 = np.nanmin(stats.y_min), np.nanmax(stats.y_max)
    return (float((x0 + x1) / 2), float((y0 + y1) / 2))


def distances(tbl: pa.Table, x: float, y: float, geographic: bool) -> np.ndarray:
    return metric_distance(x, y, tbl[X_COL].to_numpy(), tbl[Y_COL].to_numpy(), geographic)


def utm_crs(lon: float, lat: float) -> str:
    """The UTM zone of a lon/lat position, for metric computations near it."""
    zone = int(np.floor((lon + 180) / 6)) % 60 + 1
    return f"EPSG:{32600 + zone if lat >= 0 else 32700 + zone}"


def _metric_xy(
    x: np.ndarray, y: np.ndarray, crs: str, geographic: bool, ref: tuple[float, float]
) -> tuple[np.ndarray, np.ndarray]:
    if not geographic:
        return x, y
    return transform_xy(x, y, crs, utm_crs(*ref))


class LineIndex:
    """Line geometries in metric coordinates for nearest-line searches: their segments in
    flat arrays, bucketed on a grid of the search distance (built once per distance), with
    an STRtree for geometries that are not lines."""

    #: most (segment, cell) entries a grid may have before the STRtree is used instead
    MAX_CELLS = 20_000_000

    def __init__(self, geoms: np.ndarray) -> None:
        import shapely

        self.geoms = geoms
        self.tree = shapely.STRtree(geoms)
        parts, owner = shapely.get_parts(geoms, return_index=True)
        kinds = shapely.get_type_id(parts)
        self.lines_only = bool(np.isin(kinds, (1, 2)).all())  # LineString, LinearRing
        xy, ci = shapely.get_coordinates(parts, return_index=True)
        same = ci[1:] == ci[:-1]  # consecutive vertices of one part make a segment
        a = np.flatnonzero(same)
        self.ax, self.ay = xy[a, 0], xy[a, 1]
        self.bx, self.by = xy[a + 1, 0], xy[a + 1, 1]
        self.owner = owner[ci[a]].astype(np.int64)
        self._grids: dict[float, Any] = {}
        self._rank: tuple[np.ndarray, np.ndarray] | None = None

    def id_rank(self, ids: np.ndarray) -> np.ndarray:
        """:func:`_id_rank` of the lines' ``ids``, computed once per ids array (the index
        and its ids live as long as one version of the line dataset)."""
        if self._rank is None or self._rank[0] is not ids:
            self._rank = (ids, _id_rank(ids))
        return self._rank[1]

    def grid(self, c: float) -> Any:
        """(sorted cell keys, first and last entry of each, segment of each entry) for cells
        of ``c`` metres, each segment listed in every cell its bounding box grown by ``c``
        meets; None when that grid would be too large."""
        if c in self._grids:
            return self._grids[c]
        g = None
        if self.lines_only and c > 0 and np.isfinite(c):
            with np.errstate(invalid="ignore", over="ignore"):
                x0 = np.floor((np.minimum(self.ax, self.bx) - c) / c)
                x1 = np.floor((np.maximum(self.ax, self.bx) + c) / c)
                y0 = np.floor((np.minimum(self.ay, self.by) - c) / c)
                y1 = np.floor((np.maximum(self.ay, self.by) + c) / c)
            ok = len(x0) == 0 or (
                np.isfinite([x0.min(), x1.max(), y0.min(), y1.max()]).all()
                and max(abs(x0.min()), abs(x1.max()), abs(y0.min()), abs(y1.max())) < 2**29
            )
            if ok:
                nx = (x1 - x0 + 1).astype(np.int64)
                ny = (y1 - y0 + 1).astype(np.int64)
                counts = nx * ny
                total = int(counts.sum())
                if total <= self.MAX_CELLS:
                    seg = np.repeat(np.arange(len(counts)), counts)
                    local = np.arange(total) - np.repeat(np.cumsum(counts) - counts, counts)
                    gx = x0.astype(np.int64)[seg] + local % nx[seg]
                    gy = y0.astype(np.int64)[seg] + local // nx[seg]
                    key = _cell_key(gx, gy)
                    order = np.argsort(key, kind="stable")
                    key, seg = key[order], seg[order]
                    uniq, first = np.unique(key, return_index=True)
                    last = np.append(first[1:], len(key))
                    g = (uniq, first, last, seg)
        self._grids[c] = g
        return g

    def __getstate__(self) -> dict[str, Any]:  # engines ship the index to workers
        d = dict(self.__dict__)
        d.pop("tree")
        d["_grids"] = {}
        d["_rank"] = None
        return d

    def __setstate__(self, d: dict[str, Any]) -> None:
        import shapely

        self.__dict__.update(d)
        self.tree = shapely.STRtree(self.geoms)


def _cell_key(gx: np.ndarray, gy: np.ndarray) -> np.ndarray:
    out: np.ndarray = ((gx + 2**30) << 31) | (gy + 2**30)
    return out


def _point_segment(
    px: np.ndarray,
    py: np.ndarray,
    ax: np.ndarray,
    ay: np.ndarray,
    bx: np.ndarray,
    by: np.ndarray,
) -> np.ndarray:
    """Distances from points to segments, computed as GEOS computes them (projection
    factor, then the end point or the perpendicular)."""
    dx, dy = bx - ax, by - ay
    len2 = dx * dx + dy * dy
    deg = len2 == 0
    with np.errstate(invalid="ignore", divide="ignore"):
        r = ((px - ax) * dx + (py - ay) * dy) / len2
        s = ((ay - py) * dx - (ax - px) * dy) / len2
        perp = np.abs(s) * np.sqrt(len2)
    da = np.sqrt((px - ax) ** 2 + (py - ay) ** 2)
    db = np.sqrt((px - bx) ** 2 + (py - by) ** 2)
    out = np.where(r <= 0.0, da, np.where(r >= 1.0, db, perp))
    d: np.ndarray = np.where(deg, da, out)
    return d


def lines_index(
    lines: pa.Table, crs: str, geographic: bool, ref: tuple[float, float]
) -> tuple[LineIndex, np.ndarray]:
    """A :class:`LineIndex` over line geometries in metric coordinates, and the lines' ids."""
    import shapely

    geoms = shapely.from_wkb(lines[GEOM_COL].to_numpy(zero_copy_only=False))
    if geographic:
        geoms = shapely.transform(
            geoms, lambda c: np.column_stack(_metric_xy(c[:, 0], c[:, 1], crs, True, ref))
        )
    return LineIndex(geoms), lines[ID_COL].to_numpy(zero_copy_only=False)


def nearest_lines(
    px: np.ndarray,
    py: np.ndarray,
    tree: Any,
    ids: np.ndarray,
    max_d: float,
    crs: str,
    geographic: bool,
    ref: tuple[float, float],
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """For each point, the nearest line within ``max_d`` metres (ties: smallest id).

    Returns (point positions with a match, line ids, distances in metres)."""
    import shapely

    mx, my = _metric_xy(px, py, crs, geographic, ref)
    grid = tree.grid(float(max_d)) if isinstance(tree, LineIndex) else None
    if grid is not None:
        assert isinstance(tree, LineIndex)
        pi, li, d = _near_segments(tree, grid, mx, my, float(max_d))
    else:
        strtree = tree.tree if isinstance(tree, LineIndex) else tree
        (pi, li), d = strtree.query_nearest(
            shapely.points(mx, my), max_distance=max_d, return_distance=True, all_matches=True
        )
    if len(pi) == 0:
        return np.array([], dtype=np.int64), ids[:0], np.array([], dtype="float64")
    rank = tree.id_rank(ids) if isinstance(tree, LineIndex) else _id_rank(ids)
    if np.isnan(d).any():
        # per point the nearest line, ties to the smallest id: sort by (point, distance, id rank)
        order = np.lexsort((rank[li], d, pi))
        pi, li, d = pi[order], li[order], d[order]
        first = np.ones(len(pi), dtype=bool)
        first[1:] = pi[1:] != pi[:-1]
        return pi[first].astype(np.int64), ids[li[first]], d[first]
    keep = _nearest_per_point(pi, d, rank[li])
    return pi[keep].astype(np.int64), ids[li[keep]], d[keep]


def _nearest_per_point(pi: np.ndarray, d: np.ndarray, r: np.ndarray) -> np.ndarray:
    """Position of each point's pair with the smallest distance, then the smallest rank,
    then the first such pair — the first pair of each point after a stable sort by
    (point, distance, rank) — found in linear time with segmented minima (no NaN in ``d``).

    Examples
    --------
    >>> pi, d = np.array([1, 1, 1, 4]), np.array([2.0, 1.0, 1.0, 3.0])
    >>> _nearest_per_point(pi, d, np.array([0, 5, 2, 1]))
    array([2, 3])
    """
    if len(pi) > 1 and bool((pi[1:] < pi[:-1]).any()):
        # pairs grouped by point, keeping their order inside each point
        order = np.argsort(pi, kind="stable")
        back: np.ndarray = order[_nearest_per_point(pi[order], d[order], r[order])]
        return back
    start = np.flatnonzero(np.r_[True, pi[1:] != pi[:-1]])
    cnt = np.diff(np.r_[start, len(pi)])
    at = d == np.repeat(np.minimum.reduceat(d, start), cnt)
    big = np.iinfo(np.int64).max
    rr = np.where(at, r.astype(np.int64), big)
    sel = np.flatnonzero(rr == np.repeat(np.minimum.reduceat(rr, start), cnt))
    # the first selected pair of each point
    grp = np.searchsorted(start, sel, side="right")
    first = np.r_[True, grp[1:] != grp[:-1]]
    out: np.ndarray = sel[first]
    return out


def _id_rank(ids: np.ndarray) -> np.ndarray:
    """Each id's position in sorted order (equal ids share one)."""
    _, inv = np.unique(ids, return_inverse=True)
    out: np.ndarray = inv.reshape(-1)
    return out


def _near_segments(
    idx: LineIndex, grid: Any, mx: np.ndarray, my: np.ndarray, max_d: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(point, line, distance) of every point's segments within ``max_d`` found through the
    grid: a point's cell lists every segment that can be that close."""
    uniq, first, last, seg = grid
    with np.errstate(invalid="ignore"):
        cx, cy = np.floor(mx / max_d), np.floor(my / max_d)
    fin = np.isfinite(cx) & np.isfinite(cy) & (np.abs(cx) < 2**29) & (np.abs(cy) < 2**29)
    empty = (np.array([], np.int64), np.array([], np.int64), np.array([], "float64"))
    if not len(uniq) or not fin.any():
        return empty
    pts = np.flatnonzero(fin)
    key = _cell_key(cx[pts].astype(np.int64), cy[pts].astype(np.int64))
    pos = np.minimum(np.searchsorted(uniq, key), len(uniq) - 1)
    hit = uniq[pos] == key
    pts, pos = pts[hit], pos[hit]
    cnt = last[pos] - first[pos]
    total = int(cnt.sum())
    if total == 0:
        return empty
    pp = np.repeat(pts, cnt)
    off = np.arange(total) - np.repeat(np.cumsum(cnt) - cnt, cnt)
    ss = seg[np.repeat(first[pos], cnt) + off]
    d = _point_segment(mx[pp], my[pp], idx.ax[ss], idx.ay[ss], idx.bx[ss], idx.by[ss])
    ok = d <= max_d
    return pp[ok], idx.owner[ss[ok]], d[ok]


def regions_index(regions: pa.Table) -> tuple[Any, np.ndarray]:
    """An STRtree over region geometries (prepared for point tests), and the regions' ids."""
    import shapely

    geoms = shapely.from_wkb(regions[GEOM_COL].to_numpy(zero_copy_only=False))
    shapely.prepare(geoms)
    return shapely.STRtree(geoms), regions[ID_COL].to_numpy(zero_copy_only=False)


def regions_containing(
    px: np.ndarray,
    py: np.ndarray,
    regions: pa.Table | None,
    index: tuple[Any, np.ndarray] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Pairs (point position, region id) for every region that intersects each point
    (``index``: a :func:`regions_index` of ``regions`` made earlier)."""
    import shapely

    if index is None:
        assert regions is not None
        index = regions_index(regions)
    tree, rids = index
    geoms = tree.geometries
    if len(geoms) > 64:
        pi, ri = tree.query(shapely.points(px, py), predicate="intersects")
        return pi, rids[ri]
    # few regions: each tests the points inside its bounding box, vectorised (the same
    # intersects predicate, without a geometry object per point)
    b = shapely.bounds(geoms)
    ps, rs = [], []
    for j in range(len(geoms)):
        sel = np.flatnonzero((px >= b[j, 0]) & (px <= b[j, 2]) & (py >= b[j, 1]) & (py <= b[j, 3]))
        if len(sel):
            sel = sel[shapely.intersects_xy(geoms[j], px[sel], py[sel])]
            ps.append(sel)
            rs.append(np.full(len(sel), j, dtype=np.int64))
    if not ps:
        return np.array([], dtype=np.int64), rids[:0]
    pi, ri = np.concatenate(ps), np.concatenate(rs)
    order = np.lexsort((ri, pi))
    return pi[order], rids[ri[order]]


def group_trajectories(tbl: pa.Table) -> tuple[np.ndarray, list[np.ndarray]]:
    """Split canonical points (any order) into per-object coordinate arrays ordered by time."""
    if tbl.num_rows == 0:
        return np.array([], dtype=object), []
    t = tbl.sort_by([(ID_COL, "ascending"), (TIME_COL, "ascending")])
    ids = t[ID_COL].to_numpy(zero_copy_only=False)
    xy = np.column_stack([t[X_COL].to_numpy(), t[Y_COL].to_numpy()])
    cut = np.flatnonzero(ids[1:] != ids[:-1]) + 1
    starts = np.concatenate([[0], cut])
    return ids[starts], np.split(xy, cut)


def similarity_topk(
    ids: np.ndarray,
    trajs: list[np.ndarray],
    q: np.ndarray,
    k: int,
    metric: str,
    geographic: bool,
    check: Any = None,
) -> tuple[np.ndarray, np.ndarray]:
    """The ``k`` trajectories nearest to ``q`` (ties: smallest id), visiting candidates in
    order of a lower bound so most exact distances are never computed.

    Both DTW and discrete Fréchet align the first points and the last points, so
    d(first, first) and d(last, last) bound them from below (their sum, for DTW)."""
    if not trajs:
        return ids[:0], np.array([], dtype="float64")
    firsts = np.array([t[0] for t in trajs])
    lasts = np.array([t[-1] for t in trajs])
    d0 = metric_distance(q[0, 0], q[0, 1], firsts[:, 0], firsts[:, 1], geographic)
    d1 = metric_distance(q[-1, 0], q[-1, 1], lasts[:, 0], lasts[:, 1], geographic)
    lb = d0 + d1 if metric == "dtw" else np.maximum(d0, d1)
    if metric == "dtw":
        lb = np.where([len(t) == 1 and len(q) == 1 for t in trajs], d0, lb)
    fn = dtw if metric == "dtw" else discrete_frechet
    order = np.lexsort((ids.astype(str), lb))
    best: list[tuple[float, str, int]] = []
    for i in order:
        if len(best) >= k and lb[i] > best[k - 1][0]:
            break
        if check is not None:
            check()  # a deadline: exact distances are the expensive part
        d = fn(q, trajs[i], geographic)
        best.append((d, str(ids[i]), int(i)))
        best.sort()
        best = best[:k]
    sel = np.array([b[2] for b in best], dtype=np.int64)
    return ids[sel], np.array([b[0] for b in best])


def aggregate_keys(
    tbl: pa.Table, spec: Aggregate, bin_ms: int | None, crs: str
) -> dict[str, np.ndarray]:
    """Grid cell and time-bin columns for points in ``crs`` (regions are joined by the
    caller). A grid in another CRS gets the points transformed into it first."""
    out: dict[str, np.ndarray] = {}
    if spec.grid is not None:
        x, y = tbl[X_COL].to_numpy(), tbl[Y_COL].to_numpy()
        g = spec.grid
        if g.crs is not None and g.crs != crs:
            x, y = transform_xy(x, y, crs, g.crs)
        ix, iy = g.cells(x, y)
        out["cell_x"], out["cell_y"] = ix, iy
    if bin_ms is not None:
        t = tbl[TIME_COL].cast(pa.int64()).to_numpy()
        out["t_bin"] = np.floor_divide(t, bin_ms) * bin_ms
    return out


def aggregate_frame(
    df: pd.DataFrame, spec: Aggregate, regions: pa.Table | None, crs: str
) -> pa.Table:
    """Grouped rows (``cell_x, cell_y`` or ``region_id``, ``t_bin``, aggregates) into the
    spatial-time-series form: ``id``, ``t``, ``x``, ``y`` (cell or region centre) + aggregates."""
    import shapely

    if spec.grid is not None:
        g: Grid = spec.grid
        ids = df["cell_x"].astype(str) + "_" + df["cell_y"].astype(str)
        x = g.x0 + (df["cell_x"].to_numpy() + 0.5) * g.dx
        y = g.y0 + (df["cell_y"].to_numpy() + 0.5) * g.dy
        if g.crs is not None and g.crs != crs and len(x):
            x, y = transform_xy(x, y, g.crs, crs)  # cell centres in the answer's CRS
        cols: dict[str, Any] = {
            ID_COL: ids.to_numpy(dtype=object),
            "cell_x": df["cell_x"].to_numpy(),
            "cell_y": df["cell_y"].to_numpy(),
        }
    else:
        assert regions is not None
        rid = regions[ID_COL].to_numpy(zero_copy_only=False)
        cent = shapely.centroid(shapely.from_wkb(regions[GEOM_COL].to_numpy(zero_copy_only=False)))
        pos = pd.Index(rid).get_indexer(df[REGION_COL].to_numpy())
        x = shapely.get_x(cent)[pos] if len(pos) else np.array([])
        y = shapely.get_y(cent)[pos] if len(pos) else np.array([])
        cols = {ID_COL: df[REGION_COL].astype(str).to_numpy(dtype=object)}
    if "t_bin" in df.columns:
        cols[TIME_COL] = pa.array(df["t_bin"].to_numpy().astype("int64"), pa.int64()).cast(
            pa.timestamp("ms", tz="UTC")
        )
    cols[X_COL] = np.asarray(x, dtype="float64")
    cols[Y_COL] = np.asarray(y, dtype="float64")
    for out, a in spec.agg_specs.items():
        v = df[out].to_numpy()
        cols[out] = v.astype("int64") if a.fn == "count" else v.astype("float64")
    tbl = pa.table(cols)
    keys = (
        [("cell_x", "ascending"), ("cell_y", "ascending")]
        if spec.grid is not None
        else [(ID_COL, "ascending")]
    )
    if TIME_COL in tbl.column_names:
        keys.append((TIME_COL, "ascending"))
    return tbl.sort_by(keys)

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
    "aggregate_frame",
    "aggregate_keys",
    "bin_ms",
    "distances",
    "group_trajectories",
    "lines_index",
    "nearest_lines",
    "reference_point",
    "regions_containing",
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


def lines_index(
    lines: pa.Table, crs: str, geographic: bool, ref: tuple[float, float]
) -> tuple[Any, np.ndarray]:
    """An STRtree over line geometries in metric coordinates, and the lines' ids."""
    import shapely

    geoms = shapely.from_wkb(lines[GEOM_COL].to_numpy(zero_copy_only=False))
    if geographic:
        geoms = shapely.transform(
            geoms, lambda c: np.column_stack(_metric_xy(c[:, 0], c[:, 1], crs, True, ref))
        )
    return shapely.STRtree(geoms), lines[ID_COL].to_numpy(zero_copy_only=False)


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
    pts = shapely.points(mx, my)
    (pi, li), d = tree.query_nearest(
        pts, max_distance=max_d, return_distance=True, all_matches=True
    )
    if len(pi) == 0:
        return np.array([], dtype=np.int64), ids[:0], np.array([], dtype="float64")
    df = pd.DataFrame({"p": pi, "id": ids[li], "d": d}).sort_values(["p", "d", "id"], kind="stable")
    df = df.drop_duplicates("p", keep="first")
    return df["p"].to_numpy(), df["id"].to_numpy(), df["d"].to_numpy()


def regions_containing(
    px: np.ndarray, py: np.ndarray, regions: pa.Table
) -> tuple[np.ndarray, np.ndarray]:
    """Pairs (point position, region id) for every region that intersects each point."""
    import shapely

    geoms = shapely.from_wkb(regions[GEOM_COL].to_numpy(zero_copy_only=False))
    tree = shapely.STRtree(geoms)
    pi, ri = tree.query(shapely.points(px, py), predicate="intersects")
    return pi, regions[ID_COL].to_numpy(zero_copy_only=False)[ri]


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

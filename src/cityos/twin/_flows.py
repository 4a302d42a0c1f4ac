"""Flows between regions from moving objects: origin–destination pairs of trips and each
region's inflow and outflow over a time window, and road-segment speeds from GPS points.

A *trip* is one object's fixes in the window, split by ``trip_id`` when the dataset has
it; its origin is its first fix and its destination its last. Both are assigned to the
region (polygon) containing them, so the answer is exact for the rows the caller may read.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from cityos.twin._layers import Bbox, LayerRequest, layer_table
from cityos.twin.errors import TwinRequestError

__all__ = ["Flows", "od_flows", "road_speeds"]


@dataclass(frozen=True)
class Flows:
    """Trips between regions: ``od`` rows (origin, destination, trips) and per-region
    ``inflow``/``outflow`` (trips ending / starting there from / to another region)."""

    od: list[dict[str, Any]]
    regions: list[dict[str, Any]]
    trips: int
    points: int

    def to_dict(self) -> dict[str, Any]:
        return {"od": self.od, "regions": self.regions, "trips": self.trips, "points": self.points}


def _trip_ends(table: pa.Table) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """First and last (x, y) of each trip of a table sorted by (id, t)."""
    if table.num_rows == 0:
        e = np.zeros(0)
        return e, e, e, e
    ids = pd.factorize(np.asarray(table["id"].to_numpy(zero_copy_only=False)))[0]
    key = ids.astype(np.int64)
    if "trip_id" in table.column_names:
        trip = pc.fill_null(table["trip_id"], -1).to_numpy().astype(np.int64)
        key = pd.factorize(pd.MultiIndex.from_arrays([ids, trip]))[0].astype(np.int64)
    t = table["t"].to_numpy() if pa.types.is_floating(table["t"].type) else None
    order = np.lexsort((np.arange(len(key)) if t is None else t, key))
    k = key[order]
    first = order[np.r_[True, k[1:] != k[:-1]]]
    last = order[np.r_[k[1:] != k[:-1], True]]
    x = table["x"].to_numpy()
    y = table["y"].to_numpy()
    return x[first], y[first], x[last], y[last]


def _region_of(regions: pa.Table, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Index into ``regions`` of the polygon holding each point (-1 outside all)."""
    import shapely

    polys = shapely.from_wkb(np.asarray(regions["geometry"].to_numpy(zero_copy_only=False)))
    tree = shapely.STRtree(polys)
    pts = shapely.points(x, y)
    out = np.full(len(x), -1, dtype=np.int64)
    if len(x):
        p, r = tree.query(pts, predicate="within")
        out[p] = r  # a point on a shared border keeps one of its regions
    return out


def od_flows(
    secure: Any,
    dataset: str,
    regions_dataset: str,
    start: pd.Timestamp | None,
    end: pd.Timestamp | None,
    bbox: Bbox | None = None,
) -> Flows:
    """Trips of the moving-object ``dataset`` between the polygons of ``regions_dataset``
    in ``[start, end)``, read through the caller's SecureStore. With ``bbox``, only trips
    starting or ending inside it count."""
    import shapely

    info = secure.describe(dataset)
    if str(info.schema.model) != "point_st":
        raise TwinRequestError(
            f"flows need a moving-object (point_st) dataset; {dataset!r} is {info.schema.model}"
        )
    if start is None or end is None:
        raise TwinRequestError("flows need both start and end (a time window)")
    reg = secure.scan(regions_dataset).table
    if "geometry" not in reg.column_names:
        raise TwinRequestError(f"regions {regions_dataset!r} has no polygons")
    cols = ["trip_id"] if any(f.name == "trip_id" for f in info.schema.fields) else []
    table, _, _ = layer_table(
        secure, dataset, LayerRequest(None, start, end, None, tuple(cols) or ("id",))
    )
    if "t" in table.column_names and pa.types.is_timestamp(table["t"].type):
        table = table.set_column(
            table.column_names.index("t"),
            "t",
            pc.cast(pc.cast(table["t"], pa.timestamp("ms", tz="UTC")), pa.int64()).cast(
                pa.float64()
            ),
        )
    ox, oy, dx, dy = _trip_ends(table)
    if bbox is not None:
        a, b, c, d = bbox
        inside = ((ox >= a) & (ox <= c) & (oy >= b) & (oy <= d)) | (
            (dx >= a) & (dx <= c) & (dy >= b) & (dy <= d)
        )
        ox, oy, dx, dy = ox[inside], oy[inside], dx[inside], dy[inside]
    o = _region_of(reg, ox, oy)
    d_ = _region_of(reg, dx, dy)
    polys = shapely.from_wkb(np.asarray(reg["geometry"].to_numpy(zero_copy_only=False)))
    cen = shapely.centroid(polys)
    cx, cy = shapely.get_x(cen), shapely.get_y(cen)
    rid = reg["id"].to_pylist()
    names = reg["name"].to_pylist() if "name" in reg.column_names else [str(i) for i in rid]
    ok = (o >= 0) & (d_ >= 0)
    code = o[ok] * len(rid) + d_[ok]
    uniq, counts = np.unique(code, return_counts=True)
    pairs = [
        ((int(c) // len(rid), int(c) % len(rid)), int(n)) for c, n in zip(uniq, counts, strict=True)
    ]
    od = [
        {
            "origin": rid[i],
            "destination": rid[j],
            "trips": int(n),
            "ox": float(cx[i]),
            "oy": float(cy[i]),
            "dx": float(cx[j]),
            "dy": float(cy[j]),
        }
        for (i, j), n in pairs
    ]
    moved = ok & (o != d_)
    inflow = np.bincount(d_[moved], minlength=len(rid))
    outflow = np.bincount(o[moved], minlength=len(rid))
    regions = [
        {
            "id": rid[i],
            "name": names[i],
            "x": float(cx[i]),
            "y": float(cy[i]),
            "inflow": int(inflow[i]),
            "outflow": int(outflow[i]),
        }
        for i in range(len(rid))
    ]
    return Flows(od, regions, len(ox), int(table.num_rows))


def road_speeds(
    points: pd.DataFrame, roads: pd.DataFrame, bin: str = "15min", max_m: float = 30.0
) -> pd.DataFrame:
    """Mean speed per road segment and time bin from GPS fixes (``t``, ``x``, ``y``,
    ``speed_kmh``), each moving fix matched to the nearest segment of ``roads``
    (``id``, WKB ``geometry``) within ``max_m`` metres. Returns ``id``, ``t`` (bin start),
    ``speed_kmh``, ``n_points`` (a NETWORK_SERIES frame over the roads).

    Examples
    --------
    >>> import shapely
    >>> roads = pd.DataFrame({"id": [1, 2], "geometry": [
    ...     shapely.to_wkb(shapely.LineString([(116.0, 39.0), (116.01, 39.0)])),
    ...     shapely.to_wkb(shapely.LineString([(116.0, 39.01), (116.01, 39.01)]))]})
    >>> pts = pd.DataFrame({"t": pd.to_datetime(["2026-03-02T08:01Z", "2026-03-02T08:02Z"]),
    ...     "x": [116.005, 116.005], "y": [39.00001, 39.00999], "speed_kmh": [30.0, 50.0]})
    >>> road_speeds(pts, roads)[["id", "speed_kmh"]].values.tolist()
    [[1.0, 30.0], [2.0, 50.0]]
    """
    import shapely

    moving = points.loc[points["speed_kmh"] > 0]
    lines = shapely.from_wkb(np.asarray(roads["geometry"], dtype=object))
    tree = shapely.STRtree(lines)
    lat = float(np.nanmean(moving["y"])) if len(moving) else 0.0
    deg = max_m / 111_320.0 / max(np.cos(np.radians(lat)), 0.1)
    pts = shapely.points(moving["x"].to_numpy(), moving["y"].to_numpy())
    p, r = tree.query_nearest(pts, max_distance=deg, all_matches=False)
    m = moving.iloc[p]
    out = pd.DataFrame(
        {
            "id": np.asarray(roads["id"])[r],
            "t": pd.to_datetime(m["t"].to_numpy(), utc=True).floor(bin),
            "speed": m["speed_kmh"].to_numpy(),
        }
    )
    g = out.groupby(["id", "t"], sort=True)["speed"].agg(["mean", "size"]).reset_index()
    g.columns = pd.Index(["id", "t", "speed_kmh", "n_points"])
    g["n_points"] = g["n_points"].astype("int64")
    return g

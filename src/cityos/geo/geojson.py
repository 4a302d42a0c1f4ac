"""GeoJSON features from Arrow tables, the one builder behind every GeoJSON answer (the
dataset routes' ``format=geojson`` pages and OGC API – Features items): point rows by
their ``x``/``y``, other rows by their WKB ``geometry``, the rest as properties."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import numpy as np
import pyarrow as pa

__all__ = ["SHAPE_COLUMNS", "features", "geometries"]

#: Columns that make a feature's geometry, never its properties.
SHAPE_COLUMNS = ("x", "y", "geometry")


def geometries(table: pa.Table) -> list[dict[str, Any] | None]:
    """The GeoJSON geometry of every row: a ``Point`` from ``x``/``y`` (when the table has
    both and neither is null), else the WKB ``geometry`` decoded, else ``None``.

    Examples
    --------
    >>> import pyarrow as pa, shapely
    >>> t = pa.table({"geometry": [shapely.to_wkb(shapely.LineString([(0, 0), (1, 2)])), None]})
    >>> geometries(t)
    [{'type': 'LineString', 'coordinates': [[0.0, 0.0], [1.0, 2.0]]}, None]
    >>> geometries(pa.table({"x": [116.4, None], "y": [39.9, 40.0]}))
    [{'type': 'Point', 'coordinates': [116.4, 39.9]}, None]
    """
    import shapely

    n = table.num_rows
    out: list[dict[str, Any] | None] = [None] * n
    names = set(table.column_names)
    has_xy = {"x", "y"} <= names
    if has_xy:
        xs, ys = table["x"].to_pylist(), table["y"].to_pylist()
        for i, (x, y) in enumerate(zip(xs, ys, strict=True)):
            if x is not None and y is not None:
                out[i] = {"type": "Point", "coordinates": [x, y]}
    if "geometry" in names:
        wkb = np.asarray(table["geometry"].to_numpy(zero_copy_only=False), dtype=object)
        todo = np.array([out[i] is None and isinstance(wkb[i], bytes) for i in range(n)], bool)
        if todo.any():
            # GEOS writes each coordinate with round-trip precision: parsing it back gives
            # the stored doubles exactly
            texts = shapely.to_geojson(shapely.from_wkb(wkb[todo]))
            for k, text in zip(np.flatnonzero(todo).tolist(), texts, strict=True):
                out[k] = json.loads(text)
    return out


def features(
    table: pa.Table,
    value: Callable[[Any], Any],
    feature_id: Callable[[dict[str, Any]], Any] | None = None,
) -> list[dict[str, Any]]:
    """GeoJSON ``Feature`` objects, one per row of ``table``.

    Parameters
    ----------
    table:
        Rows with ``x``/``y`` (points) or a WKB ``geometry`` column.
    value:
        Turns each property value into its JSON form (the caller's convention for times,
        bytes and non-finite floats).
    feature_id:
        The feature's ``id`` from the row, or ``None`` for features without one.

    Examples
    --------
    >>> import pyarrow as pa
    >>> features(pa.table({"id": [7], "x": [1.0], "y": [2.0], "v": [0.5]}), lambda v: v, lambda r: r["id"])
    [{'type': 'Feature', 'id': 7, 'geometry': {'type': 'Point', 'coordinates': [1.0, 2.0]}, 'properties': {'id': 7, 'v': 0.5}}]
    """
    geoms = geometries(table)
    out: list[dict[str, Any]] = []
    for r, geom in zip(table.to_pylist(), geoms, strict=True):
        props = {k: value(v) for k, v in r.items() if k not in SHAPE_COLUMNS}
        f: dict[str, Any] = {"type": "Feature"}
        if feature_id is not None:
            f["id"] = feature_id(r)
        f["geometry"] = geom
        f["properties"] = props
        out.append(f)
    return out

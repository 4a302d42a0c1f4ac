"""Applying row filters to query results: a role restricted to its own area sees only
rows inside its bbox or polygon, or with a matching column value."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from cityos.access._policy import RowFilter
from cityos.access.errors import PermissionDenied

if TYPE_CHECKING:
    from cityos.store import Restriction

__all__ = ["apply_row_filters", "paths_mask", "restriction_for", "row_filter_mask"]


def _spatial_mask(table: pa.Table, f: RowFilter) -> np.ndarray:
    import shapely

    names = set(table.column_names)
    if f.kind == "bbox":
        minx, miny, maxx, maxy = (float(v) for v in f.spec["bbox"])
        region = shapely.box(minx, miny, maxx, maxy)
    else:
        region = shapely.from_wkt(f.spec["wkt"])
    if {"x", "y"} <= names:
        x = table.column("x").to_numpy(zero_copy_only=False).astype("float64")
        y = table.column("y").to_numpy(zero_copy_only=False).astype("float64")
        if f.kind == "bbox":
            return np.asarray((x >= minx) & (x <= maxx) & (y >= miny) & (y <= maxy))
        shapely.prepare(region)
        return np.asarray(shapely.intersects_xy(region, x, y))
    if "geometry" in names:
        wkb = table.column("geometry").to_pylist()
        geoms = shapely.from_wkb(np.array(wkb, dtype=object))
        return np.asarray(shapely.intersects(geoms, region), dtype=bool)
    raise PermissionDenied(
        f"your role is restricted to an area ({f.describe()}) but this result has no "
        "coordinates to check it against; ask for a grant without a row filter"
    )


def row_filter_mask(table: pa.Table, f: RowFilter) -> np.ndarray:
    """Boolean mask of the rows of ``table`` that ``f`` lets through."""
    if f.kind == "column":
        col = f.spec["column"]
        if col not in table.column_names:
            raise PermissionDenied(
                f"your role is restricted to rows with {col!r} in {f.spec['values']} but this "
                f"result has no {col!r} column; ask for a grant without a row filter"
            )
        column = table.column(col)
        values = pa.array(f.spec["values"])
        if values.type != column.type:
            try:
                values = pc.cast(values, column.type)
            except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
                values = pa.array([str(v) for v in f.spec["values"]])
                column = pc.cast(column, pa.string())
        return np.asarray(
            pc.fill_null(pc.is_in(column, value_set=values), False).to_numpy(zero_copy_only=False),
            dtype=bool,
        )
    return _spatial_mask(table, f)


def apply_row_filters(
    table: pa.Table, paths: Sequence[Sequence[RowFilter]]
) -> tuple[pa.Table, int]:
    """Rows matching all filters of at least one path; returns ``(table, rows_removed)``.

    Examples
    --------
    >>> t = pa.table({"x": [1.0, 5.0], "y": [1.0, 5.0]})
    >>> out, removed = apply_row_filters(t, [[RowFilter("bbox", {"bbox": [0, 0, 2, 2]})]])
    >>> out.column("x").to_pylist(), removed
    ([1.0], 1)
    """
    out = table.filter(pa.array(paths_mask(table, paths)))
    return out, table.num_rows - out.num_rows


def paths_mask(table: pa.Table, paths: Sequence[Sequence[RowFilter]]) -> np.ndarray:
    """Rows of ``table`` matching all filters of at least one path."""
    keep = np.zeros(table.num_rows, dtype=bool)
    for path in paths:
        m = np.ones(table.num_rows, dtype=bool)
        for f in path:
            m &= row_filter_mask(table, f)
        keep |= m
    return keep


@dataclass(frozen=True)
class _PathsMask:
    """A picklable mask over row-filter paths (Spark ships it to its workers)."""

    paths: tuple[tuple[RowFilter, ...], ...]

    def __call__(self, table: pa.Table) -> np.ndarray:
        return paths_mask(table, self.paths)


def restriction_for(paths: Sequence[Sequence[RowFilter]]) -> Restriction:
    """The store-level :class:`~cityos.store.Restriction` of row-filter paths: engines
    apply it to every row they read of the dataset, before joins and aggregates."""
    from cityos.store import Restriction

    frozen = tuple(tuple(p) for p in paths)
    columns = frozenset(str(f.spec["column"]) for p in frozen for f in p if f.kind == "column")
    spatial = any(f.kind != "column" for p in frozen for f in p)
    return Restriction(_PathsMask(frozen), columns, spatial)

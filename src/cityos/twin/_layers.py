"""Map layers from store datasets: request parameters (viewport ``bbox``, time window,
``datetime`` intervals), which kind of layer each data model makes, and the Arrow IPC
encoding the dashboard draws from without parsing (flat float64 coordinates, times as
float64 epoch milliseconds).

Every read goes through a :class:`cityos.access.SecureStore`, so what a layer holds is
exactly what the caller may read, row-filtered and masked as the dataset query routes
return it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from cityos.twin.errors import TwinRequestError

__all__ = [
    "ARROW",
    "LayerRequest",
    "arrow_stream",
    "encode_arrow",
    "layer_kind",
    "layer_table",
    "parse_bbox",
    "parse_datetime",
    "parse_time",
]

ARROW = "application/vnd.apache.arrow.stream"
#: Most rows one layer request returns; the dashboard asks for less when it can.
MAX_ROWS = 2_000_000

Bbox = tuple[float, float, float, float]


def parse_bbox(text: str | None) -> Bbox | None:
    """``"minx,miny,maxx,maxy"`` as four floats (``None`` when not given).

    Examples
    --------
    >>> parse_bbox("116.3,39.9,116.4,40.0")
    (116.3, 39.9, 116.4, 40.0)
    >>> parse_bbox(None) is None
    True
    """
    if text is None or text == "":
        return None
    parts = text.split(",")
    if len(parts) not in (4, 6):
        raise TwinRequestError(f"bbox must be 'minx,miny,maxx,maxy' (4 numbers), got {text!r}")
    try:
        nums = [float(p) for p in parts]
    except ValueError:
        raise TwinRequestError(f"bbox has a value that is not a number: {text!r}") from None
    if len(nums) == 6:  # OGC 3D bbox: minx,miny,minz,maxx,maxy,maxz
        nums = [nums[0], nums[1], nums[3], nums[4]]
    if not all(math.isfinite(v) for v in nums) or nums[0] > nums[2] or nums[1] > nums[3]:
        raise TwinRequestError(
            f"bbox {text!r} is not minx,miny,maxx,maxy with min <= max and finite numbers"
        )
    return (nums[0], nums[1], nums[2], nums[3])


def parse_time(text: str | None, name: str = "time") -> pd.Timestamp | None:
    """An ISO 8601 instant or epoch milliseconds as a UTC timestamp (``None``, ``""``
    and ``".."`` mean open).

    Examples
    --------
    >>> parse_time("2026-03-02T08:00Z")
    Timestamp('2026-03-02 08:00:00+0000', tz='UTC')
    >>> parse_time("1772438400000")
    Timestamp('2026-03-02 08:00:00+0000', tz='UTC')
    """
    if text is None or text in ("", ".."):
        return None
    try:
        if text.lstrip("-").isdigit():
            return pd.Timestamp(int(text), unit="ms", tz="UTC")
        ts = pd.Timestamp(text)
    except (ValueError, OverflowError):
        raise TwinRequestError(
            f"{name} {text!r} is neither an ISO 8601 time (e.g. 2026-03-02T08:00Z) nor "
            "epoch milliseconds"
        ) from None
    return ts.tz_localize("UTC") if ts.tzinfo is None else ts.tz_convert("UTC")


def parse_datetime(text: str | None) -> tuple[pd.Timestamp | None, pd.Timestamp | None]:
    """OGC API ``datetime``: an instant, or ``start/end`` with ``..`` for an open end.
    Returns the half-open window ``[start, end)`` (an instant ``t`` is ``[t, t + 1 ms)``).

    Examples
    --------
    >>> parse_datetime("2026-03-02T08:00:00Z/..")[1] is None
    True
    >>> s, e = parse_datetime("2026-03-02T08:00:00Z")
    >>> (e - s).value
    1000000
    """
    if text is None or text == "":
        return None, None
    if "/" in text:
        a, _, b = text.partition("/")
        return parse_time(a, "datetime start"), parse_time(b, "datetime end")
    t = parse_time(text, "datetime")
    return t, None if t is None else t + pd.Timedelta(milliseconds=1)


def layer_kind(model: str, geometry_type: str) -> str:
    """How the dashboard draws a data model: ``points``, ``regions``, ``lines``,
    ``series`` (fixed sensors over time), ``moving`` (objects over time), ``network_series``
    (readings per segment of a network) or ``trajectories``.

    Examples
    --------
    >>> layer_kind("point_static", "region"), layer_kind("point_st", "point")
    ('regions', 'moving')
    """
    if model == "point_series":
        return "series"
    if model == "point_st":
        return "moving"
    if model == "network_series":
        return "network_series"
    if model == "network_st":
        return "trajectories"
    if model == "table":
        return "table"
    if geometry_type == "region":
        return "regions"
    if geometry_type == "line" or model == "network_static":
        return "lines"
    return "points"


@dataclass(frozen=True)
class LayerRequest:
    """One layer read: a viewport, a time window and a row cap."""

    bbox: Bbox | None = None
    start: pd.Timestamp | None = None
    end: pd.Timestamp | None = None
    limit: int | None = None
    columns: tuple[str, ...] | None = None

    def scan_kwargs(self, has_geometry: bool, has_time: bool) -> dict[str, Any]:
        kw: dict[str, Any] = {}
        if self.bbox is not None and has_geometry:
            kw["geometry"] = self.bbox
        if has_time:
            if self.start is not None:
                kw["start"] = self.start
            if self.end is not None:
                kw["end"] = self.end
        return kw


#: Columns every layer keeps, whatever ``columns`` asks for: identity, time and shape.
_ALWAYS = ("id", "t", "x", "y", "geometry")


def _projection(schema: Any, columns: tuple[str, ...] | None) -> list[str] | None:
    """The stored columns a layer request needs, in the dataset's column order, or
    ``None`` (read them all) when no projection was asked for or it names a column the
    schema does not declare (then the answer keeps whatever the files hold, as before)."""
    if not columns:
        return None
    known = list(dict.fromkeys([*schema.canonical_columns, *(f.name for f in schema.fields)]))
    if any(c not in known for c in columns):
        return None
    return [c for c in known if c in columns or c in _ALWAYS]


def layer_table(secure: Any, dataset: str, req: LayerRequest) -> tuple[pa.Table, list[str], int]:
    """The rows of ``dataset`` for ``req`` as the caller may see them.

    Returns ``(table, masked columns, total rows before the limit)``. Moving objects and
    series come sorted by ``(id, t)`` so each object's points are contiguous (a path).
    A network series without geometry is filtered to the segments of its network inside
    the bbox. Only the asked-for columns (with id, time and shape) are read from the store.
    """
    info = secure.describe(dataset)
    schema = info.schema
    model = str(schema.model)
    has_time = schema.model.has_time
    kw = req.scan_kwargs(schema.model.has_geometry, has_time)
    cols = _projection(schema, req.columns)
    if cols is not None:
        kw["columns"] = cols
    res = secure.scan(dataset, **kw)
    table: pa.Table = res.table
    if req.bbox is not None and not schema.model.has_geometry and schema.network:
        net = secure.scan(schema.network, geometry=req.bbox, columns=["id"]).table
        table = table.filter(pc.is_in(table["id"], value_set=net["id"].cast(table["id"].type)))
    if (
        "t" in table.column_names
        and model in ("point_st", "point_series", "network_series")
        and tuple(schema.key[:2]) != ("id", "t")
    ):
        # the store answers in key order: only a dataset keyed otherwise needs sorting
        table = table.sort_by([("id", "ascending"), ("t", "ascending")])
    total = table.num_rows
    if req.limit is not None and total > req.limit:
        table = table.slice(0, req.limit)
    if req.columns:
        keep = [c for c in table.column_names if c in req.columns or c in ("id", "t", "x", "y")]
        keep += [c for c in ("geometry",) if c in table.column_names and c not in keep]
        table = table.select(keep)
    masked = list(res.masked)
    if cols is not None:
        # the columns left unread are masked for this caller all the same: say so, as the
        # full layer would
        dec = secure.can_read(dataset)
        masked = [
            f.name
            for f in schema.fields
            if f.personal and (f.name in masked or not dec.shows(f.personal))
        ]
    return table, masked, total


def _flat_paths(wkb: pa.ChunkedArray | pa.Array) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """WKB geometries to flat (x, y) paths: line strings as they are, polygons by their
    outer ring, multi-geometries one path per part. Returns (row of each path, offsets
    into the coordinate pairs, interleaved float64 xy)."""
    import shapely

    geoms = shapely.from_wkb(np.asarray(wkb.to_numpy(zero_copy_only=False), dtype=object))
    parts, row = shapely.get_parts(geoms, return_index=True)
    kinds = shapely.get_type_id(parts)
    polys = kinds == 3
    if polys.any():
        parts = parts.copy()
        parts[polys] = shapely.get_exterior_ring(parts[polys])
    coords, which = shapely.get_coordinates(parts, return_index=True)
    counts = np.bincount(which, minlength=len(parts))
    offsets = np.zeros(len(parts) + 1, dtype=np.int32)
    np.cumsum(counts, out=offsets[1:])
    return row.astype(np.int64), offsets, coords.reshape(-1).astype(np.float64)


def encode_arrow(table: pa.Table, *, metadata: dict[str, str] | None = None) -> bytes:
    """The Arrow IPC stream the dashboard reads: timestamps as float64 epoch ms, a WKB
    ``geometry`` column replaced by ``path`` (list of interleaved float64 x, y; one row
    per line, polygon outer ring or part of a multi-geometry).

    Examples
    --------
    >>> import pyarrow as pa, shapely
    >>> t = pa.table({"id": [1], "geometry": [shapely.to_wkb(shapely.LineString([(0, 0), (1, 2)]))]})
    >>> r = pa.ipc.open_stream(encode_arrow(t)).read_all()
    >>> r.column_names, r["path"][0].as_py()
    (['id', 'path'], [0.0, 0.0, 1.0, 2.0])
    """
    return bytes(arrow_stream(table, metadata=metadata).to_pybytes())


def arrow_stream(table: pa.Table, *, metadata: dict[str, str] | None = None) -> pa.Buffer:
    """:func:`encode_arrow` as an Arrow buffer, which a response sends without copying."""
    cols: dict[str, pa.Array | pa.ChunkedArray] = {}
    rows: np.ndarray | None = None
    path: pa.Array | None = None
    for name in table.column_names:
        col = table[name]
        if name == "geometry" and pa.types.is_binary(col.type):
            rows, offsets, flat = _flat_paths(col)
            path = pa.ListArray.from_arrays(pa.array(offsets * 2, pa.int32()), pa.array(flat))
            continue
        if pa.types.is_timestamp(col.type):
            if col.type.unit != "ms":
                col = pc.cast(col, pa.timestamp("ms", tz="UTC"))
            col = pc.cast(col, pa.int64()).cast(pa.float64())
        elif pa.types.is_dictionary(col.type):
            col = col.cast(col.type.value_type)
        cols[name] = col
    out = pa.table(cols) if cols else pa.table({})
    if rows is not None and path is not None:
        out = out.take(pa.array(rows)) if out.num_columns else pa.table({})
        out = out.append_column("path", path) if out.num_columns else pa.table({"path": path})
    out = out.replace_schema_metadata(metadata or {})
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, out.schema) as writer:
        writer.write_table(out, max_chunksize=1 << 20)
    buf: pa.Buffer = sink.getvalue()
    return buf

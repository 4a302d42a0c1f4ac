"""Physical layout of datasets: partitioning, space-filling-curve order, row groups,
per-model encodings and GeoParquet metadata.

Points (``point_series``, ``point_st``, point ``point_static``) are time-partitioned and
ordered by a Z2T key (time bin, then Z-order of the location); the ordered rows are cut
into small row groups, and inside each row group rows are re-sorted by (object, time).
Pruning only needs a row group's bounding box and time range, which the Z2T order keeps
tight, while the (object, time) order inside makes consecutive values near each other:
ids run-length encode, times delta-encode to almost nothing, and coordinates snapped to a
binary fixed-point grid (2^-23 degree, about 1 cm) compress with BYTE_STREAM_SPLIT + zstd.
Objects with extent use an XZ2(T) key on their bounding box and a GeoParquet covering
``bbox`` column; trajectories are stored one row per segment with native (GeoArrow)
linestring coordinates and delta-encoded per-point times.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from cityos.geo.crs import _crs
from cityos.geo.sfc import xz2_key, z2_key
from cityos.model import (
    GEOM_COL,
    ID_COL,
    TIME_COL,
    TIME_END_COL,
    X_COL,
    Y_COL,
    DatasetSchema,
    GeometryType,
    ModelKind,
)
from cityos.store._catalog import SPAN_DTYPE, SPANS_MARK, RowGroupStats

__all__ = [
    "BBOX_COL",
    "Layout",
    "PhysicalPart",
    "decode",
    "hash_ids",
    "layout_for",
]

BBOX_COL = "bbox"
TS = pa.timestamp("ms", tz="UTC")
_GEOM_TYPE_NAMES = {
    GeometryType.POINT: ["Point"],
    GeometryType.LINE: ["LineString", "MultiLineString"],
    GeometryType.REGION: ["Polygon", "MultiPolygon"],
    GeometryType.ANY: [],
}


def hash_values(values: pa.ChunkedArray | pa.Array | np.ndarray) -> np.ndarray:
    """64-bit hashes of ids or key values, stable across processes. Strings are hashed once
    per distinct value through a dictionary encoding, which is much faster than per row."""
    if isinstance(values, np.ndarray):
        if values.dtype.kind in "iuf":
            h: np.ndarray = pd.util.hash_array(values.astype("int64"))
            return h
        values = pa.array(values.astype(str))
    if isinstance(values, pa.ChunkedArray):
        values = values.combine_chunks()
    if pa.types.is_timestamp(values.type) or pa.types.is_integer(values.type):
        out: np.ndarray = pd.util.hash_array(values.cast(pa.int64()).to_numpy(zero_copy_only=False))
        return out
    if not (pa.types.is_string(values.type) or pa.types.is_large_string(values.type)):
        values = values.cast(pa.string())
    enc = values.dictionary_encode()
    dh = pd.util.hash_array(enc.dictionary.to_numpy(zero_copy_only=False).astype(object))
    idx = enc.indices.to_numpy(zero_copy_only=False)
    res: np.ndarray = dh[idx]
    return res


def hash_ids(ids: pa.ChunkedArray | pa.Array | np.ndarray) -> np.ndarray:
    """32-bit hashes of object ids (strings or integers), stable across processes."""
    return (hash_values(ids) >> np.uint64(32)).astype(np.uint32)


def _ms(d: str) -> int:
    return int(pd.Timedelta(d).total_seconds() * 1000)


def quantum(schema: DatasetSchema) -> float:
    """Coordinate grid of the dataset: a power of two, so stored doubles have zero low bits."""
    q = schema.extra.get("quantum")
    if q is not None:
        return float(q)
    return 2.0**-23 if schema.geographic else 2.0**-7


def key_bounds(schema: DatasetSchema) -> tuple[float, float, float, float]:
    if schema.geographic:
        return (-180.0, -90.0, 180.0, 90.0)
    aou = _crs(schema.crs).area_of_use
    if aou is not None:
        from cityos.geo.crs import transform_xy

        xs, ys = transform_xy(
            np.array([aou.west, aou.east, aou.west, aou.east]),
            np.array([aou.south, aou.south, aou.north, aou.north]),
            "EPSG:4326",
            schema.crs,
        )
        if np.isfinite(xs).all() and np.isfinite(ys).all():
            return (float(xs.min()), float(ys.min()), float(xs.max()), float(ys.max()))
    return (-2.0e7, -2.0e7, 2.0e7, 2.0e7)


@dataclass
class PhysicalPart:
    """One file's worth of rows, in stored order, with its row-group statistics."""

    partition: str
    table: pa.Table
    row_groups: list[RowGroupStats]


def _partition_label(p: int, pms: int) -> str:
    return str(pd.Timestamp(p * pms, unit="ms", tz="UTC").strftime("%Y%m%dT%H%M"))


def _bits(n: int) -> int:
    return max(1, int(n).bit_length())


def id_codes(ids: pa.ChunkedArray | pa.Array) -> np.ndarray:
    """Integer codes of ids that order them by value (equal ids share a code)."""
    arr = ids.combine_chunks() if isinstance(ids, pa.ChunkedArray) else ids
    enc = pc.dictionary_encode(arr)
    dic = enc.dictionary.to_numpy(zero_copy_only=False)
    rank = np.empty(len(dic), dtype=np.int64)
    rank[np.argsort(dic, kind="stable")] = np.arange(len(dic))
    idx = enc.indices.to_numpy(zero_copy_only=False)
    out: np.ndarray = rank[idx] if len(idx) else idx.astype(np.int64)
    return out


def _order_within_groups(group: np.ndarray, codes: np.ndarray, t: np.ndarray | None) -> np.ndarray:
    """Permutation sorting rows by (group, id code, t), with one argsort when the key fits 63 bits.
    Keys are unique per (group, id, t), so an unstable sort gives the same order."""
    gb = _bits(int(group.max()) if len(group) else 0)
    ib = _bits(int(codes.max()) if len(codes) else 0)
    if t is None:
        if gb + ib <= 63:
            return np.argsort((group << ib) | codes)
        return np.lexsort((codes, group))
    tr = t - t.min() if len(t) else t
    tb = _bits(int(tr.max()) if len(tr) else 0)
    if gb + ib + tb <= 63:
        return np.argsort((group << (ib + tb)) | (codes << tb) | tr)
    return np.lexsort((t, codes, group))


def _rg_stats(
    rows: int,
    rg_size: int,
    t0: np.ndarray | None,
    t1: np.ndarray | None,
    x0: np.ndarray | None,
    y0: np.ndarray | None,
    x1: np.ndarray | None,
    y1: np.ndarray | None,
    hashes: np.ndarray,
    codes: np.ndarray,
) -> list[RowGroupStats]:
    """Statistics of consecutive ``rg_size``-row groups, vectorised over groups. The id hashes
    of a group are read at the starts of runs of equal ids, so sorted groups cost little."""
    starts = np.arange(0, rows, rg_size)
    if rows == 0:
        return []

    def ext(a: np.ndarray | None, fn: Any) -> list[Any]:
        return [None] * len(starts) if a is None else fn.reduceat(a, starts).tolist()

    cols = [
        ext(t0, np.minimum),
        ext(t1, np.maximum),
        ext(x0, np.minimum),
        ext(y0, np.minimum),
        ext(x1, np.maximum),
        ext(y1, np.maximum),
    ]
    run = np.ones(rows, dtype=bool)
    run[1:] = codes[1:] != codes[:-1]
    run[starts] = True
    run_pos = np.flatnonzero(run)
    sizes = np.diff(np.append(starts, rows))
    if t0 is None or t1 is None:
        cut = np.searchsorted(run_pos, starts[1:])
        blobs = [np.unique(h).tobytes() for h in np.split(hashes[run_pos], cut)]
    else:
        blobs = _id_spans(starts, run_pos, hashes[run_pos], t0, t1, rows)
    return [
        RowGroupStats(
            rg=i,
            rows=int(sizes[i]),
            t_min=cols[0][i],
            t_max=cols[1][i],
            x_min=cols[2][i],
            y_min=cols[3][i],
            x_max=cols[4][i],
            y_max=cols[5][i],
            id_hashes=blobs[i],
        )
        for i in range(len(starts))
    ]


def _id_spans(
    starts: np.ndarray,
    run_pos: np.ndarray,
    run_hash: np.ndarray,
    t0: np.ndarray,
    t1: np.ndarray,
    rows: int,
) -> list[bytes]:
    """Per row group, each id's hash with the seconds (from the group's first time) in which
    it appears, widened to whole seconds so pruning by them stays conservative."""
    run_t0 = np.minimum.reduceat(t0, run_pos)
    run_t1 = np.maximum.reduceat(t1, run_pos)
    run_rg = np.searchsorted(starts, run_pos, side="right") - 1
    # one entry per (group, id): merge repeated runs of the same id in a group
    order = np.lexsort((run_hash, run_rg))
    g, h, a, b = run_rg[order], run_hash[order], run_t0[order], run_t1[order]
    first = np.ones(len(g), dtype=bool)
    first[1:] = (g[1:] != g[:-1]) | (h[1:] != h[:-1])
    pos = np.flatnonzero(first)
    g, h = g[pos], h[pos]
    a, b = np.minimum.reduceat(a, pos), np.maximum.reduceat(b, pos)
    base = np.minimum.reduceat(t0, starts)[g]
    rec = np.empty(len(pos), dtype=SPAN_DTYPE)
    rec["h"] = h
    rec["t0"] = np.floor_divide(a - base, 1000)
    rec["t1"] = -np.floor_divide(-(b - base), 1000)
    cut = np.searchsorted(g, np.arange(1, len(starts)))
    return [SPANS_MARK + part.tobytes() for part in np.split(rec, cut)]


def geo_metadata(
    schema: DatasetSchema, encoding: str, bbox: list[float] | None, covering: bool
) -> bytes:
    crs = _crs(schema.crs)
    col: dict[str, Any] = {
        "encoding": encoding,
        "geometry_types": _GEOM_TYPE_NAMES[schema.geometry_type]
        if encoding == "WKB"
        else (["Point"] if encoding == "point" else ["LineString"]),
        "crs": json.loads(crs.to_json()),
    }
    if bbox is not None and all(np.isfinite(bbox)):
        col["bbox"] = bbox
    if covering:
        col["covering"] = {"bbox": {k: [BBOX_COL, k] for k in ("xmin", "ymin", "xmax", "ymax")}}
    return json.dumps(
        {"version": "1.1.0", "primary_column": GEOM_COL, "columns": {GEOM_COL: col}}
    ).encode()


class Layout:
    """How one model's canonical rows become stored rows, and back."""

    def __init__(self, schema: DatasetSchema) -> None:
        self.schema = schema
        self.rg_size = schema.row_group_rows
        self.pms = _ms(schema.time_partition)
        self.bms = _ms(schema.time_bin)

    # -- writing -------------------------------------------------------------------------
    def encode(self, tbl: pa.Table) -> Iterator[PhysicalPart]:
        """The rows as stored, one part (file) per time partition, produced one at a time so a
        caller can write a part while the next is being sorted."""
        raise NotImplementedError

    def _split_partitions(
        self, t: np.ndarray | None, n: int
    ) -> tuple[np.ndarray, list[tuple[str, np.ndarray]]]:
        """Partition number per row and, per partition, the row positions (``n`` rows)."""
        if t is None or not self.schema.model.has_time:
            return np.zeros(n, dtype=np.int64), [("static", np.arange(n))]
        part = np.floor_divide(t, self.pms)
        uniq, inv = np.unique(part, return_inverse=True)
        order = np.argsort(inv, kind="stable")
        bounds = np.searchsorted(inv[order], np.arange(len(uniq) + 1))
        return part, [
            (_partition_label(int(p), self.pms), order[bounds[i] : bounds[i + 1]])
            for i, p in enumerate(uniq)
        ]

    def parquet_options(self, table: pa.Table) -> dict[str, Any]:
        """Encodings per column: dictionary for strings, delta for integers and times,
        byte-stream-split for floating point."""
        dict_cols: list[str] = []
        enc: dict[str, str] = {}

        def visit(name: str, typ: pa.DataType) -> None:
            if pa.types.is_struct(typ):
                for f in typ:
                    visit(f"{name}.{f.name}", f.type)
            elif pa.types.is_list(typ) or pa.types.is_large_list(typ):
                visit(f"{name}.list.element", typ.value_type)
            elif (
                pa.types.is_string(typ)
                or pa.types.is_large_string(typ)
                or pa.types.is_dictionary(typ)
            ):
                dict_cols.append(name)
            elif pa.types.is_floating(typ):
                enc[name] = "BYTE_STREAM_SPLIT"
            elif (pa.types.is_integer(typ) and typ.bit_width >= 32) or pa.types.is_timestamp(typ):
                enc[name] = "DELTA_BINARY_PACKED"

        for f in table.schema:
            visit(f.name, f.type)
        return {
            "compression": "zstd",
            "compression_level": 3,
            "use_dictionary": dict_cols,
            "column_encoding": enc,
            "row_group_size": self.rg_size,
            "write_statistics": True,
            "data_page_size": 64 * 1024,
        }

    # -- reading ---------------------------------------------------------------------------
    def decode(self, tbl: pa.Table) -> pa.Table:
        return tbl


class PointLayout(Layout):
    """Z2T order for points; coordinates in a GeoArrow ``point`` struct column."""

    def encode(self, tbl: pa.Table) -> Iterator[PhysicalPart]:
        s = self.schema
        q = quantum(s)
        x = np.round(tbl[X_COL].to_numpy() / q) * q
        y = np.round(tbl[Y_COL].to_numpy() / q) * q
        has_t = s.model.has_time
        t = tbl[TIME_COL].cast(pa.int64()).to_numpy() if has_t else None
        _, parts = self._split_partitions(t, tbl.num_rows)
        z = z2_key(x, y, key_bounds(s)) >> np.uint64(22)  # 20 bits per axis: ~40 m cells
        codes = id_codes(tbl[ID_COL])
        hashes = hash_ids(tbl[ID_COL])
        plans: list[tuple[str, np.ndarray]] = []
        for label, rows in parts:
            if has_t:
                assert t is not None
                tp = t[rows]
                tbin = ((tp - (tp.min() // self.pms) * self.pms) // self.bms).astype(np.uint64)
                key = (tbin << np.uint64(40)) | z[rows]
                tsub: np.ndarray | None = tp
            else:
                key = z[rows]
                tsub = None
            # ties in the key are re-ordered by (id, t) inside each group: no need for stability
            o1 = np.argsort(key)
            rows1 = rows[o1]
            group = np.arange(len(rows1), dtype=np.int64) // self.rg_size
            o2 = _order_within_groups(group, codes[rows1], None if tsub is None else tsub[o1])
            plans.append((label, rows1[o2]))
        # one reorder of every column for all partitions (a take per column per partition
        # on a many-chunk table cost most of an append), then zero-copy slices per partition
        perm = np.concatenate([f for _, f in plans]) if plans else np.empty(0, np.int64)
        ordered = tbl.combine_chunks().take(pa.array(perm))
        xo, yo = x[perm], y[perm]
        to = None if t is None else t[perm]
        ho, co = hashes[perm], codes[perm]
        off = 0
        for label, final in plans:
            n = len(final)
            sl = slice(off, off + n)
            yield self._build(
                ordered.slice(off, n),
                None,
                xo[sl],
                yo[sl],
                None if to is None else to[sl],
                label,
                ho[sl],
                co[sl],
            )
            off += n

    def _build(
        self,
        tbl: pa.Table,
        rows: np.ndarray | None,
        x: np.ndarray,
        y: np.ndarray,
        t: np.ndarray | None,
        label: str,
        hashes: np.ndarray,
        codes: np.ndarray,
    ) -> PhysicalPart:
        """One partition's file: ``rows`` of ``tbl`` (and of ``x``, ``y``, ``t``), or, with
        ``rows`` None, ``tbl`` and the arrays as they are (already in order)."""
        idx = None if rows is None else pa.array(rows)

        def pick(c: str) -> pa.Array | pa.ChunkedArray:
            return tbl[c] if idx is None else tbl[c].take(idx)

        xs, ys = (x, y) if rows is None else (x[rows], y[rows])
        cols: dict[str, pa.Array | pa.ChunkedArray] = {ID_COL: pick(ID_COL)}
        if t is not None:
            cols[TIME_COL] = pick(TIME_COL)
        cols[GEOM_COL] = pa.StructArray.from_arrays([pa.array(xs), pa.array(ys)], names=["x", "y"])
        for c in tbl.column_names:
            if c not in (ID_COL, TIME_COL, X_COL, Y_COL):
                cols[c] = pick(c)
        phys = pa.table(cols)
        bbox = (
            [float(xs.min()), float(ys.min()), float(xs.max()), float(ys.max())]
            if len(xs)
            else None
        )
        phys = phys.replace_schema_metadata(
            {b"geo": geo_metadata(self.schema, "point", bbox, False)}
        )
        ts = None if t is None else (t if rows is None else t[rows])
        stats = _rg_stats(len(xs), self.rg_size, ts, ts, xs, ys, xs, ys, hashes, codes)
        return PhysicalPart(label, phys, stats)

    def decode(self, tbl: pa.Table) -> pa.Table:
        if GEOM_COL not in tbl.column_names:
            return tbl
        # the struct's fields chunk by chunk (zero-copy), not a copy of every chunk first
        g = tbl[GEOM_COL]
        i = tbl.column_names.index(GEOM_COL)
        tbl = tbl.remove_column(i)
        tbl = tbl.add_column(i, Y_COL, pc.struct_field(g, "y"))
        return tbl.add_column(i, X_COL, pc.struct_field(g, "x"))


class ExtentLayout(Layout):
    """XZ2(T) order for objects with extent; WKB geometry plus a GeoParquet covering bbox."""

    def _bounds(self, tbl: pa.Table) -> np.ndarray:
        import shapely

        return np.asarray(
            shapely.bounds(shapely.from_wkb(tbl[GEOM_COL].to_numpy(zero_copy_only=False)))
        )

    def encode(self, tbl: pa.Table) -> Iterator[PhysicalPart]:
        s = self.schema
        b = self._bounds(tbl)
        has_t = s.model.has_time
        t = tbl[TIME_COL].cast(pa.int64()).to_numpy() if has_t else None
        t_end = (
            tbl[TIME_END_COL].cast(pa.int64()).to_numpy() if TIME_END_COL in tbl.column_names else t
        )
        _, parts = self._split_partitions(t, tbl.num_rows)
        xz = xz2_key(b[:, 0], b[:, 1], b[:, 2], b[:, 3], key_bounds(s))
        codes = id_codes(tbl[ID_COL])
        hashes = hash_ids(tbl[ID_COL])
        for label, rows in parts:
            if has_t and t is not None:
                tp = t[rows]
                tbin = ((tp - (tp.min() // self.pms) * self.pms) // self.bms).astype(np.uint64)
                key = (tbin << np.uint64(40)) | xz[rows]
            else:
                key = xz[rows]
            final = rows[np.argsort(key, kind="stable")]
            yield self._build(tbl, final, b, t, t_end, label, hashes[final], codes[final])

    def _geometry_column(
        self, tbl: pa.Table, idx: pa.Array
    ) -> tuple[pa.Array | pa.ChunkedArray, str]:
        return tbl[GEOM_COL].take(idx), "WKB"

    def _build(
        self,
        tbl: pa.Table,
        rows: np.ndarray,
        b: np.ndarray,
        t: np.ndarray | None,
        t_end: np.ndarray | None,
        label: str,
        hashes: np.ndarray,
        codes: np.ndarray,
    ) -> PhysicalPart:
        idx = pa.array(rows)
        bb = b[rows]
        cols: dict[str, Any] = {}
        for c in tbl.column_names:
            if c == GEOM_COL:
                cols[BBOX_COL] = pa.StructArray.from_arrays(
                    [pa.array(bb[:, i]) for i in range(4)], names=["xmin", "ymin", "xmax", "ymax"]
                )
                cols[GEOM_COL], encoding = self._geometry_column(tbl, idx)
            else:
                cols[c] = tbl[c].take(idx)
        phys = pa.table(cols)
        bbox = (
            [
                float(bb[:, 0].min()),
                float(bb[:, 1].min()),
                float(bb[:, 2].max()),
                float(bb[:, 3].max()),
            ]
            if len(bb)
            else None
        )
        phys = phys.replace_schema_metadata(
            {b"geo": geo_metadata(self.schema, encoding, bbox, True)}
        )
        ts = None if t is None else t[rows]
        te = None if t_end is None else t_end[rows]
        stats = _rg_stats(
            len(rows), self.rg_size, ts, te, bb[:, 0], bb[:, 1], bb[:, 2], bb[:, 3], hashes, codes
        )
        return PhysicalPart(label, phys, stats)

    def decode(self, tbl: pa.Table) -> pa.Table:
        if BBOX_COL in tbl.column_names:
            tbl = tbl.drop_columns([BBOX_COL])
        return tbl


class TrajectoryLayout(ExtentLayout):
    """Trajectory segments: XZ2T order, GeoArrow linestring coordinates on the fixed-point
    grid (byte-stream-split + zstd) and delta-encoded per-point times."""

    def _geometry_column(
        self, tbl: pa.Table, idx: pa.Array
    ) -> tuple[pa.Array | pa.ChunkedArray, str]:
        import shapely

        geoms = shapely.from_wkb(tbl[GEOM_COL].take(idx).to_numpy(zero_copy_only=False))
        coords, index = shapely.get_coordinates(geoms, return_index=True)
        q = quantum(self.schema)
        coords = np.round(coords / q) * q
        counts = np.bincount(index, minlength=len(geoms))
        offsets = np.concatenate([[0], np.cumsum(counts)]).astype(np.int32)
        pts = pa.StructArray.from_arrays(
            [pa.array(coords[:, 0]), pa.array(coords[:, 1])], names=["x", "y"]
        )
        return pa.ListArray.from_arrays(pa.array(offsets), pts), "linestring"

    def decode(self, tbl: pa.Table) -> pa.Table:
        import shapely

        tbl = super().decode(tbl)
        if GEOM_COL not in tbl.column_names:
            return tbl
        g = tbl[GEOM_COL].combine_chunks()
        offs = g.offsets.to_numpy()
        flat = g.flatten()
        xy = np.column_stack([flat.field("x").to_numpy(), flat.field("y").to_numpy()])
        counts = np.diff(offs)
        index = np.repeat(np.arange(len(counts)), counts)
        lines = shapely.linestrings(xy, indices=index) if len(xy) else np.array([], dtype=object)
        i = tbl.column_names.index(GEOM_COL)
        return tbl.set_column(i, GEOM_COL, pa.array(shapely.to_wkb(lines), type=pa.binary()))


class TableLayout(Layout):
    """Plain tables and network time series: time-partitioned when timed, sorted by id then time."""

    def encode(self, tbl: pa.Table) -> Iterator[PhysicalPart]:
        has_t = self.schema.model.has_time or TIME_COL in tbl.column_names
        t = (
            tbl[TIME_COL].cast(pa.int64()).to_numpy()
            if has_t and TIME_COL in tbl.column_names
            else None
        )
        _, parts = self._split_partitions(t if self.schema.model.has_time else None, tbl.num_rows)
        if not self.schema.model.has_time:
            parts = [("static", np.arange(tbl.num_rows))]
        codes = id_codes(tbl[ID_COL])
        hashes = hash_ids(tbl[ID_COL])
        for label, rows in parts:
            o = _order_within_groups(
                np.zeros(len(rows), dtype=np.int64), codes[rows], None if t is None else t[rows]
            )
            final = rows[o]
            phys = tbl.take(pa.array(final))
            ts = None if t is None else t[final]
            stats = _rg_stats(
                len(final),
                self.rg_size,
                ts,
                ts,
                None,
                None,
                None,
                None,
                hashes[final],
                codes[final],
            )
            yield PhysicalPart(label, phys, stats)


@lru_cache(maxsize=256)
def layout_for(schema: DatasetSchema) -> Layout:
    """The layout a schema's model uses."""
    if schema.point_layout:
        return PointLayout(schema)
    if schema.model is ModelKind.NETWORK_ST:
        return TrajectoryLayout(schema)
    if schema.model.has_geometry:
        return ExtentLayout(schema)
    return TableLayout(schema)


def decode(schema: DatasetSchema, tbl: pa.Table) -> pa.Table:
    """Stored rows back to the canonical form of :func:`cityos.model.conform`."""
    return layout_for(schema).decode(tbl)

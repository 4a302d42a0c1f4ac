"""The id index: an (id, t)-ordered copy of each point data file, for ID-temporal queries.

Point files are ordered by Z2T (time bin, then place), so one object's hour is spread over
many row groups. Next to each point data file ``part-<uuid>.parquet`` the store writes
``part-<uuid>.parquet.ids``: the same rows ordered by (id, t), with coordinates as integers
on the dataset's fixed-point grid (delta-encoded: consecutive fixes of one object are close,
so they pack into ~15 bits each) in row groups of :data:`ROW_GROUP_ROWS`. One object's
rows in a window are then one or two row groups of that copy.

Correct by construction: data files never change, and every write path (append, delete,
compaction) writes new data files through one function that writes the copy beside each
file before the catalog commit that makes the file visible. So every dataset version's
files each have an exact copy; a query reads the copy only for files of the version it
planned, and falls back to the data file itself when a copy is missing or unusable
(files written before the index existed). ``vacuum`` keeps a copy exactly as long as its
data file.

The copy's key ranges (each row group's first and last id and time) are what a query needs
to choose row groups. They are computed when the copy is written and registered in the
catalog with the data file (:func:`write` returns them, every write path commits them), so
a query gets them with the dataset version's statistics instead of parsing the copy's
footer statistics one row group at a time; the footer itself is parsed only when rows are
read. Copies registered without them (written before) are read the old way.
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass
from itertools import pairwise
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from cityos.model import GEOM_COL, ID_COL, TIME_COL, X_COL, Y_COL, DatasetSchema

__all__ = [
    "ROW_GROUP_ROWS",
    "SUFFIX",
    "IdIndex",
    "build",
    "id_index",
    "index_path",
    "key_ranges",
    "write",
]

#: Suffix of an id-index copy: ``<data file>.ids``.
SUFFIX = ".ids"
#: Rows per row group of the copy (one object's hour of 10 s fixes is 360 rows).
ROW_GROUP_ROWS = 4096
_GX, _GY = "_gx", "_gy"
_META = b"cityos.id_index"


def index_path(rel: str) -> str:
    """Where the id-index copy of data file ``rel`` lives.

    >>> index_path("cars/20260302T0000/part-ab.parquet")
    'cars/20260302T0000/part-ab.parquet.ids'
    """
    return rel + SUFFIX


def base_path(rel: str) -> str | None:
    """The data file an id-index copy belongs to, or None if ``rel`` is not a copy.

    >>> base_path("cars/p/part-ab.parquet.ids")
    'cars/p/part-ab.parquet'
    >>> base_path("cars/p/part-ab.parquet") is None
    True
    """
    return rel[: -len(SUFFIX)] if rel.endswith(".parquet" + SUFFIX) else None


def applies(schema: DatasetSchema) -> bool:
    """Point datasets get an id index (their files are in Z2T order, not by id), unless
    created with ``extra={"id_index": False}`` (about 4 bytes a point less, slower
    ID-temporal queries)."""
    return bool(schema.point_layout) and bool(schema.extra.get("id_index", True))


def build(phys: pa.Table, quantum: float) -> pa.Table | None:
    """The (id, t)-ordered copy of stored point rows ``phys`` (a data file's table), or None
    when the rows have no ids."""
    from cityos.store._layout import _order_within_groups, id_codes

    if ID_COL not in phys.column_names or GEOM_COL not in phys.column_names:
        return None
    n = phys.num_rows
    codes = id_codes(phys[ID_COL])
    t = phys[TIME_COL].cast(pa.int64()).to_numpy() if TIME_COL in phys.column_names else None
    order = _order_within_groups(np.zeros(n, dtype=np.int64), codes, t)
    g = phys[GEOM_COL].combine_chunks()
    x = g.field("x").to_numpy(zero_copy_only=False)[order]
    y = g.field("y").to_numpy(zero_copy_only=False)[order]
    with np.errstate(invalid="ignore", over="ignore"):
        gx, gy = np.round(x / quantum), np.round(y / quantum)
    # integers only where they give the stored doubles back bit for bit
    grid = bool(
        np.isfinite(gx).all()
        and np.isfinite(gy).all()
        and np.abs(gx).max(initial=0) < 2**53
        and np.abs(gy).max(initial=0) < 2**53
        and np.array_equal(gx * quantum, x)
        and np.array_equal(gy * quantum, y)
    )
    idx = pa.array(order)
    cols: dict[str, Any] = {}
    for c in phys.column_names:
        if c == GEOM_COL:
            if grid:
                cols[_GX] = pa.array(gx.astype(np.int64))
                cols[_GY] = pa.array(gy.astype(np.int64))
            else:
                cols[X_COL] = pa.array(x)
                cols[Y_COL] = pa.array(y)
        else:
            cols[c] = phys[c].take(idx)
    out = pa.table(cols)
    meta = {_META: (f"grid:{quantum!r}" if grid else "float").encode()}
    return out.replace_schema_metadata(meta)


def write(copy: pa.Table, path: Path) -> tuple[int, bytes | None]:
    """Write ``copy`` to ``path`` (via a temporary name, fsynced); returns its size and its
    row groups' key ranges (:func:`key_ranges`, None when they cannot be given exactly)."""
    dict_cols: list[str] = []
    enc: dict[str, str] = {}
    for f in copy.schema:
        typ = f.type
        if pa.types.is_string(typ) or pa.types.is_large_string(typ) or pa.types.is_dictionary(typ):
            dict_cols.append(f.name)
        elif pa.types.is_floating(typ):
            enc[f.name] = "BYTE_STREAM_SPLIT"
        elif (pa.types.is_integer(typ) and typ.bit_width >= 32) or pa.types.is_timestamp(typ):
            enc[f.name] = "DELTA_BINARY_PACKED"
    rows = ROW_GROUP_ROWS
    tmp = path.with_name("." + path.name + ".tmp")
    try:
        pq.write_table(
            copy,
            tmp,
            compression="zstd",
            compression_level=3,
            use_dictionary=dict_cols,
            column_encoding=enc,
            row_group_size=rows,
            write_statistics=[c for c in (ID_COL, TIME_COL) if c in copy.column_names],
            data_page_size=64 * 1024,
        )
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        md = pq.read_metadata(tmp)
        # the ranges are cut at every ``rows`` rows: only valid if the writer did the same
        cut = md.num_row_groups == -(-copy.num_rows // rows) and all(
            md.row_group(i).num_rows == min(rows, copy.num_rows - i * rows)
            for i in range(md.num_row_groups)
        )
        ranges = key_ranges(copy, rows) if cut else None
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path.stat().st_size, ranges


def key_ranges(copy: pa.Table, rows: int) -> bytes | None:
    """The first and last id and time (epoch ms) of each ``rows``-row group of ``copy``, as
    the Parquet statistics of the written copy give them (minimum and maximum of the
    non-null values), encoded as one Arrow IPC stream; None when the copy has no ids or a
    group has no non-null id (then the copy cannot be searched by id)."""
    if ID_COL not in copy.column_names or copy.num_rows == 0:
        return None
    n = copy.num_rows
    group = pa.array(np.arange(n, dtype=np.int64) // rows)
    cols: dict[str, Any] = {"g": group, "id": copy[ID_COL]}
    aggs: list[tuple[str, str]] = [("id", "min"), ("id", "max")]
    if TIME_COL in copy.column_names:
        typ = copy.schema.field(TIME_COL).type
        if (pa.types.is_timestamp(typ) and typ.unit == "ms") or pa.types.is_integer(typ):
            cols["t"] = copy[TIME_COL].cast(pa.int64())
        else:  # other units: the footer path converts them
            return None
        aggs += [("t", "min"), ("t", "max")]
    agg = pa.table(cols).group_by("g", use_threads=False).aggregate(aggs).sort_by("g")
    if agg["id_min"].null_count:
        return None
    k = agg.num_rows
    if "t_min" in agg.column_names:
        # a group whose times are all null has no time statistics: it meets every window
        t_min = agg["t_min"].fill_null(-_BIG)
        t_max = agg["t_max"].fill_null(_BIG)
    else:
        t_min = pa.array(np.full(k, -_BIG, dtype=np.int64))
        t_max = pa.array(np.full(k, _BIG, dtype=np.int64))
    meta = (copy.schema.metadata or {}).get(_META)
    out = pa.table(
        {"id_min": agg["id_min"], "id_max": agg["id_max"], "t_min": t_min, "t_max": t_max}
    )
    out = out.replace_schema_metadata({_META: meta} if meta is not None else {})
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, out.schema) as w:
        w.write_table(out)
    return bytes(sink.getvalue().to_pybytes())


@dataclass
class IdIndex:
    """The row-group key ranges of one id-index copy (from the catalog, or from the copy's
    footer), and the copy's footer, parsed when rows are first read."""

    path: str
    id_min: np.ndarray  # object arrays of ids (str or int), one per row group
    id_max: np.ndarray
    t_min: np.ndarray  # int64 ms (full range when the copy has no time)
    t_max: np.ndarray
    quantum: float | None  # None: coordinates stored as doubles
    _metadata: pq.FileMetaData | None = None
    _ordered: bool | None = None

    @property
    def metadata(self) -> pq.FileMetaData:
        """The copy's parsed footer (read once; a data file and its copy never change)."""
        if self._metadata is None:
            self._metadata = pq.read_metadata(self.path)
        return self._metadata

    @property
    def ordered(self) -> bool:
        """Whether the groups' first and last ids both ascend (the copy is sorted by id, so
        they do unless its statistics are missing or inexact); checked once."""
        if self._ordered is None:
            try:
                self._ordered = bool(
                    len(self.id_min) == len(self.id_max)
                    and all(a <= b for a, b in pairwise(self.id_min))
                    and all(a <= b for a, b in pairwise(self.id_max))
                )
            except TypeError:  # None or mixed types among the statistics
                self._ordered = False
        return self._ordered

    def row_groups(self, ids: tuple[Any, ...], start: int | None, end: int | None) -> list[int]:
        """Row groups that may hold rows of ``ids`` in [start, end). The copy is sorted by
        id, so each row group covers ids from its first to its last; time statistics
        prune further. Conservative: it may return groups without matches, never miss one."""
        m = np.zeros(len(self.id_min), dtype=bool)
        ordered = self.ordered
        for v in ids:
            try:
                if ordered:
                    # the groups whose id range holds v are contiguous: from the first whose
                    # last id is >= v to the last whose first id is <= v (two binary searches
                    # instead of comparing v with every group's range in Python)
                    lo = int(np.searchsorted(self.id_max, v, "left"))
                    hi = int(np.searchsorted(self.id_min, v, "right"))
                    m[lo:hi] = True
                else:
                    m |= (self.id_min <= v) & (self.id_max >= v)
            except TypeError:  # an id of another type than the stored ones matches nothing
                continue
        if start is not None:
            m &= self.t_max >= start
        if end is not None:
            m &= self.t_min < end
        return np.flatnonzero(m).tolist()

    def read(self, rgs: list[int]) -> pa.Table:
        """The canonical rows (as :func:`cityos.store._layout.decode` gives them) of ``rgs``."""
        # a reader per call (the parsed footer is shared): Arrow's readers are not safe to
        # share between threads, and queries run on many
        pf = pq.ParquetFile(self.path, metadata=self.metadata)
        tbl = pf.read_row_groups(rgs, use_threads=False)
        if self.quantum is None:
            return tbl
        q = self.quantum
        gx = tbl[_GX].to_numpy() * q
        gy = tbl[_GY].to_numpy() * q
        i = tbl.column_names.index(_GX)
        tbl = tbl.drop_columns([_GX, _GY])
        tbl = tbl.add_column(i, Y_COL, pa.array(gy))
        return tbl.add_column(i, X_COL, pa.array(gx))


_cache: dict[str, IdIndex | None] = {}
_lock = threading.Lock()
_BIG = np.iinfo(np.int64).max


def _quantum(meta: bytes) -> float | None:
    text = meta.decode()
    return float(text.split(":", 1)[1]) if text.startswith("grid:") else None


def _from_ranges(path: str, blob: bytes) -> IdIndex | None:
    """The index of the copy at ``path`` from the key ranges the catalog holds for it
    (vectorised: no per-row-group Python); None when the copy is gone."""
    if not os.path.exists(path):
        return None
    with pa.ipc.open_stream(pa.py_buffer(blob)) as r:
        tbl = r.read_all()
    meta = (tbl.schema.metadata or {}).get(_META)
    if meta is None:
        return None
    return IdIndex(
        path,
        tbl["id_min"].to_numpy(zero_copy_only=False).astype(object),
        tbl["id_max"].to_numpy(zero_copy_only=False).astype(object),
        tbl["t_min"].to_numpy(),
        tbl["t_max"].to_numpy(),
        _quantum(meta),
    )


def _load(path: str) -> IdIndex | None:
    """The index of the copy at ``path`` from its own footer statistics (copies registered
    without key ranges)."""
    try:
        pf = pq.ParquetFile(path)
    except (FileNotFoundError, OSError, pa.ArrowInvalid):
        return None
    md = pf.metadata
    meta = (pf.schema_arrow.metadata or {}).get(_META)
    if meta is None:
        return None
    names = pf.schema_arrow.names
    if ID_COL not in names:
        return None
    ci = names.index(ID_COL)
    ti = names.index(TIME_COL) if TIME_COL in names else None
    n = md.num_row_groups
    id_min = np.empty(n, dtype=object)
    id_max = np.empty(n, dtype=object)
    t_min = np.full(n, -_BIG, dtype=np.int64)
    t_max = np.full(n, _BIG, dtype=np.int64)
    for i in range(n):
        rg = md.row_group(i)
        st = rg.column(ci).statistics
        if st is None or not st.has_min_max:
            return None  # without id ranges the copy cannot be searched: use the data file
        id_min[i], id_max[i] = st.min, st.max
        if ti is not None:
            ts = rg.column(ti).statistics
            if ts is not None and ts.has_min_max:
                t_min[i] = _ms(ts.min)
                t_max[i] = _ms(ts.max)
    return IdIndex(path, id_min, id_max, t_min, t_max, _quantum(meta), md)


def _ms(v: Any) -> int:
    if hasattr(v, "timestamp") and not isinstance(v, int | np.integer):
        import pandas as pd

        return int(pd.Timestamp(v).value // 10**6)
    return int(v)


def id_index(path: str, ranges: bytes | None = None) -> IdIndex | None:
    """The id index of data file ``path`` (absolute), or None when it has none: from the
    key ranges the catalog registered with the file (``ranges``) when given, else from the
    copy's footer. Cached per process: a data file and its copy never change."""
    key = index_path(path)
    if key in _cache:
        return _cache[key]
    idx = _from_ranges(key, ranges) if ranges is not None else _load(key)
    with _lock:
        if len(_cache) > 4096:
            _cache.clear()
        _cache[key] = idx
    return idx

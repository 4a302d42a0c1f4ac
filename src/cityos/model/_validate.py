"""Conform incoming records to a dataset schema: canonical columns and types, and every
problem reported with the dataset, row, record key and field."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from cityos.errors import ValidationError
from cityos.geo.crs import _crs
from cityos.model._schema import (
    EDGES_COL,
    FROM_COL,
    GEOM_COL,
    ID_COL,
    TIME_COL,
    TIME_END_COL,
    TIMES_COL,
    TO_COL,
    TRAJ_COL,
    X_COL,
    Y_COL,
    DatasetSchema,
    GeometryType,
    ModelKind,
)

__all__ = ["conform", "to_arrow_table"]

TS_TYPE = pa.timestamp("ms", tz="UTC")
MIN_TIME = pd.Timestamp("1970-01-01", tz="UTC")
MAX_TIME = pd.Timestamp("2100-01-01", tz="UTC")
_MAX_PROBLEMS = 1000

_GEOM_TYPES = {
    GeometryType.POINT: {"Point", "MultiPoint"},
    GeometryType.LINE: {"LineString", "MultiLineString"},
    GeometryType.REGION: {"Polygon", "MultiPolygon"},
}


def to_arrow_table(data: Any) -> pa.Table:
    """Accept a pyarrow Table, pandas/GeoPandas DataFrame or list of dicts."""
    if isinstance(data, pa.Table):
        return data
    if isinstance(data, pa.RecordBatch):
        return pa.Table.from_batches([data])
    if isinstance(data, list):
        names: dict[str, None] = {}
        for rec in data:
            if not isinstance(rec, dict):
                raise ValidationError(f"records must be objects (dicts), got {type(rec).__name__}")
            names.update(dict.fromkeys(rec))
        return pa.table({n: _lenient_array([rec.get(n) for rec in data]) for n in names})
    if isinstance(data, pd.DataFrame):
        try:
            import geopandas as gpd

            if isinstance(data, gpd.GeoDataFrame):
                gcol = data.geometry.name
                df = pd.DataFrame(data.drop(columns=[gcol]))
                df[GEOM_COL] = data.geometry.to_wkb()
                return pa.Table.from_pandas(df, preserve_index=False)
        except ImportError:  # pragma: no cover - geopandas is a dependency
            pass
        try:
            return pa.Table.from_pandas(data, preserve_index=False)
        except (pa.ArrowInvalid, pa.ArrowTypeError, TypeError):
            return pa.table({str(c): _lenient_array(data[c].tolist()) for c in data.columns})
    raise ValidationError(
        f"cannot read records from {type(data).__name__}; pass a pyarrow Table, a pandas or "
        "GeoPandas DataFrame, or a list of dicts"
    )


def _lenient_array(values: list[Any]) -> pa.Array:
    """An Arrow array of ``values``; mixed types become strings so that validation can
    report the exact rows that do not convert instead of failing on the whole column."""
    try:
        return pa.array(values)
    except (pa.ArrowInvalid, pa.ArrowTypeError, TypeError, OverflowError):
        return pa.array(
            [
                None
                if v is None or (isinstance(v, float) and v != v)
                else v.decode("latin-1")
                if isinstance(v, bytes)
                else str(v)
                for v in values
            ],
            pa.string(),
        )


class _Problems:
    def __init__(
        self, dataset: str | None, table: pa.Table | None, schema: DatasetSchema | None
    ) -> None:
        self.dataset = dataset
        self.table = table
        self.schema = schema
        self.items: list[dict[str, Any]] = []

    def _key(self, row: int) -> Any:
        # computed only for rows that broke a rule: building keys for every row is costly
        if self.table is None or self.schema is None:
            return None
        keys = [k for k in self.schema.key if k in self.table.column_names]
        if not keys or row >= self.table.num_rows:
            return None
        vals = tuple(self.table[k][row].as_py() for k in keys)
        return vals[0] if len(vals) == 1 else vals

    def add(self, rows: np.ndarray | list[int], field: str, expected: str, what: str) -> None:
        for r in list(np.asarray(rows).tolist())[: _MAX_PROBLEMS - len(self.items)]:
            key = self._key(r)
            self.items.append(
                {
                    "dataset": self.dataset,
                    "row": int(r),
                    "key": key,
                    "field": field,
                    "expected": expected,
                    "message": what,
                }
            )

    def raise_if_any(self) -> None:
        if not self.items:
            return
        first = self.items[0]
        where = f"dataset {first['dataset']!r}, " if first["dataset"] else ""
        key = f" (key {first['key']!r})" if first["key"] is not None else ""
        more = f"; and {len(self.items) - 1} more problem(s)" if len(self.items) > 1 else ""
        msg = (
            f"{where}row {first['row']}{key}, field {first['field']!r}: {first['message']}; "
            f"expected {first['expected']}{more}. Nothing was written."
        )
        raise ValidationError(
            msg,
            dataset=first["dataset"],
            row=first["row"],
            key=first["key"],
            field=first["field"],
            expected=first["expected"],
            problems=self.items,
        )


def _bad_rows(mask: pa.Array | np.ndarray) -> np.ndarray:
    arr = (
        mask.to_numpy(zero_copy_only=False)
        if isinstance(mask, pa.Array | pa.ChunkedArray)
        else mask
    )
    return np.flatnonzero(np.asarray(arr, dtype=bool))


def _to_time(col: pa.ChunkedArray, name: str, probs: _Problems) -> pa.ChunkedArray:
    t = col.type
    if pa.types.is_timestamp(t):
        out = pc.assume_timezone(col, "UTC") if t.tz is None else col
        return out.cast(TS_TYPE)
    if pa.types.is_string(t) or pa.types.is_large_string(t):
        s = pd.Series(col.to_pandas(), dtype="object")
        parsed = pd.to_datetime(s, errors="coerce", utc=True, format="mixed")
        bad = _bad_rows(parsed.isna().to_numpy() & s.notna().to_numpy())
        if len(bad):
            probs.add(
                bad,
                name,
                "an ISO 8601 timestamp such as 2026-03-02T08:00:00Z",
                "cannot parse timestamp " + repr(s.iloc[int(bad[0])]),
            )
        return pa.chunked_array([pa.array(parsed.dt.as_unit("ms"), type=TS_TYPE)])
    if pa.types.is_integer(t) or pa.types.is_floating(t):
        # numbers are epoch seconds (as in most feeds); milliseconds when too large for seconds
        v = col.to_numpy(zero_copy_only=False).astype("float64")
        finite = np.isfinite(v)
        bad = _bad_rows(~finite & ~np.isnan(v))
        if len(bad):
            probs.add(bad, name, "a finite epoch time", "timestamp is infinite")
        ms = np.where(np.abs(v) > 1e11, v, v * 1000.0)
        ms = np.where(finite, ms, np.nan)
        return pa.chunked_array([pa.array(pd.to_datetime(ms, unit="ms", utc=True), type=TS_TYPE)])
    if pa.types.is_date(t):
        return pc.assume_timezone(col.cast(pa.timestamp("ms")), "UTC").cast(TS_TYPE)
    probs.add([0], name, "timestamps", f"column has type {t}")
    return col


def _check_time_range(col: pa.ChunkedArray, name: str, probs: _Problems, required: bool) -> None:
    v = col.cast(pa.int64()).to_numpy(zero_copy_only=False)
    valid = ~pc.is_null(col).to_numpy(zero_copy_only=False)
    lo, hi = MIN_TIME.value // 10**6, MAX_TIME.value // 10**6
    vv = np.where(valid, v, lo)
    bad = _bad_rows(valid & ((vv < lo) | (vv >= hi)))
    if len(bad):
        probs.add(
            bad,
            name,
            "a time between 1970-01-01 and 2100-01-01",
            f"timestamp {pd.Timestamp(int(vv[bad[0]]), unit='ms', tz='UTC')} is out of range",
        )
    if required:
        nulls = _bad_rows(~valid)
        if len(nulls):
            probs.add(nulls, name, "a timestamp", "time is missing")


def _cast(col: pa.ChunkedArray, typ: pa.DataType, name: str, probs: _Problems) -> pa.ChunkedArray:
    if col.type == typ:
        return col
    try:
        return col.cast(typ)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        pass
    # find the rows that do not convert, to report them
    s = col.to_pandas()
    if pa.types.is_integer(typ) or pa.types.is_floating(typ):
        num = pd.to_numeric(s, errors="coerce")
        bad = _bad_rows(num.isna().to_numpy() & s.notna().to_numpy())
        if pa.types.is_integer(typ):
            nonint = num.notna() & (num != np.floor(num.fillna(0)))
            bad = np.union1d(bad, _bad_rows(nonint.to_numpy()))
        if len(bad):
            probs.add(
                bad, name, f"a value of type {typ}", f"cannot convert {s.iloc[int(bad[0])]!r}"
            )
            return pa.chunked_array([pa.nulls(len(s), typ)])
        return pa.chunked_array([pa.array(num, type=typ, from_pandas=True)])
    if pa.types.is_string(typ):
        return pa.chunked_array(
            [pa.array(s.map(lambda v: None if v is None or v != v else str(v)), type=typ)]
        )
    if pa.types.is_boolean(typ):
        m = {"true": True, "false": False, "1": True, "0": False, "yes": True, "no": False}
        conv = s.map(lambda v: v if isinstance(v, bool) or v is None else m.get(str(v).lower()))
        bad = _bad_rows(conv.isna().to_numpy() & s.notna().to_numpy())
        if len(bad):
            probs.add(bad, name, "true or false", f"cannot read {s.iloc[int(bad[0])]!r} as a bool")
        return pa.chunked_array([pa.array(conv, type=typ, from_pandas=True)])
    probs.add([0], name, f"type {typ}", f"column has type {col.type}")
    return pa.chunked_array([pa.nulls(len(s), typ)])


def _crs_bounds(crs: str) -> tuple[float, float, float, float] | None:
    c = _crs(crs)
    if c.is_geographic:
        return (-180.0, -90.0, 180.0, 90.0)
    return None


def _id_column(tbl: pa.Table, schema: DatasetSchema, probs: _Problems) -> pa.ChunkedArray:
    typ = pa.string() if schema.id_type == "string" else pa.int64()
    col = _cast(tbl[ID_COL], typ, ID_COL, probs)
    nulls = _bad_rows(pc.is_null(col))
    if len(nulls):
        probs.add(nulls, ID_COL, "an id", "id is missing")
    return col


def conform(data: Any, schema: DatasetSchema, dataset: str | None = None) -> pa.Table:
    """Return ``data`` as a table in the dataset's canonical form, or raise
    :class:`ValidationError` listing every problem (dataset, row, key, field, expected).

    Canonical form: ``id``; ``t`` as UTC millisecond timestamps for time models; points as
    float64 ``x``/``y``; other geometry as WKB in ``geometry``; declared fields cast to their
    types; undeclared columns kept as they are.

    Examples
    --------
    >>> from cityos.model import DatasetSchema, ModelKind
    >>> s = DatasetSchema(ModelKind.POINT_ST)
    >>> conform([{"id": "a", "t": "2026-01-01T00:00:00Z", "x": 116.4, "y": 39.9}], s).num_rows
    1
    """
    tbl = to_arrow_table(data)
    probs = _Problems(dataset, tbl, schema)
    missing = [
        c
        for c in schema.canonical_columns
        if c not in tbl.column_names
        and c not in (EDGES_COL, TIME_END_COL, TRAJ_COL)
        and not (c == TIME_COL and schema.model is ModelKind.NETWORK_ST)
    ]
    missing += [f.name for f in schema.fields if f.required and f.name not in tbl.column_names]
    if schema.point_layout and GEOM_COL in tbl.column_names:
        missing = [c for c in missing if c not in (X_COL, Y_COL)]
    if missing:
        where = f"dataset {dataset!r}: " if dataset else ""
        raise ValidationError(
            f"{where}missing required column(s) {missing}; the batch has {tbl.column_names}",
            dataset=dataset,
            field=missing[0],
            expected="column present",
        )
    n = tbl.num_rows
    cols: dict[str, pa.ChunkedArray] = {}
    cols[ID_COL] = _id_column(tbl, schema, probs)
    m = schema.model
    if m.has_time and m is not ModelKind.NETWORK_ST:  # trajectories derive t from their times
        cols[TIME_COL] = _to_time(tbl[TIME_COL], TIME_COL, probs)
        _check_time_range(cols[TIME_COL], TIME_COL, probs, required=True)
    if m is ModelKind.NETWORK_STATIC:
        for c in (FROM_COL, TO_COL):
            cols[c] = _cast(tbl[c], pa.int64(), c, probs)
    if schema.point_layout:
        _points(tbl, schema, cols, probs)
    elif m.has_geometry:
        cols[GEOM_COL] = _geometry(tbl, schema, probs)
    if m is ModelKind.NETWORK_ST:
        _trajectory(tbl, schema, cols, probs)
    for f in schema.fields:
        if f.name in tbl.column_names:
            c = tbl[f.name]
            c = (
                _to_time(c, f.name, probs)
                if f.type == "timestamp"
                else _cast(c, f.arrow_type, f.name, probs)
            )
            if f.required:
                nulls = _bad_rows(pc.is_null(c))
                if len(nulls):
                    probs.add(nulls, f.name, "a value", "required field is missing")
            if (f.minimum is not None or f.maximum is not None) and pa.types.is_floating(
                c.type
            ) | pa.types.is_integer(c.type):
                v = c.to_numpy(zero_copy_only=False).astype("float64")
                lo = -np.inf if f.minimum is None else f.minimum
                hi = np.inf if f.maximum is None else f.maximum
                bad = _bad_rows(~np.isnan(v) & ((v < lo) | (v > hi)))
                if len(bad):
                    probs.add(
                        bad,
                        f.name,
                        f"a value in [{lo}, {hi}]",
                        f"value {v[bad[0]]} is out of range",
                    )
            cols[f.name] = c
        else:
            f_type = f.arrow_type
            cols[f.name] = pa.chunked_array([pa.nulls(n, f_type)])
    for c in tbl.column_names:
        if c not in cols and c not in (X_COL, Y_COL, GEOM_COL):
            cols[c] = tbl[c]
    probs.raise_if_any()
    return pa.table(cols)


def _points(
    tbl: pa.Table, schema: DatasetSchema, cols: dict[str, pa.ChunkedArray], probs: _Problems
) -> None:
    if X_COL in tbl.column_names and Y_COL in tbl.column_names:
        xs = _cast(tbl[X_COL], pa.float64(), X_COL, probs)
        ys = _cast(tbl[Y_COL], pa.float64(), Y_COL, probs)
        x = xs.to_numpy(zero_copy_only=False).astype("float64")
        y = ys.to_numpy(zero_copy_only=False).astype("float64")
    else:
        import shapely

        wkb = tbl[GEOM_COL].to_numpy(zero_copy_only=False)
        geoms = shapely.from_wkb(wkb, on_invalid="ignore")
        bad = _bad_rows(shapely.is_missing(geoms) | (shapely.get_type_id(geoms) != 0))
        if len(bad):
            probs.add(bad, GEOM_COL, "a WKB Point", "geometry is missing, malformed or not a point")
        x = shapely.get_x(geoms)
        y = shapely.get_y(geoms)
    for name, v, lohi in ((X_COL, x, 0), (Y_COL, y, 1)):
        bad = _bad_rows(~np.isfinite(v))
        if len(bad):
            probs.add(bad, name, "a finite coordinate", f"coordinate is {v[bad[0]]}")
        b = _crs_bounds(schema.crs)
        if b is not None:
            lo, hi = (b[0], b[2]) if lohi == 0 else (b[1], b[3])
            out = _bad_rows(np.isfinite(v) & ((v < lo) | (v > hi)))
            if len(out):
                what = "longitude" if lohi == 0 else "latitude"
                probs.add(
                    out,
                    name,
                    f"a {what} in [{lo}, {hi}] ({schema.crs})",
                    f"{what} {v[out[0]]} is out of range",
                )
    cols[X_COL] = pa.chunked_array([pa.array(x, type=pa.float64())])
    cols[Y_COL] = pa.chunked_array([pa.array(y, type=pa.float64())])


def _geometry(tbl: pa.Table, schema: DatasetSchema, probs: _Problems) -> pa.ChunkedArray:
    import shapely

    col = tbl[GEOM_COL]
    vals = col.to_numpy(zero_copy_only=False)
    if pa.types.is_string(col.type) or pa.types.is_large_string(col.type):
        geoms = shapely.from_wkt(vals, on_invalid="ignore")
    else:
        geoms = (
            np.array([g if hasattr(g, "geom_type") else None for g in vals], dtype=object)
            if vals.dtype == object and len(vals) and hasattr(vals[0], "geom_type")
            else shapely.from_wkb(vals, on_invalid="ignore")
        )
    missing = shapely.is_missing(geoms)
    bad = _bad_rows(missing)
    if len(bad):
        probs.add(bad, GEOM_COL, "a WKB or WKT geometry", "geometry is missing or malformed")
    ok = ~missing
    if ok.any():
        if schema.geometry_type in _GEOM_TYPES:
            allowed = _GEOM_TYPES[schema.geometry_type]
            types = np.array([g.geom_type if g is not None else "" for g in geoms])
            wrong = _bad_rows(ok & ~np.isin(types, list(allowed)))
            if len(wrong):
                probs.add(
                    wrong,
                    GEOM_COL,
                    f"a {schema.geometry_type} geometry ({'/'.join(sorted(allowed))})",
                    f"geometry is a {types[wrong[0]]}",
                )
        invalid = _bad_rows(ok & ~shapely.is_valid(geoms))
        if len(invalid):
            probs.add(
                invalid,
                GEOM_COL,
                "a valid geometry",
                "geometry is invalid: " + str(shapely.is_valid_reason(geoms[invalid[0]])),
            )
        b = _crs_bounds(schema.crs)
        bounds = shapely.bounds(geoms)
        nonfinite = _bad_rows(ok & ~np.isfinite(bounds).all(axis=1))
        if len(nonfinite):
            probs.add(
                nonfinite,
                GEOM_COL,
                "finite coordinates",
                "geometry has NaN or infinite coordinates",
            )
        if b is not None:
            with np.errstate(invalid="ignore"):
                out = _bad_rows(
                    ok
                    & (
                        (bounds[:, 0] < b[0])
                        | (bounds[:, 1] < b[1])
                        | (bounds[:, 2] > b[2])
                        | (bounds[:, 3] > b[3])
                    )
                )
            if len(out):
                probs.add(
                    out,
                    GEOM_COL,
                    f"coordinates within {b} ({schema.crs})",
                    "geometry lies outside the valid longitude/latitude range",
                )
    return pa.chunked_array([pa.array(shapely.to_wkb(geoms), type=pa.binary())])


def _trajectory(
    tbl: pa.Table, schema: DatasetSchema, cols: dict[str, pa.ChunkedArray], probs: _Problems
) -> None:
    import shapely

    if TRAJ_COL in tbl.column_names:
        cols[TRAJ_COL] = _cast(tbl[TRAJ_COL], pa.string(), TRAJ_COL, probs)
    else:
        cols[TRAJ_COL] = pa.chunked_array([pa.array([f"{i}" for i in range(tbl.num_rows)])])
    geoms = shapely.from_wkb(cols[GEOM_COL].to_numpy(zero_copy_only=False), on_invalid="ignore")
    npts = shapely.get_num_coordinates(geoms)
    if TIMES_COL not in tbl.column_names:
        probs.add(
            list(range(min(tbl.num_rows, 1))),
            TIMES_COL,
            "a list of timestamps, one per point",
            "trajectory has no per-point times",
        )
        return
    times = tbl[TIMES_COL].combine_chunks()
    if not (pa.types.is_list(times.type) or pa.types.is_large_list(times.type)):
        probs.add([0], TIMES_COL, "a list of timestamps", f"column has type {times.type}")
        return
    flat = times.flatten()
    if not pa.types.is_timestamp(flat.type):
        flat = _to_time(pa.chunked_array([flat]), TIMES_COL, probs).combine_chunks()
    elif flat.type.tz is None:
        flat = pc.assume_timezone(flat, "UTC")
    flat = flat.cast(TS_TYPE)
    offsets = times.offsets
    times = pa.ListArray.from_arrays(offsets, flat)
    lens = pc.list_value_length(times).to_numpy(zero_copy_only=False)
    bad = _bad_rows(lens != npts)
    if len(bad):
        probs.add(
            bad,
            TIMES_COL,
            "one timestamp per point",
            f"{lens[bad[0]]} timestamps for {npts[bad[0]]} points",
        )
    fv = flat.cast(pa.int64()).to_numpy(zero_copy_only=False)
    off = offsets.to_numpy()
    if len(fv) > 1:
        dec = np.flatnonzero(np.diff(fv) < 0) + 1
        # a decrease at a list boundary is fine
        dec = dec[~np.isin(dec, off)]
        if len(dec):
            rows = np.searchsorted(off, dec, side="right") - 1
            probs.add(
                np.unique(rows),
                TIMES_COL,
                "non-decreasing times along a trajectory",
                "time goes backwards inside the trajectory",
            )
    starts = np.where(lens > 0, fv[np.minimum(off[:-1], max(len(fv) - 1, 0))] if len(fv) else 0, 0)
    ends = np.where(lens > 0, fv[np.maximum(off[1:] - 1, 0)] if len(fv) else 0, 0)
    cols[TIMES_COL] = pa.chunked_array([times])
    cols[TIME_COL] = pa.chunked_array([pa.array(starts, type=pa.int64()).cast(TS_TYPE)])
    cols[TIME_END_COL] = pa.chunked_array([pa.array(ends, type=pa.int64()).cast(TS_TYPE)])
    if EDGES_COL in tbl.column_names:
        cols[EDGES_COL] = _cast(tbl[EDGES_COL], pa.list_(pa.int64()), EDGES_COL, probs)
    else:
        cols[EDGES_COL] = pa.chunked_array([pa.nulls(tbl.num_rows, pa.list_(pa.int64()))])

"""Declarative mappings from source records to a dataset model: renames, types, units, time
zones and formats, and coordinate systems (EPSG via pyproj, GCJ-02, BD-09). One mapping serves
files, databases, HTTP pushes and MQTT streams alike."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
from pydantic import BaseModel, ConfigDict, model_validator
from pydantic import Field as PField
from pydantic import ValidationError as PydanticValidationError

from cityos.ingest._coords import normalise_crs, transform_coords
from cityos.ingest._units import normalise_unit, unit_dimension
from cityos.ingest.errors import MappingError
from cityos.model import FIELD_TYPES, DatasetSchema, Field, GeometryType, ModelKind

__all__ = ["Mapped", "Mapping", "RowProblem", "load_mapping"]

_TS = pa.timestamp("ms", tz="UTC")
#: time formats a reader may parse natively (ISO 8601 text, epoch numbers)
_NATIVE_TIME_FORMATS = ("iso8601", "epoch_s", "epoch_ms")
_PATH_RE = re.compile(r"^(?P<name>[^\[\]]+)(?P<idx>(\[\d+\])*)$")


class _Spec(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class DatasetSpec(_Spec):
    """The target dataset: its name, model and layout options."""

    name: str = PField(pattern=r"^[A-Za-z_][A-Za-z0-9_]{0,62}$")
    model: ModelKind
    crs: str = "EPSG:4326"
    key: list[str] = []
    geometry_type: GeometryType = GeometryType.POINT
    id_type: Literal["string", "int64"] = "string"
    time_partition: str = "1D"
    time_bin: str = "1h"
    description: str = ""
    stations: str | None = None  # point_series: static dataset whose features give positions


class ReadSpec(_Spec):
    """How to read files for this mapping (ignored by other sources)."""

    format: Literal["csv", "jsonl", "geojson", "parquet", "gpkg", "shp"] | None = None
    pattern: str | None = None
    null_values: list[str] = ["", "NA", "N/A", "NaN", "null", "NULL"]
    delimiter: str | None = None  # CSV: detected from the header line when not given
    encoding: str = "utf8"
    layer: str | None = None
    columns: list[str] | None = None  # read only these columns (CSV, Parquet)


class JoinSpec(_Spec):
    """A small lookup table joined onto every record before mapping, e.g. station positions.
    Its columns are addressed as ``<name>.<column>``."""

    name: str
    path: str
    key: str  # source field to look up (YAML reads a bare `on:` as true, hence not `on`)
    lookup_key: str | None = None  # column of the lookup table (default: same name)


class IdSpec(_Spec):
    from_: str | list[str] = PField(alias="from")
    separator: str = ":"
    prefix: str = ""


class TimeSpec(_Spec):
    from_: str | dict[str, str] | None = PField(default=None, alias="from")
    format: str = "iso8601"  # iso8601 | epoch_s | epoch_ms | a strftime pattern
    timezone: str = "UTC"  # the zone of times that carry no offset
    ambiguous: Literal["earliest", "latest", "reject"] = "earliest"


class GeometrySpec(_Spec):
    x: str | None = None
    y: str | None = None
    wkt: str | None = None
    wkb: str | None = None
    geojson: str | None = None
    crs: str = "EPSG:4326"

    @model_validator(mode="after")
    def _one_encoding(self) -> GeometrySpec:
        given = [k for k in ("wkt", "wkb", "geojson") if getattr(self, k)]
        xy = self.x is not None or self.y is not None
        if xy and (self.x is None or self.y is None):
            raise ValueError("give both x and y")
        if len(given) + int(xy) != 1:
            raise ValueError("give exactly one of: x and y, wkt, wkb, geojson")
        return self


class FieldSpec(_Spec):
    from_: str | None = PField(default=None, alias="from")
    type: str = "string"
    unit: str | None = None
    source_unit: str | None = None
    required: bool = False
    minimum: float | None = None
    maximum: float | None = None
    personal: str | None = None
    description: str = ""
    format: str | None = None  # timestamp fields: as time.format
    timezone: str | None = None  # timestamp fields: zone of times without an offset


class MappingDoc(_Spec):
    """The mapping document (YAML or JSON)."""

    version: Literal[1] = 1
    dataset: DatasetSpec
    read: ReadSpec = ReadSpec()
    join: list[JoinSpec] = []
    id: IdSpec
    time: TimeSpec | None = None
    geometry: GeometrySpec | None = None
    fields: dict[str, FieldSpec] = {}
    keep_unmapped: bool = False


@dataclass(frozen=True)
class RowProblem:
    """A record that broke a mapping rule: its row in the batch, the rule and why."""

    row: int
    rule: str
    message: str


@dataclass
class Mapped:
    """A mapped batch: ``table`` in the dataset's canonical columns, aligned row for row with
    the input, and ``problems`` for the rows that could not be mapped."""

    table: pa.Table
    problems: list[RowProblem] = field(default_factory=list)

    @property
    def bad_rows(self) -> set[int]:
        return {p.row for p in self.problems}


def _semantic_mistakes(doc: MappingDoc) -> list[tuple[str, str]]:
    m: list[tuple[str, str]] = []
    kind = doc.dataset.model
    try:
        crs = normalise_crs(doc.dataset.crs)
        if crs in ("GCJ-02", "BD-09"):
            m.append(
                (
                    "dataset.crs",
                    "datasets are stored in an EPSG CRS; convert GCJ-02/BD-09 "
                    "on ingest by setting geometry.crs instead",
                )
            )
    except Exception as e:  # pyproj raises its own CRSError
        m.append(("dataset.crs", f"unknown CRS {doc.dataset.crs!r}: {e}"))
    try:
        pd.Timedelta(doc.dataset.time_partition)
    except ValueError:
        m.append(
            ("dataset.time_partition", f"not a duration: {doc.dataset.time_partition!r} (try '1D')")
        )
    if kind.has_time and doc.time is None:
        m.append(("time", f"the {kind} model needs a time; add `time: {{from: <column>}}`"))
    if kind.has_time and doc.time is not None and doc.time.from_ is None:
        m.append(("time.from", "name the source column (or parts) holding the time"))
    if doc.time is not None:
        try:
            ZoneInfo(doc.time.timezone)
        except (ZoneInfoNotFoundError, ValueError):
            m.append(
                ("time.timezone", f"unknown time zone {doc.time.timezone!r} (e.g. 'Asia/Shanghai')")
            )
        if isinstance(doc.time.from_, dict):
            allowed = {"year", "month", "day", "hour", "minute", "second"}
            extra = set(doc.time.from_) - allowed
            if extra:
                m.append(
                    ("time.from", f"unknown time parts {sorted(extra)}; use {sorted(allowed)}")
                )
            for need in ("year", "month", "day"):
                if need not in doc.time.from_:
                    m.append(("time.from", f"time parts need {need!r}"))
    stations = doc.dataset.stations
    if stations is not None and kind is not ModelKind.POINT_SERIES:
        m.append(("dataset.stations", f"only a point_series references stations, not {kind}"))
    if stations is not None and doc.geometry is not None:
        m.append(
            (
                "geometry",
                f"positions come from the stations dataset {stations!r}; remove `geometry` "
                "or `dataset.stations`",
            )
        )
    if kind.has_geometry and doc.geometry is None and stations is None:
        m.append(
            (
                "geometry",
                f"the {kind} model needs a geometry; add `geometry: {{x: ..., y: ...}}`"
                + (
                    " or `dataset.stations: <static dataset>`"
                    if kind.name == "POINT_SERIES"
                    else ""
                ),
            )
        )
    if doc.geometry is not None:
        try:
            normalise_crs(doc.geometry.crs)
        except Exception as e:
            m.append(("geometry.crs", f"unknown CRS {doc.geometry.crs!r}: {e}"))
    for name, f in doc.fields.items():
        p = f"fields.{name}"
        if f.type not in FIELD_TYPES:
            m.append((f"{p}.type", f"unknown type {f.type!r}; use one of {', '.join(FIELD_TYPES)}"))
        for attr in ("unit", "source_unit"):
            u = getattr(f, attr)
            if u is not None and normalise_unit(u) is None:
                m.append((f"{p}.{attr}", f"unknown unit {u!r}"))
        if f.source_unit and not f.unit:
            m.append((f"{p}.unit", "source_unit needs a target unit to convert to"))
        if f.source_unit and f.unit and normalise_unit(f.unit) and normalise_unit(f.source_unit):
            if unit_dimension(f.unit) != unit_dimension(f.source_unit):
                m.append(
                    (
                        f"{p}.source_unit",
                        f"cannot convert {f.source_unit!r} ({unit_dimension(f.source_unit)}) "
                        f"to {f.unit!r} ({unit_dimension(f.unit)})",
                    )
                )
            if f.type not in ("float64", "float32"):
                m.append((f"{p}.type", "unit conversion needs a float type (float64)"))
    if not m:
        try:
            _schema(doc)
        except Exception as e:
            m.append(("dataset", str(e)))
    return m


def _schema(doc: MappingDoc) -> DatasetSchema:
    d = doc.dataset
    fields = tuple(
        Field(
            name,
            f.type,
            required=f.required,
            unit=normalise_unit(f.unit) if f.unit else None,
            personal=f.personal,
            minimum=f.minimum,
            maximum=f.maximum,
            description=f.description,
        )
        for name, f in doc.fields.items()
    )
    return DatasetSchema(
        d.model,
        fields=fields,
        crs=d.crs,
        geometry_type=d.geometry_type,
        key=tuple(d.key),
        id_type=d.id_type,
        time_partition=d.time_partition,
        time_bin=d.time_bin,
        description=d.description,
        stations=d.stations,
    )


#: dataset settings compared with an existing dataset when the mapping sets them
_LAYOUT = ("model", "crs", "key", "geometry_type", "id_type", "time_partition", "time_bin")


def schema_differences(
    doc: MappingDoc, existing: DatasetSchema, description: str
) -> list[tuple[str, str]]:
    """How a mapping disagrees with the dataset it targets, which already exists: the
    settings it sets explicitly (layout, description, stations) and its fields."""
    mine = _schema(doc)
    out: list[tuple[str, str]] = []
    given = doc.dataset.model_fields_set
    for attr in _LAYOUT:
        if attr not in given:
            continue
        want, have = getattr(mine, attr), getattr(existing, attr)
        if want != have:
            out.append(
                (
                    f"dataset.{attr}",
                    f"the mapping says {_show(want)}, the dataset has {_show(have)}",
                )
            )
    if "description" in given and doc.dataset.description != description:
        out.append(
            (
                "dataset.description",
                f"the mapping says {doc.dataset.description!r}, the dataset has {description!r}",
            )
        )
    if mine.stations != existing.stations:
        out.append(
            (
                "dataset.stations",
                f"the mapping says {mine.stations!r}, the dataset has {existing.stations!r}",
            )
        )
    names = [f.name for f in existing.fields]
    for f in mine.fields:
        have_f = existing.field(f.name)
        if have_f is None:
            out.append(
                (
                    f"fields.{f.name}",
                    f"not a field of the dataset (its fields: {', '.join(names) or 'none'})",
                )
            )
        elif have_f.type != f.type:
            out.append(
                (
                    f"fields.{f.name}.type",
                    f"the mapping says {f.type}, the dataset has {have_f.type}",
                )
            )
    return out


def _source_roots(doc: MappingDoc) -> set[str]:
    """Top-level source columns the id, time and geometry are read from."""
    paths: list[str] = []
    paths += [doc.id.from_] if isinstance(doc.id.from_, str) else list(doc.id.from_)
    if doc.time is not None and doc.time.from_ is not None:
        t = doc.time.from_
        paths += [t] if isinstance(t, str) else list(t.values())
    if doc.geometry is not None:
        g = doc.geometry
        paths += [p for p in (g.x, g.y, g.wkt, g.wkb, g.geojson) if p]
    return {p.split(".")[0].split("[")[0] for p in paths}


def _show(v: Any) -> str:
    return repr(list(v)) if isinstance(v, tuple) else repr(str(v))


def _resolve(tbl: pa.Table, path: str) -> pa.ChunkedArray | None:
    """Column for ``path``: ``a.b`` addresses nested objects, ``a[0]`` list elements."""
    if path in tbl.column_names:
        return tbl[path]
    m = _PATH_RE.match(path)
    if m is None:
        return None
    name, idx = m.group("name"), m.group("idx")
    flat = tbl
    while name not in flat.column_names and any(pa.types.is_struct(t) for t in flat.schema.types):
        flat = flat.flatten()
    if name not in flat.column_names:
        return None
    col = flat[name]
    for i in re.findall(r"\[(\d+)\]", idx):
        if not (
            pa.types.is_list(col.type)
            or pa.types.is_large_list(col.type)
            or pa.types.is_fixed_size_list(col.type)
        ):
            return None
        col = pc.list_element(col, int(i))
    return col


class Mapping:
    """A validated mapping from source records to one dataset.

    Build it from a dict, YAML or JSON text or file; every mistake is reported at once
    with its path in the document.

    Examples
    --------
    >>> m = Mapping.from_dict({
    ...     "dataset": {"name": "air", "model": "point_series"},
    ...     "id": {"from": "sensor"},
    ...     "time": {"from": "ts", "timezone": "Asia/Shanghai"},
    ...     "geometry": {"x": "lng", "y": "lat", "crs": "GCJ-02"},
    ...     "fields": {"pm25": {"from": "PM2.5", "type": "float64", "unit": "ug/m3",
    ...                         "source_unit": "mg/m3"}},
    ... })
    >>> t = m.apply([{"sensor": "s1", "ts": "2026-03-02 08:00", "lng": 116.41, "lat": 39.92,
    ...               "PM2.5": 0.035}]).table
    >>> t["pm25"][0].as_py(), str(t["t"][0].as_py())
    (35.0, '2026-03-02 00:00:00+00:00')
    """

    def __init__(self, doc: MappingDoc, *, base_dir: str | Path | None = None) -> None:
        self.doc = doc
        self.base_dir = Path(base_dir) if base_dir is not None else None
        self._joins: dict[str, pa.Table] = {}
        self._target: DatasetSchema | None = None  # the stored schema, once bound
        self._stations: pa.Table | None = None  # id, x, y of the stations, once bound
        self.bound = False  # bound to a store by :meth:`bind`

    # -- construction ------------------------------------------------------------------
    @classmethod
    def from_dict(
        cls, data: Any, *, base_dir: str | Path | None = None, origin: str = "mapping"
    ) -> Mapping:
        """Validate a mapping document; raise :class:`MappingError` listing every mistake."""
        if not isinstance(data, dict):
            raise MappingError(
                f"{origin}: a mapping must be an object, not {type(data).__name__}",
                [("", "expected an object")],
            )
        try:
            doc = MappingDoc.model_validate(data)
        except PydanticValidationError as e:
            mistakes = []
            for err in e.errors():
                loc = ".".join(str(p) for p in err["loc"] if p not in ("function-after",))
                loc = loc.replace("from_", "from")
                mistakes.append((loc, err["msg"]))
            raise _mapping_error(origin, mistakes) from None
        mistakes = _semantic_mistakes(doc)
        if mistakes:
            raise _mapping_error(origin, mistakes)
        return cls(doc, base_dir=base_dir)

    @classmethod
    def from_text(
        cls, text: str, *, base_dir: str | Path | None = None, origin: str = "mapping"
    ) -> Mapping:
        """Read a mapping from YAML (JSON is valid YAML)."""
        import yaml

        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as e:
            raise MappingError(f"{origin}: not valid YAML or JSON: {e}", [("", str(e))]) from None
        return cls.from_dict(data, base_dir=base_dir, origin=origin)

    @classmethod
    def from_file(cls, path: str | Path, *, base_dir: str | Path | None = None) -> Mapping:
        """Read a mapping file; relative paths in it resolve against ``base_dir`` (default:
        the file's folder)."""
        p = Path(path)
        if not p.is_file():
            raise MappingError(f"mapping file {p} does not exist", [("", "file not found")])
        return cls.from_text(
            p.read_text(encoding="utf8"), base_dir=base_dir or p.parent, origin=str(p)
        )

    def to_json(self) -> str:
        """The mapping document as JSON (stored with dead letters so they can be replayed)."""
        return json.dumps(
            self.doc.model_dump(mode="json", by_alias=True, exclude_defaults=True), sort_keys=True
        )

    def with_base_dir(self, base_dir: str | Path) -> Mapping:
        m = Mapping(self.doc, base_dir=base_dir)
        m._target, m._stations, m.bound = self._target, self._stations, self.bound
        return m

    # -- binding to the store ------------------------------------------------------------
    def bind(self, store: Any) -> Mapping:
        """Bind the mapping to the store it feeds: the dataset's stored schema (so columns it
        does not declare are refused) and, for ``dataset.stations``, the station positions.
        :meth:`Source.run <cityos.ingest.Source.run>` binds its mappings before reading."""
        from cityos.errors import DatasetNotFound

        try:
            self._target = store.schema(self.dataset)
        except DatasetNotFound:
            self._target = None
        st = self.doc.dataset.stations
        if st is not None:
            try:
                sschema = store.schema(st)
            except DatasetNotFound:
                raise MappingError(
                    f"dataset.stations: the stations dataset {st!r} of {self.dataset!r} does "
                    "not exist; ingest the stations first",
                    [("dataset.stations", "dataset not found")],
                ) from None
            tbl = store.read(st).table
            self.with_stations(tbl, crs=sschema.crs, origin=f"dataset {st!r}")
        self.bound = True
        return self

    def with_stations(
        self, stations: pa.Table, *, crs: str | None = None, origin: str = "stations"
    ) -> Mapping:
        """Use ``stations`` (canonical ``id``, ``x``, ``y``, in ``crs``) for the positions of a
        mapping with ``dataset.stations``; returns the mapping itself.

        Examples
        --------
        >>> m = Mapping.from_dict({"dataset": {"name": "aq", "model": "point_series",
        ...     "stations": "aq_stations"}, "id": {"from": "station"}, "time": {"from": "ts"},
        ...     "fields": {"pm25": {"type": "float64"}}})
        >>> st = pa.table({"id": ["S1", "S2"], "x": [116.4, 116.5], "y": [39.9, 40.0]})
        >>> mapped = m.with_stations(st).apply([{"station": "S2", "ts": "2026-03-02T08:00Z",
        ...     "pm25": 35.0}, {"station": "S9", "ts": "2026-03-02T08:00Z", "pm25": 1.0}])
        >>> mapped.table["x"].to_pylist()[0], [p.message for p in mapped.problems]
        (116.5, ["station 'S9' is not in the stations dataset 'aq_stations'; add it there first"])
        """
        missing = {"id", "x", "y"} - set(stations.column_names)
        if missing:
            raise MappingError(
                f"dataset.stations: {origin} has no {sorted(missing)} column(s); the stations "
                "must be a point_static dataset with point geometry",
                [("dataset.stations", "not a point dataset")],
            )
        x = np.asarray(stations["x"].to_numpy(zero_copy_only=False), dtype="float64")
        y = np.asarray(stations["y"].to_numpy(zero_copy_only=False), dtype="float64")
        dst = self.schema().crs
        if crs is not None and normalise_crs(crs) != dst:
            x, y = transform_coords(x, y, normalise_crs(crs), dst)
        ids = _to_str(stations["id"]) if self.doc.dataset.id_type == "string" else stations["id"]
        self._stations = pa.table({"id": ids, "x": pa.array(x), "y": pa.array(y)})
        return self

    def _station_positions(
        self, ids: pa.ChunkedArray, out: dict[str, Any], probs: list[RowProblem]
    ) -> None:
        st = self.doc.dataset.stations
        if self._stations is None:
            raise MappingError(
                f"the mapping of {self.dataset!r} takes positions from the stations dataset "
                f"{st!r}: bind it to the store first (mapping.bind(store); sources do this)",
                [("dataset.stations", "not bound")],
            )
        keys = self._stations["id"].combine_chunks()
        idx = pc.index_in(ids.cast(keys.type) if ids.type != keys.type else ids, value_set=keys)
        found = pc.is_valid(idx).to_numpy(zero_copy_only=False)
        known = pc.is_valid(ids).to_numpy(zero_copy_only=False)
        for i in np.flatnonzero(~found & known):
            probs.append(
                RowProblem(
                    int(i),
                    "dataset.stations",
                    f"station {ids[int(i)].as_py()!r} is not in the stations dataset {st!r}; "
                    "add it there first",
                )
            )
        out["x"] = self._stations["x"].take(idx)
        out["y"] = self._stations["y"].take(idx)

    def text_sources(self) -> list[str]:
        """Source columns a file reader should read as text rather than guess a type for:
        those feeding a string id (joined ids too), a string or json field, or a time
        given in a strftime format. Guessing would turn ``007`` into 7 or read a US-style
        date as something else before the mapping sees it.

        Examples
        --------
        >>> m = Mapping.from_dict({"dataset": {"name": "e", "model": "point_st"},
        ...     "id": {"from": "key"}, "time": {"from": "when", "format": "%d/%m/%Y"},
        ...     "geometry": {"x": "lon", "y": "lat"},
        ...     "fields": {"zip": {"type": "string"}, "n": {"from": "count", "type": "int64"}}})
        >>> m.text_sources()
        ['key', 'when', 'zip']
        """
        out: list[str] = []
        doc = self.doc
        if doc.dataset.id_type == "string":
            out += [doc.id.from_] if isinstance(doc.id.from_, str) else list(doc.id.from_)
        t = doc.time
        if t is not None and isinstance(t.from_, str) and t.format not in _NATIVE_TIME_FORMATS:
            out.append(t.from_)
        for name, f in doc.fields.items():
            src = f.from_ or name
            timed = f.type == "timestamp" and (f.format or "iso8601") not in _NATIVE_TIME_FORMATS
            if f.type in ("string", "json") or timed:
                out.append(src)
        # only top-level columns: nested paths (a.b, a[0]) are not CSV columns
        return list(dict.fromkeys(c for c in out if c and _PATH_RE.match(c) and "[" not in c))

    # -- what it produces --------------------------------------------------------------
    @property
    def dataset(self) -> str:
        return self.doc.dataset.name

    def schema(self) -> DatasetSchema:
        """The schema of the target dataset."""
        return _schema(self.doc)

    # -- applying ----------------------------------------------------------------------
    def apply(self, data: pa.Table | list[dict[str, Any]]) -> Mapped:
        """Map a batch of source records (row for row) to the dataset's columns."""
        tbl = data if isinstance(data, pa.Table) else _from_records(data)
        tbl = self._join(tbl)
        n = tbl.num_rows
        probs: list[RowProblem] = []
        out: dict[str, pa.ChunkedArray | pa.Array] = {}
        doc = self.doc
        out["id"] = self._id(tbl, probs)
        if doc.time is not None and doc.time.from_ is not None:
            out["t"] = self._time(tbl, probs)
        schema = self.schema()
        if doc.geometry is not None:
            self._geometry(tbl, schema, out, probs)
        elif doc.dataset.stations is not None:
            self._station_positions(out["id"], out, probs)
        used: set[str] = set()
        for name, f in doc.fields.items():
            src = f.from_ or name
            used.add(src.split(".")[0].split("[")[0])
            col = _resolve(tbl, src)
            if col is None:
                if f.required:
                    probs += [
                        RowProblem(i, f"fields.{name}.from", f"source field {src!r} is missing")
                        for i in range(n)
                    ]
                out[name] = pa.nulls(n, FIELD_TYPES.get(f.type, pa.string()))
                continue
            if f.source_unit and f.unit:
                col = self._convert(col, name, f, probs)
            elif f.type == "timestamp" and (f.format or f.timezone):
                col = _parse_time(
                    col,
                    f.format or "iso8601",
                    f.timezone or "UTC",
                    True,
                    f"fields.{name}",
                    probs,
                    required=False,
                )
            out[name] = col
        if doc.keep_unmapped:
            used |= _source_roots(doc)
            kept = [c for c in tbl.column_names if c not in out and c not in used]
            declared = set(schema.canonical_columns) | set(doc.fields)
            if self._target is not None:
                declared |= {f.name for f in self._target.fields}
            undeclared = [c for c in kept if c not in declared and "." not in c]
            if undeclared:
                raise MappingError(
                    f"keep_unmapped: column(s) {undeclared} are not fields of dataset "
                    f"{self.dataset!r}, so they would be stored without a schema; declare them "
                    "under `fields:` (with their type) or drop keep_unmapped",
                    [("keep_unmapped", f"undeclared columns {undeclared}")],
                )
            for c in kept:
                if "." not in c:  # joined lookup columns are addressed, never kept
                    out[c] = tbl[c]
        table = pa.table(
            {
                k: (v if isinstance(v, pa.ChunkedArray) else pa.chunked_array([v]))
                for k, v in out.items()
            }
        )
        return Mapped(table, probs)

    def _join(self, tbl: pa.Table) -> pa.Table:
        for j in self.doc.join:
            right = self._joins.get(j.name)
            if right is None:
                right = self._read_join(j)
                self._joins[j.name] = right
            left = _resolve(tbl, j.key)
            if left is None:
                continue
            keys = right[j.lookup_key or j.key]
            idx = pc.index_in(
                left.cast(keys.type, safe=False) if left.type != keys.type else left,
                value_set=keys.combine_chunks(),
            )
            picked = right.take(idx)
            for c in right.column_names:
                tbl = tbl.append_column(f"{j.name}.{c}", picked[c])
        return tbl

    def _read_join(self, j: JoinSpec) -> pa.Table:
        import pyarrow.csv as pacsv

        p = Path(j.path)
        if not p.is_absolute() and self.base_dir is not None:
            p = self.base_dir / p
        if not p.is_file():
            raise MappingError(
                f"join {j.name!r}: lookup file {p} does not exist; pass base_dir "
                "to the mapping or use an absolute path",
                [(f"join.{j.name}.path", "not found")],
            )
        if p.suffix.lower() == ".parquet":
            import pyarrow.parquet as pq

            return pq.read_table(p)
        return pacsv.read_csv(p)

    def _id(self, tbl: pa.Table, probs: list[RowProblem]) -> pa.ChunkedArray:
        spec = self.doc.id
        n = tbl.num_rows
        srcs = [spec.from_] if isinstance(spec.from_, str) else list(spec.from_)
        cols = []
        for s in srcs:
            c = _resolve(tbl, s)
            if c is None:
                probs += [
                    RowProblem(i, "id.from", f"source field {s!r} is missing") for i in range(n)
                ]
                return pa.chunked_array([pa.nulls(n, pa.string())])
            cols.append(c)
        if self.doc.dataset.id_type == "int64" and len(cols) == 1 and not spec.prefix:
            col = cols[0]
            try:
                col = col.cast(pa.int64())
            except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
                num = pd.to_numeric(pd.Series(col.to_pandas()), errors="coerce")
                col = pa.chunked_array([pa.array(num.round().astype("Int64"), type=pa.int64())])
        else:
            strs = [_to_str(c) for c in cols]
            col = strs[0] if len(strs) == 1 else pc.binary_join_element_wise(*strs, spec.separator)
            if spec.prefix:
                col = pc.binary_join_element_wise(pa.scalar(spec.prefix), col, "")
        bad = np.flatnonzero(pc.is_null(col).to_numpy(zero_copy_only=False))
        probs += [RowProblem(int(i), "id", "record has no id") for i in bad]
        return col if isinstance(col, pa.ChunkedArray) else pa.chunked_array([col])

    def _time(self, tbl: pa.Table, probs: list[RowProblem]) -> pa.Array:
        spec = self.doc.time
        assert spec is not None and spec.from_ is not None
        n = tbl.num_rows
        tz = spec.timezone
        ambiguous: Any = {"earliest": True, "latest": False, "reject": "NaT"}[spec.ambiguous]
        if isinstance(spec.from_, dict):
            cols: dict[str, pa.ChunkedArray] = {}
            for part, src in spec.from_.items():
                c = _resolve(tbl, src)
                if c is None:
                    probs += [
                        RowProblem(i, "time.from", f"source field {src!r} is missing")
                        for i in range(n)
                    ]
                    return pa.nulls(n, _TS)
                cols[part] = c
            fast = _time_from_int_parts(cols, tz, spec.ambiguous)
            if fast is not None:
                arr, missing = fast
                return _finish_arrow(
                    arr, missing, "time", "time parts do not form a valid date", probs, True
                )
            parts = {
                part: pd.to_numeric(pd.Series(c.to_numpy(zero_copy_only=False)), errors="coerce")
                for part, c in cols.items()
            }
            frame = pd.DataFrame(parts)
            naive = pd.to_datetime(frame, errors="coerce")
            raw_missing = frame.isna().any(axis=1).to_numpy()
            ts = _localise(naive, tz, ambiguous)
            return _finish_time(
                ts, raw_missing, "time", "time parts do not form a valid date", probs, True
            )
        col = _resolve(tbl, spec.from_)
        if col is None:
            probs += [
                RowProblem(i, "time.from", f"source field {spec.from_!r} is missing")
                for i in range(n)
            ]
            return pa.nulls(n, _TS)
        return _parse_time(col, spec.format, tz, ambiguous, "time", probs, required=True)

    def _geometry(
        self, tbl: pa.Table, schema: DatasetSchema, out: dict[str, Any], probs: list[RowProblem]
    ) -> None:
        g = self.doc.geometry
        assert g is not None
        n = tbl.num_rows
        src_crs = normalise_crs(g.crs)
        dst_crs = schema.crs
        if g.x is not None and g.y is not None:
            xs: list[np.ndarray] = []
            ys: list[np.ndarray] = []
            for axis, path in (("x", g.x), ("y", g.y)):
                c = _resolve(tbl, path)
                if c is None:
                    probs += [
                        RowProblem(i, f"geometry.{axis}", f"source field {path!r} is missing")
                        for i in range(n)
                    ]
                    v = np.full(n, np.nan)
                else:
                    v = _numbers(c, f"geometry.{axis}", probs)
                (xs if axis == "x" else ys).append(v)
            x, y = transform_coords(xs[0], ys[0], src_crs, dst_crs)
            if schema.point_layout:
                out["x"], out["y"] = pa.array(x), pa.array(y)
            else:
                import shapely

                out["geometry"] = pa.array(shapely.to_wkb(shapely.points(x, y)), type=pa.binary())
            return
        import shapely

        src_path = g.wkt or g.wkb or g.geojson or ""
        c = _resolve(tbl, src_path)
        if c is None:
            probs += [
                RowProblem(i, "geometry", f"source field {src_path!r} is missing") for i in range(n)
            ]
            geoms = np.full(n, None, dtype=object)
        else:
            vals = c.to_numpy(zero_copy_only=False)
            if g.wkt:
                geoms = shapely.from_wkt(vals, on_invalid="ignore")
            elif g.wkb:
                geoms = shapely.from_wkb(vals, on_invalid="ignore")
            else:
                vals = np.array(
                    [v if v is None or isinstance(v, str) else json.dumps(v) for v in vals],
                    dtype=object,
                )
                geoms = shapely.from_geojson(vals, on_invalid="ignore")
            for i in np.flatnonzero(shapely.is_missing(geoms)):
                why = "record has no geometry" if vals[i] is None else "geometry cannot be parsed"
                probs.append(RowProblem(int(i), "geometry", why))
        if src_crs != dst_crs:

            def tf(coords: np.ndarray) -> np.ndarray:
                x, y = transform_coords(coords[:, 0], coords[:, 1], src_crs, dst_crs)
                return np.column_stack([x, y])

            geoms = shapely.transform(geoms, tf)
        if schema.point_layout:
            is_pt = shapely.get_type_id(geoms) == 0
            for i in np.flatnonzero(~is_pt & ~shapely.is_missing(geoms)):
                probs.append(RowProblem(int(i), "geometry", "geometry is not a point"))
            out["x"] = pa.array(np.where(is_pt, shapely.get_x(geoms), np.nan))
            out["y"] = pa.array(np.where(is_pt, shapely.get_y(geoms), np.nan))
        else:
            out["geometry"] = pa.array(shapely.to_wkb(geoms), type=pa.binary())

    def _convert(
        self, col: pa.ChunkedArray, name: str, f: FieldSpec, probs: list[RowProblem]
    ) -> pa.Array:
        from cityos.ingest._units import convert_units

        assert f.source_unit and f.unit
        v = _numbers(col, f"fields.{name}", probs)
        return pa.array(convert_units(v, f.source_unit, f.unit), from_pandas=True)


def _parse_time(
    col: pa.ChunkedArray,
    fmt: str,
    tz: str,
    ambiguous: Any,
    rule: str,
    probs: list[RowProblem],
    *,
    required: bool,
) -> pa.Array:
    """Timestamps in UTC from a column of text, numbers or timestamps."""
    null_in = pc.is_null(col).to_numpy(zero_copy_only=False)
    if pa.types.is_timestamp(col.type):
        s = pd.Series(col.to_pandas())
        ts = s.dt.tz_convert("UTC") if col.type.tz else _localise(s, tz, ambiguous)
        return _finish_time(ts, null_in, rule, "", probs, required)
    if fmt in ("epoch_s", "epoch_ms") and pa.types.is_integer(col.type):
        # whole numbers: exact integer arithmetic in Arrow/NumPy instead of a pandas round trip
        scale = 1000 if fmt == "epoch_s" else 1
        v = pc.fill_null(col.cast(pa.int64()), 0).to_numpy(zero_copy_only=False)
        ok = ~null_in & (np.abs(v) <= _MAX_MS // scale)
        ms = np.where(ok, v * scale, 0)
        arr = pa.array(ms, type=_TS, mask=~ok)
        return _finish_arrow(
            arr, null_in, rule, f"not a number of {fmt[6:]}econds", probs, required
        )
    if fmt in ("epoch_s", "epoch_ms"):
        v = pd.to_numeric(pd.Series(col.to_numpy(zero_copy_only=False)), errors="coerce")
        ts = pd.to_datetime(v, unit="s" if fmt == "epoch_s" else "ms", utc=True, errors="coerce")
        return _finish_time(ts, null_in, rule, f"not a number of {fmt[6:]}econds", probs, required)
    s = pd.Series(_to_str(col).to_pandas(), dtype="object")
    if fmt == "iso8601":
        has_off = s.str.contains(r"(?:Z|[+-]\d{2}:?\d{2})$", regex=True, na=False).to_numpy()
        ts = pd.Series(pd.NaT, index=s.index, dtype="datetime64[ns, UTC]")
        if has_off.any():
            ts[has_off] = pd.to_datetime(s[has_off], utc=True, errors="coerce", format="ISO8601")
        if (~has_off).any():
            naive = pd.to_datetime(s[~has_off], errors="coerce", format="ISO8601")
            ts[~has_off] = _localise(naive, tz, ambiguous)
        return _finish_time(ts, null_in, rule, "not an ISO 8601 time", probs, required)
    if "%z" in fmt or "%Z" in fmt:
        ts = pd.to_datetime(s, format=fmt, utc=True, errors="coerce")
    else:
        ts = _localise(pd.to_datetime(s, format=fmt, errors="coerce"), tz, ambiguous)
    return _finish_time(ts, null_in, rule, f"does not match format {fmt!r}", probs, required)


def _finish_time(
    ts: pd.Series,
    null_in: np.ndarray,
    rule: str,
    what: str,
    probs: list[RowProblem],
    required: bool,
) -> pa.Array:
    nat = ts.isna().to_numpy()
    for i in np.flatnonzero(nat):
        if null_in[i]:
            if required:
                probs.append(RowProblem(int(i), rule, "record has no time"))
        else:
            probs.append(RowProblem(int(i), rule, f"cannot read the time: {what}".rstrip(": ")))
    return pa.array(ts.dt.as_unit("ms"), type=_TS)


def _finish_arrow(
    arr: pa.Array,
    null_in: np.ndarray,
    rule: str,
    what: str,
    probs: list[RowProblem],
    required: bool,
) -> pa.Array:
    """As :func:`_finish_time` for times already in Arrow: a problem for every null."""
    nat = pc.is_null(arr).to_numpy(zero_copy_only=False)
    for i in np.flatnonzero(nat):
        if null_in[i]:
            if required:
                probs.append(RowProblem(int(i), rule, "record has no time"))
        else:
            probs.append(RowProblem(int(i), rule, f"cannot read the time: {what}".rstrip(": ")))
    return arr


# pandas' microsecond range (about ±292,000 years) in ms: the pandas paths turn epoch values
# beyond it into errors, and the integer fast path rejects exactly the same records
_MAX_MS = (2**63 - 1) // 1000


def _time_from_int_parts(
    cols: dict[str, pa.ChunkedArray], tz: str, ambiguous: str
) -> tuple[pa.Array, np.ndarray] | None:
    """UTC times from integer year/month/day[/hour/minute/second] columns with NumPy
    calendar arithmetic and Arrow's time zone rules, instead of pandas assembling a frame
    (the slowest step of ingesting the Beijing CSVs). Returns ``(times, part missing)``, or
    None when the parts are not plain integers in pandas' date range, so the caller takes
    the general path and its exact semantics (fractional parts, odd years)."""
    if not all(pa.types.is_integer(c.type) for c in cols.values()):
        return None
    n = len(next(iter(cols.values())))
    missing = np.zeros(n, dtype=bool)
    vals: dict[str, np.ndarray] = {}
    for part, c in cols.items():
        isnull = pc.is_null(c).to_numpy(zero_copy_only=False)
        missing |= isnull
        vals[part] = pc.fill_null(c.cast(pa.int64()), 0).to_numpy(zero_copy_only=False)
    y, mo, d = vals["year"], vals["month"], vals["day"]
    hms = [vals.get(k, np.zeros(n, dtype="int64")) for k in ("hour", "minute", "second")]
    live = ~missing
    if live.any() and (
        y[live].min() < 1678
        or y[live].max() > 2261
        or max(int(np.abs(v[live]).max()) for v in hms) > 10_000_000
    ):
        return None
    valid = live & (mo >= 1) & (mo <= 12)
    months = np.where(valid, (y - 1970) * 12 + mo - 1, 0)
    first = months.astype("datetime64[M]").astype("datetime64[D]").astype("int64")
    days_in = (months + 1).astype("datetime64[M]").astype("datetime64[D]").astype("int64") - first
    valid &= (d >= 1) & (d <= days_in)
    # like pandas, hours/minutes/seconds are added as durations (hour 24 is the next day)
    ms = (first + d - 1) * 86_400_000 + hms[0] * 3_600_000 + hms[1] * 60_000 + hms[2] * 1000
    naive = pa.array(np.where(valid, ms, 0), type=pa.timestamp("ms"), mask=~valid)
    if tz == "UTC":
        return naive.cast(_TS), missing
    if ambiguous == "reject":
        return None
    # Arrow's "latest" for nonexistent times is pandas' shift_forward (the end of the gap)
    local = pc.assume_timezone(naive, timezone=tz, ambiguous=ambiguous, nonexistent="latest")
    return local.cast(_TS), missing


def _numbers(col: pa.ChunkedArray, rule: str, probs: list[RowProblem]) -> np.ndarray:
    """Column as float64; values that are present but not numbers become problems."""
    if pa.types.is_floating(col.type) or pa.types.is_integer(col.type):
        return np.asarray(col.to_numpy(zero_copy_only=False), dtype="float64")
    try:
        return np.asarray(col.cast(pa.float64()).to_numpy(zero_copy_only=False), dtype="float64")
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        pass
    s = pd.Series(col.to_pandas(), dtype="object")
    num = pd.to_numeric(s, errors="coerce")
    for i in np.flatnonzero(num.isna().to_numpy() & s.notna().to_numpy()):
        probs.append(RowProblem(int(i), rule, f"{s.iloc[int(i)]!r} is not a number"))
    return np.asarray(num.to_numpy(dtype="float64", na_value=np.nan), dtype="float64")


def _to_str(col: pa.ChunkedArray) -> pa.ChunkedArray:
    if pa.types.is_string(col.type) or pa.types.is_large_string(col.type):
        return col
    if pa.types.is_floating(col.type):
        # 12.0 -> "12": ids read as floats (because of nulls) should not gain ".0"
        v = col.to_numpy(zero_copy_only=False)
        whole = np.isfinite(v) & (v == np.floor(v))
        s = [
            None if not np.isfinite(a) else (str(int(a)) if w else repr(float(a)))
            for a, w in zip(v, whole, strict=True)
        ]
        return pa.chunked_array([pa.array(s, type=pa.string())])
    try:
        return col.cast(pa.string())
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        return pa.chunked_array(
            [
                pa.array(
                    [None if v is None else json.dumps(v, default=str) for v in col.to_pylist()],
                    type=pa.string(),
                )
            ]
        )


def _localise(naive: pd.Series, tz: str, ambiguous: Any) -> pd.Series:
    out: pd.Series
    if tz == "UTC":
        out = naive.dt.tz_localize("UTC")
        return out
    amb = ambiguous if isinstance(ambiguous, str) else np.full(len(naive), ambiguous)
    out = naive.dt.tz_localize(tz, ambiguous=amb, nonexistent="shift_forward").dt.tz_convert("UTC")
    return out


def _from_records(records: list[dict[str, Any]]) -> pa.Table:
    try:
        return pa.Table.from_pylist(records)
    except (pa.ArrowInvalid, pa.ArrowTypeError):
        # mixed types across records (a number here, a string there): keep values as text so
        # the mapping reports the offending rows instead of failing the batch
        keys: dict[str, None] = {}
        for r in records:
            keys.update(dict.fromkeys(r))
        cols = {}
        for k in keys:
            vals = [r.get(k) for r in records]
            try:
                cols[k] = pa.array(vals)
            except (pa.ArrowInvalid, pa.ArrowTypeError):
                cols[k] = pa.array(
                    [
                        None if v is None else (v if isinstance(v, str) else json.dumps(v))
                        for v in vals
                    ],
                    type=pa.string(),
                )
        return pa.table(cols)


def _mapping_error(origin: str, mistakes: list[tuple[str, str]]) -> MappingError:
    lines = "\n".join(f"  - {path or '(root)'}: {msg}" for path, msg in mistakes)
    return MappingError(
        f"{origin} has {len(mistakes)} mistake(s):\n{lines}\nFix them and load it again.", mistakes
    )


def load_mapping(
    path_or_doc: str | Path | dict[str, Any], *, base_dir: str | Path | None = None
) -> Mapping:
    """Load a mapping from a YAML/JSON file, YAML text or a dict.

    Examples
    --------
    >>> load_mapping({"dataset": {"name": "x", "model": "point_st"}, "id": {"from": "k"}})
    Traceback (most recent call last):
    ...
    cityos.ingest.errors.MappingError: mapping has 2 mistake(s):
      - time: the point_st model needs a time; add `time: {from: <column>}`
      - geometry: the point_st model needs a geometry; add `geometry: {x: ..., y: ...}`
    Fix them and load it again.
    """
    if isinstance(path_or_doc, dict):
        return Mapping.from_dict(path_or_doc, base_dir=base_dir)
    if isinstance(path_or_doc, Path) or (
        isinstance(path_or_doc, str)
        and "\n" not in path_or_doc
        and Path(path_or_doc).suffix.lower() in (".yaml", ".yml", ".json")
    ):
        return Mapping.from_file(path_or_doc, base_dir=base_dir)
    return Mapping.from_text(str(path_or_doc), base_dir=base_dir)

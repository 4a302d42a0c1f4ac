"""Dataset schemas: which of the six spatio-temporal models a dataset follows, its fields,
record key, CRS and partitioning. Pure data, serialisable to JSON for the catalog."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, replace
from enum import StrEnum
from typing import Any

import pyarrow as pa

from cityos.errors import ValidationError
from cityos.geo.crs import WGS84, crs_from_user, is_geographic

__all__ = [
    "EDGES_COL",
    "FIELD_TYPES",
    "FROM_COL",
    "GEOM_COL",
    "ID_COL",
    "TIMES_COL",
    "TIME_COL",
    "TIME_END_COL",
    "TO_COL",
    "TRAJ_COL",
    "X_COL",
    "Y_COL",
    "DatasetSchema",
    "Field",
    "GeometryType",
    "ModelKind",
]

# Canonical column names shared by every layer.
ID_COL = "id"  # object, sensor, feature or edge id
TIME_COL = "t"  # observation time (UTC); start time for trajectories
TIME_END_COL = "t_end"  # end time of a trajectory segment
X_COL = "x"
Y_COL = "y"
GEOM_COL = "geometry"
TRAJ_COL = "traj_id"
TIMES_COL = "times"  # per-point timestamps of a trajectory segment
EDGES_COL = "edges"  # map-matched road segment ids of a trajectory segment
FROM_COL = "from_node"
TO_COL = "to_node"


class ModelKind(StrEnum):
    """The six spatio-temporal data models (point/network × static/series/spatio-temporal)
    plus plain attribute tables."""

    POINT_STATIC = "point_static"  # POIs, facilities, enterprises, districts
    POINT_SERIES = "point_series"  # fixed sensors with changing readings
    POINT_ST = "point_st"  # moving objects' GPS points, events, 311 requests
    NETWORK_STATIC = "network_static"  # road network, pipe network, bus lines
    NETWORK_SERIES = "network_series"  # readings per road segment over time
    NETWORK_ST = "network_st"  # trajectories, map-matched routes
    TABLE = "table"  # agency records keyed by an entity id

    @property
    def has_time(self) -> bool:
        return self not in (ModelKind.POINT_STATIC, ModelKind.NETWORK_STATIC, ModelKind.TABLE)

    @property
    def has_geometry(self) -> bool:
        return self not in (ModelKind.NETWORK_SERIES, ModelKind.TABLE)

    @property
    def default_key(self) -> tuple[str, ...]:
        if self in (ModelKind.POINT_SERIES, ModelKind.POINT_ST, ModelKind.NETWORK_SERIES):
            return (ID_COL, TIME_COL)
        if self is ModelKind.NETWORK_ST:
            return (ID_COL, TRAJ_COL)
        return (ID_COL,)


class GeometryType(StrEnum):
    POINT = "point"
    LINE = "line"
    REGION = "region"
    ANY = "any"


#: Field types a schema may declare, and their Arrow types.
FIELD_TYPES: dict[str, pa.DataType] = {
    "string": pa.string(),
    "int64": pa.int64(),
    "int32": pa.int32(),
    "float64": pa.float64(),
    "float32": pa.float32(),
    "bool": pa.bool_(),
    "timestamp": pa.timestamp("ms", tz="UTC"),
    "date": pa.date32(),
    "binary": pa.binary(),
    "json": pa.string(),
}

_PERSONAL = {"id_number", "phone", "name", "plate", "address", "email"}


@dataclass(frozen=True)
class Field:
    """An attribute field of a dataset.

    Parameters
    ----------
    name, type:
        Column name and one of :data:`FIELD_TYPES`.
    required:
        Null values are rejected.
    unit:
        Unit of measure, e.g. ``"ug/m3"`` (documentation; conversion happens on ingest).
    personal:
        Kind of personal data (``id_number``, ``phone``, ``name``, ``plate``, ``address``,
        ``email``); such columns are masked for roles not allowed to see them.
    minimum, maximum:
        Inclusive numeric bounds checked on every write.
    """

    name: str
    type: str = "string"
    required: bool = False
    unit: str | None = None
    personal: str | None = None
    minimum: float | None = None
    maximum: float | None = None
    description: str = ""

    def __post_init__(self) -> None:
        if self.type not in FIELD_TYPES:
            raise ValidationError(
                f"field {self.name!r} has unknown type {self.type!r}; expected one of "
                f"{', '.join(FIELD_TYPES)}",
                field=self.name,
                expected="a known type",
            )
        if self.personal is not None and self.personal not in _PERSONAL:
            raise ValidationError(
                f"field {self.name!r}: personal={self.personal!r} is not one of {sorted(_PERSONAL)}",
                field=self.name,
            )

    @property
    def arrow_type(self) -> pa.DataType:
        return FIELD_TYPES[self.type]


@dataclass(frozen=True)
class DatasetSchema:
    """What a dataset holds and how it is laid out.

    Examples
    --------
    >>> s = DatasetSchema(ModelKind.POINT_ST, fields=(Field("speed", "float64"),))
    >>> s.key
    ('id', 't')
    >>> DatasetSchema.from_json(s.to_json()) == s
    True
    """

    model: ModelKind
    fields: tuple[Field, ...] = ()
    crs: str = WGS84
    geometry_type: GeometryType = GeometryType.POINT
    key: tuple[str, ...] = ()
    id_type: str = "string"
    time_partition: str = "1D"
    time_bin: str = "3h"  # the T of the Z2T / XZ2T key
    row_group_rows: int = 2048
    network: str | None = None  # NETWORK_SERIES / NETWORK_ST: the network dataset they refer to
    #: POINT_SERIES: the static point dataset of the stations, whose feature with the
    #: series' id gives each reading its position (as SensorThings links observations to a
    #: Thing's Location); ingest resolves positions from it, so readings carry only id,
    #: time and values.
    stations: str | None = None
    description: str = ""
    extra: dict[str, Any] = field(default_factory=dict, hash=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "model", ModelKind(self.model))
        object.__setattr__(self, "geometry_type", GeometryType(self.geometry_type))
        object.__setattr__(self, "crs", crs_from_user(self.crs))
        object.__setattr__(self, "fields", tuple(self.fields))
        if not self.key:
            object.__setattr__(self, "key", self.model.default_key)
        object.__setattr__(self, "key", tuple(self.key))
        if self.model is ModelKind.NETWORK_STATIC and self.geometry_type is GeometryType.POINT:
            object.__setattr__(self, "geometry_type", GeometryType.LINE)
        if self.model is ModelKind.NETWORK_ST:
            object.__setattr__(self, "geometry_type", GeometryType.LINE)
        if self.id_type not in ("string", "int64"):
            raise ValidationError(f"id_type must be 'string' or 'int64', not {self.id_type!r}")
        names = [f.name for f in self.fields]
        dup = {n for n in names if names.count(n) > 1}
        if dup:
            raise ValidationError(f"fields declared twice: {sorted(dup)}")
        reserved = set(self.canonical_columns) & set(names)
        if reserved:
            raise ValidationError(
                f"fields {sorted(reserved)} are canonical columns of the {self.model} model; "
                "do not declare them as attributes"
            )
        known = set(self.canonical_columns) | set(names)
        for k in self.key:
            if k not in known:
                raise ValidationError(f"key column {k!r} is not a column of this schema", field=k)
        if self.stations is not None and self.model is not ModelKind.POINT_SERIES:
            raise ValidationError(
                f"stations={self.stations!r}: only a point_series references a stations "
                f"dataset, not a {self.model}"
            )
        if self.row_group_rows < 256:
            raise ValidationError("row_group_rows must be at least 256")

    # -- derived -----------------------------------------------------------------------
    @property
    def geographic(self) -> bool:
        return is_geographic(self.crs)

    @property
    def point_layout(self) -> bool:
        """Rows are points (stored as x/y): point models with point geometry."""
        return self.model in (
            ModelKind.POINT_SERIES,
            ModelKind.POINT_ST,
        ) or (self.model is ModelKind.POINT_STATIC and self.geometry_type is GeometryType.POINT)

    @property
    def canonical_columns(self) -> tuple[str, ...]:
        m = self.model
        if m is ModelKind.TABLE:
            return (ID_COL,)
        if m is ModelKind.NETWORK_SERIES:
            return (ID_COL, TIME_COL)
        if m is ModelKind.NETWORK_ST:
            return (ID_COL, TRAJ_COL, TIME_COL, TIME_END_COL, GEOM_COL, TIMES_COL, EDGES_COL)
        if m is ModelKind.NETWORK_STATIC:
            return (ID_COL, FROM_COL, TO_COL, GEOM_COL)
        cols: tuple[str, ...] = (ID_COL,)
        if m.has_time:
            cols += (TIME_COL,)
        return cols + ((X_COL, Y_COL) if self.point_layout else (GEOM_COL,))

    def field(self, name: str) -> Field | None:
        for f in self.fields:
            if f.name == name:
                return f
        return None

    def with_(self, **changes: Any) -> DatasetSchema:
        return replace(self, **changes)

    # -- serialisation -----------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["model"] = str(self.model)
        d["geometry_type"] = str(self.geometry_type)
        d["key"] = list(self.key)
        d["fields"] = [asdict(f) for f in self.fields]
        return d

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> DatasetSchema:
        d = dict(d)
        d["fields"] = tuple(Field(**f) for f in d.get("fields", ()))
        d["key"] = tuple(d.get("key", ()))
        return cls(**d)

    @classmethod
    def from_json(cls, s: str) -> DatasetSchema:
        return cls.from_dict(json.loads(s))

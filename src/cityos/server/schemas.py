"""Request and response bodies of the HTTP API: separate create, update and public views,
validated at the edge so that a bad body is a 4xx before any domain code runs."""

from __future__ import annotations

import math
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

__all__ = [
    "AggColumn",
    "AggregateQuery",
    "ApiKeyCreate",
    "ApiKeyCreated",
    "ApiKeyPublic",
    "AuditEntryPublic",
    "AuditVerifyPublic",
    "DatasetPublic",
    "DepartmentCreate",
    "ErrorBody",
    "FeatureCollection",
    "GrantCreate",
    "GridSpec",
    "IdTemporalQuery",
    "JoinNearestQuery",
    "JoinRegionsQuery",
    "KnnQuery",
    "LoginJSON",
    "MaskingRuleSet",
    "NamePublic",
    "PolicyPublic",
    "PolicySet",
    "PushProblem",
    "QueryPage",
    "RangeQuery",
    "Region",
    "RoleCreate",
    "RowFilterCreate",
    "STRangeQuery",
    "SimilarQuery",
    "Token",
    "UnmaskCreate",
    "UserCreate",
    "UserPublic",
    "UserUpdate",
    "WriteRecords",
    "WriteResultPublic",
]

DATASET_NAME = r"^[a-z][a-z0-9_]{0,62}$"
NAME = r"^[A-Za-z0-9][A-Za-z0-9_.@\-]{0,99}$"
DatasetName = Annotated[str, Field(pattern=DATASET_NAME, description="dataset name")]
Name = Annotated[str, Field(pattern=NAME)]
Coord = Annotated[float, Field(allow_inf_nan=False, ge=-1e9, le=1e9)]


class _Body(BaseModel):
    # unknown keys are errors: a typo must not silently widen a query
    model_config = ConfigDict(extra="forbid")


class ErrorBody(BaseModel):
    """Every 4xx/5xx answer: what went wrong and the error's type."""

    detail: Any
    error: str
    problems: list[dict[str, Any]] | None = Field(
        default=None, description="every bad record of a write: dataset, row, field, message"
    )


# -- identity -------------------------------------------------------------------------------
class LoginJSON(_Body):
    username: str = Field(min_length=1, max_length=100)
    password: str = Field(min_length=1, max_length=1000)


class Token(BaseModel):
    access_token: str
    token_type: Literal["bearer"] = "bearer"
    expires_in: int


class UserCreate(_Body):
    username: Name
    password: str | None = Field(
        default=None,
        min_length=8,
        max_length=1000,
        description="omit for a machine user (API keys only)",
    )
    full_name: str = Field(default="", max_length=200)
    department: Name | None = None
    roles: list[Name] = Field(default_factory=list, max_length=50)


class UserUpdate(_Body):
    password: str | None = Field(default=None, min_length=8, max_length=1000)
    is_active: bool | None = None
    add_roles: list[Name] = Field(default_factory=list, max_length=50)
    remove_roles: list[Name] = Field(default_factory=list, max_length=50)


class UserPublic(BaseModel):
    id: int
    username: str
    full_name: str
    department: str | None
    roles: list[str]
    is_active: bool


class RoleCreate(_Body):
    name: Name
    description: str = Field(default="", max_length=1000)


class DepartmentCreate(_Body):
    name: Name
    description: str = Field(default="", max_length=1000)


class NamePublic(BaseModel):
    name: str


class ApiKeyCreate(_Body):
    name: str = Field(default="", max_length=200)
    username: Name | None = Field(default=None, description="admins may create keys for others")


class ApiKeyCreated(BaseModel):
    key_id: str
    key: str = Field(description="shown once; store it securely")


class ApiKeyPublic(BaseModel):
    key_id: str
    username: str
    name: str
    created_at: datetime
    revoked: bool


# -- policy ---------------------------------------------------------------------------------
class PolicySet(_Body):
    classification: Literal["public", "internal", "sensitive", "secret"]
    owner_department: Name | None = None


class PolicyPublic(BaseModel):
    dataset: str
    classification: str
    owner_department: str | None


class GrantCreate(_Body):
    role: Name
    dataset: Annotated[str, Field(pattern=r"^(\*|[a-z][a-z0-9_]{0,62})$")]
    permission: Literal["read", "write"] = "read"


class RowFilterCreate(_Body):
    role: Name
    kind: Literal["bbox", "polygon", "column"]
    bbox: list[Coord] | None = Field(default=None, min_length=4, max_length=4)
    wkt: str | None = Field(default=None, max_length=100_000)
    column: Annotated[str, Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]{0,62}$")] | None = None
    values: list[str | int | float] | None = Field(default=None, max_length=1000)

    def spec(self) -> dict[str, Any]:
        if self.kind == "bbox":
            return {"bbox": self.bbox}
        if self.kind == "polygon":
            return {"wkt": self.wkt}
        return {"column": self.column, "values": self.values}


class MaskingRuleSet(_Body):
    strategy: Literal["partial", "redact", "hash", "null"] = "partial"
    keep_start: int = Field(default=0, ge=0, le=64)
    keep_end: int = Field(default=0, ge=0, le=64)
    mask_char: str = Field(default="*", min_length=1, max_length=1)


class UnmaskCreate(_Body):
    role: Name
    dataset: Annotated[str, Field(pattern=r"^(\*|[a-z][a-z0-9_]{0,62})$")] = "*"
    personal: Literal["*", "id_number", "phone", "name", "plate", "address", "email"] = "*"


# -- datasets -------------------------------------------------------------------------------
class DatasetPublic(BaseModel):
    name: str
    model: str
    description: str
    rows: int
    files: int
    bytes: int
    t_min: str | None
    t_max: str | None
    bbox: list[float] | None
    crs: str
    fields: list[dict[str, Any]]
    classification: str
    owner_department: str | None
    masked_fields: list[str]


class Region(_Body):
    """A query area: exactly one of ``bbox``, ``wkt`` or ``geojson``."""

    bbox: list[Coord] | None = Field(
        default=None, min_length=4, max_length=4, description="[minx, miny, maxx, maxy]"
    )
    wkt: str | None = Field(default=None, max_length=100_000)
    geojson: dict[str, Any] | None = None
    crs: str | None = Field(default=None, max_length=100)

    @model_validator(mode="after")
    def _one(self) -> Region:
        given = [v is not None for v in (self.bbox, self.wkt, self.geojson)]
        if sum(given) != 1:
            raise ValueError("give exactly one of bbox, wkt or geojson")
        if self.bbox is not None:
            b = self.bbox
            if b[0] > b[2] or b[1] > b[3]:
                raise ValueError("bbox must be [minx, miny, maxx, maxy] with min <= max")
        return self

    def to_geometry(self) -> Any:
        """A bbox tuple or a valid shapely geometry; raises ``ValueError`` when invalid."""
        import shapely

        if self.bbox is not None:
            return tuple(self.bbox)
        try:
            gj = self.geojson
            if gj is not None and gj.get("type") == "Feature":
                gj = gj.get("geometry")
            if gj is not None and not isinstance(gj, dict):
                raise ValueError("region.geojson must be a GeoJSON geometry or Feature")
            geom = (
                shapely.from_wkt(self.wkt) if self.wkt is not None else shapely.geometry.shape(gj)
            )
        except Exception as exc:  # shapely and GEOS raise many types for bad input
            what = "region.wkt" if self.wkt is not None else "region.geojson"
            raise ValueError(f"{what}: query geometry cannot be read ({str(exc)[:120]})") from exc
        if not hasattr(geom, "geom_type"):
            raise ValueError("region: query geometry cannot be read")
        if geom is None or geom.is_empty or not geom.is_valid:
            reason = shapely.is_valid_reason(geom) if geom is not None else "empty"
            raise ValueError(f"region: query geometry is empty or invalid: {reason}")
        if not all(math.isfinite(v) for v in geom.bounds):
            raise ValueError("region: query geometry has non-finite coordinates")
        return geom


class _Window(_Body):
    start: datetime | None = None
    end: datetime | None = None

    @model_validator(mode="after")
    def _order(self) -> _Window:
        if self.start is not None and self.end is not None:
            if (self.start.tzinfo is None) != (self.end.tzinfo is None):
                raise ValueError("start and end must both have a time zone or both not")
            if self.start > self.end:
                raise ValueError("start must not be after end")
        return self


def _geometry(region: Region | None) -> tuple[Any, str | None]:
    return (None, None) if region is None else (region.to_geometry(), region.crs)


class RangeQuery(_Body):
    region: Region

    def to_spec(self, dataset: str) -> Any:
        from cityos.store import Range

        g, crs = _geometry(self.region)
        return Range(dataset, g, crs=crs)


class STRangeQuery(_Window):
    region: Region
    start: datetime
    end: datetime

    def to_spec(self, dataset: str) -> Any:
        from cityos.store import STRange

        g, crs = _geometry(self.region)
        return STRange(dataset, g, self.start, self.end, crs)


class IdTemporalQuery(_Window):
    ids: list[Annotated[str, Field(max_length=200)] | int] = Field(min_length=1, max_length=10_000)

    def to_spec(self, dataset: str) -> Any:
        from cityos.store import IDTemporal

        return IDTemporal(dataset, tuple(self.ids), self.start, self.end)


class KnnQuery(_Window):
    x: Coord
    y: Coord
    k: int = Field(ge=1, le=10_000)
    crs: str | None = Field(default=None, max_length=100)

    def to_spec(self, dataset: str, trajectories: bool = False) -> Any:
        from cityos.store import KNN, KNNTrajectories

        cls = KNNTrajectories if trajectories else KNN
        return cls(dataset, self.x, self.y, self.k, self.start, self.end, self.crs)


#: The most coordinates a similarity query may send (its cost grows with their number).
MAX_TRAJECTORY_POINTS = 2_000


class SimilarQuery(_Window):
    coords: list[Annotated[list[Coord], Field(min_length=2, max_length=2)]] = Field(
        min_length=2, max_length=MAX_TRAJECTORY_POINTS
    )
    k: int = Field(ge=1, le=1000)
    metric: Literal["dtw", "frechet"] = "dtw"
    crs: str | None = Field(default=None, max_length=100)

    def to_spec(self, dataset: str) -> Any:
        from cityos.store import Similar

        return Similar(dataset, self.coords, self.k, self.start, self.end, self.metric, self.crs)


class JoinRegionsQuery(_Window):
    regions: DatasetName
    region: Region | None = None

    def to_spec(self, dataset: str) -> Any:
        from cityos.store import JoinRegions

        g, crs = _geometry(self.region)
        return JoinRegions(dataset, self.regions, self.start, self.end, g, crs)


class JoinNearestQuery(_Window):
    edges: DatasetName
    max_distance_m: float = Field(default=50.0, gt=0, le=100_000)
    region: Region | None = None

    def to_spec(self, dataset: str) -> Any:
        from cityos.store import JoinNearest

        g, crs = _geometry(self.region)
        return JoinNearest(dataset, self.edges, self.max_distance_m, self.start, self.end, g, crs)


class GridSpec(_Body):
    """A grid of about ``cell_m`` metres over ``bbox``, in ``crs`` (default: the dataset's
    CRS, so a projected dataset gets a grid in its own metres)."""

    bbox: list[Coord] = Field(min_length=4, max_length=4)
    cell_m: float = Field(gt=0, le=1_000_000)
    crs: str | None = Field(
        default=None, max_length=100, description="CRS of bbox, e.g. 'EPSG:4326'"
    )

    @field_validator("bbox")
    @classmethod
    def _order(cls, b: list[float]) -> list[float]:
        if b[0] >= b[2] or b[1] >= b[3]:
            raise ValueError("grid bbox must be [minx, miny, maxx, maxy] with min < max")
        return b

    def to_grid(self) -> Any:
        """The store's ``Grid`` of about ``cell_m`` metres over ``bbox``."""
        from cityos.store import Grid

        b = self.bbox
        return Grid.from_metres((b[0], b[1], b[2], b[3]), self.cell_m, crs=self.crs)


Ident = Annotated[str, Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]{0,62}$")]
AggFunction = Literal["count", "sum", "mean", "min", "max"]


def _count_rows() -> dict[str, AggFunction | AggColumn | tuple[str, AggFunction]]:
    return {"n": "count"}


class AggColumn(_Body):
    """One aggregate of a column: ``{"column": "speed", "fn": "mean"}``."""

    column: Ident
    fn: AggFunction


class AggregateQuery(_Window):
    """Aggregates per grid cell or region and time bin. ``aggs`` maps output names to
    ``"count"``, to a function applied to the column of the same name
    (``{"speed": "mean"}``), to ``[column, fn]`` or to ``{"column": ..., "fn": ...}``."""

    grid: GridSpec | None = None
    regions: DatasetName | None = None
    time_bin: Annotated[str, Field(pattern=r"^[1-9][0-9]{0,3}(min|h|D|s)$")] | None = "1h"
    aggs: dict[Ident, AggFunction | AggColumn | tuple[Ident, AggFunction]] = Field(
        default_factory=_count_rows, min_length=1, max_length=50
    )
    region: Region | None = None

    @model_validator(mode="after")
    def _one(self) -> AggregateQuery:
        if (self.grid is None) == (self.regions is None):
            raise ValueError("give exactly one of grid or regions")
        return self

    def to_spec(self, dataset: str) -> Any:
        from cityos.store import Aggregate

        aggs = {
            k: (v.column, v.fn) if isinstance(v, AggColumn) else v for k, v in self.aggs.items()
        }
        g, crs = _geometry(self.region)
        return Aggregate(
            dataset,
            self.grid.to_grid() if self.grid else None,
            self.regions,
            self.time_bin,
            aggs,
            self.start,
            self.end,
            g,
            crs,
        )


class WriteRecords(_Body):
    records: list[dict[str, Any]] = Field(min_length=1, max_length=100_000)
    source: str | None = Field(
        default=None,
        max_length=200,
        pattern=r"^[A-Za-z0-9][A-Za-z0-9_.:@\-]*$",
        description="name of the pushing system (kept in lineage and dead letters)",
    )


class PushProblem(BaseModel):
    position: str
    rule: str
    message: str


class WriteResultPublic(BaseModel):
    """What happened to a pushed batch; every accepted record is durable when this is sent."""

    rows_in: int
    rows_written: int
    duplicates: int
    rejected: int = Field(description="records dead-lettered (see problems)")
    problems: list[PushProblem]


class QueryPage(BaseModel):
    """One page of a query answer (``format=json``)."""

    total: int = Field(description="rows in the whole answer")
    offset: int
    limit: int
    next_offset: int | None
    columns: list[str]
    masked: list[str] = Field(description="columns whose personal values were masked")
    rows: list[dict[str, Any]]


class FeatureCollection(BaseModel):
    """One page of a query answer as GeoJSON (``format=geojson``)."""

    type: Literal["FeatureCollection"] = "FeatureCollection"
    features: list[dict[str, Any]]
    total: int
    offset: int
    next_offset: int | None


# -- audit ----------------------------------------------------------------------------------
class AuditEntryPublic(BaseModel):
    seq: int
    ts: str
    actor: str
    action: str
    dataset: str | None
    detail: dict[str, Any]
    hash: str


class AuditVerifyPublic(BaseModel):
    ok: bool
    entries: int
    first_broken: int | None
    reason: str
    head_seq: int
    head_hash: str

"""Python types for the six models: thin, validated wrappers over an Arrow table in
canonical form, with pandas / GeoPandas / Arrow interop."""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np
import pandas as pd
import pyarrow as pa

from cityos.model._schema import (
    GEOM_COL,
    ID_COL,
    TIME_COL,
    X_COL,
    Y_COL,
    DatasetSchema,
    Field,
    GeometryType,
    ModelKind,
)
from cityos.model._validate import conform

__all__ = [
    "MovingPoints",
    "NetworkSeries",
    "PlainTable",
    "PointSeries",
    "RoadNetwork",
    "STFrame",
    "StaticFeatures",
    "Trajectories",
    "frame_for",
]


class STFrame:
    """Records of one model, validated and in canonical columns.

    Build one with ``from_pandas``, ``from_geopandas`` or ``from_arrow``; read it back with
    ``to_arrow``, ``to_pandas`` or ``to_geopandas``.
    """

    kind: ClassVar[ModelKind]
    _default_geometry: ClassVar[GeometryType] = GeometryType.POINT

    def __init__(self, table: pa.Table, schema: DatasetSchema) -> None:
        self.table = table
        self.schema_ = schema

    # -- schema ------------------------------------------------------------------------
    @classmethod
    def schema(cls, *fields: Field | str, **kw: Any) -> DatasetSchema:
        """A :class:`DatasetSchema` for this model; strings in ``fields`` are float64 fields."""
        fs = tuple(f if isinstance(f, Field) else Field(f, "float64") for f in fields)
        kw.setdefault("geometry_type", cls._default_geometry)
        return DatasetSchema(cls.kind, fields=fs, **kw)

    # -- constructors ------------------------------------------------------------------
    @classmethod
    def from_arrow(cls, table: pa.Table, schema: DatasetSchema | None = None) -> STFrame:
        schema = schema or cls.schema()
        return cls(conform(table, schema), schema)

    @classmethod
    def from_pandas(
        cls,
        df: pd.DataFrame,
        schema: DatasetSchema | None = None,
        *,
        id: str = ID_COL,
        t: str = TIME_COL,
        x: str = X_COL,
        y: str = Y_COL,
        geometry: str = GEOM_COL,
    ) -> STFrame:
        """Build from a DataFrame, naming the columns that hold the canonical fields.

        Examples
        --------
        >>> df = pd.DataFrame({"car": ["a"], "time": ["2026-01-01T08:00Z"], "lon": [116.4], "lat": [39.9]})
        >>> len(MovingPoints.from_pandas(df, id="car", t="time", x="lon", y="lat"))
        1
        """
        ren = {
            k: v
            for k, v in {id: ID_COL, t: TIME_COL, x: X_COL, y: Y_COL, geometry: GEOM_COL}.items()
            if k in df.columns and k != v
        }
        return cls.from_arrow(_to_table(df.rename(columns=ren)), schema)

    @classmethod
    def from_geopandas(cls, gdf: Any, schema: DatasetSchema | None = None, **names: str) -> STFrame:
        """Build from a GeoDataFrame (its CRS becomes the schema's when none is given)."""
        if schema is None and gdf.crs is not None:
            schema = cls.schema(crs=gdf.crs.to_string())
        df = pd.DataFrame(gdf.drop(columns=[gdf.geometry.name]))
        sch = schema or cls.schema()
        if sch.point_layout:
            df[X_COL] = gdf.geometry.x.to_numpy()
            df[Y_COL] = gdf.geometry.y.to_numpy()
        else:
            df[GEOM_COL] = gdf.geometry.to_wkb().to_numpy()
        return cls.from_pandas(df, sch, **names)

    # -- readers -----------------------------------------------------------------------
    def to_arrow(self) -> pa.Table:
        return self.table

    def to_pandas(self) -> pd.DataFrame:
        df: pd.DataFrame = self.table.to_pandas()
        return df

    def to_geopandas(self) -> Any:
        return table_to_geopandas(self.table, self.schema_.crs)

    def __len__(self) -> int:
        return int(self.table.num_rows)

    def __repr__(self) -> str:
        return f"<{type(self).__name__}: {len(self)} rows, crs={self.schema_.crs}>"


def _to_table(df: pd.DataFrame) -> pa.Table:
    from cityos.model._validate import to_arrow_table

    return to_arrow_table(df)


def table_to_geopandas(table: pa.Table, crs: str) -> Any:
    """A GeoDataFrame from a canonical table (x/y points or WKB ``geometry``)."""
    import geopandas as gpd
    import shapely

    df = table.to_pandas()
    if X_COL in df.columns and Y_COL in df.columns and GEOM_COL not in df.columns:
        geom = gpd.points_from_xy(df[X_COL], df[Y_COL])
    elif GEOM_COL in df.columns:
        geom = shapely.from_wkb(np.asarray(df[GEOM_COL]))
        df = df.drop(columns=[GEOM_COL])
    else:
        return df
    return gpd.GeoDataFrame(df, geometry=geom, crs=crs)


class StaticFeatures(STFrame):
    """Point-based static: POIs, facilities, enterprises (points), or districts (regions)."""

    kind = ModelKind.POINT_STATIC


class PointSeries(STFrame):
    """Point-based spatial time series: fixed sensors with changing readings."""

    kind = ModelKind.POINT_SERIES


class MovingPoints(STFrame):
    """Point-based spatio-temporal: GPS points of moving objects, events, 311 requests."""

    kind = ModelKind.POINT_ST


class RoadNetwork(STFrame):
    """Network-based static: road segments (edges) with from/to nodes and line geometry."""

    kind = ModelKind.NETWORK_STATIC
    _default_geometry = GeometryType.LINE


class NetworkSeries(STFrame):
    """Network-based time series: readings per road segment (``id`` = edge id) over time."""

    kind = ModelKind.NETWORK_SERIES


class Trajectories(STFrame):
    """Network-based spatio-temporal: trajectory segments with per-point times and,
    once map-matched, the road segments they follow."""

    kind = ModelKind.NETWORK_ST
    _default_geometry = GeometryType.LINE


class PlainTable(STFrame):
    """Plain attribute records keyed by an entity id (payments, permits, registrations)."""

    kind = ModelKind.TABLE


_BY_KIND: dict[ModelKind, type[STFrame]] = {
    c.kind: c
    for c in (
        StaticFeatures,
        PointSeries,
        MovingPoints,
        RoadNetwork,
        NetworkSeries,
        Trajectories,
        PlainTable,
    )
}


def frame_for(kind: ModelKind) -> type[STFrame]:
    """The Python type for a model kind."""
    return _BY_KIND[ModelKind(kind)]

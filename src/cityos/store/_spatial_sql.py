"""Spatial SQL (``ST_*`` functions) on both engines.

DuckDB loads its ``spatial`` extension from the ``duckdb-extension-spatial`` package
installed next to it (never from the network: automatic install and load are turned off,
and the extension's signature is checked). Spark gets the same core functions as UDFs over
the shared geometry kernel (shapely/GEOS, the library DuckDB's extension also uses), with
geometry passed as WKB, so one SQL text runs on either engine and gives the same answers.
Distances, lengths, areas and buffers are planar, in the units of the dataset's CRS.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from cityos.errors import EngineError

if TYPE_CHECKING:
    from cityos.store import Store

__all__ = [
    "SPARK_FUNCTIONS",
    "create_spark_views",
    "register_duckdb",
    "register_spark",
    "spatial_extension_path",
    "uses_spatial",
]

_ST_CALL = re.compile(r"\bST_\w+\s*\(", re.IGNORECASE)


def uses_spatial(query: str) -> bool:
    """Whether SQL text calls an ``ST_*`` function: loading the extension (and checking its
    signature) takes about a second, so a connection loads it only for such queries.

    Examples
    --------
    >>> uses_spatial("SELECT st_length(geometry) FROM roads"), uses_spatial("SELECT 1")
    (True, False)
    """
    return _ST_CALL.search(query) is not None


def spatial_extension_path() -> Path:
    """The spatial extension file shipped in ``duckdb-extension-spatial`` for the installed
    DuckDB version.

    Examples
    --------
    >>> spatial_extension_path().name
    'spatial.duckdb_extension'
    """
    import duckdb

    try:
        import duckdb_extension_spatial
    except ImportError as exc:
        raise EngineError(
            "spatial SQL needs the package duckdb-extension-spatial built for DuckDB "
            f"{duckdb.__version__}: pip install 'duckdb-extension-spatial=={duckdb.__version__}'"
        ) from exc
    root = Path(duckdb_extension_spatial.__file__).parent / "extensions"
    path = root / f"v{duckdb.__version__}" / "spatial.duckdb_extension"
    if not path.is_file():
        found = sorted(p.name for p in root.glob("v*"))
        raise EngineError(
            f"duckdb-extension-spatial has no build for DuckDB {duckdb.__version__} (it has "
            f"{found}); install the matching pair: "
            f"pip install 'duckdb=={duckdb.__version__}' "
            f"'duckdb-extension-spatial=={duckdb.__version__}'"
        )
    return path


def register_duckdb(con: Any) -> None:
    """Load the spatial extension into a DuckDB connection, from the installed package.

    Examples
    --------
    >>> import duckdb
    >>> con = duckdb.connect()
    >>> register_duckdb(con)
    >>> con.sql("SELECT ST_AsText(ST_Point(1, 2)), ST_Distance(ST_Point(0, 0), ST_Point(3, 4))").fetchone()
    ('POINT (1 2)', 5.0)
    """
    import duckdb

    con.execute("SET autoinstall_known_extensions = false")
    con.execute("SET autoload_known_extensions = false")
    path = str(spatial_extension_path()).replace("'", "''")
    try:
        con.execute(f"LOAD '{path}'")
    except duckdb.Error as exc:
        raise EngineError(f"cannot load DuckDB's spatial extension from {path}: {exc}") from exc


# -- Spark: the same functions over shapely, geometry as WKB ------------------------------------
def _geoms(s: pd.Series) -> Any:
    import numpy as np
    import shapely

    return shapely.from_wkb(np.asarray(s.to_numpy(dtype=object), dtype=object), on_invalid="ignore")


def _wkb(g: Any) -> pd.Series:
    import shapely

    return pd.Series(shapely.to_wkb(g), dtype=object)


def _num(v: Any) -> pd.Series:
    return pd.Series(v, dtype="float64")


def _bool(v: Any, missing: Any) -> pd.Series:
    return pd.Series(v, dtype="boolean").mask(missing)


def _st_point(x: pd.Series, y: pd.Series) -> pd.Series:
    import shapely

    return _wkb(shapely.points(x.to_numpy(dtype="float64"), y.to_numpy(dtype="float64")))


def _st_geomfromtext(t: pd.Series) -> pd.Series:
    import numpy as np
    import shapely

    return _wkb(shapely.from_wkt(np.asarray(t.to_numpy(dtype=object)), on_invalid="ignore"))


def _st_geomfromwkb(b: pd.Series) -> pd.Series:
    return _wkb(_geoms(b))


def _st_astext(b: pd.Series) -> pd.Series:
    import shapely

    return pd.Series(shapely.to_wkt(_geoms(b), rounding_precision=-1), dtype=object)


def _st_x(b: pd.Series) -> pd.Series:
    import shapely

    return _num(shapely.get_x(_geoms(b)))


def _st_y(b: pd.Series) -> pd.Series:
    import shapely

    return _num(shapely.get_y(_geoms(b)))


def _st_length(b: pd.Series) -> pd.Series:
    import shapely

    return _num(shapely.length(_geoms(b)))


def _st_area(b: pd.Series) -> pd.Series:
    import shapely

    return _num(shapely.area(_geoms(b)))


def _st_distance(a: pd.Series, b: pd.Series) -> pd.Series:
    import shapely

    return _num(shapely.distance(_geoms(a), _geoms(b)))


def _predicate(name: str) -> Any:
    def run(a: pd.Series, b: pd.Series) -> pd.Series:
        import shapely

        ga, gb = _geoms(a), _geoms(b)
        return _bool(
            getattr(shapely, name)(ga, gb), shapely.is_missing(ga) | shapely.is_missing(gb)
        )

    run.__name__ = f"_st_{name}"
    return run


def _st_dwithin(a: pd.Series, b: pd.Series, d: pd.Series) -> pd.Series:
    import shapely

    ga, gb = _geoms(a), _geoms(b)
    within = shapely.distance(ga, gb) <= d.to_numpy(dtype="float64")
    return _bool(within, shapely.is_missing(ga) | shapely.is_missing(gb))


def _st_buffer(b: pd.Series, d: pd.Series) -> pd.Series:
    import shapely

    # 8 segments per quarter circle, as DuckDB's ST_Buffer (shapely's default is 16)
    return _wkb(shapely.buffer(_geoms(b), d.to_numpy(dtype="float64"), quad_segs=8))


def _st_centroid(b: pd.Series) -> pd.Series:
    import shapely

    return _wkb(shapely.centroid(_geoms(b)))


def _st_envelope(b: pd.Series) -> pd.Series:
    import shapely

    return _wkb(shapely.envelope(_geoms(b)))


def _haversine_m(x1: pd.Series, y1: pd.Series, x2: pd.Series, y2: pd.Series) -> pd.Series:
    from cityos.geo import haversine

    return _num(haversine(*(s.to_numpy(dtype="float64") for s in (x1, y1, x2, y2))))


#: Spark SQL name -> (vectorised function over pandas Series, Spark return type)
SPARK_FUNCTIONS: dict[str, tuple[Any, str]] = {
    "ST_Point": (_st_point, "binary"),
    "ST_GeomFromText": (_st_geomfromtext, "binary"),
    "ST_GeomFromWKB": (_st_geomfromwkb, "binary"),
    "ST_AsWKB": (_st_geomfromwkb, "binary"),
    "ST_AsText": (_st_astext, "string"),
    "ST_X": (_st_x, "double"),
    "ST_Y": (_st_y, "double"),
    "ST_Length": (_st_length, "double"),
    "ST_Area": (_st_area, "double"),
    "ST_Distance": (_st_distance, "double"),
    "ST_Intersects": (_predicate("intersects"), "boolean"),
    "ST_Contains": (_predicate("contains"), "boolean"),
    "ST_Within": (_predicate("within"), "boolean"),
    "ST_DWithin": (_st_dwithin, "boolean"),
    "ST_Buffer": (_st_buffer, "binary"),
    "ST_Centroid": (_st_centroid, "binary"),
    "ST_Envelope": (_st_envelope, "binary"),
    "haversine_m": (_haversine_m, "double"),
}


def register_spark(session: Any) -> None:
    """Register :data:`SPARK_FUNCTIONS` as SQL functions of a Spark session (geometry as
    WKB binary, so they compose: ``ST_Length(ST_Buffer(geometry, 1))``)."""
    import warnings

    from pyspark.sql.pandas.functions import pandas_udf

    with warnings.catch_warnings():  # PySpark warns about pandas 3 on every pandas UDF
        warnings.filterwarnings(
            "ignore", message=".*PySpark does not yet fully support", category=FutureWarning
        )
        for name, (fn, rtype) in SPARK_FUNCTIONS.items():
            udf: Any = pandas_udf  # its overloads cannot see a function chosen from a table
            session.udf.register(name, udf(fn, rtype))


def create_spark_views(session: Any, store: Store) -> list[str]:
    """A temporary view per dataset, with the columns :meth:`Store.sql` shows (points as
    ``x``/``y``, other geometry as WKB ``geometry``); returns the view names."""
    from cityos.store._sql import spark_views

    return spark_views(session, store.sql_views())

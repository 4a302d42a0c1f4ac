"""User SQL over every dataset, on either engine: each dataset is a view under its name with
the columns of :meth:`cityos.store.Store.sql` (points as ``x``/``y``, other geometry as WKB
``geometry``), the same ``ST_*`` and helper functions registered on both, so one SQL text
gives the same answer on DuckDB and on Spark."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa

from cityos.errors import QueryError

__all__ = ["SqlView", "duckdb_sql", "register_duckdb_functions", "spark_sql", "spark_views"]


@dataclass(frozen=True)
class SqlView:
    """One dataset as SQL sees it: its name, its files and whether points are stored as a
    point geometry (shown as ``x`` and ``y``)."""

    name: str
    files: tuple[str, ...]
    point_layout: bool


def register_duckdb_functions(con: Any) -> None:
    """``haversine_m(x1, y1, x2, y2)`` and ``z2_cell(x, y, level)`` on a DuckDB connection."""
    import duckdb

    from cityos.geo import haversine, z2_key

    def hav(x1: pa.Array, y1: pa.Array, x2: pa.Array, y2: pa.Array) -> pa.Array:
        return pa.array(haversine(*(a.to_numpy(zero_copy_only=False) for a in (x1, y1, x2, y2))))

    def cell(x: pa.Array, y: pa.Array, level: pa.Array) -> pa.Array:
        lv = level.to_numpy(zero_copy_only=False).astype(np.int64)
        z = z2_key(
            x.to_numpy(zero_copy_only=False),
            y.to_numpy(zero_copy_only=False),
            (-180.0, -90.0, 180.0, 90.0),
        )
        return pa.array((z >> (np.uint64(62) - 2 * lv.astype(np.uint64))).astype(np.int64))

    dbl, big = duckdb.sqltype("DOUBLE"), duckdb.sqltype("BIGINT")
    con.create_function("haversine_m", hav, [dbl, dbl, dbl, dbl], dbl, type="arrow")
    con.create_function("z2_cell", cell, [dbl, dbl, duckdb.sqltype("INTEGER")], big, type="arrow")


def duckdb_sql(
    query: str,
    views: Sequence[SqlView] = (),
    tables: dict[str, pa.Table] | None = None,
    *,
    confined: bool = False,
) -> pa.Table:
    """Run ``query`` on a fresh DuckDB connection with a view per dataset file set and a
    table per in-memory ``tables`` entry.

    ``confined`` runs the query with external access disabled and the configuration locked
    after the tables are loaded: the SQL then sees only ``tables`` and cannot read files,
    attach databases, install or load extensions, or scan Python objects (the secured path
    of :meth:`cityos.access.SecureStore.sql`).

    Examples
    --------
    >>> duckdb_sql("SELECT count(*) AS n, max(v) AS m FROM t", tables={"t": pa.table({"v": [1, 2]})},
    ...            confined=True).to_pylist()
    [{'n': 2, 'm': 2}]
    """
    import duckdb

    from cityos.store._spatial_sql import register_duckdb, uses_spatial

    con = duckdb.connect(config={"python_enable_replacements": False} if confined else {})
    try:
        register_duckdb_functions(con)
        if uses_spatial(query):  # ST_* functions: DuckDB's spatial extension
            register_duckdb(con)
        for v in views:
            lst = ", ".join("'" + f.replace("'", "''") + "'" for f in v.files)
            cols = (
                "* EXCLUDE (geometry), geometry.x AS x, geometry.y AS y" if v.point_layout else "*"
            )
            con.execute(
                f'CREATE VIEW "{_ident(v.name)}" AS SELECT {cols} '
                f"FROM read_parquet([{lst}], union_by_name=true)"
            )
        for name, tbl in (tables or {}).items():
            con.register("__cityos_load", tbl)
            con.execute(f'CREATE TABLE "{_ident(name)}" AS SELECT * FROM __cityos_load')
            con.unregister("__cityos_load")
        if confined:
            con.execute("SET enable_external_access = false")
            con.execute("SET lock_configuration = true")
        rel = con.sql(query)
        if rel is None:  # a statement without a result
            return pa.table({})
        out: pa.Table = rel.to_arrow_table() if hasattr(rel, "to_arrow_table") else rel.arrow()
        return out
    except duckdb.Error as exc:
        raise QueryError(f"SQL failed: {exc}") from exc
    finally:
        con.close()


def _ident(name: str) -> str:
    return name.replace('"', '""')


def spark_views(session: Any, views: Sequence[SqlView]) -> list[str]:
    """A temporary view per dataset on a Spark session, with the columns DuckDB shows."""
    names = []
    for v in views:
        df = session.read.option("mergeSchema", "true").parquet(*v.files)
        if v.point_layout:
            cols = [f"`{c}`" for c in df.columns if c != "geometry"]
            df = df.selectExpr(*cols, "geometry.x AS x", "geometry.y AS y")
        df.createOrReplaceTempView(v.name)
        names.append(v.name)
    return names


def spark_sql(session: Any, query: str, views: Sequence[SqlView]) -> pa.Table:
    """Run ``query`` on a Spark session (its ``ST_*`` functions registered) over ``views``.
    The views are dropped afterwards, so a later query sees the datasets as they are then."""
    from cityos.store._spark import _quiet

    try:
        from pyspark.errors import PySparkException
    except ImportError:  # pragma: no cover - older PySpark
        PySparkException = Exception  # type: ignore[misc,assignment]
    names: list[str] = []
    with _quiet():
        try:
            names = spark_views(session, views)
            out: pa.Table = session.sql(query).toArrow()
            return out
        except PySparkException as exc:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise QueryError(f"SQL failed on Spark: {first}") from exc
        finally:
            for n in names:
                session.catalog.dropTempView(n)

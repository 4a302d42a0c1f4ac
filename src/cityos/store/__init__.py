"""The spatio-temporal data engine: catalog, compressed and indexed storage, query planning,
and execution on DuckDB (embedded), Spark (at scale) or any engine registered with
:func:`register_engine`. Start with :func:`open_city`; every query is a spec
(:class:`Scan`, :class:`STRange`, :class:`Aggregate`, ...) answered by :meth:`Store.query`."""

from cityos.store._catalog import DatasetInfo
from cityos.store._engine import (
    DatasetContext,
    Deadline,
    QueryEngine,
    QueryResult,
    Restriction,
    engine_class,
    engine_names,
    register_engine,
)
from cityos.store._plan import Predicate
from cityos.store._spec import (
    KNN,
    QUERIES,
    Agg,
    Aggregate,
    Grid,
    IDTemporal,
    JoinNearest,
    JoinRegions,
    KNNTrajectories,
    QuerySpec,
    Range,
    Scan,
    Similar,
    STRange,
    normalise_aggs,
)
from cityos.store._store import CompactResult, Store, WriteResult, open_city

__all__ = [
    "KNN",
    "QUERIES",
    "Agg",
    "Aggregate",
    "CompactResult",
    "DatasetContext",
    "DatasetInfo",
    "Deadline",
    "Grid",
    "IDTemporal",
    "JoinNearest",
    "JoinRegions",
    "KNNTrajectories",
    "Predicate",
    "QueryEngine",
    "QueryResult",
    "QuerySpec",
    "Range",
    "Restriction",
    "STRange",
    "Scan",
    "Similar",
    "Store",
    "WriteResult",
    "engine_class",
    "engine_names",
    "normalise_aggs",
    "open_city",
    "register_engine",
]

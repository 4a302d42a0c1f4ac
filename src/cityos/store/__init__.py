"""The spatio-temporal data engine: catalog, compressed and indexed storage, query planning,
and execution on DuckDB (embedded) or Spark (at scale). Start with :func:`open_city`."""

from cityos.store._catalog import DatasetInfo
from cityos.store._engine import QueryEngine, QueryResult
from cityos.store._plan import Grid, Predicate
from cityos.store._store import CompactResult, Store, WriteResult, open_city

__all__ = [
    "CompactResult",
    "DatasetInfo",
    "Grid",
    "Predicate",
    "QueryEngine",
    "QueryResult",
    "Store",
    "WriteResult",
    "open_city",
]

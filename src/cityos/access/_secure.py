"""The store seen through one user's rights: :class:`SecureStore` checks grants, applies
row filters, masks personal fields and audits protected reads and every write, so the
HTTP server is not the only gate.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import pyarrow as pa

from cityos.access._audit import record
from cityos.access._identity import Principal
from cityos.access._masking import mask_table
from cityos.access._policy import ReadDecision, decide_read, decide_write, load_policy
from cityos.access._rowfilter import apply_row_filters
from cityos.access.errors import PermissionDenied
from cityos.errors import DatasetNotFound

if TYPE_CHECKING:
    import pandas as pd

    from cityos.db import Database

__all__ = ["SecureResult", "SecureStore"]

# knn under a row filter fetches more candidates until k visible ones are found
_KNN_GROWTH = 4
_KNN_CAP = 100_000


@dataclass
class SecureResult:
    """A query answer after row filtering and masking.

    Attributes
    ----------
    table:
        The rows the caller may see, personal fields masked.
    masked:
        Columns that were masked.
    rows_hidden:
        Rows removed by row filters.
    stats:
        The engine's statistics of the underlying query.
    """

    table: pa.Table
    masked: list[str] = field(default_factory=list)
    rows_hidden: int = 0
    stats: Any = None

    def __len__(self) -> int:
        return int(self.table.num_rows)

    def to_pandas(self) -> pd.DataFrame:
        return self.table.to_pandas()


class SecureStore:
    """A :class:`cityos.store.Store` restricted to what ``principal`` may see and do.

    Parameters
    ----------
    store:
        The city's store (its ``db`` holds the policies and the audit log).
    principal:
        The user context, e.g. from :func:`cityos.access.principal_for`.
    mask_key:
        Key for the ``hash`` masking strategy (the server passes the city's secret).

    Examples
    --------
    >>> from cityos.access import SecureStore, principal_for  # doctest: +SKIP
    >>> ss = SecureStore(store, principal_for(store.db, "li"))  # doctest: +SKIP
    >>> ss.st_range("taxis", (116.3, 39.9, 116.4, 40.0), start, end).table  # doctest: +SKIP
    """

    def __init__(self, store: Any, principal: Principal, *, mask_key: bytes | None = None) -> None:
        self.store = store
        self.principal = principal
        self.mask_key = mask_key
        self._personal: dict[str, dict[str, str]] = {}

    @property
    def db(self) -> Database:
        db: Database = self.store.db
        return db

    # -- decisions --------------------------------------------------------------------------
    def can_read(self, dataset: str) -> ReadDecision:
        """The read decision for ``dataset`` (allowed, filters, unmasked kinds)."""
        return decide_read(load_policy(self.db), self.principal, dataset)

    def _require_read(self, dataset: str, query: str) -> ReadDecision:
        dec = self.can_read(dataset)
        if not dec.allowed:
            self._exists(dataset)  # an unknown name is a 404, not a 403
            if dec.classification.audited:
                record(self.db, actor=self.principal.username, action="read.denied",
                       dataset=dataset, detail={"query": query})
            raise PermissionDenied(dec.reason)
        return dec

    def _require_write(self, dataset: str, action: str) -> None:
        ok, reason = decide_write(load_policy(self.db), self.principal, dataset)
        if not ok:
            record(self.db, actor=self.principal.username, action="write.denied",
                   dataset=dataset, detail={"operation": action})
            raise PermissionDenied(reason)

    def _exists(self, dataset: str) -> None:
        self.store.describe(dataset)

    def _personal_fields(self, dataset: str) -> dict[str, str]:
        if dataset not in self._personal:
            # Store.schema reads only the schema; describe() also sums file statistics
            get_schema = getattr(self.store, "schema", None)
            schema = (get_schema(dataset) if callable(get_schema)
                      else self.store.describe(dataset).schema)
            self._personal[dataset] = {f.name: f.personal for f in schema.fields if f.personal}
        return self._personal[dataset]

    # -- catalog ----------------------------------------------------------------------------
    def list_datasets(self) -> list[Any]:
        """The datasets this principal may read (others are not listed)."""
        snap = load_policy(self.db)
        return [d for d in self.store.list_datasets()
                if decide_read(snap, self.principal, d.name).allowed]

    def describe(self, dataset: str) -> Any:
        """A dataset's description; needs read permission."""
        self._require_read(dataset, "describe")
        return self.store.describe(dataset)

    # -- reads ------------------------------------------------------------------------------
    def _finish(self, query: str, dataset: str, dec: ReadDecision, raw: Any,
                others: Sequence[tuple[str, ReadDecision]] = (),
                table: pa.Table | None = None, hidden: int = 0) -> SecureResult:
        table = raw.table if table is None else table
        if dec.filters is not None and table is raw.table:
            table, hidden = apply_row_filters(table, dec.filters)
        masked: list[str] = []
        rules = load_policy(self.db).rules
        for name, d in [(dataset, dec), *others]:
            table, m = mask_table(table, self._personal_fields(name), rules, d.shows,
                                  self.mask_key)
            masked += m
        for name, d in [(dataset, dec), *others]:
            if d.classification.audited:
                record(self.db, actor=self.principal.username, action="read", dataset=name,
                       detail={"query": query, "rows": table.num_rows, "masked": masked,
                               "filtered": d.filters is not None})
        return SecureResult(table, masked, hidden, getattr(raw, "stats", None))

    def _read(self, query: str, dataset: str, call: Callable[[], Any]) -> SecureResult:
        dec = self._require_read(dataset, query)
        return self._finish(query, dataset, dec, call())

    def scan(self, dataset: str, **kwargs: Any) -> SecureResult:
        """:meth:`Store.scan` under this principal's rights."""
        return self._read("scan", dataset, lambda: self.store.scan(dataset, **kwargs))

    def range(self, dataset: str, geometry_or_bbox: Any, **kwargs: Any) -> SecureResult:
        """:meth:`Store.range` under this principal's rights."""
        return self._read("range", dataset,
                          lambda: self.store.range(dataset, geometry_or_bbox, **kwargs))

    def st_range(self, dataset: str, geometry_or_bbox: Any, start: Any, end: Any,
                 **kwargs: Any) -> SecureResult:
        """:meth:`Store.st_range` under this principal's rights."""
        return self._read("st_range", dataset, lambda: self.store.st_range(
            dataset, geometry_or_bbox, start, end, **kwargs))

    def id_temporal(self, dataset: str, ids: Any, **kwargs: Any) -> SecureResult:
        """:meth:`Store.id_temporal` under this principal's rights."""
        return self._read("id_temporal", dataset,
                          lambda: self.store.id_temporal(dataset, ids, **kwargs))

    def knn(self, dataset: str, x: float, y: float, k: int, **kwargs: Any) -> SecureResult:
        """:meth:`Store.knn`; under a row filter, the k nearest *visible* points."""
        dec = self._require_read(dataset, "knn")
        if dec.filters is None:
            return self._finish("knn", dataset, dec, self.store.knn(dataset, x, y, k, **kwargs))
        want = k
        while True:
            raw = self.store.knn(dataset, x, y, want, **kwargs)
            table, hidden = apply_row_filters(raw.table, dec.filters)
            if table.num_rows >= k or raw.table.num_rows < want or want >= _KNN_CAP:
                break
            want = min(want * _KNN_GROWTH, _KNN_CAP)
        return self._finish("knn", dataset, dec, raw, table=table.slice(0, k), hidden=hidden)

    def knn_trajectories(self, dataset: str, x: float, y: float, k: int,
                         **kwargs: Any) -> SecureResult:
        """:meth:`Store.knn_trajectories` under this principal's rights."""
        return self._read("knn_trajectories", dataset,
                          lambda: self.store.knn_trajectories(dataset, x, y, k, **kwargs))

    def similar(self, dataset: str, query: Any, k: int, **kwargs: Any) -> SecureResult:
        """:meth:`Store.similar` under this principal's rights."""
        return self._read("similar", dataset,
                          lambda: self.store.similar(dataset, query, k, **kwargs))

    def join_regions(self, dataset: str, regions: str, **kwargs: Any) -> SecureResult:
        """:meth:`Store.join_regions`; needs read on both datasets."""
        dec = self._require_read(dataset, "join_regions")
        other = self._require_read(regions, "join_regions")
        raw = self.store.join_regions(dataset, regions, **kwargs)
        return self._finish("join_regions", dataset, dec, raw, others=[(regions, other)])

    def join_nearest(self, dataset: str, edges: str, **kwargs: Any) -> SecureResult:
        """:meth:`Store.join_nearest`; needs read on both datasets."""
        dec = self._require_read(dataset, "join_nearest")
        other = self._require_read(edges, "join_nearest")
        raw = self.store.join_nearest(dataset, edges, **kwargs)
        return self._finish("join_nearest", dataset, dec, raw, others=[(edges, other)])

    def aggregate(self, dataset: str, **kwargs: Any) -> SecureResult:
        """:meth:`Store.aggregate`; refused under a row filter (cells mix visible and
        hidden rows, so no post-filter could make them safe)."""
        dec = self._require_read(dataset, "aggregate")
        regions = kwargs.get("regions")
        others = []
        if isinstance(regions, str):
            others.append((regions, self._require_read(regions, "aggregate")))
        if dec.filters is not None:
            raise PermissionDenied(
                f"your role sees only part of {dataset!r}; aggregates over it are not "
                "available under a row filter (query the rows and aggregate them instead)"
            )
        raw = self.store.aggregate(dataset, **kwargs)
        return self._finish("aggregate", dataset, dec, raw, others=others)

    # -- writes -----------------------------------------------------------------------------
    def append(self, dataset: str, data: Any) -> Any:
        """:meth:`Store.append`; needs write; audited."""
        self._require_write(dataset, "append")
        res = self.store.append(dataset, data)
        record(self.db, actor=self.principal.username, action="write", dataset=dataset,
               detail={"operation": "append", "rows_in": getattr(res, "rows_in", None),
                       "rows_written": getattr(res, "rows_written", None)})
        return res

    def delete(self, dataset: str, **kwargs: Any) -> int:
        """:meth:`Store.delete`; needs write; audited."""
        self._require_write(dataset, "delete")
        n = int(self.store.delete(dataset, **kwargs))
        record(self.db, actor=self.principal.username, action="write", dataset=dataset,
               detail={"operation": "delete", "rows_deleted": n,
                       "criteria": {k: str(v) for k, v in kwargs.items()}})
        return n

    def create_dataset(self, name: str, schema: Any, **kwargs: Any) -> Any:
        """:meth:`Store.create_dataset`; needs write on the new name; audited."""
        self._require_write(name, "create")
        info = self.store.create_dataset(name, schema, **kwargs)
        record(self.db, actor=self.principal.username, action="write", dataset=name,
               detail={"operation": "create", "model": str(schema.model)})
        return info

    def drop_dataset(self, name: str) -> None:
        """:meth:`Store.drop_dataset`; admins only; audited."""
        if not self.principal.is_admin:
            raise PermissionDenied("only administrators may drop datasets")
        if name not in {d.name for d in self.store.list_datasets()}:
            raise DatasetNotFound(name)
        self.store.drop_dataset(name)
        record(self.db, actor=self.principal.username, action="write", dataset=name,
               detail={"operation": "drop"})

"""The store seen through one user's rights: :class:`SecureStore` checks grants, applies
row filters, masks personal fields and audits protected reads and every write, so the
HTTP server is not the only gate.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from functools import cache, lru_cache
from typing import TYPE_CHECKING, Any

import pyarrow as pa
from sqlalchemy import Select, bindparam, select

from cityos.access._audit import record
from cityos.access._generation import GENERATION_QUERY, read_connection
from cityos.access._identity import Principal, current_principal
from cityos.access._masking import MaskingRule, mask_table
from cityos.access._policy import (
    PolicySnapshot,
    ReadDecision,
    decide_read,
    decide_write,
    load_policy,
)
from cityos.access._rowfilter import apply_row_filters
from cityos.access.errors import PermissionDenied
from cityos.db import acting_as
from cityos.errors import DatasetNotFound

if TYPE_CHECKING:
    import pandas as pd

    from cityos.db import Database

__all__ = ["SecureResult", "SecureStore"]

# knn under a row filter fetches more candidates until k visible ones are found
_KNN_GROWTH = 4
_KNN_CAP = 100_000


@cache
def _generation_and_schema() -> Select[Any]:
    """``SELECT (access generation), (schema of :name)``: the policy version and the
    dataset's personal fields in one round trip, read together on every query so neither
    a revoked grant nor a changed schema is ever served from a stale cache."""
    # imported here: the access layer does not need the store until a store is wrapped
    from cityos.store._catalog import DatasetRow

    q: Select[Any] = select(
        GENERATION_QUERY.scalar_subquery(),
        select(DatasetRow.schema_json)
        .where(DatasetRow.name == bindparam("name"))
        .scalar_subquery(),
    )
    return q


@lru_cache(maxsize=1024)
def _personal_of(schema_json: str) -> Mapping[str, str]:
    """Column -> personal kind, parsed once per distinct schema text."""
    from cityos.model import DatasetSchema

    schema = DatasetSchema.from_json(schema_json)
    return {f.name: f.personal for f in schema.fields if f.personal}


@dataclass(frozen=True)
class _Grant:
    """One authorised read: the decision, the masking rules of the same policy snapshot,
    and the dataset's personal fields (``None`` when this database's catalog does not
    know the dataset, e.g. a store with its own catalog)."""

    decision: ReadDecision
    rules: Mapping[str, MaskingRule]
    personal: Mapping[str, str] | None


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
        df: pd.DataFrame = self.table.to_pandas()
        return df


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

    @property
    def db(self) -> Database:
        db: Database = self.store.db
        return db

    # -- decisions --------------------------------------------------------------------------
    def _state(
        self, dataset: str | None = None
    ) -> tuple[PolicySnapshot, Principal, Mapping[str, str] | None]:
        """Policies, the principal's current roles and ``dataset``'s personal fields,
        with one database round trip when nothing changed since the last call."""
        with read_connection(self.db) as conn:
            gen_value, schema_json = conn.execute(
                _generation_and_schema(), {"name": dataset or ""}
            ).one()
        gen = int(gen_value or 0)
        snap = load_policy(self.db, generation=gen)
        principal = current_principal(self.db, self.principal, generation=gen)
        return snap, principal, (None if schema_json is None else _personal_of(schema_json))

    def can_read(self, dataset: str) -> ReadDecision:
        """The read decision for ``dataset`` (allowed, filters, unmasked kinds)."""
        snap, principal, _ = self._state()
        return decide_read(snap, principal, dataset)

    def _require_read(self, dataset: str, query: str) -> _Grant:
        snap, principal, personal = self._state(dataset)
        dec = decide_read(snap, principal, dataset)
        if not dec.allowed:
            self._exists(dataset)  # an unknown name is a 404, not a 403
            if dec.classification.audited:
                record(
                    self.db,
                    actor=self.principal.username,
                    action="read.denied",
                    dataset=dataset,
                    detail={"query": query},
                )
            raise PermissionDenied(dec.reason)
        return _Grant(dec, snap.rules, personal)

    def _require_write(self, dataset: str, action: str) -> None:
        snap, principal, _ = self._state()
        ok, reason = decide_write(snap, principal, dataset)
        if not ok:
            record(
                self.db,
                actor=self.principal.username,
                action="write.denied",
                dataset=dataset,
                detail={"operation": action},
            )
            raise PermissionDenied(reason)

    def _refused_by_filter(self, dataset: str, query: str, exc: PermissionDenied) -> None:
        """Audit a read the principal's row filters refused (always: a refusal is rare and
        a sign of probing, whatever the classification)."""
        record(
            self.db,
            actor=self.principal.username,
            action="read.denied",
            dataset=dataset,
            detail={"query": query, "reason": "row filter", "message": str(exc)[:500]},
        )

    def _filtered(self, dataset: str, query: str, table: pa.Table, filters: Any) -> Any:
        try:
            return apply_row_filters(table, filters)
        except PermissionDenied as exc:
            self._refused_by_filter(dataset, query, exc)
            raise

    def _exists(self, dataset: str) -> None:
        try:
            self.store.describe(dataset)
        except DatasetNotFound as exc:  # never list the names the caller may not see
            raise exc.public() from None

    def _personal_fields(self, dataset: str, grant: _Grant) -> Mapping[str, str]:
        if grant.personal is not None:
            return grant.personal
        # a store whose catalog is not in this database: ask it (schema only, no stats)
        get_schema = getattr(self.store, "schema", None)
        schema = (
            get_schema(dataset) if callable(get_schema) else self.store.describe(dataset).schema
        )
        return {f.name: f.personal for f in schema.fields if f.personal}

    # -- catalog ----------------------------------------------------------------------------
    def list_datasets(self) -> list[Any]:
        """The datasets this principal may read (others are not listed)."""
        snap, principal, _ = self._state()
        return [
            d for d in self.store.list_datasets() if decide_read(snap, principal, d.name).allowed
        ]

    def describe(self, dataset: str) -> Any:
        """A dataset's description; needs read permission; audited like a read."""
        grant = self._require_read(dataset, "describe")
        info = self.store.describe(dataset)
        if grant.decision.classification.audited:
            record(
                self.db,
                actor=self.principal.username,
                action="describe",
                dataset=dataset,
                detail={"filtered": grant.decision.filters is not None},
            )
        return info

    # -- reads ------------------------------------------------------------------------------
    def _finish(
        self,
        query: str,
        dataset: str,
        grant: _Grant,
        raw: Any,
        others: Sequence[tuple[str, _Grant]] = (),
        table: pa.Table | None = None,
        hidden: int = 0,
    ) -> SecureResult:
        table = raw.table if table is None else table
        dec = grant.decision
        if dec.filters is not None and table is raw.table:
            table, hidden = self._filtered(dataset, query, table, dec.filters)
        masked: list[str] = []
        # rules and personal fields come from the snapshot the decision was made on: no
        # second policy read, and no window in which they could disagree
        for name, g in [(dataset, grant), *others]:
            table, m = mask_table(
                table, self._personal_fields(name, g), g.rules, g.decision.shows, self.mask_key
            )
            masked += m
        for name, d in [(dataset, dec), *[(n, g.decision) for n, g in others]]:
            if d.classification.audited:
                record(
                    self.db,
                    actor=self.principal.username,
                    action="read",
                    dataset=name,
                    detail={
                        "query": query,
                        "rows": table.num_rows,
                        "masked": masked,
                        "filtered": d.filters is not None,
                    },
                )
        return SecureResult(table, masked, hidden, getattr(raw, "stats", None))

    def _read(self, query: str, dataset: str, call: Callable[[], Any]) -> SecureResult:
        dec = self._require_read(dataset, query)
        return self._finish(query, dataset, dec, call())

    def scan(self, dataset: str, **kwargs: Any) -> SecureResult:
        """:meth:`Store.scan` under this principal's rights."""
        return self._read("scan", dataset, lambda: self.store.scan(dataset, **kwargs))

    def range(self, dataset: str, geometry_or_bbox: Any, **kwargs: Any) -> SecureResult:
        """:meth:`Store.range` under this principal's rights."""
        return self._read(
            "range", dataset, lambda: self.store.range(dataset, geometry_or_bbox, **kwargs)
        )

    def st_range(
        self, dataset: str, geometry_or_bbox: Any, start: Any, end: Any, **kwargs: Any
    ) -> SecureResult:
        """:meth:`Store.st_range` under this principal's rights."""
        return self._read(
            "st_range",
            dataset,
            lambda: self.store.st_range(dataset, geometry_or_bbox, start, end, **kwargs),
        )

    def id_temporal(self, dataset: str, ids: Any, **kwargs: Any) -> SecureResult:
        """:meth:`Store.id_temporal` under this principal's rights."""
        return self._read(
            "id_temporal", dataset, lambda: self.store.id_temporal(dataset, ids, **kwargs)
        )

    def knn(self, dataset: str, x: float, y: float, k: int, **kwargs: Any) -> SecureResult:
        """:meth:`Store.knn`; under a row filter, the k nearest *visible* points."""
        grant = self._require_read(dataset, "knn")
        filters = grant.decision.filters
        if filters is None:
            return self._finish("knn", dataset, grant, self.store.knn(dataset, x, y, k, **kwargs))
        want = k
        while True:
            raw = self.store.knn(dataset, x, y, want, **kwargs)
            table, hidden = self._filtered(dataset, "knn", raw.table, filters)
            if table.num_rows >= k or raw.table.num_rows < want or want >= _KNN_CAP:
                break
            want = min(want * _KNN_GROWTH, _KNN_CAP)
        return self._finish("knn", dataset, grant, raw, table=table.slice(0, k), hidden=hidden)

    def knn_trajectories(
        self, dataset: str, x: float, y: float, k: int, **kwargs: Any
    ) -> SecureResult:
        """:meth:`Store.knn_trajectories` under this principal's rights."""
        return self._read(
            "knn_trajectories",
            dataset,
            lambda: self.store.knn_trajectories(dataset, x, y, k, **kwargs),
        )

    def similar(self, dataset: str, query: Any, k: int, **kwargs: Any) -> SecureResult:
        """:meth:`Store.similar` under this principal's rights."""
        return self._read(
            "similar", dataset, lambda: self.store.similar(dataset, query, k, **kwargs)
        )

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
        if dec.decision.filters is not None:
            exc = PermissionDenied(
                f"your role sees only part of {dataset!r}; aggregates over it are not "
                "available under a row filter (query the rows and aggregate them instead)"
            )
            self._refused_by_filter(dataset, "aggregate", exc)
            raise exc
        raw = self.store.aggregate(dataset, **kwargs)
        return self._finish("aggregate", dataset, dec, raw, others=others)

    # -- writes -----------------------------------------------------------------------------
    # Every change is audited by the catalog itself, in the transaction that commits it
    # (the access layer's change hook); here the change is only attributed to the caller.
    def acting(self) -> AbstractContextManager[None]:
        """Attribute the dataset changes made inside the block to this principal (e.g.
        around an ingest run on the caller's behalf)."""
        return acting_as(self.principal.username)

    def require_write(self, dataset: str, operation: str) -> None:
        """Raise :class:`PermissionDenied` (audited) unless the principal may write."""
        self._require_write(dataset, operation)

    def append(self, dataset: str, data: Any) -> Any:
        """:meth:`Store.append`; needs write; audited with the catalog commit."""
        self._require_write(dataset, "append")
        with self.acting():
            return self.store.append(dataset, data)

    def delete(self, dataset: str, **kwargs: Any) -> int:
        """:meth:`Store.delete`; needs write; audited with the catalog commit."""
        self._require_write(dataset, "delete")
        with self.acting():
            return int(self.store.delete(dataset, **kwargs))

    def create_dataset(self, name: str, schema: Any, **kwargs: Any) -> Any:
        """:meth:`Store.create_dataset`; needs write on the new name; audited."""
        self._require_write(name, "create")
        with self.acting():
            return self.store.create_dataset(name, schema, **kwargs)

    def drop_dataset(self, name: str) -> None:
        """:meth:`Store.drop_dataset`; admins only; audited."""
        _, principal, _ = self._state()
        if not principal.is_admin:
            raise PermissionDenied("only administrators may drop datasets")
        if name not in {d.name for d in self.store.list_datasets()}:
            raise DatasetNotFound(name)
        with self.acting():
            self.store.drop_dataset(name)

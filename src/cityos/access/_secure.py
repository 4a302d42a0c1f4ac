"""The store seen through one user's rights: :class:`SecureStore` checks grants, applies
row filters, masks personal fields and audits protected reads and every write, so the
HTTP server is not the only gate.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from functools import cache, lru_cache
from pathlib import Path
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
from cityos.access._rowfilter import restriction_for
from cityos.access.errors import PermissionDenied
from cityos.db import acting_as
from cityos.errors import DatasetNotFound, QueryError

if TYPE_CHECKING:
    import pandas as pd

    from cityos.db import Database
    from cityos.store import QuerySpec

__all__ = ["SecureResult", "SecureStore"]

#: Time budget of every query through a :class:`SecureStore` (seconds).
DEFAULT_TIMEOUT_S = 60.0


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

    def __init__(
        self,
        store: Any,
        principal: Principal,
        *,
        mask_key: bytes | None = None,
        timeout_s: float | None = DEFAULT_TIMEOUT_S,
    ) -> None:
        # name-mangled and never returned: a secured handle does not hand out the raw store
        self.__store = store
        self.principal = principal
        self.mask_key = mask_key
        self.timeout_s = timeout_s

    @property
    def db(self) -> Database:
        db: Database = self.__store.db
        return db

    @property
    def home(self) -> Path:
        """The city's folder (where layers such as the AI registry keep their files); the
        settings themselves, which hold the signing secret, are not handed out."""
        return Path(self.__store.settings.home)

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

    def _exists(self, dataset: str) -> None:
        try:
            self.__store.describe(dataset)
        except DatasetNotFound as exc:  # never list the names the caller may not see
            raise exc.public() from None

    def _personal_fields(self, dataset: str, grant: _Grant) -> Mapping[str, str]:
        if grant.personal is not None:
            return grant.personal
        # a store whose catalog is not in this database: ask it (schema only, no stats)
        get_schema = getattr(self.__store, "schema", None)
        schema = (
            get_schema(dataset) if callable(get_schema) else self.__store.describe(dataset).schema
        )
        return {f.name: f.personal for f in schema.fields if f.personal}

    # -- catalog ----------------------------------------------------------------------------
    def list_datasets(self) -> list[Any]:
        """The datasets this principal may read (others are not listed); under a row
        filter, the size, extent and time range are those of the visible rows."""
        snap, principal, _ = self._state()
        out = []
        for d in self.__store.list_datasets():
            dec = decide_read(snap, principal, d.name)
            if dec.allowed:
                out.append(d if dec.filters is None else self._visible_info(d, dec))
        return out

    def describe(self, dataset: str) -> Any:
        """A dataset's description; needs read permission. Under a row filter, the row
        count, extent and time range are those of the rows the filter lets through."""
        grant = self._require_read(dataset, "describe")
        info = self.__store.describe(dataset)
        if grant.decision.classification.audited:
            record(
                self.db,
                actor=self.principal.username,
                action="describe",
                dataset=dataset,
                detail={"filtered": grant.decision.filters is not None},
            )
        if grant.decision.filters is None:
            return info
        return self._visible_info(info, grant.decision)

    def _visible_info(self, info: Any, dec: ReadDecision) -> Any:
        import dataclasses

        import numpy as np
        import pyarrow.compute as pc

        from cityos.store import Scan

        assert dec.filters is not None
        res = self.__store.query(
            Scan(info.name),
            restrictions={info.name: restriction_for(dec.filters)},
            timeout_s=self.timeout_s,
        )
        t = res.table
        n = t.num_rows
        bbox: tuple[float, ...] | None = None
        t_min = t_max = None
        if n:
            if "x" in t.column_names:
                x, y = t["x"].to_numpy(), t["y"].to_numpy()
                bbox = (float(x.min()), float(y.min()), float(x.max()), float(y.max()))
            elif "geometry" in t.column_names:
                import shapely

                b = shapely.total_bounds(
                    shapely.from_wkb(t["geometry"].to_numpy(zero_copy_only=False))
                )
                bbox = tuple(float(v) for v in b) if np.isfinite(b).all() else None
            if "t" in t.column_names:
                ms = pc.cast(t["t"], "int64")
                t_min, t_max = int(pc.min(ms).as_py()), int(pc.max(ms).as_py())
        if not dataclasses.is_dataclass(info) or isinstance(info, type):
            return info
        # files and bytes describe the whole dataset: not the caller's to know
        return dataclasses.replace(
            info, rows=n, files=0, bytes=0, bbox=bbox, t_min=t_min, t_max=t_max
        )

    # -- reads ------------------------------------------------------------------------------
    def _finish(
        self,
        query: str,
        grants: Mapping[str, _Grant],
        raw: Any,
        hidden: int = 0,
    ) -> SecureResult:
        table = raw.table
        masked: list[str] = []
        # rules and personal fields come from the snapshot the decision was made on: no
        # second policy read, and no window in which they could disagree
        for name, g in grants.items():
            table, m = mask_table(
                table, self._personal_fields(name, g), g.rules, g.decision.shows, self.mask_key
            )
            masked += [c for c in m if c not in masked]
        for name, g in grants.items():
            d = g.decision
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

    def query(self, spec: QuerySpec, *, engine: str | None = None) -> SecureResult:
        """Answer ``spec`` under this principal's rights: the one gate every read passes.

        Every dataset the spec touches (:meth:`QuerySpec.datasets`) must be readable; each
        one's row filters restrict the rows the engine reads of it (so joins, aggregates and
        nearest-neighbour searches only ever see visible rows); columns a query computes
        over without returning them (:meth:`QuerySpec.reads`, an aggregate's inputs) must
        not be masked for this principal; personal fields of every dataset are masked in
        the answer, and reads of audited datasets are audited. The query runs within
        ``timeout_s``.
        """
        from cityos.store import QuerySpec as _Spec

        if not isinstance(spec, _Spec):
            raise QueryError(f"query needs a query spec, not {type(spec).__name__}")
        grants: dict[str, _Grant] = {}
        touches = getattr(self.__store, "touches", None)
        names = touches(spec) if callable(touches) else tuple(dict.fromkeys(spec.datasets()))
        for name in names:
            grants[name] = self._require_read(name, spec.kind)
        for name, cols in spec.reads().items():
            personal = self._personal_fields(name, grants[name])
            hidden_cols = [
                c for c in cols if c in personal and not grants[name].decision.shows(personal[c])
            ]
            if hidden_cols:
                record(
                    self.db,
                    actor=self.principal.username,
                    action="read.denied",
                    dataset=name,
                    detail={"query": spec.kind, "masked_columns": hidden_cols},
                )
                raise PermissionDenied(
                    f"column(s) {hidden_cols} of {name!r} are personal and masked for your "
                    f"role; a {spec.kind} cannot compute over them"
                )
        filtered = {
            n: g.decision.filters for n, g in grants.items() if g.decision.filters is not None
        }
        try:
            restrictions = {n: restriction_for(f) for n, f in filtered.items()}
            raw = self.__store.query(
                spec, engine=engine, restrictions=restrictions, timeout_s=self.timeout_s
            )
        except PermissionDenied as exc:  # a row filter refused the query: audited always
            for n in filtered:
                self._refused_by_filter(n, spec.kind, exc)
            raise
        stats = getattr(raw, "stats", None) or {}
        hidden = int(sum((stats.get("rows_restricted") or {}).values()))
        return self._finish(spec.kind, grants, raw, hidden)

    def sql(self, query: str, *, engine: str | None = None) -> SecureResult:
        """Run SQL (as :meth:`Store.sql <cityos.store.Store.sql>`) under this principal's
        rights, on DuckDB only.

        Each dataset the text names is first read through :meth:`query` (so it must be
        readable, its row filters apply, its personal fields are masked and the read is
        audited); the SQL then runs on those rows alone, in a DuckDB connection with
        external access disabled and its configuration locked, so it cannot read the
        city's files, attach databases or load extensions. Datasets it does not name do
        not exist for it. This materialises every named dataset's visible rows: for large
        datasets use the query API.

        Raises
        ------
        PermissionDenied
            A named dataset may not be read, or ``engine`` is not ``duckdb``: Spark SQL can
            read any file a query names, so it cannot be confined to what the principal may
            see and is refused rather than risk a leak.
        """
        import re

        from cityos.store import QUERIES
        from cityos.store._sql import duckdb_sql

        chosen = engine or getattr(self.__store, "default_engine", "duckdb")
        if chosen != "duckdb":
            raise PermissionDenied(
                f"SQL under access control runs on the duckdb engine only; the {chosen} "
                "engine cannot be confined to the rows and columns you may see (use "
                "engine='duckdb' or the query API, which runs on every engine)"
            )
        names = [
            d.name
            for d in self.__store.list_datasets()
            if re.search(rf"(?<![\w$]){re.escape(d.name)}(?![\w$])", query, re.IGNORECASE)
        ]
        tables: dict[str, pa.Table] = {}
        masked: list[str] = []
        hidden = 0
        for name in names:
            res = self.query(QUERIES["read"](name))
            tables[name] = res.table
            masked += [c for c in res.masked if c not in masked]
            hidden += res.rows_hidden
        return SecureResult(duckdb_sql(query, tables=tables, confined=True), masked, hidden)

    def __getattr__(self, name: str) -> Callable[..., SecureResult]:
        """The store's convenience queries (``st_range``, ``knn``, ``aggregate``, ...), each
        built by the same function as the store's own (:data:`cityos.store.QUERIES`), so
        their parameters are the store's, and answered through :meth:`query`."""
        from cityos.store import QUERIES

        build = QUERIES.get(name) if not name.startswith("_") else None
        if build is None:
            raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")

        def run(*args: Any, engine: str | None = None, **kwargs: Any) -> SecureResult:
            return self.query(build(*args, **kwargs), engine=engine)

        run.__name__ = name
        run.__doc__ = f":meth:`Store.{name}` under this principal's rights (see :meth:`query`)."
        return run

    def __dir__(self) -> list[str]:
        from cityos.store import QUERIES

        return sorted(set(super().__dir__()) | set(QUERIES))

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
            return self.__store.append(dataset, data)

    def delete(self, dataset: str, **kwargs: Any) -> int:
        """:meth:`Store.delete`; needs write; audited with the catalog commit."""
        self._require_write(dataset, "delete")
        with self.acting():
            return int(self.__store.delete(dataset, **kwargs))

    def create_dataset(self, name: str, schema: Any, **kwargs: Any) -> Any:
        """:meth:`Store.create_dataset`; needs write on the new name; audited."""
        self._require_write(name, "create")
        with self.acting():
            return self.__store.create_dataset(name, schema, **kwargs)

    def drop_dataset(self, name: str) -> None:
        """:meth:`Store.drop_dataset`; admins only; audited."""
        _, principal, _ = self._state()
        if not principal.is_admin:
            raise PermissionDenied("only administrators may drop datasets")
        if name not in {d.name for d in self.__store.list_datasets()}:
            raise DatasetNotFound(name)
        with self.acting():
            self.__store.drop_dataset(name)

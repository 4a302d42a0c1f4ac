"""Relational database sources: any SQLAlchemy URL, a table or a query, loaded in full or
pulled incrementally past a watermark column whose last value is remembered in the city."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from typing import Any

import pyarrow as pa
from sqlalchemy import Engine, MetaData, Table, create_engine, literal_column, select, text
from sqlalchemy.exc import SQLAlchemyError

from cityos.ingest._base import Batch, Part, Source, SourceContext
from cityos.ingest._mapping import Mapping
from cityos.ingest.errors import SourceError

__all__ = ["SQLSource"]


def _encode(v: Any) -> dict[str, Any]:
    if isinstance(v, dt.datetime):
        return {"type": "datetime", "value": v.isoformat()}
    if isinstance(v, dt.date):
        return {"type": "date", "value": v.isoformat()}
    return {"type": "plain", "value": v}


def _decode(d: dict[str, Any]) -> Any:
    if d["type"] == "datetime":
        return dt.datetime.fromisoformat(d["value"])
    if d["type"] == "date":
        return dt.date.fromisoformat(d["value"])
    return d["value"]


class SQLSource(Source):
    """Read a table (or query) from any database SQLAlchemy can reach.

    Parameters
    ----------
    url:
        SQLAlchemy URL, e.g. ``postgresql+psycopg://user@host/db`` or ``sqlite:///x.db``.
    table, query:
        A table name (optionally ``schema.table``), or a SELECT whose result is read.
    watermark:
        A column that only grows (serial id, ``updated_at``). When given, each run reads only
        rows past the last value stored, and the new value is saved once the rows are durable.
    batch_rows:
        Rows per batch.

    Examples
    --------
    >>> import sqlite3, tempfile, pathlib, cityos
    >>> d = pathlib.Path(tempfile.mkdtemp()); con = sqlite3.connect(d / "src.db")
    >>> _ = con.execute("create table r (k text, ts text, lon real, lat real, seq integer)")
    >>> _ = con.execute("insert into r values ('a', '2026-01-01T00:00Z', 1, 2, 1)"); con.commit()
    >>> m = Mapping.from_dict({"dataset": {"name": "r", "model": "point_st"}, "id": {"from": "k"},
    ...     "time": {"from": "ts"}, "geometry": {"x": "lon", "y": "lat"}})
    >>> city = cityos.open_city(d / "city")
    >>> src = SQLSource(f"sqlite:///{d}/src.db", m, table="r", watermark="seq")
    >>> src.run(city).accepted, src.run(city).received
    (1, 0)
    """

    kind = "sql"

    def __init__(
        self,
        url: str,
        mapping: Mapping,
        *,
        table: str | None = None,
        query: str | None = None,
        watermark: str | None = None,
        batch_rows: int = 50_000,
        name: str | None = None,
    ) -> None:
        if (table is None) == (query is None):
            raise SourceError("give exactly one of table= or query=")
        self.url = url
        self.table = table
        self.query = query
        self.watermark = watermark
        self.batch_rows = batch_rows
        self.mapping = mapping
        self._engine: Engine | None = None
        what = table or "query"
        super().__init__(mapping, name=name or f"sql:{_safe_url(url)}/{what}")

    def _selectable(self, engine: Engine) -> Any:
        if self.table is not None:
            schema, _, name = self.table.rpartition(".")
            try:
                return Table(name, MetaData(), schema=schema or None, autoload_with=engine)
            except SQLAlchemyError as e:
                raise SourceError(
                    f"cannot read table {self.table!r} at {_safe_url(self.url)}: {e}"
                ) from e
        assert self.query is not None
        return select(text("*")).select_from(text(f"({self.query}) AS q"))

    def read(self, ctx: SourceContext) -> Iterator[Batch]:
        try:
            self._engine = engine = create_engine(self.url)
            sel = self._selectable(engine)
        except SQLAlchemyError as e:
            raise SourceError(f"cannot connect to {_safe_url(self.url)}: {e}") from e
        ref = self.table or "query"
        if self.watermark is None:
            q: Any = select(sel) if isinstance(sel, Table) else sel
            with engine.connect() as conn:
                result = conn.execution_options(yield_per=self.batch_rows).execute(q)
                off = 0
                for chunk in result.partitions(self.batch_rows):
                    recs = [dict(r._mapping) for r in chunk]
                    yield Batch(self.mapping.dataset, [Part(_table(recs), ref, off)])
                    off += len(recs)
                    if ctx.stopping:
                        return
            return
        col: Any = (
            sel.c[self.watermark] if isinstance(sel, Table) else literal_column(self.watermark)
        )
        base: Any = select(sel) if isinstance(sel, Table) else sel
        while not ctx.stopping:
            pos = ctx.state.position(self.name)
            q = base
            if pos is not None:
                q = q.where(col > _decode(pos["watermark"]))
            with engine.connect() as conn:
                rows: list[dict[str, Any]] = [
                    dict(r._mapping) for r in conn.execute(q.order_by(col).limit(self.batch_rows))
                ]
                if not rows:
                    return
                last = rows[-1][self.watermark]
                if len(rows) == self.batch_rows:
                    # the page may cut a run of equal watermark values: take all rows with the
                    # last value so the next page can start strictly after it
                    rows = [r for r in rows if r[self.watermark] != last]
                    rows += [dict(r._mapping) for r in conn.execute(base.where(col == last))]
            positions = [f"{ref}#{self.watermark}={r[self.watermark]}" for r in rows]

            def save(v: Any = last) -> None:
                ctx.state.set_position(self.name, {"watermark": _encode(v)})

            yield Batch(
                self.mapping.dataset, [Part(_table(rows), ref, 0, positions)], on_durable=save
            )

    def close(self) -> None:
        if self._engine is not None:
            self._engine.dispose()
            self._engine = None


def _table(recs: list[dict[str, Any]]) -> pa.Table | list[dict[str, Any]]:
    try:
        return pa.Table.from_pylist(recs)
    except (pa.ArrowInvalid, pa.ArrowTypeError):
        return recs  # mixed types: the mapping sorts out the bad rows


def _safe_url(url: str) -> str:
    from sqlalchemy.engine import make_url

    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:
        return "<database>"

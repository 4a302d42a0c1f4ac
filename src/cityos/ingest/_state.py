"""What the ingest layer remembers in the city's database: dead letters, lineage, files
already ingested, source positions and the mapping in use for each dataset."""

from __future__ import annotations

import datetime as dt
import decimal
import hashlib
import json
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import insert, select, update

from cityos.db import Database, utcnow
from cityos.ingest._tables import (
    DeadLetterRow,
    IngestedFileRow,
    LineageRow,
    MappingRow,
    SourceStateRow,
)

__all__ = ["DeadLetter", "IngestState", "LineageEntry", "to_json"]


def _default(v: Any) -> Any:
    if isinstance(v, dt.datetime | dt.date | dt.time):
        return v.isoformat()
    if isinstance(v, bytes | bytearray | memoryview):
        # hex, because shapely.from_wkb reads hex WKB: a replayed payload maps the same way
        return bytes(v).hex()
    if isinstance(v, decimal.Decimal):
        return float(v)
    if isinstance(v, dt.timedelta):
        return v.total_seconds()
    if hasattr(v, "item"):  # numpy scalars
        return v.item()
    return str(v)


def to_json(value: Any) -> str:
    """JSON text of a source record (dates as ISO 8601, bytes as hex, NaN as null)."""
    return json.dumps(_clean(value), default=_default, ensure_ascii=False, sort_keys=True)


def _clean(v: Any) -> Any:
    if isinstance(v, float) and v != v:
        return None
    if isinstance(v, dict):
        return {str(k): _clean(x) for k, x in v.items()}
    if isinstance(v, list | tuple):
        return [_clean(x) for x in v]
    return v


@dataclass(frozen=True)
class DeadLetter:
    """A record that failed validation, with what is needed to fix and replay it."""

    id: int
    dataset: str
    source: str
    position: str
    payload: Any
    rule: str
    message: str
    status: str
    attempts: int
    created_at: dt.datetime

    @classmethod
    def from_row(cls, r: DeadLetterRow) -> DeadLetter:
        return cls(
            r.id,
            r.dataset,
            r.source,
            r.position,
            json.loads(r.payload),
            r.rule,
            r.message,
            r.status,
            r.attempts,
            r.created_at,
        )


@dataclass(frozen=True)
class LineageEntry:
    """One run of one source into one dataset."""

    dataset: str
    source: str
    kind: str
    started_at: dt.datetime
    finished_at: dt.datetime
    received: int
    accepted: int
    duplicates: int
    rejected: int


class IngestState:
    """Ingest bookkeeping in the city's relational database.

    Examples
    --------
    >>> from cityos.db import Database
    >>> db = Database("sqlite://"); db.migrate()
    >>> st = IngestState(db)
    >>> st.set_position("sql:readings", {"watermark": 42})
    >>> st.position("sql:readings")
    {'watermark': 42}
    """

    def __init__(self, db: Database) -> None:
        self.db = db

    # -- dead letters ------------------------------------------------------------------
    def add_dead_letters(
        self, dataset: str, source: str, items: Iterable[tuple[str, Any, str, str]]
    ) -> int:
        """Store ``(position, payload, rule, message)`` items; a record already dead-lettered
        (same dataset, source, payload and rule) is not stored twice. Returns how many are new."""
        rows = []
        seen: set[str] = set()
        for position, payload, rule, message in items:
            text = to_json(payload)
            fp = hashlib.sha256("\x1f".join((dataset, source, text, rule)).encode()).hexdigest()
            if fp in seen:
                continue
            seen.add(fp)
            now = utcnow()
            rows.append(
                {
                    "dataset": dataset,
                    "source": source,
                    "position": position,
                    "payload": text,
                    "rule": rule[:500],
                    "message": message,
                    "status": "open",
                    "attempts": 0,
                    "fingerprint": fp,
                    "created_at": now,
                    "updated_at": now,
                }
            )
        if not rows:
            return 0
        with self.db.session() as s:
            known = set(
                s.scalars(
                    select(DeadLetterRow.fingerprint).where(
                        DeadLetterRow.fingerprint.in_([r["fingerprint"] for r in rows])
                    )
                )
            )
            fresh = [r for r in rows if r["fingerprint"] not in known]
            if fresh:
                s.execute(insert(DeadLetterRow), fresh)
        return len(fresh)

    def dead_letters(
        self,
        *,
        dataset: str | None = None,
        status: str | None = "open",
        ids: Iterable[int] | None = None,
        limit: int | None = None,
    ) -> list[DeadLetter]:
        q = select(DeadLetterRow).order_by(DeadLetterRow.id)
        if dataset is not None:
            q = q.where(DeadLetterRow.dataset == dataset)
        if status is not None:
            q = q.where(DeadLetterRow.status == status)
        if ids is not None:
            q = q.where(DeadLetterRow.id.in_(list(ids)))
        if limit is not None:
            q = q.limit(limit)
        with self.db.session() as s:
            return [DeadLetter.from_row(r) for r in s.scalars(q)]

    def update_dead_letter(self, id: int, **values: Any) -> None:
        if "payload" in values:
            values["payload"] = to_json(values["payload"])
        values["updated_at"] = utcnow()
        with self.db.session() as s:
            s.execute(update(DeadLetterRow).where(DeadLetterRow.id == id).values(**values))

    # -- lineage -----------------------------------------------------------------------
    def start_lineage(self, dataset: str, source: str, kind: str) -> int:
        with self.db.session() as s:
            row = LineageRow(
                dataset=dataset,
                source=source,
                kind=kind,
                started_at=utcnow(),
                finished_at=utcnow(),
                received=0,
                accepted=0,
                duplicates=0,
                rejected=0,
            )
            s.add(row)
            s.flush()
            return int(row.id)

    def add_lineage(
        self, lineage_id: int, *, received: int, accepted: int, duplicates: int, rejected: int
    ) -> None:
        with self.db.session() as s:
            s.execute(
                update(LineageRow)
                .where(LineageRow.id == lineage_id)
                .values(
                    received=LineageRow.received + received,
                    accepted=LineageRow.accepted + accepted,
                    duplicates=LineageRow.duplicates + duplicates,
                    rejected=LineageRow.rejected + rejected,
                    finished_at=utcnow(),
                )
            )

    def lineage(self, dataset: str | None = None) -> list[LineageEntry]:
        q = select(LineageRow).order_by(LineageRow.id)
        if dataset is not None:
            q = q.where(LineageRow.dataset == dataset)
        with self.db.session() as s:
            return [
                LineageEntry(
                    r.dataset,
                    r.source,
                    r.kind,
                    r.started_at,
                    r.finished_at,
                    r.received,
                    r.accepted,
                    r.duplicates,
                    r.rejected,
                )
                for r in s.scalars(q)
            ]

    # -- files -------------------------------------------------------------------------
    def file_done(self, source: str, path: Path) -> bool:
        """True when ``path`` was fully ingested by ``source`` and has not changed since."""
        st = path.stat()
        with self.db.session() as s:
            r = s.scalar(
                select(IngestedFileRow).where(
                    IngestedFileRow.source == source, IngestedFileRow.path == str(path)
                )
            )
            return r is not None and r.size == st.st_size and r.mtime_ns == st.st_mtime_ns

    def mark_file(self, source: str, path: Path, rows: int) -> None:
        st = path.stat()
        with self.db.session() as s:
            r = s.scalar(
                select(IngestedFileRow).where(
                    IngestedFileRow.source == source, IngestedFileRow.path == str(path)
                )
            )
            if r is None:
                s.add(
                    IngestedFileRow(
                        source=source,
                        path=str(path),
                        size=st.st_size,
                        mtime_ns=st.st_mtime_ns,
                        rows=rows,
                        ingested_at=utcnow(),
                    )
                )
            else:
                r.size, r.mtime_ns, r.rows, r.ingested_at = (
                    st.st_size,
                    st.st_mtime_ns,
                    rows,
                    utcnow(),
                )

    # -- positions ---------------------------------------------------------------------
    def position(self, source: str) -> dict[str, Any] | None:
        with self.db.session() as s:
            r = s.get(SourceStateRow, source)
            return None if r is None else dict(json.loads(r.state))

    def set_position(self, source: str, state: dict[str, Any]) -> None:
        with self.db.session() as s:
            r = s.get(SourceStateRow, source)
            text = json.dumps(state, default=_default)
            if r is None:
                s.add(SourceStateRow(source=source, state=text, updated_at=utcnow()))
            else:
                r.state, r.updated_at = text, utcnow()

    # -- mappings ----------------------------------------------------------------------
    def save_mapping(self, dataset: str, mapping_json: str, base_dir: str | None) -> None:
        with self.db.session() as s:
            r = s.get(MappingRow, dataset)
            if r is None:
                s.add(
                    MappingRow(
                        dataset=dataset,
                        mapping=mapping_json,
                        base_dir=base_dir,
                        updated_at=utcnow(),
                    )
                )
            else:
                r.mapping, r.base_dir, r.updated_at = mapping_json, base_dir, utcnow()

    def mapping(self, dataset: str) -> tuple[str, str | None] | None:
        with self.db.session() as s:
            r = s.get(MappingRow, dataset)
            return None if r is None else (r.mapping, r.base_dir)

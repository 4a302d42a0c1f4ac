"""The store's view of governance: the ``events`` and ``warnings`` POINT_ST datasets.

How updates appear in a point dataset: each dataset holds exactly **one row per event (or
warning), its current state** (``t`` = received time, so the row never moves in time). An
update replaces the row: the store deletes the event's old row and appends the new one
(both are catalog transactions, audited like every dataset change). The history of states
is not in the dataset but in the relational transitions (``Governance.history``) and the
audit chain. The relational rows are the truth: if a process dies between the two writes
:meth:`Governance.resync` rewrites the datasets from them. Inside
``Governance.batch()`` the writes of many changes are gathered into one delete and one
append.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import pyarrow as pa

from cityos.db import acting_as
from cityos.govern._model import Event, Warning
from cityos.model import FIELD_TYPES, DatasetSchema, Field, ModelKind

__all__ = ["EVENTS", "EVENTS_SCHEMA", "WARNINGS", "WARNINGS_SCHEMA", "Mirror"]

EVENTS = "events"
WARNINGS = "warnings"

EVENTS_SCHEMA = DatasetSchema(
    ModelKind.POINT_ST,
    time_partition="30D",
    time_bin="1D",
    fields=(
        Field("service_code", required=True),
        Field("category"),
        Field("title"),
        Field("description"),
        Field("status", required=True),
        Field("department"),
        Field("level"),
        Field("priority", "int64"),
        Field("channel"),
        Field("parent_id"),
        Field("source_id"),
        Field("due_at", "timestamp"),
        Field("updated_at", "timestamp"),
        Field("district"),
        Field("unit"),
        Field("overdue", "bool"),
        Field("version", "int64"),
    ),
    description="City governance events (current state, one row per event; see docs/govern.md)",
)
WARNINGS_SCHEMA = DatasetSchema(
    ModelKind.POINT_ST,
    time_partition="30D",
    time_bin="1D",
    fields=(
        Field("rule", required=True),
        Field("kind"),
        Field("severity"),
        Field("status"),
        Field("evidence", "json"),
        Field("event_id"),
        Field("title"),
        Field("updated_at", "timestamp"),
    ),
    description="Early warnings raised by rules (current state, one row per warning)",
)


def _event_row(e: Event) -> dict[str, Any]:
    return {
        "id": e.id,
        "t": e.received_at,
        "x": e.x,
        "y": e.y,
        "service_code": e.service_code,
        "category": e.category,
        "title": e.title,
        "description": e.description,
        "status": e.status,
        "department": e.department,
        "level": e.level,
        "priority": e.priority,
        "channel": e.channel,
        "parent_id": e.parent_id,
        "source_id": e.source_id,
        "due_at": e.due_at,
        "updated_at": e.updated_at,
        "district": e.district,
        "unit": e.unit,
        "overdue": e.overdue,
        "version": e.version,
    }


def _warning_row(w: Warning) -> dict[str, Any]:
    import json

    return {
        "id": w.id,
        "t": w.t,
        "x": w.x,
        "y": w.y,
        "rule": w.rule,
        "kind": w.kind,
        "severity": w.severity,
        "status": w.status,
        "evidence": json.dumps(w.evidence, ensure_ascii=False, default=str),
        "event_id": w.event_id,
        "title": w.title,
        "updated_at": w.updated_at,
    }


def _arrow(schema: DatasetSchema) -> pa.Schema:
    cols = [
        pa.field("id", pa.string()),
        pa.field("t", pa.timestamp("ms", tz="UTC")),
        pa.field("x", pa.float64()),
        pa.field("y", pa.float64()),
    ]
    return pa.schema(cols + [pa.field(f.name, FIELD_TYPES[f.type]) for f in schema.fields])


class Mirror:
    """Writes current states into the store's datasets (creating them on first use)."""

    def __init__(self, store: Any) -> None:
        self.store = store
        self._ready: set[str] = set()

    def _ensure(self, name: str, schema: DatasetSchema) -> None:
        if name in self._ready:
            return
        names = {d.name for d in self.store.list_datasets()}
        if name not in names:
            self.store.create_dataset(name, schema, exist_ok=True)
        self._ready.add(name)

    def _replace(
        self,
        name: str,
        schema: DatasetSchema,
        rows: list[dict[str, Any]],
        new_ids: set[str],
        actor: str,
    ) -> None:
        if not rows:
            return
        old = [r["id"] for r in rows if r["id"] not in new_ids]
        with acting_as(actor):
            if old:
                self.store.delete(name, ids=sorted(set(old)))
            self.store.append(
                name, pa.Table.from_pylist(rows, schema=_arrow(schema)), source="cityos.govern"
            )

    def events(
        self, events: Iterable[Event], *, new: Iterable[str] = (), actor: str = "govern"
    ) -> None:
        latest: dict[str, Event] = {}
        for e in events:
            latest[e.id] = e
        if not latest:
            return
        self._ensure(EVENTS, EVENTS_SCHEMA)
        self._replace(
            EVENTS, EVENTS_SCHEMA, [_event_row(e) for e in latest.values()], set(new), actor
        )

    def warnings(
        self, warnings: Iterable[Warning], *, new: Iterable[str] = (), actor: str = "govern"
    ) -> None:
        latest = {w.id: w for w in warnings}
        if not latest:
            return
        self._ensure(WARNINGS, WARNINGS_SCHEMA)
        self._replace(
            WARNINGS, WARNINGS_SCHEMA, [_warning_row(w) for w in latest.values()], set(new), actor
        )

    def clear(self) -> None:
        names = {d.name for d in self.store.list_datasets()}
        for name in (EVENTS, WARNINGS):
            if name in names:
                self.store.drop_dataset(name)
        self._ready.clear()

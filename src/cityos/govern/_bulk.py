"""Bulk import of historical requests through the ingest layer: a shipped mapping
(``cityos/govern/mappings/nyc311.yaml`` for the NYC 311 samples) parses and validates the
files, and each mapped row becomes an event in its historical state (received, in
progress or closed, with its department, its closing time and its deadline).

History keeps its own clock. An imported request keeps its source status and dates, and
its deadline (the source's due date, or the service's resolution deadline from its
creation) is judged against the source's own dates: a closed request by when it closed,
a request still open in the export by the export's time (the latest time the file
records, ``as of``) — not by today, when every open request of a years-old export would
be overdue. Such events are ``dispatch_mode == "imported"``; the live timer
(:meth:`Governance.sweep`) leaves them alone and the KPI counts them apart from live
intake (:func:`cityos.govern._evaluate.kpi`). ``history=False`` takes open rows in as
live work instead (a city moving its own backlog onto the platform): they get step
deadlines, the timer marks and escalates them, and they count as live.

Idempotent: a row's source id (``<mapping>:<id>``) never creates a second event. Rows the
mapping rejects, and rows outside every jurisdiction, are reported, not stored. Unknown
services and departments are created on the fly in the data's own jurisdiction (a
city-level unit over the data's extent), so a city can take in another city's history
(the demo takes in New York's) without mixing it with its own organisation."""

from __future__ import annotations

import math
import re
import tempfile
import urllib.parse
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import shapely
from sqlalchemy import select

from cityos.access._audit import append_audit, audit_transaction
from cityos.govern._model import Workflow, dumps, format_event_id, utc
from cityos.govern._tables import (
    DepartmentRow,
    EventRow,
    IdempotencyRow,
    ReportRow,
    ServiceRow,
    TransitionRow,
    UnitRow,
)
from cityos.govern.errors import IntakeError

if TYPE_CHECKING:
    from cityos.govern._core import Governance

__all__ = ["MAPPINGS_DIR", "BulkResult", "bulk_import"]

MAPPINGS_DIR = Path(__file__).parent / "mappings"

#: source status → (event status, resolved?)
_STATUS = {
    "closed": ("closed", True),
    "resolved": ("resolved", True),
    "open": ("dispatched", False),
    "pending": ("dispatched", False),
    "assigned": ("accepted", False),
    "started": ("in_progress", False),
    "in progress": ("in_progress", False),
    "unspecified": ("dispatched", False),
}


@dataclass
class BulkResult:
    """What an import did."""

    rows: int = 0
    created: int = 0
    existing: int = 0
    rejected: list[dict[str, Any]] = field(default_factory=list)
    services_created: int = 0
    departments_created: int = 0
    events: list[str] = field(default_factory=list)

    def lines(self) -> list[str]:
        return [
            f"{self.rows:,} rows: {self.created:,} events created, {self.existing:,} already "
            f"imported, {len(self.rejected):,} rejected; {self.services_created} services and "
            f"{self.departments_created} departments added"
        ]


def _slug(text: str) -> str:
    s = re.sub(r"[^a-z0-9]+", "_", text.lower()).strip("_")
    return (s or "other")[:90]


def _files(source: str | Path, pattern: str | None) -> Iterator[Path]:
    s = str(source)
    if s.startswith(("http://", "https://")):
        tmp = Path(tempfile.mkdtemp(prefix="cityos-bulk-"))
        name = Path(urllib.parse.urlparse(s).path).name or "download.csv"
        dest = tmp / name
        with urllib.request.urlopen(s, timeout=60) as resp, dest.open("wb") as fh:
            fh.write(resp.read())
        yield dest
        return
    p = Path(s)
    if p.is_dir():
        found = sorted(p.glob(pattern or "*"))
        if not found:
            raise IntakeError(f"source: {p} holds no files matching {pattern!r}", field="source")
        yield from found
    elif p.is_file():
        yield p
    else:
        raise IntakeError(
            f"source: {p} is neither a file, a folder nor an http(s) URL", field="source"
        )


def bulk_import(
    gov: Governance,
    source: str | Path,
    *,
    mapping: str | Path | None = None,
    jurisdiction: str | None = None,
    actor: str = "bulk-import",
    limit: int | None = None,
    history: bool = True,
) -> BulkResult:
    """Import historical requests from ``source`` (a file, a folder or an http(s) URL)
    through the ingest ``mapping`` (default: the shipped NYC 311 mapping).

    ``jurisdiction`` names the city-level unit the rows belong to; by default one is made
    (or reused) over the rows' extent, named after the mapping's dataset. ``history``
    (the default) judges the rows by their own dates and keeps them out of the live
    workflow; ``history=False`` makes open rows live work (see the module docstring).
    """
    from cityos.ingest import load_mapping, read_file

    mpath = Path(mapping) if mapping is not None else MAPPINGS_DIR / "nyc311.yaml"
    m = load_mapping(mpath)
    name = m.dataset
    res = BulkResult()
    rows: list[dict[str, Any]] = []
    for f in _files(source, m.doc.read.pattern if m.doc.read else None):
        for tbl, offset, bad in read_file(f, m.doc.read.format if m.doc.read else None):
            for r in bad:
                res.rejected.append(
                    {"file": f.name, "row": getattr(r, "row", None), "reason": str(r)}
                )
            mapped = m.apply(tbl)
            bad_rows = mapped.bad_rows
            for p in mapped.problems:
                res.rejected.append(
                    {"file": f.name, "row": offset + p.row, "field": p.rule, "reason": p.message}
                )
            for i, rec in enumerate(mapped.table.to_pylist()):
                res.rows += 1
                if i in bad_rows:
                    continue
                rec["_file"] = f.name
                rows.append(rec)
                if limit is not None and len(rows) >= limit:
                    break
            if limit is not None and len(rows) >= limit:
                break
    if not rows:
        return res
    as_of = _as_of(rows)
    unit = jurisdiction or _jurisdiction_for(gov, name, rows)
    j = gov.jurisdictions
    ugeom = j.geoms.get(unit)
    now = gov.now()
    with audit_transaction(gov.db) as s:
        known_services = {c for (c,) in s.execute(select(ServiceRow.code))}
        known_depts = {c for (c,) in s.execute(select(DepartmentRow.code))}
        keys = [f"{name}:{r['id']}" for r in rows]
        seen: set[str] = set()
        for chunk in range(0, len(keys), 500):
            part = keys[chunk : chunk + 500]
            seen |= {
                k
                for (k,) in s.execute(
                    select(IdempotencyRow.key).where(IdempotencyRow.key.in_(part))
                )
            }
        new_events: list[EventRow] = []
        for rec, key in zip(rows, keys, strict=True):
            if key in seen:
                res.existing += 1
                continue
            seen.add(key)
            x, y = rec.get("x"), rec.get("y")
            if x is None or y is None or not (math.isfinite(float(x)) and math.isfinite(float(y))):
                res.rejected.append(
                    {
                        "file": rec["_file"],
                        "id": rec["id"],
                        "field": "geometry",
                        "reason": "no position",
                    }
                )
                continue
            if ugeom is not None and not ugeom.intersects(shapely.Point(x, y)):
                res.rejected.append(
                    {
                        "file": rec["_file"],
                        "id": rec["id"],
                        "field": "geometry",
                        "reason": f"({y}, {x}) is outside jurisdiction {unit!r}",
                    }
                )
                continue
            svc = _slug(str(rec["service"]))
            if svc not in known_services:
                s.add(
                    ServiceRow(
                        code=svc,
                        name=str(rec["service"])[:200],
                        description=f"{rec['service']} ({name})",
                        group=str(rec.get("department") or ""),
                        keywords="",
                        type="realtime",
                        function=str(rec.get("department") or ""),
                        attributes="[]",
                        workflow=dumps(Workflow().to_dict()),
                    )
                )
                known_services.add(svc)
                res.services_created += 1
            dept = str(rec["department"])[:100]
            if dept not in known_depts:
                s.add(
                    DepartmentRow(
                        code=dept,
                        name=str(rec.get("department_name") or dept)[:200],
                        unit=unit,
                        function=dept,
                        services="[]",
                    )
                )
                known_depts.add(dept)
                res.departments_created += 1
            s.flush()
            t = utc(rec["t"])
            assert t is not None
            closed = utc(rec.get("closed_at"))
            st_key = str(rec.get("status") or "unspecified").strip().lower()
            status, done = _STATUS.get(st_key, ("dispatched", False))
            if done and closed is None:
                closed = t
            if not done:
                closed = None
            due = utc(rec.get("due_date"))
            resolve_by = due if due is not None and due > t else t + Workflow().resolve_within
            # history is judged at its own export time; live work at today's
            judged_at = as_of[rec["_file"]] if history else now
            attrs = {
                k: rec.get(k)
                for k in ("descriptor", "location_type", "zipcode", "borough")
                if rec.get(k)
            }
            row = EventRow(
                service_code=svc,
                category=str(rec["service"])[:100],
                title=str(rec["service"])[:500],
                description=" — ".join(
                    str(v) for v in (rec.get("descriptor"), rec.get("resolution")) if v
                ),
                status=status,
                department=dept,
                assisting="[]",
                level="city",
                unit=unit,
                district=rec.get("borough"),
                priority=3,
                channel="bulk",
                parent_id=None,
                source_id=f"{name}:{rec['id']}",
                x=float(x),
                y=float(y),
                address=str(rec.get("address") or ""),
                attributes=dumps(attrs),
                media_url=None,
                received_at=t,
                # an open history row's last known state is the export's
                updated_at=closed or (judged_at if history else t),
                due_at=None if done or history else resolve_by,
                resolve_by=resolve_by,
                resolved_at=closed,
                closed_at=closed if status == "closed" else None,
                overdue=bool(not done and resolve_by < judged_at),
                escalations=0,
                reopens=0,
                dispatch_mode="imported" if history else "migrated",
                version=1,
            )
            s.add(row)
            new_events.append(row)
        s.flush()
        for row in new_events:
            key = str(row.source_id)
            rep = ReportRow(
                event_id=row.id,
                first_event=row.id,
                channel="bulk",
                source_id=key,
                token=_token(),
                reporter=None,
                contact="{}",
                description=row.description,
                media_url=None,
                attachments="[]",
                x=row.x,
                y=row.y,
                received_at=row.received_at,
            )
            s.add(rep)
            s.flush()
            s.add(
                IdempotencyRow(
                    key=str(key),
                    fingerprint="bulk",
                    event_id=row.id,
                    report_id=rep.id,
                    created_at=now,
                )
            )
            s.add(
                TransitionRow(
                    event_id=row.id,
                    action="import",
                    from_status=None,
                    to_status=row.status,
                    from_department=None,
                    department=row.department,
                    actor=actor,
                    note=f"imported from {name}",
                    at=now,
                    version=1,
                )
            )
        append_audit(
            s,
            actor=actor,
            action="govern.bulk_import",
            dataset="events",
            detail={
                "mapping": name,
                "source": str(source)[:500],
                "created": len(new_events),
                "existing": res.existing,
                "rejected": len(res.rejected),
            },
        )
        s.flush()
        objs = [gov._event_obj(r) for r in new_events]
    res.created = len(objs)
    res.events = [e.id for e in objs]
    gov.reload()
    if objs:
        gov._changed([(e, True) for e in objs], actor)
    return res


def _as_of(rows: list[dict[str, Any]]) -> dict[str, datetime]:
    """Per file, the latest time it records (created, closed or resolution updated): the
    moment its export shows the requests' state."""
    out: dict[str, datetime] = {}
    for r in rows:
        for k in ("t", "closed_at", "resolution_updated"):
            v = utc(r.get(k))
            if v is not None and (r["_file"] not in out or v > out[r["_file"]]):
                out[r["_file"]] = v
    return out


def _token() -> str:
    import secrets

    return secrets.token_hex(16)


def _jurisdiction_for(gov: Governance, name: str, rows: list[dict[str, Any]]) -> str:
    """A city-level unit over the rows' extent (padded), created once and reused."""
    code = _slug(name)[:50]
    j = gov.jurisdictions
    if code in j.units:
        return code
    pts = [
        (float(r["x"]), float(r["y"]))
        for r in rows
        if r.get("x") is not None and r.get("y") is not None
    ]
    xs = [x for x, y in pts if math.isfinite(x) and math.isfinite(y)]
    ys = [y for x, y in pts if math.isfinite(x) and math.isfinite(y)]
    if not xs:
        raise IntakeError("source: no row has a position", field="geometry")
    pad = 0.05
    geom = shapely.box(min(xs) - pad, min(ys) - pad, max(xs) + pad, max(ys) + pad)
    with gov.db.session() as s:
        s.add(
            UnitRow(
                code=code,
                name=f"{name} (imported jurisdiction)",
                level="city",
                parent=None,
                geometry=shapely.to_wkb(geom),
            )
        )
    gov.reload()
    return code


_ = (datetime, timedelta, UTC, format_event_id)

"""The governance service: one door for intake, dispatch, the workflow with deadlines,
warnings, evaluation. See :class:`Governance`."""

from __future__ import annotations

import atexit
import functools
import hashlib
import inspect
import json
import math
import re
import secrets
import threading
import weakref
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

from sqlalchemy import and_, func, or_, select, text, update
from sqlalchemy.orm import Session

from cityos.access import Principal
from cityos.access._audit import append_audit, append_audits, audit_transaction
from cityos.access.errors import PermissionDenied
from cityos.db import Database
from cityos.govern._group import GroupCommit, Job
from cityos.govern._mirror import Mirror
from cityos.govern._model import (
    ACTIONS,
    NEXT_STEP,
    Event,
    Report,
    Transition,
    Warning,
    Workflow,
    dumps,
    event_number,
    format_event_id,
    format_warning_id,
    utc,
    warning_number,
)
from cityos.govern._notify import ASSIGNED, Hub, Subscription, Webhooks, notify
from cityos.govern._org import Jurisdictions
from cityos.govern._tables import (
    DepartmentRow,
    EventRow,
    IdempotencyRow,
    OverrideRow,
    ReportRow,
    ServiceRow,
    StaffRow,
    TransitionRow,
    UnitRow,
    WarningRow,
)
from cityos.govern.errors import (
    EventNotFound,
    GovernError,
    IdempotencyConflict,
    IllegalTransition,
    IntakeError,
    OutsideJurisdiction,
    StaleVersion,
    UnknownDepartment,
)

__all__ = [
    "CHANNELS",
    "Clock",
    "Deduplicator",
    "DispatchPredictor",
    "Governance",
    "Intake",
    "SweepResult",
    "SystemClock",
]

#: Where intake comes from.
CHANNELS = ("open311", "native", "hotline", "inspector", "grid", "sensor", "warning", "bulk", "app")
SEVERITIES = ("info", "warning", "critical")
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
#: actions each role may take (supervisors and admins may take every action)
_ROLE_ACTIONS: dict[str, frozenset[str]] = {
    "dispatcher": frozenset(
        {
            "dispatch",
            "reassign",
            "escalate",
            "return",
            "verify",
            "close",
            "reopen",
            "merge",
            "note",
            "assign",
        }
    ),
    "department_staff": frozenset(
        {"accept", "start", "resolve", "return", "escalate", "note", "assign"}
    ),
    "grid_worker": frozenset({"accept", "start", "resolve", "verify", "note"}),
    "citizen": frozenset({"reopen"}),
}
_DEPT_BOUND = frozenset({"accept", "start", "resolve", "return", "escalate", "note", "assign"})


class Clock(Protocol):
    def now(self) -> datetime: ...


class SystemClock:
    def now(self) -> datetime:
        return datetime.now(UTC)


class Deduplicator(Protocol):
    """govern-intel's duplicate detector: ``event`` and ``candidates`` are
    :func:`hook_record` records (the report being taken in has ``id`` None); answers a
    match naming the parent (``parent_id``, ``parent`` or ``event_id``) or None."""

    def find(self, event: dict[str, Any], candidates: Sequence[dict[str, Any]]) -> Any: ...


class DispatchPredictor(Protocol):
    """govern-intel's dispatcher: one ``(department, level, confidence)`` per
    :func:`hook_record`; the department is a code or a department's name."""

    def predict(
        self, events: Sequence[dict[str, Any]]
    ) -> Sequence[tuple[str | None, str | None, float]]: ...


@dataclass(frozen=True)
class Intake:
    """What an intake did: the event the report belongs to (the parent when it was merged
    as a duplicate), whether this call created it, and the report's Open311 token."""

    event: Event
    report: Report
    created: bool
    merged_into: str | None = None
    dispatched: bool = False
    own_event: str | None = None

    @property
    def id(self) -> str:
        return self.own_event or self.event.id


@dataclass(frozen=True)
class SweepResult:
    overdue: tuple[str, ...]
    escalated: tuple[str, ...]


def hook_record(e: Event) -> dict[str, Any]:
    """An event as the plain record govern-intel's hooks read (``t`` = received time;
    ``id`` None for the report being taken in)."""
    return {
        "id": e.id or None,
        "t": e.received_at,
        "x": e.x,
        "y": e.y,
        "service_code": e.service_code,
        "category": e.category,
        "title": e.title,
        "description": e.description,
        "status": e.status,
        "parent_id": e.parent_id,
        "department": e.department,
        "level": e.level,
        "channel": e.channel,
        "address": e.address,
    }


def _actor_name(actor: str | Principal) -> str:
    return actor.username if isinstance(actor, Principal) else str(actor)


def _fingerprint(payload: dict[str, Any]) -> str:
    return hashlib.sha256(dumps(payload).encode()).hexdigest()


#: how the group's own reports are named among dedup candidates (before they have ids)
_NEW = "new:"
_NEW_BASE = 1 << 62
#: the newest open events near a report that the duplicate detector sees
_DEDUP_CANDIDATES = 200


def _close_at_exit(ref: weakref.ref[Governance]) -> Callable[[], None]:
    def close() -> None:
        gov = ref()
        if gov is not None:
            gov.close()

    return close


def _match_parent(m: Any) -> str | None:
    """The parent a duplicate detector's answer names (a match object, an id or None)."""
    if m is None:
        return None
    pid = next(
        (getattr(m, a) for a in ("parent", "parent_id", "event_id") if getattr(m, a, None)),
        None,
    )
    if pid is None and isinstance(m, str | int) and not isinstance(m, bool):
        pid = m
    if pid is None:
        return None
    return format_event_id(pid) if isinstance(pid, int) else str(pid)


@dataclass(frozen=True)
class _Pending:
    """A validated report waiting for its group's commit."""

    svc: ServiceRow
    wf: Workflow
    candidate: Event
    now: datetime
    key: str | None
    fingerprint: str
    from_source: bool
    reporter: str | None
    contact: dict[str, Any]
    attachments: list[Any]
    actor: str
    warning_id: int | None
    dedup: bool
    auto_dispatch: bool


class Governance:
    """The city-governance platform over one city's database and store.

    Parameters
    ----------
    db:
        The city's relational database (migrated).
    store:
        The city's :class:`~cityos.store.Store` or a :class:`~cityos.access.SecureStore`;
        events and warnings are mirrored into its ``events`` and ``warnings`` datasets.
    clock:
        Anything with ``now()`` (default: the system clock;
        :class:`cityos.testing.clock.FakeClock` in tests).
    deduplicator, dispatcher:
        govern-intel's duplicate detector and automatic dispatcher (optional).
    auto_dispatch_threshold:
        A dispatcher's suggestion at or above this confidence dispatches automatically;
        below it the event waits in the dispatcher queue with the suggestion.
    mirror_every_s:
        Write-behind: gather the store's ``events``/``warnings`` writes and flush them
        every so many seconds on a background thread (``close()`` flushes the rest).
    group_max, group_wait_s:
        Group commit of concurrent intakes: at most ``group_max`` reports per
        transaction; a group waits up to ``group_wait_s`` for callers still validating.

    Examples
    --------
    >>> import tempfile, cityos
    >>> from cityos.testing.clock import FakeClock
    >>> from cityos.govern import Governance, load_organisation
    >>> store = cityos.open_city(tempfile.mkdtemp())
    >>> _ = load_organisation(store.db, {
    ...     "city": {"code": "city", "name": "C", "bbox": [0, 0, 1, 1]},
    ...     "departments": [{"code": "roads", "unit": "city", "function": "roads"}],
    ...     "services": [{"code": "pothole", "name": "Pothole", "function": "roads"}]})
    >>> gov = Governance(store.db, store, clock=FakeClock("2026-03-02T08:00Z"))
    >>> e = gov.intake("pothole", x=0.5, y=0.5, description="deep hole").event
    >>> e.id, e.status, e.version
    ('E-000001', 'received', 1)
    >>> gov.dispatch(e.id, "roads", "dispatcher1", e.version).status
    'dispatched'
    >>> [t.action for t in gov.history(e.id)]
    ['receive', 'dispatch']
    """

    def __init__(
        self,
        db: Database,
        store: Any = None,
        clock: Clock | None = None,
        *,
        deduplicator: Deduplicator | None = None,
        dispatcher: DispatchPredictor | None = None,
        auto_dispatch_threshold: float = 0.9,
        dedup_window: timedelta = timedelta(days=3),
        dedup_radius_m: float = 500.0,
        webhooks: bool = True,
        mirror_every_s: float | None = None,
        group_max: int = 64,
        group_wait_s: float = 0.002,
    ) -> None:
        self.db = db
        self.store = store
        self.clock: Clock = clock or SystemClock()
        self.deduplicator = deduplicator
        self.dispatcher = dispatcher
        self.auto_dispatch_threshold = auto_dispatch_threshold
        self.dedup_window = dedup_window
        self.dedup_radius_m = dedup_radius_m
        self.hub = Hub()
        self.webhooks = Webhooks(db) if webhooks else None
        self._mirror = Mirror(store) if store is not None else None
        #: intakes that arrive together commit together (see :meth:`intake`)
        self._group = GroupCommit(self._run_group, max_size=group_max, wait_s=group_wait_s)
        self._jur: Jurisdictions | None = None
        self._services: dict[str, ServiceRow] | None = None
        self._lock = threading.RLock()
        self._batch_depth = 0
        self._dirty_events: dict[str, Event] = {}
        self._new_events: set[str] = set()
        self._dirty_warnings: dict[str, Warning] = {}
        self._new_warnings: set[str] = set()
        self._batch_actor = "govern"
        self._flush_lock = threading.Lock()
        #: write-behind: store writes gathered and flushed every ``mirror_every_s`` seconds
        #: by a background thread (the server's default), instead of after every change
        self.mirror_every_s = mirror_every_s
        self._stop = threading.Event()
        self._flusher: threading.Thread | None = None
        if mirror_every_s is not None and self._mirror is not None:
            self._flusher = threading.Thread(
                target=self._flush_loop, name="cityos-govern-mirror", daemon=True
            )
            self._flusher.start()
            # a process that exits without close() still writes what it gathered
            self._at_exit: Callable[[], None] | None = _close_at_exit(weakref.ref(self))
            atexit.register(self._at_exit)

    # -- organisation ------------------------------------------------------------------
    def reload(self) -> None:
        """Forget the cached organisation and services (after loading a new one)."""
        with self._lock:
            self._jur = None
            self._services = None

    @property
    def jurisdictions(self) -> Jurisdictions:
        with self._lock:
            if self._jur is None:
                with self.db.session() as s:
                    units = list(s.scalars(select(UnitRow)))
                    depts = list(s.scalars(select(DepartmentRow)))
                    for r in [*units, *depts]:
                        s.expunge(r)
                self._jur = Jurisdictions(units, depts)
            return self._jur

    @property
    def services(self) -> dict[str, ServiceRow]:
        with self._lock:
            if self._services is None:
                with self.db.session() as s:
                    rows = list(s.scalars(select(ServiceRow).order_by(ServiceRow.code)))
                    for r in rows:
                        s.expunge(r)
                self._services = {r.code: r for r in rows}
            return self._services

    def service(self, code: str) -> ServiceRow:
        svc = self.services.get(code)
        if svc is None:
            raise IntakeError(
                f"service_code: unknown service {code!r}; known: {', '.join(sorted(self.services)) or 'none'}",
                field="service_code",
            )
        return svc

    def workflow(self, code: str) -> Workflow:
        return Workflow.from_dict(json.loads(self.service(code).workflow or "{}"))

    def departments(self) -> list[dict[str, Any]]:
        j = self.jurisdictions
        return [
            {
                "code": d.code,
                "name": d.name,
                "unit": d.unit,
                "level": j.level_of(d.unit),
                "function": d.function,
                "services": json.loads(d.services or "[]"),
                "webhook_url": d.webhook_url,
            }
            for d in sorted(j.departments.values(), key=lambda d: d.code)
        ]

    def staff(self, username: str) -> StaffRow | None:
        with self.db.session() as s:
            row = s.get(StaffRow, username)
            if row is not None:
                s.expunge(row)
            return row

    def _department(self, code: str | None, where: str = "department") -> DepartmentRow:
        d = self.jurisdictions.departments.get(str(code)) if code else None
        if d is None:
            raise UnknownDepartment(f"{where}: unknown department {code!r}", field=where)
        return d

    # -- helpers -----------------------------------------------------------------------
    def now(self) -> datetime:
        n = self.clock.now()
        return n.replace(tzinfo=UTC) if n.tzinfo is None else n.astimezone(UTC)

    def _event_obj(self, r: EventRow) -> Event:
        return Event(
            id=format_event_id(r.id),
            service_code=r.service_code,
            category=r.category,
            title=r.title,
            description=r.description,
            status=r.status,
            department=r.department,
            assisting=tuple(json.loads(r.assisting or "[]")),
            level=r.level,
            unit=r.unit,
            district=r.district,
            priority=r.priority,
            channel=r.channel,
            parent_id=format_event_id(r.parent_id) if r.parent_id else None,
            source_id=r.source_id,
            warning_id=format_warning_id(r.warning_id) if r.warning_id else None,
            x=r.x,
            y=r.y,
            address=r.address,
            attributes=json.loads(r.attributes or "{}"),
            media_url=r.media_url,
            received_at=utc(r.received_at),  # type: ignore[arg-type]
            updated_at=utc(r.updated_at),  # type: ignore[arg-type]
            due_at=utc(r.due_at),
            resolve_by=utc(r.resolve_by),
            resolved_at=utc(r.resolved_at),
            closed_at=utc(r.closed_at),
            overdue=bool(r.overdue),
            escalations=r.escalations,
            reopens=r.reopens,
            dispatch_mode=r.dispatch_mode,
            dispatch_confidence=r.dispatch_confidence,
            satisfaction=r.satisfaction,
            version=r.version,
            assignee=r.assignee,
        )

    @staticmethod
    def _report_obj(r: ReportRow) -> Report:
        return Report(
            id=r.id,
            event_id=format_event_id(r.event_id),
            first_event=format_event_id(r.first_event),
            channel=r.channel,
            source_id=r.source_id,
            token=r.token,
            reporter=r.reporter,
            contact=json.loads(r.contact or "{}"),
            description=r.description,
            media_url=r.media_url,
            attachments=json.loads(r.attachments or "[]"),
            x=r.x,
            y=r.y,
            received_at=utc(r.received_at),  # type: ignore[arg-type]
        )

    @staticmethod
    def _warning_obj(r: WarningRow) -> Warning:
        return Warning(
            id=format_warning_id(r.id),
            rule=r.rule,
            kind=r.kind,
            severity=r.severity,
            status=r.status,
            title=r.title,
            x=r.x,
            y=r.y,
            t=utc(r.t),  # type: ignore[arg-type]
            evidence=json.loads(r.evidence or "{}"),
            event_id=format_event_id(r.event_id) if r.event_id else None,
            service_code=r.service_code,
            updated_at=utc(r.updated_at),  # type: ignore[arg-type]
            version=r.version,
            dedup_key=r.dedup_key,
        )

    def _row(self, s: Session, event_id: str | int, *, lock: bool = False) -> EventRow:
        n = event_number(event_id)
        stmt = select(EventRow).where(EventRow.id == n)
        if lock and self.db.dialect == "postgresql":
            stmt = stmt.with_for_update()
        row = s.scalars(stmt).one_or_none()
        if row is None:
            raise EventNotFound(f"no event {format_event_id(n)}")
        return row

    def _new_ids(self, s: Session, table: Any, n: int) -> list[int] | None:
        """``n`` ids from ``table``'s sequence (PostgreSQL), ascending, so that a group's
        rows insert in one batch without returning their ids; None elsewhere (the
        database assigns them on flush)."""
        if self.db.dialect != "postgresql" or n == 0:
            return None
        got = s.execute(
            text("SELECT nextval(pg_get_serial_sequence(:t, 'id')) FROM generate_series(1, :n)"),
            {"t": table.__tablename__, "n": n},
        )
        return sorted(int(v) for v in got.scalars())

    def _rows(self, s: Session, numbers: Sequence[int]) -> list[EventRow]:
        """The events numbered ``numbers``, locked for update (PostgreSQL), in id order."""
        if not numbers:
            return []
        stmt = select(EventRow).where(EventRow.id.in_(list(numbers))).order_by(EventRow.id)
        if self.db.dialect == "postgresql":
            stmt = stmt.with_for_update()
        with s.no_autoflush:
            return list(s.scalars(stmt))

    # -- store mirror and notifications ------------------------------------------------
    @contextmanager
    def batch(self, actor: str = "govern") -> Iterator[None]:
        """Gather the store writes of every change inside the block into one delete and one
        append per dataset (bulk imports, the demo's day)."""
        with self._lock:
            self._batch_depth += 1
            self._batch_actor = actor
        try:
            yield
        finally:
            with self._lock:
                self._batch_depth -= 1
                last = self._batch_depth == 0
            if last:
                self.flush()

    def flush(self) -> None:
        """Write the gathered changes to the store now (one writer at a time, so a later
        state never lands before an earlier one)."""
        with self._flush_lock:
            with self._lock:
                events, new_e = list(self._dirty_events.values()), set(self._new_events)
                warns, new_w = list(self._dirty_warnings.values()), set(self._new_warnings)
                self._dirty_events.clear()
                self._new_events.clear()
                self._dirty_warnings.clear()
                self._new_warnings.clear()
                actor = self._batch_actor
            if self._mirror is None:
                return
            try:
                self._mirror.events(events, new=new_e, actor=actor)
                events, new_e = [], set()
                self._mirror.warnings(warns, new=new_w, actor=actor)
            except BaseException:  # keep what was not written for the next flush
                with self._lock:
                    for e in events:  # a newer state gathered meanwhile wins
                        self._dirty_events.setdefault(e.id, e)
                    self._new_events |= new_e
                    for w in warns:
                        self._dirty_warnings.setdefault(w.id, w)
                    self._new_warnings |= new_w
                raise

    def _flush_loop(self) -> None:
        assert self.mirror_every_s is not None
        while not self._stop.wait(self.mirror_every_s):
            try:
                self.flush()
            except Exception:  # the relational state is the truth; resync() repairs
                import logging

                logging.getLogger("cityos.govern").exception("writing events to the store failed")

    def close(self) -> None:
        """Stop the write-behind thread (flushing what it gathered) and the webhooks."""
        at_exit = getattr(self, "_at_exit", None)
        if at_exit is not None:
            atexit.unregister(at_exit)
            self._at_exit = None
        self._stop.set()
        if self._flusher is not None:
            self._flusher.join(timeout=30)
            self._flusher = None
        self.flush()
        if self.webhooks is not None:
            self.webhooks.close()

    def _changed(
        self, events: Sequence[tuple[Event, bool]], actor: str, kinds: Sequence[str] = ()
    ) -> None:
        with self._lock:
            for e, new in events:
                if new and e.id not in self._dirty_events:
                    self._new_events.add(e.id)
                self._dirty_events[e.id] = e
            batched = self._batch_depth > 0 or self._flusher is not None
            self._batch_actor = actor if not batched else self._batch_actor
        if not batched:
            self.flush()
        for i, (e, new) in enumerate(events):
            kind = kinds[i] if i < len(kinds) else ("event.created" if new else "event.updated")
            if self.hub.active:
                self.hub.publish(kind, e.to_dict())
            self._notify_department(e, kind)

    def _warning_changed(self, w: Warning, new: bool, actor: str) -> None:
        with self._lock:
            if new and w.id not in self._dirty_warnings:
                self._new_warnings.add(w.id)
            self._dirty_warnings[w.id] = w
            batched = self._batch_depth > 0 or self._flusher is not None
            if not batched:
                self._batch_actor = actor
        if not batched:
            self.flush()
        self.hub.publish("warning.raised" if new else "warning.updated", w.to_dict())

    def _notify_department(self, e: Event, kind: str) -> None:
        notify(self, e, kind)  # departments' and grid workers' webhooks (see _notify)

    def subscribe(self, fn: Callable[[str, dict[str, Any]], None]) -> Callable[[], None]:
        """Call ``fn(kind, object)`` on every change (``event.created``, ``event.updated``,
        ``warning.raised``, ``warning.updated``); returns the unsubscribe function."""
        return self.hub.subscribe(fn)

    # -- grid workers: assignment and their webhooks (see _notify) -----------------------
    def _assign(self, row: EventRow, assignee: str) -> None:
        from cityos.govern._notify import check_assignee

        if row.status not in ("dispatched", "accepted", "in_progress"):
            raise IllegalTransition(
                f"event {format_event_id(row.id)} is {row.status!r}: only an event with a "
                "department (dispatched, accepted, in progress) is assigned to a grid worker"
            )
        check_assignee(self, row.unit, assignee, format_event_id(row.id))
        row.assignee = assignee

    def assign(
        self,
        event_id: str | int,
        assignee: str,
        actor: str | Principal,
        version: int,
        note: str = "",
    ) -> Event:
        """Assign an event to a grid worker of its grid (a dispatcher, or staff of the
        department holding it); the worker's webhooks and live stream receive it as
        ``event.assigned``. Another grid's worker is refused (``assignee``)."""
        return self.transition(event_id, "assign", actor, version, note, assignee=assignee)

    def add_subscription(self, username: str, url: str, actor: str | Principal) -> Subscription:
        """A grid worker's webhook: events assigned to them, and their grid's, are posted
        to ``url`` signed with the returned ``secret`` (shown once)."""
        from cityos.govern._notify import add_subscription

        return add_subscription(self, username, url, actor)

    def subscriptions(
        self, username: str | None = None, actor: str | Principal = "system"
    ) -> list[Subscription]:
        from cityos.govern._notify import subscriptions

        return subscriptions(self, username, actor)

    def remove_subscription(self, subscription_id: int, actor: str | Principal) -> Subscription:
        from cityos.govern._notify import remove_subscription

        return remove_subscription(self, subscription_id, actor)

    def resync(self) -> int:
        """Rewrite the store's ``events`` and ``warnings`` from the relational state."""
        if self._mirror is None:
            return 0
        self._mirror.clear()
        evs = self.events(limit=None)
        self._mirror.events(evs, new=[e.id for e in evs])
        ws = self.warnings()
        self._mirror.warnings(ws, new=[w.id for w in ws])
        return len(evs)

    # -- intake ------------------------------------------------------------------------
    def _validate(
        self,
        service_code: str,
        x: Any,
        y: Any,
        channel: str,
        priority: Any,
        attributes: dict[str, Any],
        contact: dict[str, Any],
        media_url: str | None,
        description: str,
    ) -> tuple[ServiceRow, float, float, dict[str, str]]:
        if not isinstance(service_code, str) or not service_code:
            raise IntakeError("service_code: required", field="service_code")
        svc = self.service(service_code)
        if channel not in CHANNELS:
            raise IntakeError(
                f"channel: {channel!r} is not one of {', '.join(CHANNELS)}", field="channel"
            )
        if x is None or y is None:
            raise IntakeError(
                "long/lat: a position is required", field="lat" if y is None else "long"
            )
        try:
            fx, fy = float(x), float(y)
        except (TypeError, ValueError) as exc:
            raise IntakeError(f"long/lat: {x!r}, {y!r} are not numbers", field="long") from exc
        if not (math.isfinite(fx) and -180 <= fx <= 180):
            raise IntakeError(f"long: {x!r} is not a longitude in [-180, 180]", field="long")
        if not (math.isfinite(fy) and -90 <= fy <= 90):
            raise IntakeError(f"lat: {y!r} is not a latitude in [-90, 90]", field="lat")
        where = self.jurisdictions.locate(fx, fy)
        if not where:
            raise OutsideJurisdiction(
                f"lat/long: ({fy}, {fx}) is outside every jurisdiction of the city", field="lat"
            )
        if isinstance(priority, bool) or not isinstance(priority, int) or not 1 <= priority <= 5:
            raise IntakeError(f"priority: {priority!r} is not an integer 1..5", field="priority")
        if len(description) > 10_000:
            raise IntakeError("description: longer than 10000 characters", field="description")
        defs = {a["code"]: a for a in json.loads(svc.attributes or "[]")}
        for code in attributes:
            if code not in defs:
                raise IntakeError(
                    f"attribute[{code}]: service {svc.code!r} has no attribute {code!r}",
                    field=f"attribute[{code}]",
                )
        for code, a in defs.items():
            v = attributes.get(code)
            if v in (None, "", []):
                if a.get("required") and a.get("variable", True):
                    raise IntakeError(
                        f"attribute[{code}]: required for service {svc.code!r}",
                        field=f"attribute[{code}]",
                    )
                continue
            keys = {val["key"] for val in a.get("values") or []}
            if a["datatype"] == "singlevaluelist" and str(v) not in keys:
                raise IntakeError(
                    f"attribute[{code}]: {v!r} is not one of {sorted(keys)}",
                    field=f"attribute[{code}]",
                )
            if a["datatype"] == "multivaluelist":
                vs = v if isinstance(v, list) else [v]
                bad = [str(i) for i in vs if str(i) not in keys]
                if bad:
                    raise IntakeError(
                        f"attribute[{code}]: {bad} not in {sorted(keys)}",
                        field=f"attribute[{code}]",
                    )
            if a["datatype"] == "number":
                try:
                    float(v)
                except (TypeError, ValueError) as exc:
                    raise IntakeError(
                        f"attribute[{code}]: {v!r} is not a number", field=f"attribute[{code}]"
                    ) from exc
            if a["datatype"] == "datetime":
                try:
                    datetime.fromisoformat(str(v).replace("Z", "+00:00"))
                except ValueError as exc:
                    raise IntakeError(
                        f"attribute[{code}]: {v!r} is not an ISO 8601 time",
                        field=f"attribute[{code}]",
                    ) from exc
        email = contact.get("email")
        if email and not _EMAIL.match(str(email)):
            raise IntakeError(f"email: {email!r} is not an e-mail address", field="email")
        if media_url and not re.match(r"^https?://\S+$", media_url):
            raise IntakeError(f"media_url: {media_url!r} is not an http(s) URL", field="media_url")
        return svc, fx, fy, where

    def intake(
        self,
        service_code: str,
        *,
        x: float | None = None,
        y: float | None = None,
        description: str = "",
        title: str = "",
        channel: str = "native",
        source_id: str | None = None,
        idempotency_key: str | None = None,
        reporter: str | Principal | None = None,
        contact: dict[str, Any] | None = None,
        attributes: dict[str, Any] | None = None,
        media_url: str | None = None,
        attachments: list[Any] | None = None,
        address: str = "",
        priority: int = 3,
        received_at: datetime | str | None = None,
        actor: str | Principal = "system",
        warning_id: str | int | None = None,
        dedup: bool = True,
        auto_dispatch: bool = True,
    ) -> Intake:
        """Take in one report: validated (an :class:`IntakeError` naming the field, and
        nothing stored), idempotent (the same ``idempotency_key``, or the same
        ``channel`` + ``source_id``, answers the event it created the first time),
        checked for duplicates (merged into the parent, which keeps every report), and
        dispatched automatically when the dispatcher is confident enough. Without ``x``
        and ``y`` an ``address`` is located in the city's gazetteer (refused, naming
        ``address``, below the geocoder's confidence threshold).

        Concurrent calls (the server's requests) are committed in groups: one transaction
        and one audit-chain append (an entry per intake) for the reports that arrived
        together; each call returns once its own report is committed."""
        with self._group.preparing():
            p = self._prepare(
                service_code,
                x=x,
                y=y,
                description=description,
                title=title,
                channel=channel,
                source_id=source_id,
                idempotency_key=idempotency_key,
                reporter=reporter,
                contact=contact,
                attributes=attributes,
                media_url=media_url,
                attachments=attachments,
                address=address,
                priority=priority,
                received_at=received_at,
                actor=actor,
                warning_id=warning_id,
                dedup=dedup,
                auto_dispatch=auto_dispatch,
            )
        (job,) = self._group.submit([Job(p)])
        if job.error is not None:
            raise job.error
        assert isinstance(job.result, Intake)
        return job.result

    def intake_many(self, reports: Iterable[Mapping[str, Any]]) -> list[Intake | GovernError]:
        """Take in many reports (each a mapping of :meth:`intake`'s keyword arguments, with
        ``service_code``) in groups of one transaction and one audit append each, with the
        results of taking them in one at a time, in order: an :class:`Intake` per report,
        or the :class:`~cityos.govern.errors.GovernError` that report alone raised (a bad
        report never fails another).

        Examples
        --------
        >>> import tempfile, cityos
        >>> from cityos.govern import Governance, load_organisation
        >>> store = cityos.open_city(tempfile.mkdtemp())
        >>> _ = load_organisation(store.db, {
        ...     "city": {"code": "city", "name": "C", "bbox": [0, 0, 1, 1]},
        ...     "services": [{"code": "pothole", "name": "Pothole"}]})
        >>> out = Governance(store.db, store).intake_many([
        ...     {"service_code": "pothole", "x": 0.5, "y": 0.5, "source_id": "a"},
        ...     {"service_code": "pothole", "x": 5.0, "y": 0.5},
        ...     {"service_code": "pothole", "x": 0.5, "y": 0.5, "source_id": "a"}])
        >>> [getattr(r, "id", type(r).__name__) for r in out]
        ['E-000001', 'OutsideJurisdiction', 'E-000001']
        """
        out: list[Intake | GovernError | None] = []
        jobs: list[Job] = []
        where: list[int] = []
        with self._group.preparing():
            for r in reports:
                kw = dict(r)
                try:
                    code = kw.pop("service_code")
                except KeyError:
                    out.append(IntakeError("service_code: required", field="service_code"))
                    continue
                try:
                    p = self._prepare(code, **kw)
                except GovernError as exc:
                    out.append(exc)
                    continue
                where.append(len(out))
                out.append(None)
                jobs.append(Job(p))
        for i, job in zip(where, self._group.submit(jobs), strict=True):
            if isinstance(job.error, GovernError):
                out[i] = job.error
            elif job.error is not None:
                raise job.error
            else:
                out[i] = job.result
        return [r for r in out if r is not None]

    def _prepare(
        self,
        service_code: str,
        *,
        x: float | None = None,
        y: float | None = None,
        description: str = "",
        title: str = "",
        channel: str = "native",
        source_id: str | None = None,
        idempotency_key: str | None = None,
        reporter: str | Principal | None = None,
        contact: dict[str, Any] | None = None,
        attributes: dict[str, Any] | None = None,
        media_url: str | None = None,
        attachments: list[Any] | None = None,
        address: str = "",
        priority: int = 3,
        received_at: datetime | str | None = None,
        actor: str | Principal = "system",
        warning_id: str | int | None = None,
        dedup: bool = True,
        auto_dispatch: bool = True,
    ) -> _Pending:
        """Validate one report into what a group commits (nothing stored yet)."""
        attributes = dict(attributes or {})
        contact = {k: v for k, v in dict(contact or {}).items() if v not in (None, "")}
        if (x is None or y is None) and address.strip():
            from cityos.govern._geocode import locate  # the city's own gazetteer

            hit = locate(self, address, field="address")
            x, y = hit.x, hit.y
        svc, fx, fy, where = self._validate(
            service_code, x, y, channel, priority, attributes, contact, media_url, description
        )
        now = self.now()
        if received_at is None:
            rtime = now
        else:
            try:
                rtime = (
                    datetime.fromisoformat(received_at.replace("Z", "+00:00"))
                    if isinstance(received_at, str)
                    else received_at
                )
            except ValueError as exc:
                raise IntakeError(
                    f"received_at: {received_at!r} is not an ISO 8601 time", field="received_at"
                ) from exc
            rtime = utc(rtime)  # type: ignore[assignment]
            assert rtime is not None
        rep_name = _actor_name(reporter) if reporter is not None else None
        key = idempotency_key or (f"{channel}:{source_id}" if source_id else None)
        if key is not None and len(key) > 300:
            raise IntakeError(
                "Idempotency-Key: longer than 300 characters", field="Idempotency-Key"
            )
        fp = _fingerprint(
            {
                "s": service_code,
                "x": fx,
                "y": fy,
                "d": description,
                "t": title,
                "a": attributes,
                "c": contact,
                "m": media_url,
                "r": rep_name,
            }
        )
        candidate = Event(
            id="",
            service_code=svc.code,
            category=svc.group,
            title=title or svc.name,
            description=description,
            status="received",
            department=None,
            assisting=(),
            level=None,
            unit=where.get("community") or where.get("street") or where.get("district"),
            district=where.get("district"),
            priority=priority,
            channel=channel,
            parent_id=None,
            source_id=source_id,
            warning_id=None,
            x=fx,
            y=fy,
            address=address,
            attributes=attributes,
            media_url=media_url,
            received_at=rtime,
            updated_at=now,
            due_at=None,
            resolve_by=None,
            resolved_at=None,
            closed_at=None,
            overdue=False,
            escalations=0,
            reopens=0,
            dispatch_mode=None,
            dispatch_confidence=None,
            satisfaction=None,
            version=1,
        )
        return _Pending(
            svc=svc,
            wf=Workflow.from_dict(json.loads(svc.workflow or "{}")),
            candidate=candidate,
            now=now,
            key=key,
            fingerprint=fp,
            from_source=idempotency_key is None,
            reporter=rep_name,
            contact=contact,
            attachments=list(attachments or []),
            actor=_actor_name(actor),
            warning_id=warning_number(warning_id) if warning_id is not None else None,
            dedup=dedup,
            auto_dispatch=auto_dispatch,
        )

    # -- the group commit of intakes ----------------------------------------------------
    def _run_group(self, jobs: list[Job]) -> None:
        """Commit one group of prepared intakes (see :class:`~cityos.govern._group.GroupCommit`):
        replays answer known keys, the rest are created together; if the group's
        transaction fails (a key another process took meanwhile, a database error), each
        report is retried alone so that one report's failure never fails another."""
        self._process(jobs, retry=len(jobs) > 1)

    def _process(self, jobs: list[Job], *, retry: bool) -> None:
        pend: list[_Pending] = [j.value for j in jobs]
        keys = sorted({p.key for p in pend if p.key is not None})
        known: set[str] = set()
        if keys:
            with self.db.session() as s:
                known = set(
                    s.scalars(select(IdempotencyRow.key).where(IdempotencyRow.key.in_(keys)))
                )
        fresh: list[Job] = []
        later: list[Job] = []
        first: set[str] = set()
        for j, p in zip(jobs, pend, strict=True):
            if p.key is not None and (p.key in known or p.key in first):
                later.append(j)  # answered by the event its key made (now or before)
                continue
            if p.key is not None:
                first.add(p.key)
            fresh.append(j)
        if fresh:
            try:
                results = self._create([j.value for j in fresh])
            except Exception as exc:
                if not retry:
                    for j in fresh:
                        j.error = exc
                else:
                    for j in fresh:
                        self._process([j], retry=False)
            else:
                for j, r in zip(fresh, results, strict=True):
                    j.result = r
        for j in later:
            p = j.value
            assert p.key is not None
            try:
                found = self._replay(p.key, p.fingerprint, from_source=p.from_source)
            except GovernError as exc:
                j.error = exc
                continue
            if found is not None:
                j.result = found
            elif retry:  # the report that was to make the key failed: this one tries alone
                self._process([j], retry=False)
            else:
                j.error = RuntimeError(f"intake with key {p.key!r} failed")

    def _create(self, pend: list[_Pending]) -> list[Intake]:
        """Create the events of ``pend`` (keys not yet used) in one transaction."""
        suggestions = self._suggest_many([p.candidate for p in pend])
        parents = self._find_duplicates(pend, suggestions)
        rows: list[EventRow] = []
        for p, parent, sug in zip(pend, parents, suggestions, strict=True):
            c = p.candidate
            row = EventRow(
                service_code=c.service_code,
                category=c.category,
                title=c.title[:500],
                description=c.description,
                status="received",
                department=None,
                assisting="[]",
                level=None,
                unit=c.unit,
                district=c.district,
                priority=c.priority,
                channel=c.channel,
                parent_id=None,
                source_id=c.source_id,
                warning_id=p.warning_id,
                x=c.x,
                y=c.y,
                address=c.address,
                attributes=dumps(c.attributes),
                media_url=c.media_url,
                received_at=c.received_at,
                updated_at=p.now,
                due_at=p.now + p.wf.deadlines["dispatch"],
                resolve_by=c.received_at + p.wf.resolve_within,
                overdue=False,
                escalations=0,
                reopens=0,
                version=1,
            )
            if parent is None and sug is not None:
                row.suggested_department, row.suggested_level, row.dispatch_confidence = sug
            rows.append(row)
        out: list[Intake] = []
        changed: list[tuple[Event, bool]] = []
        entries: list[dict[str, Any]] = []
        with audit_transaction(self.db) as s:
            ids = self._new_ids(s, EventRow, len(rows))
            for row, n in zip(rows, ids or (), strict=False):
                row.id = n
            s.add_all(rows)
            if ids is None:
                s.flush()
            # the stored parents, locked in one query (in id order: no deadlock with
            # another process's group) and known to exist
            stored = sorted({pa[1] for pa in parents if pa is not None and pa[0] == "db"})
            prows = {r.id: r for r in self._rows(s, stored)}
            for n in stored:
                if n not in prows:
                    raise EventNotFound(f"no event {format_event_id(n)}")
            prows.update((r.id, r) for r in rows)
            reps: list[ReportRow] = []
            for p, row, parent in zip(pend, rows, parents, strict=True):
                c = p.candidate
                pid = rows[parent[1]].id if parent is not None and parent[0] == "new" else None
                reps.append(
                    ReportRow(
                        event_id=(parent[1] if pid is None else pid) if parent else row.id,
                        first_event=row.id,
                        channel=c.channel,
                        source_id=c.source_id,
                        token=secrets.token_hex(16),
                        reporter=p.reporter,
                        contact=dumps(p.contact),
                        description=c.description,
                        media_url=c.media_url,
                        attachments=dumps(p.attachments),
                        x=c.x,
                        y=c.y,
                        received_at=c.received_at,
                    )
                )
            rep_ids = self._new_ids(s, ReportRow, len(reps))
            for rep, n in zip(reps, rep_ids or (), strict=False):
                rep.id = n
            s.add_all(reps)
            if rep_ids is None:
                s.flush()
            done: list[tuple[list[EventRow], bool]] = []
            for p, row, rep, parent, sug in zip(
                pend, rows, reps, parents, suggestions, strict=True
            ):
                mine: list[EventRow] = [row]
                self._record(s, row, "receive", None, p.actor, f"via {row.channel}")
                dispatched = False
                if parent is not None:
                    prow = prows[rep.event_id]
                    self._apply(
                        s,
                        row,
                        "merge",
                        p.actor,
                        f"duplicate of {format_event_id(prow.id)}",
                        p.now,
                        parent=prow.id,
                    )
                    prow.version += 1
                    prow.updated_at = p.now
                    self._record(
                        s,
                        prow,
                        "note",
                        prow.status,
                        p.actor,
                        f"report {rep.id} merged from duplicate {format_event_id(row.id)}",
                    )
                    mine.append(prow)
                elif self._auto(p, sug):
                    assert sug is not None and sug[2] is not None
                    self._apply(
                        s,
                        row,
                        "dispatch",
                        "system:auto-dispatch",
                        f"automatic: confidence {sug[2]:.2f}",
                        p.now,
                        department=sug[0],
                    )
                    row.dispatch_mode = "auto"
                    dispatched = True
                if p.key is not None:
                    s.add(
                        IdempotencyRow(
                            key=p.key,
                            fingerprint=p.fingerprint,
                            event_id=row.id,
                            report_id=rep.id,
                            created_at=p.now,
                        )
                    )
                entries.append(
                    {
                        "actor": p.actor,
                        "action": "govern.intake",
                        "dataset": "events",
                        "detail": {
                            "event": format_event_id(row.id),
                            "service": row.service_code,
                            "channel": row.channel,
                            "merged_into": format_event_id(rep.event_id) if parent else None,
                            "dispatched": dispatched,
                        },
                    }
                )
                done.append((mine, dispatched))
            trans = [o for o in s.new if isinstance(o, TransitionRow) and o.id is None]
            for t, n in zip(trans, self._new_ids(s, TransitionRow, len(trans)) or (), strict=False):
                t.id = n
            append_audits(s, entries)
            s.flush()
            for (mine, dispatched), rep in zip(done, reps, strict=True):
                objs = [self._event_obj(r) for r in mine]
                changed.extend((o, k == 0) for k, o in enumerate(objs))
                top = objs[-1]
                out.append(
                    Intake(
                        event=top,
                        report=self._report_obj(rep),
                        created=True,
                        merged_into=top.id if len(objs) > 1 else None,
                        dispatched=dispatched,
                        own_event=objs[0].id,
                    )
                )
        actors = {p.actor for p in pend}
        self._changed(changed, actors.pop() if len(actors) == 1 else "govern")
        return out

    def _auto(self, p: _Pending, sug: tuple[str, str | None, float | None] | None) -> bool:
        """Whether a report that is not a duplicate dispatches automatically."""
        return (
            p.auto_dispatch
            and sug is not None
            and sug[2] is not None
            and self.dispatcher is not None
            and sug[2] >= self.auto_dispatch_threshold
        )

    def _replay(self, key: str, fp: str, *, from_source: bool) -> Intake | None:
        with self.db.session() as s:
            idem = s.get(IdempotencyRow, key)
            if idem is None:
                return None
            if idem.fingerprint != fp and not from_source:
                raise IdempotencyConflict(
                    f"Idempotency-Key {key!r} was used for a different request (event "
                    f"{format_event_id(idem.event_id)}); use a new key for a new request"
                )
            own = self._row(s, idem.event_id)
            rep = s.get(ReportRow, idem.report_id)
            assert rep is not None
            top = self._row(s, rep.event_id)
            return Intake(
                event=self._event_obj(top),
                report=self._report_obj(rep),
                created=False,
                merged_into=format_event_id(top.id) if top.id != own.id else None,
                own_event=format_event_id(own.id),
            )

    def _find_duplicates(
        self,
        pend: Sequence[_Pending],
        suggestions: Sequence[tuple[str, str | None, float | None] | None],
    ) -> list[tuple[str, int] | None]:
        """The parent of each report of a group, as taking them in one at a time in order
        would find it: ``("db", event number)``, ``("new", index in the group)`` or None.

        Candidates are the open events without a parent near each report in place and
        time (the newest 200), plus the group's earlier reports that were not merged,
        as they will be stored. With a detector that has ``find_many`` the whole group
        is scored in one call; a report whose candidates included an earlier report of
        the group that turned out to be a duplicate is scored again without it."""
        out: list[tuple[str, int] | None] = [None] * len(pend)
        todo = [i for i, p in enumerate(pend) if p.dedup and self.deduplicator is not None]
        if not todo:
            return out
        det = self.deduplicator
        assert det is not None
        stored = self._dedup_candidates([pend[i].candidate for i in todo])
        win, ahead = self.dedup_window, timedelta(hours=1)
        # each earlier report of the group as a candidate record, as it will be stored
        mine: dict[int, dict[str, Any]] = {}
        for i in todo:
            c, sug = pend[i].candidate, suggestions[i]
            rec = hook_record(c)
            rec["id"] = f"{_NEW}{i}"
            if self._auto(pend[i], sug):
                assert sug is not None
                rec["status"], rec["department"] = "dispatched", sug[0]
                rec["level"] = self.jurisdictions.level_of(self._department(sug[0]).unit)
            mine[i] = rec
        full: list[list[tuple[datetime, int, dict[str, Any]]]] = []
        for k, i in enumerate(todo):
            c = pend[i].candidate
            dlat, dlon = self._dedup_box(c)
            lst = list(stored[k])
            for j in todo[:k]:
                o = pend[j].candidate
                if (
                    c.received_at - win <= o.received_at <= c.received_at + ahead
                    and c.x - dlon <= o.x <= c.x + dlon
                    and c.y - dlat <= o.y <= c.y + dlat
                ):
                    lst.append((o.received_at, _NEW_BASE + j, mine[j]))
            lst.sort(key=lambda e: (e[0], e[1]), reverse=True)
            full.append(lst)
        merged: set[int] = set()

        def listed(k: int, skip: set[int]) -> list[dict[str, Any]]:
            return [r for _, n, r in full[k] if n < _NEW_BASE or (n - _NEW_BASE) not in skip][
                :_DEDUP_CANDIDATES
            ]

        find_many = getattr(det, "find_many", None)
        memo: dict[Any, Any] | None = None
        if find_many is not None and "memo" in inspect.signature(find_many).parameters:
            memo = {}
            find_many = functools.partial(find_many, memo=memo)
        recs = [hook_record(pend[i].candidate) for i in todo]
        first: list[Any] | None = None
        if find_many is not None:
            lists = [listed(k, set()) for k in range(len(todo))]
            busy = [k for k in range(len(todo)) if lists[k]]
            got = list(find_many([recs[k] for k in busy], [lists[k] for k in busy]))
            first = [None] * len(todo)
            for k, m in zip(busy, got, strict=True):
                first[k] = m
        for k, i in enumerate(todo):
            cl = listed(k, merged)
            if not cl:
                continue
            if first is not None and not any(
                n >= _NEW_BASE and (n - _NEW_BASE) in merged for _, n, _r in full[k]
            ):
                m = first[k]
            elif memo is not None and find_many is not None:
                m = find_many([recs[k]], [cl])[0]  # its pairs are scored: no model call
            else:
                m = det.find(recs[k], cl)
            pid = _match_parent(m)
            if pid is None:
                continue
            if pid.startswith(_NEW):
                out[i] = ("new", int(pid[len(_NEW) :]))
            else:
                out[i] = ("db", event_number(pid))
            merged.add(i)
        return out

    def _dedup_box(self, c: Event) -> tuple[float, float]:
        dlat = self.dedup_radius_m / 111_320.0
        return dlat, dlat / max(math.cos(math.radians(c.y)), 0.01)

    def _dedup_candidates(
        self, cands: Sequence[Event]
    ) -> list[list[tuple[datetime, int, dict[str, Any]]]]:
        """Per report, the newest :data:`_DEDUP_CANDIDATES` stored open events without a
        parent in its place and time window, newest first, as ``(received_at, number,
        hook record)``, reading only the columns the hooks see: on PostgreSQL one query
        for the group (a lateral join over the reports' windows), elsewhere one per report."""
        win, ahead = self.dedup_window, timedelta(hours=1)
        boxes = []
        for c in cands:
            dlat, dlon = self._dedup_box(c)
            boxes.append(
                (
                    c.received_at - win,
                    c.received_at + ahead,
                    c.x - dlon,
                    c.x + dlon,
                    c.y - dlat,
                    c.y + dlat,
                )
            )
        names = (
            "id",
            "received_at",
            "x",
            "y",
            "service_code",
            "category",
            "title",
            "description",
            "status",
            "department",
            "level",
            "channel",
        )
        out: list[list[tuple[datetime, int, dict[str, Any]]]] = [[] for _ in cands]
        with self.db.session() as s:
            if self.db.dialect == "postgresql":
                cols = ", ".join(f"e.{n}" for n in names)
                sql = text(
                    f"SELECT b.k, {cols} FROM unnest(CAST(:k AS int[]), "
                    "CAST(:t0 AS timestamptz[]), CAST(:t1 AS timestamptz[]), "
                    "CAST(:x0 AS float8[]), CAST(:x1 AS float8[]), CAST(:y0 AS float8[]), "
                    "CAST(:y1 AS float8[])) AS b(k, t0, t1, x0, x1, y0, y1) "
                    f"CROSS JOIN LATERAL (SELECT {', '.join(names)} FROM {EventRow.__tablename__} "
                    "WHERE parent_id IS NULL AND status <> 'closed' "
                    "AND received_at >= b.t0 AND received_at <= b.t1 "
                    "AND x BETWEEN b.x0 AND b.x1 AND y BETWEEN b.y0 AND b.y1 "
                    f"ORDER BY received_at DESC, id DESC LIMIT {_DEDUP_CANDIDATES}) AS e "
                    "ORDER BY b.k, e.received_at DESC, e.id DESC"
                )
                cols6 = list(zip(*boxes, strict=True))
                params = {"k": list(range(len(boxes)))}
                params.update(
                    {
                        n: list(v)
                        for n, v in zip(("t0", "t1", "x0", "x1", "y0", "y1"), cols6, strict=True)
                    }
                )
                rows = [(int(r[0]), r[1:]) for r in s.execute(sql, params)]
            else:
                E = EventRow
                q = select(*(getattr(E, n) for n in names))
                rows = []
                for k, (t0, t1, x0, x1, y0, y1) in enumerate(boxes):
                    stmt = (
                        q.where(
                            E.parent_id.is_(None),
                            E.status != "closed",
                            E.received_at >= t0,
                            E.received_at <= t1,
                            E.x.between(x0, x1),
                            E.y.between(y0, y1),
                        )
                        .order_by(E.received_at.desc(), E.id.desc())
                        .limit(_DEDUP_CANDIDATES)
                    )
                    rows.extend((k, tuple(r)) for r in s.execute(stmt))
        for k, r in rows:
            rec = dict(zip(names, r, strict=True))
            n = int(rec["id"])
            t = utc(rec.pop("received_at"))
            assert t is not None
            rec.update(id=format_event_id(n), t=t, parent_id=None)
            out[k].append((t, n, rec))
        return out

    def _suggest_many(
        self, cands: Sequence[Event]
    ) -> list[tuple[str, str | None, float | None] | None]:
        """The dispatcher's suggestion for each report (one model call for the group), or
        the routing table's responsible department."""
        preds: list[tuple[str | None, str | None, float] | None] = [None] * len(cands)
        if self.dispatcher is not None and cands:
            got = list(self.dispatcher.predict([hook_record(c) for c in cands]))
            for i, q in enumerate(got[: len(cands)]):
                preds[i] = (q[0], q[1], float(q[2]))
        out: list[tuple[str, str | None, float | None] | None] = []
        for c, pr in zip(cands, preds, strict=True):
            if pr is not None:
                dept = self.jurisdictions.resolve(pr[0])
                if dept is not None and self.jurisdictions.holds(dept, c.x, c.y):
                    out.append((dept, self.jurisdictions.department_level(dept), pr[2]))
                    continue
            resp = self.jurisdictions.responsible(self.service(c.service_code), c.x, c.y)
            out.append(
                (resp[0], self.jurisdictions.department_level(resp[0]), None) if resp else None
            )
        return out

    # -- workflow ----------------------------------------------------------------------
    def _record(
        self,
        s: Session,
        row: EventRow,
        action: str,
        from_status: str | None,
        actor: str,
        note: str,
        from_department: str | None = None,
    ) -> None:
        s.add(
            TransitionRow(
                event_id=row.id,
                action=action,
                from_status=from_status,
                to_status=row.status,
                from_department=from_department,
                department=row.department,
                actor=actor[:200],
                note=note,
                at=self.now(),
                version=row.version,
            )
        )

    def _apply(
        self,
        s: Session,
        row: EventRow,
        action: str,
        actor: str,
        note: str,
        now: datetime,
        *,
        department: str | None = None,
        assisting: Sequence[str] | None = None,
        parent: int | None = None,
    ) -> None:
        """Change ``row`` by ``action`` (checked against the state) and record it."""
        allowed, to = ACTIONS[action]
        if row.status not in allowed:
            raise IllegalTransition(
                f"event {format_event_id(row.id)} is {row.status!r}: cannot {action} it "
                f"(allowed from {', '.join(sorted(allowed))})"
            )
        wf = self.workflow(row.service_code)
        if action == "close" and row.status == "resolved" and wf.verify:
            raise IllegalTransition(
                f"event {format_event_id(row.id)} is 'resolved': service {row.service_code!r} "
                "needs it verified before it closes"
            )
        frm, from_dept = row.status, row.department
        if action in ("dispatch", "reassign", "escalate"):
            if action == "escalate" and department is None:
                if row.department is None:
                    raise IllegalTransition(
                        f"event {format_event_id(row.id)} has no department yet: dispatch it first"
                    )
                department = self.jurisdictions.parent_department(row.department, row.x, row.y)
                if department is None:
                    raise IllegalTransition(
                        f"event {format_event_id(row.id)}: department {row.department!r} has no "
                        "department above it to escalate to"
                    )
            d = self._department(department)
            if action == "reassign" and d.code == row.department:
                raise IllegalTransition(
                    f"event {format_event_id(row.id)} is already with {d.code!r}"
                )
            row.department = d.code
            row.level = self.jurisdictions.level_of(d.unit)
            if assisting is not None:
                for a in assisting:
                    self._department(a, "assisting")
                row.assisting = dumps([a for a in assisting if a != d.code])
            if action == "escalate":
                row.escalations += 1
        if action in ("return", "reassign", "escalate", "merge"):
            row.assignee = None  # the event changes hands: the new holder assigns it again
        if action == "return":
            row.department = None
            row.level = None
            row.assisting = "[]"
        row.status = to
        if action == "merge":
            row.parent_id = parent
            row.closed_at = now
        if action == "resolve":
            row.resolved_at = now
        if action == "close":
            row.closed_at = now
        if action == "reopen":
            row.reopens += 1
            row.resolved_at = None
            row.closed_at = None
            row.resolve_by = now + wf.resolve_within
        step = NEXT_STEP.get(to)
        if to == "resolved" and not wf.verify:
            step = "close"
        dl = wf.deadline(step) if step else None
        row.due_at = now + dl if dl is not None else None
        rb = utc(row.resolve_by)
        row.overdue = bool(
            row.resolved_at is None and rb is not None and now > rb and to != "closed"
        )
        row.overdue_mark = None
        row.updated_at = now
        if action != "receive":
            row.version += 1
        self._record(s, row, action, frm, actor, note, from_dept)

    def _authorise(
        self, actor: str | Principal, action: str, row: EventRow, department: str | None
    ) -> None:
        if not isinstance(actor, Principal):
            return  # trusted callers of the Python API (scripts, the timer, rules)
        roles = set(actor.roles)
        if roles & {"supervisor", "admin"}:
            return
        ok = any(action in _ROLE_ACTIONS.get(r, frozenset()) for r in roles)
        if not ok:
            raise PermissionDenied(
                f"{actor.username} ({', '.join(sorted(roles)) or 'no role'}) may not {action} events"
            )
        if "dispatcher" in roles and action in _ROLE_ACTIONS["dispatcher"]:
            return
        if action in _DEPT_BOUND and "department_staff" in roles:
            mine = actor.department
            assisting = json.loads(row.assisting or "[]")
            if mine is not None and (
                mine == row.department or (action == "note" and mine in assisting)
            ):
                return
            raise PermissionDenied(
                f"{actor.username} is in department {mine!r}; event {format_event_id(row.id)} is "
                f"with {row.department!r}"
            )
        if "grid_worker" in roles:
            st = self.staff(actor.username)
            if (
                st is not None
                and st.unit is not None
                and row.unit is not None
                and (row.unit == st.unit or row.unit.startswith(st.unit + "-"))
            ):
                return
            raise PermissionDenied(
                f"{actor.username} works grid {getattr(st, 'unit', None)!r}; event "
                f"{format_event_id(row.id)} is in {row.unit!r}"
            )
        if "citizen" in roles and action == "reopen":
            with self.db.session() as s2:
                mine_rep = s2.scalar(
                    select(func.count())
                    .select_from(ReportRow)
                    .where(ReportRow.event_id == row.id, ReportRow.reporter == actor.username)
                )
            if mine_rep:
                return
            raise PermissionDenied(
                f"{actor.username} did not report event {format_event_id(row.id)}"
            )
        raise PermissionDenied(f"{actor.username} may not {action} event {format_event_id(row.id)}")

    def transition(
        self,
        event_id: str | int,
        action: str,
        actor: str | Principal,
        version: int,
        note: str = "",
        *,
        department: str | None = None,
        assisting: Sequence[str] | None = None,
        outcome: str | None = None,
        parent: str | int | None = None,
        assignee: str | None = None,
    ) -> Event:
        """Take ``action`` on an event at ``version``: :class:`StaleVersion` if it changed
        since, :class:`IllegalTransition` if the action does not apply to its state.
        Recorded with who, when and why, and audited. ``outcome`` (``confirmed`` or
        ``false_alarm``) on ``resolve``/``close`` of an event opened from a warning gives
        that warning its outcome. ``assign`` (with ``assignee``) hands the event of a
        department to a grid worker of its grid, without changing its state."""
        if action not in ACTIONS and action not in ("note", "assign"):
            raise IntakeError(
                f"action: {action!r} is not one of {', '.join(sorted([*ACTIONS, 'note', 'assign']))}",
                field="action",
            )
        if action == "assign" and not assignee:
            raise IntakeError("assignee: required to assign", field="assignee")
        if isinstance(version, bool) or not isinstance(version, int):
            raise IntakeError(f"version: {version!r} is not an integer", field="version")
        if outcome is not None and outcome not in ("confirmed", "false_alarm"):
            raise IntakeError(
                f"outcome: {outcome!r} is not 'confirmed' or 'false_alarm'", field="outcome"
            )
        if action in ("dispatch", "reassign") and not department:
            raise IntakeError(f"department: required to {action}", field="department")
        if department is not None:
            self._department(department)
        name = _actor_name(actor)
        now = self.now()
        warn_obj: Warning | None = None
        with audit_transaction(self.db) as s:
            row = self._row(s, event_id, lock=True)
            if row.version != version:
                raise StaleVersion(format_event_id(row.id), version, row.version)
            self._authorise(actor, action, row, department)
            # the compare-and-set: another writer that got here first has moved the version
            res = s.execute(
                update(EventRow)
                .where(EventRow.id == row.id, EventRow.version == version)
                .values(version=EventRow.version)
                .execution_options(synchronize_session=False)
            )
            if res.rowcount != 1:  # type: ignore[attr-defined]
                s.refresh(row)
                raise StaleVersion(format_event_id(row.id), version, row.version)
            extra: list[tuple[EventRow, bool]] = []
            if action in ("note", "assign"):
                if action == "assign":
                    assert assignee is not None
                    self._assign(row, assignee)
                row.version += 1
                row.updated_at = now
                self._record(s, row, action, row.status, name, note)
            else:
                pnum = None
                if action == "merge":
                    if parent is None:
                        raise IntakeError("parent: required to merge", field="parent")
                    pnum = event_number(parent)
                    if pnum == row.id:
                        raise IllegalTransition("an event cannot be merged into itself")
                    prow = self._row(s, pnum, lock=True)
                    if prow.parent_id is not None:
                        raise IllegalTransition(
                            f"{format_event_id(prow.id)} is itself merged into {format_event_id(prow.parent_id)}"
                        )
                    s.execute(
                        update(ReportRow)
                        .where(ReportRow.event_id == row.id)
                        .values(event_id=prow.id)
                    )
                    s.execute(
                        update(EventRow)
                        .where(EventRow.parent_id == row.id)
                        .values(parent_id=prow.id)
                    )
                    prow.version += 1
                    prow.updated_at = now
                    self._record(
                        s,
                        prow,
                        "note",
                        prow.status,
                        name,
                        f"merged {format_event_id(row.id)} into it",
                    )
                    extra.append((prow, False))
                predicted = row.suggested_department
                self._apply(
                    s,
                    row,
                    action,
                    name,
                    note,
                    now,
                    department=department,
                    assisting=assisting,
                    parent=pnum,
                )
                if action in ("dispatch", "reassign") and department is not None:
                    if row.dispatch_mode != "auto" or action == "reassign":
                        row.dispatch_mode = "manual"
                    s.add(
                        OverrideRow(
                            event_id=row.id,
                            predicted=predicted,
                            predicted_level=row.suggested_level,
                            confidence=row.dispatch_confidence,
                            chosen=row.department or "",
                            actor=name,
                            at=now,
                        )
                    )
            append_audit(
                s,
                actor=name,
                action=f"govern.{action}",
                dataset="events",
                detail={
                    "event": format_event_id(row.id),
                    "from_version": version,
                    "status": row.status,
                    "department": row.department,
                    "assignee": row.assignee,
                    "note": note[:500],
                },
            )
            if (
                outcome is not None
                and row.warning_id is not None
                and action in ("resolve", "close")
            ):
                warn_obj = self._set_outcome(s, row.warning_id, outcome == "confirmed", name, now)
            s.flush()
            out = self._event_obj(row)
            others = [(self._event_obj(r), n) for r, n in extra]
        self._changed([(out, False), *others], name, [ASSIGNED] if action == "assign" else ())
        if warn_obj is not None:
            self._warning_changed(warn_obj, False, name)
        return out

    def dispatch(
        self,
        event_id: str | int,
        department: str,
        actor: str | Principal,
        version: int,
        note: str = "",
        *,
        assisting: Sequence[str] = (),
    ) -> Event:
        """Send an event to its lead ``department`` (and ``assisting`` co-handlers)."""
        return self.transition(
            event_id,
            "dispatch",
            actor,
            version,
            note,
            department=department,
            assisting=list(assisting),
        )

    def merge(
        self,
        event_id: str | int,
        parent: str | int,
        actor: str | Principal,
        version: int,
        note: str = "",
    ) -> Event:
        """Merge a duplicate into ``parent``: its reports (and reporters) move to the parent."""
        return self.transition(
            event_id, "merge", actor, version, note or f"duplicate of {parent}", parent=parent
        )

    def feedback(
        self, event_id: str | int, satisfaction: int, actor: str | Principal, note: str = ""
    ) -> Event:
        """A citizen's satisfaction (1-5) with a resolved or closed event."""
        if (
            isinstance(satisfaction, bool)
            or not isinstance(satisfaction, int)
            or not 1 <= satisfaction <= 5
        ):
            raise IntakeError(
                f"satisfaction: {satisfaction!r} is not an integer 1..5", field="satisfaction"
            )
        name = _actor_name(actor)
        with audit_transaction(self.db) as s:
            row = self._row(s, event_id, lock=True)
            if row.status not in ("resolved", "verified", "closed"):
                raise IllegalTransition(
                    f"event {format_event_id(row.id)} is {row.status!r}: feedback follows a resolution"
                )
            if (
                isinstance(actor, Principal)
                and "citizen" in actor.roles
                and not actor.roles & {"supervisor", "admin"}
            ):
                n = s.scalar(
                    select(func.count())
                    .select_from(ReportRow)
                    .where(ReportRow.event_id == row.id, ReportRow.reporter == name)
                )
                if not n:
                    raise PermissionDenied(f"{name} did not report event {format_event_id(row.id)}")
            row.satisfaction = satisfaction
            row.feedback = note
            row.version += 1
            row.updated_at = self.now()
            self._record(
                s, row, "feedback", row.status, name, f"satisfaction {satisfaction}: {note}"
            )
            append_audit(
                s,
                actor=name,
                action="govern.feedback",
                dataset="events",
                detail={"event": format_event_id(row.id), "satisfaction": satisfaction},
            )
            s.flush()
            out = self._event_obj(row)
        self._changed([(out, False)], name)
        return out

    def sweep(self, now: datetime | None = None) -> SweepResult:
        """The timer: mark every event past a deadline overdue (once per step) and escalate
        overdue work one level up where the service's workflow says so. Imported history
        (``dispatch_mode == "imported"``) is judged by its own dates, not by the timer."""
        now = utc(now) if now is not None else self.now()
        assert now is not None
        overdue: list[str] = []
        escalated: list[str] = []
        changed: list[tuple[Event, bool]] = []
        with audit_transaction(self.db) as s:
            rows = list(
                s.scalars(
                    select(EventRow)
                    .where(
                        EventRow.status != "closed",
                        # imported history keeps its own clock (see _bulk)
                        or_(EventRow.dispatch_mode.is_(None), EventRow.dispatch_mode != "imported"),
                        or_(
                            EventRow.due_at < now,
                            and_(
                                EventRow.resolve_by < now,
                                EventRow.resolved_at.is_(None),
                                EventRow.overdue.is_(False),
                            ),
                        ),
                    )
                    .order_by(EventRow.id)
                )
            )
            for row in rows:
                due = utc(row.due_at)
                mark = f"{row.status}@{due.isoformat() if due else ''}"
                step_late = due is not None and due < now
                if step_late and row.overdue_mark == mark:
                    continue
                rb = utc(row.resolve_by)
                late_overall = row.resolved_at is None and rb is not None and rb < now
                if not step_late and (not late_overall or row.overdue):
                    continue
                eid = format_event_id(row.id)
                wf = self.workflow(row.service_code)
                can_escalate = (
                    step_late
                    and wf.escalate_on_overdue
                    and row.department is not None
                    and row.status in ("dispatched", "accepted", "in_progress")
                    and self.jurisdictions.parent_department(row.department, row.x, row.y)
                    is not None
                )
                if can_escalate:
                    self._apply(
                        s,
                        row,
                        "escalate",
                        "system:timer",
                        f"overdue since {due.isoformat() if due else ''}",
                        now,
                    )
                    escalated.append(eid)
                else:
                    row.version += 1
                    row.updated_at = now
                    self._record(
                        s,
                        row,
                        "overdue",
                        row.status,
                        "system:timer",
                        f"past its deadline {due.isoformat() if step_late and due else rb}",
                    )
                row.overdue = (
                    bool(row.resolved_at is None and rb is not None and rb < now) or step_late
                )
                new_due = utc(row.due_at)
                row.overdue_mark = (
                    f"{row.status}@{new_due.isoformat() if new_due else ''}"
                    if not can_escalate
                    else None
                )
                overdue.append(eid)
                changed.append((self._event_obj(row), False))
            if overdue:
                append_audit(
                    s,
                    actor="system:timer",
                    action="govern.sweep",
                    dataset="events",
                    detail={
                        "overdue": overdue[:200],
                        "escalated": escalated[:200],
                        "n": len(overdue),
                    },
                )
        if changed:
            self._changed(changed, "system:timer")
        return SweepResult(tuple(overdue), tuple(escalated))

    # -- reads -------------------------------------------------------------------------
    def event(self, event_id: str | int) -> Event:
        with self.db.session() as s:
            return self._event_obj(self._row(s, event_id))

    def history(self, event_id: str | int) -> list[Transition]:
        with self.db.session() as s:
            row = self._row(s, event_id)
            ts = s.scalars(
                select(TransitionRow)
                .where(TransitionRow.event_id == row.id)
                .order_by(TransitionRow.id)
            )
            return [
                Transition(
                    seq=i + 1,
                    event_id=format_event_id(t.event_id),
                    action=t.action,
                    from_status=t.from_status,
                    to_status=t.to_status,
                    from_department=t.from_department,
                    department=t.department,
                    actor=t.actor,
                    note=t.note,
                    at=utc(t.at),  # type: ignore[arg-type]
                    version=t.version,
                )
                for i, t in enumerate(ts)
            ]

    def reports(self, event_id: str | int) -> list[Report]:
        with self.db.session() as s:
            row = self._row(s, event_id)
            return [
                self._report_obj(r)
                for r in s.scalars(
                    select(ReportRow).where(ReportRow.event_id == row.id).order_by(ReportRow.id)
                )
            ]

    def report_by_token(self, token: str) -> Report:
        with self.db.session() as s:
            r = s.scalars(select(ReportRow).where(ReportRow.token == token)).one_or_none()
            if r is None:
                raise EventNotFound(f"no request with token {token!r}")
            return self._report_obj(r)

    def events(
        self,
        *,
        ids: Sequence[str | int] | None = None,
        status: Sequence[str] | str | None = None,
        department: str | None = None,
        service_code: Sequence[str] | str | None = None,
        bbox: Sequence[float] | None = None,
        start: datetime | None = None,
        end: datetime | None = None,
        updated_after: datetime | None = None,
        reporter: str | None = None,
        include_merged: bool = True,
        limit: int | None = 1000,
        offset: int = 0,
        newest_first: bool = True,
    ) -> list[Event]:
        """Events matching every given filter (``start``/``end`` on the received time)."""
        stmt = select(EventRow)
        if ids is not None:
            stmt = stmt.where(EventRow.id.in_([event_number(i) for i in ids]))
        if status:
            st = [status] if isinstance(status, str) else list(status)
            stmt = stmt.where(EventRow.status.in_(st))
        if department:
            stmt = stmt.where(
                or_(
                    EventRow.department == department,
                    EventRow.assisting.contains(f'"{department}"'),
                )
            )
        if service_code:
            sc = [service_code] if isinstance(service_code, str) else list(service_code)
            stmt = stmt.where(EventRow.service_code.in_(sc))
        if bbox is not None:
            x0, y0, x1, y1 = (float(v) for v in bbox)
            stmt = stmt.where(EventRow.x.between(x0, x1), EventRow.y.between(y0, y1))
        if start is not None:
            stmt = stmt.where(EventRow.received_at >= start)
        if end is not None:
            stmt = stmt.where(EventRow.received_at < end)
        if updated_after is not None:
            stmt = stmt.where(EventRow.updated_at > updated_after)
        if reporter is not None:
            stmt = stmt.where(
                EventRow.id.in_(select(ReportRow.event_id).where(ReportRow.reporter == reporter))
            )
        if not include_merged:
            stmt = stmt.where(EventRow.parent_id.is_(None))
        order = EventRow.received_at.desc() if newest_first else EventRow.received_at
        stmt = stmt.order_by(order, EventRow.id.desc() if newest_first else EventRow.id).offset(
            offset
        )
        if limit is not None:
            stmt = stmt.limit(limit)
        with self.db.session() as s:
            return [self._event_obj(r) for r in s.scalars(stmt)]

    def queue(
        self,
        department: str | None = None,
        status: str | Sequence[str] | None = None,
        *,
        limit: int = 500,
    ) -> list[Event]:
        """Work waiting: without ``department`` the dispatcher queue (received, returned,
        reopened); with it the department's open events (as lead or assisting). Oldest
        deadline first."""
        if department is not None:
            self._department(department)
        st = status or (
            ["received", "returned", "reopened"]
            if department is None
            else ["dispatched", "accepted", "in_progress", "reopened"]
        )
        evs = self.events(status=st, department=department, include_merged=False, limit=None)
        far = datetime.max.replace(tzinfo=UTC)
        evs.sort(key=lambda e: (e.due_at or far, e.priority))
        return evs[:limit]

    def overrides(self) -> list[dict[str, Any]]:
        """Human dispatch decisions with the automatic suggestion they followed or overrode
        (the retraining set): event, predicted, chosen, confidence, actor, at."""
        with self.db.session() as s:
            return [
                {
                    "event_id": format_event_id(o.event_id),
                    "predicted": o.predicted,
                    "predicted_level": o.predicted_level,
                    "confidence": o.confidence,
                    "chosen": o.chosen,
                    "overridden": o.predicted is not None and o.predicted != o.chosen,
                    "actor": o.actor,
                    "at": utc(o.at),
                }
                for o in s.scalars(select(OverrideRow).order_by(OverrideRow.id))
            ]

    # -- warnings ----------------------------------------------------------------------
    def raise_warning(
        self,
        rule: str,
        *,
        kind: str,
        severity: str = "warning",
        x: float,
        y: float,
        t: datetime | None = None,
        evidence: dict[str, Any] | None = None,
        title: str = "",
        dedup_key: str | None = None,
        service_code: str | None = None,
        open_event: bool = False,
        actor: str = "system:rules",
    ) -> tuple[Warning, bool]:
        """Raise a warning; a repeated ``dedup_key`` answers the existing warning
        (``created`` False). ``open_event`` turns it into an event at once (needs
        ``service_code``), which is then dispatched like any intake."""
        if not rule:
            raise IntakeError("rule: required", field="rule")
        if severity not in SEVERITIES:
            raise IntakeError(
                f"severity: {severity!r} is not one of {SEVERITIES}", field="severity"
            )
        if service_code is not None:
            self.service(service_code)
        try:
            fx, fy = float(x), float(y)
        except (TypeError, ValueError) as exc:
            raise IntakeError(f"x/y: {x!r}, {y!r} are not numbers", field="x") from exc
        if not (math.isfinite(fx) and math.isfinite(fy)):
            raise IntakeError("x/y: not finite", field="x")
        now = self.now()
        with audit_transaction(self.db) as s:
            if dedup_key is not None:
                old = s.scalars(
                    select(WarningRow).where(WarningRow.dedup_key == dedup_key)
                ).one_or_none()
                if old is not None:
                    return self._warning_obj(old), False
            row = WarningRow(
                rule=rule,
                kind=kind,
                severity=severity,
                status="open",
                title=title[:500],
                x=fx,
                y=fy,
                t=utc(t) if t is not None else now,
                evidence=dumps(evidence or {}),
                dedup_key=dedup_key,
                service_code=service_code,
                updated_at=now,
                version=1,
            )
            s.add(row)
            s.flush()
            append_audit(
                s,
                actor=actor,
                action="govern.warning.raise",
                dataset="warnings",
                detail={"warning": format_warning_id(row.id), "rule": rule, "severity": severity},
            )
            s.flush()
            w = self._warning_obj(row)
        self._warning_changed(w, True, actor)
        if open_event:
            w = self.open_event_from_warning(w.id, actor)
        return w, True

    def _warning_row(self, s: Session, warning_id: str | int) -> WarningRow:
        n = warning_number(warning_id)
        row = s.get(WarningRow, n)
        if row is None:
            raise EventNotFound(f"no warning {format_warning_id(n)}")
        return row

    def warning(self, warning_id: str | int) -> Warning:
        with self.db.session() as s:
            return self._warning_obj(self._warning_row(s, warning_id))

    def warnings(
        self,
        *,
        status: str | Sequence[str] | None = None,
        severity: str | None = None,
        rule: str | None = None,
        limit: int | None = None,
    ) -> list[Warning]:
        stmt = select(WarningRow)
        if status:
            stmt = stmt.where(
                WarningRow.status.in_([status] if isinstance(status, str) else list(status))
            )
        if severity:
            stmt = stmt.where(WarningRow.severity == severity)
        if rule:
            stmt = stmt.where(WarningRow.rule == rule)
        stmt = stmt.order_by(WarningRow.t.desc(), WarningRow.id.desc())
        if limit is not None:
            stmt = stmt.limit(limit)
        with self.db.session() as s:
            return [self._warning_obj(r) for r in s.scalars(stmt)]

    def acknowledge_warning(
        self, warning_id: str | int, actor: str | Principal, note: str = ""
    ) -> Warning:
        name = _actor_name(actor)
        with audit_transaction(self.db) as s:
            row = self._warning_row(s, warning_id)
            if row.status != "open":
                raise IllegalTransition(
                    f"warning {format_warning_id(row.id)} is {row.status!r}: only an open warning is acknowledged"
                )
            row.status = "acknowledged"
            row.updated_at = self.now()
            row.version += 1
            append_audit(
                s,
                actor=name,
                action="govern.warning.acknowledge",
                dataset="warnings",
                detail={"warning": format_warning_id(row.id), "note": note[:500]},
            )
            s.flush()
            w = self._warning_obj(row)
        self._warning_changed(w, False, name)
        return w

    def open_event_from_warning(
        self, warning_id: str | int, actor: str | Principal, service_code: str | None = None
    ) -> Warning:
        """Open an event for the warning (channel ``warning``; dispatched automatically when
        the dispatcher is confident); the warning becomes ``event_opened``."""
        name = _actor_name(actor)
        w = self.warning(warning_id)
        if w.status not in ("open", "acknowledged"):
            raise IllegalTransition(
                f"warning {w.id} is {w.status!r}: an event is opened from an open or acknowledged warning"
            )
        code = service_code or w.service_code
        if not code:
            raise IntakeError(
                "service_code: the warning names no service; give one", field="service_code"
            )
        res = self.intake(
            code,
            x=w.x,
            y=w.y,
            title=w.title or f"{w.rule}: {w.kind}",
            description=f"Early warning {w.id} ({w.rule}, {w.severity}): {dumps(w.evidence)[:2000]}",
            channel="warning",
            source_id=w.id,
            actor=name,
            warning_id=w.id,
            priority={"critical": 1, "warning": 2, "info": 4}[w.severity],
            received_at=self.now(),
        )
        with audit_transaction(self.db) as s:
            row = self._warning_row(s, w.id)
            row.status = "event_opened"
            row.event_id = event_number(res.id)
            row.updated_at = self.now()
            row.version += 1
            append_audit(
                s,
                actor=name,
                action="govern.warning.open_event",
                dataset="warnings",
                detail={"warning": w.id, "event": res.id},
            )
            s.flush()
            out = self._warning_obj(row)
        self._warning_changed(out, False, name)
        return out

    def _set_outcome(
        self, s: Session, warning_id: int, confirmed: bool, actor: str, now: datetime
    ) -> Warning:
        row = self._warning_row(s, warning_id)
        if row.status in ("confirmed", "false_alarm"):
            raise IllegalTransition(
                f"warning {format_warning_id(row.id)} already has its outcome ({row.status})"
            )
        row.status = "confirmed" if confirmed else "false_alarm"
        row.updated_at = now
        row.version += 1
        append_audit(
            s,
            actor=actor,
            action="govern.warning.outcome",
            dataset="warnings",
            detail={"warning": format_warning_id(row.id), "outcome": row.status},
        )
        s.flush()
        return self._warning_obj(row)

    def warning_outcome(
        self, warning_id: str | int, confirmed: bool, actor: str | Principal
    ) -> Warning:
        """The outcome of a warning: ``confirmed`` (it was real) or a false alarm."""
        if not isinstance(confirmed, bool):
            raise IntakeError(f"confirmed: {confirmed!r} is not true or false", field="confirmed")
        name = _actor_name(actor)
        with audit_transaction(self.db) as s:
            w = self._set_outcome(s, warning_number(warning_id), confirmed, name, self.now())
        self._warning_changed(w, False, name)
        return w

    def rule_precision(self, rule: str | None = None) -> dict[str, dict[str, Any]]:
        """Per rule: warnings raised, confirmed, false alarms, pending, and the measured
        precision ``confirmed / (confirmed + false alarms)`` (None before any outcome)."""
        out: dict[str, dict[str, Any]] = {}
        for w in self.warnings(rule=rule):
            r = out.setdefault(
                w.rule, {"raised": 0, "confirmed": 0, "false_alarm": 0, "pending": 0}
            )
            r["raised"] += 1
            if w.status in ("confirmed", "false_alarm"):
                r[w.status] += 1
            else:
                r["pending"] += 1
        for r in out.values():
            judged = r["confirmed"] + r["false_alarm"]
            r["precision"] = r["confirmed"] / judged if judged else None
        return out

    # -- evaluation and analysis (see _evaluate) ----------------------------------------
    def evaluate(
        self,
        level: str = "department",
        *,
        start: datetime | None = None,
        end: datetime | None = None,
        min_sample: int = 20,
        scope: str = "all",
    ) -> list[dict[str, Any]]:
        """行政问效: per department, administrative level, district, service or source
        (live or imported history); ``scope`` ``"live"`` or ``"history"`` keeps one. See
        :func:`cityos.govern._evaluate.evaluate`."""
        from cityos.govern._evaluate import evaluate

        return evaluate(self, level, start=start, end=end, min_sample=min_sample, scope=scope)

    def kpi(self) -> dict[str, Any]:
        from cityos.govern._evaluate import kpi

        return kpi(self)

"""What the governance layer hands out: events, reports, transitions, warnings, and the
per-service workflow with its deadlines. Pure data, no I/O."""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from cityos.govern.errors import IntakeError

__all__ = [
    "ACTIONS",
    "LEVELS",
    "OPEN_STATUSES",
    "ROLES",
    "STATUSES",
    "Event",
    "Report",
    "Transition",
    "Warning",
    "Workflow",
    "event_number",
    "format_event_id",
    "format_warning_id",
    "parse_duration",
    "utc",
    "warning_number",
]

#: Administrative levels, from the top down.
LEVELS = ("city", "district", "street", "community")
#: Governance roles (``access`` roles created by the organisation loader).
ROLES = ("citizen", "dispatcher", "department_staff", "grid_worker", "supervisor")
STATUSES = (
    "received",
    "dispatched",
    "accepted",
    "in_progress",
    "resolved",
    "verified",
    "closed",
    "returned",
    "reopened",
)
OPEN_STATUSES = frozenset(STATUSES) - {"resolved", "verified", "closed"}

#: action -> (states it applies to, state it leads to)
ACTIONS: dict[str, tuple[frozenset[str], str]] = {
    "dispatch": (frozenset({"received", "returned", "reopened"}), "dispatched"),
    "accept": (frozenset({"dispatched"}), "accepted"),
    "start": (frozenset({"accepted"}), "in_progress"),
    "resolve": (frozenset({"accepted", "in_progress"}), "resolved"),
    "verify": (frozenset({"resolved"}), "verified"),
    "close": (frozenset({"verified", "resolved"}), "closed"),
    "return": (frozenset({"dispatched", "accepted", "in_progress"}), "returned"),
    "reassign": (frozenset({"dispatched", "accepted", "in_progress", "returned"}), "dispatched"),
    "escalate": (
        frozenset({"received", "dispatched", "accepted", "in_progress", "returned", "reopened"}),
        "dispatched",
    ),
    "reopen": (frozenset({"resolved", "verified", "closed"}), "reopened"),
    "merge": (frozenset(STATUSES) - {"closed"}, "closed"),
}

#: the step an event in a state waits for (its deadline is ``Workflow.deadlines[step]``)
NEXT_STEP = {
    "received": "dispatch",
    "returned": "dispatch",
    "reopened": "dispatch",
    "dispatched": "accept",
    "accepted": "start",
    "in_progress": "resolve",
    "resolved": "verify",
    "verified": "close",
}

_DUR = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(s|m|min|h|d|w)\s*$", re.IGNORECASE)
_UNIT_S = {"s": 1, "m": 60, "min": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_duration(text: str | float | int | timedelta, *, field: str = "duration") -> timedelta:
    """``"90m"``, ``"2h"``, ``"3d"``, ``"1w"`` or seconds as a number.

    >>> parse_duration("90m")
    datetime.timedelta(seconds=5400)
    >>> parse_duration("soon")
    Traceback (most recent call last):
    cityos.govern.errors.IntakeError: duration: 'soon' is not a duration such as '90m', '2h' or '3d'
    """
    if isinstance(text, timedelta):
        return text
    if isinstance(text, int | float) and not isinstance(text, bool):
        return timedelta(seconds=float(text))
    m = _DUR.match(str(text))
    if not m:
        raise IntakeError(
            f"{field}: {text!r} is not a duration such as '90m', '2h' or '3d'", field=field
        )
    return timedelta(seconds=float(m.group(1)) * _UNIT_S[m.group(2).lower()])


def utc(value: datetime | None) -> datetime | None:
    """The same instant, timezone-aware in UTC (SQLite hands back naive UTC)."""
    if value is None:
        return None
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def format_event_id(n: int) -> str:
    """The public id of event number ``n``.

    >>> format_event_id(123)
    'E-000123'
    """
    return f"E-{n:06d}"


def format_warning_id(n: int) -> str:
    return f"W-{n:06d}"


def _number(value: str | int, prefix: str, what: str) -> int:
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    s = str(value).strip()
    if s.upper().startswith(prefix + "-"):
        s = s[2:]
    if not s.isdigit():
        raise IntakeError(f"{what} id {value!r} is not like '{prefix}-000123'", field="id")
    return int(s)


def event_number(value: str | int) -> int:
    """The number of an event id (or a number).

    >>> event_number("E-000123"), event_number(7)
    (123, 7)
    """
    return _number(value, "E", "event")


def warning_number(value: str | int) -> int:
    return _number(value, "W", "warning")


@dataclass(frozen=True)
class Workflow:
    """How a service's events are handled: the deadline of each step (from entering the
    state before it), the deadline for resolving the event (from receipt, or from a
    reopening), whether a resolution is verified before it closes, and whether overdue
    work escalates one level up.

    >>> w = Workflow.from_dict({"deadlines": {"accept": "30m"}, "resolve_within": "2d"})
    >>> w.deadline("accept"), w.resolve_within
    (datetime.timedelta(seconds=1800), datetime.timedelta(days=2))
    """

    deadlines: dict[str, timedelta] = field(
        default_factory=lambda: {
            "dispatch": timedelta(hours=1),
            "accept": timedelta(hours=2),
            "start": timedelta(hours=4),
            "resolve": timedelta(days=2),
            "verify": timedelta(days=1),
            "close": timedelta(days=1),
        }
    )
    resolve_within: timedelta = timedelta(days=3)
    verify: bool = True
    escalate_on_overdue: bool = True

    def deadline(self, step: str) -> timedelta | None:
        return self.deadlines.get(step)

    @classmethod
    def from_dict(cls, d: dict[str, Any] | None) -> Workflow:
        d = dict(d or {})
        base = cls()
        dl = dict(base.deadlines)
        for step, v in dict(d.get("deadlines") or {}).items():
            if step not in dl:
                raise IntakeError(
                    f"workflow.deadlines: unknown step {step!r}; steps are {', '.join(dl)}",
                    field=f"workflow.deadlines.{step}",
                )
            dl[step] = parse_duration(v, field=f"workflow.deadlines.{step}")
        unknown = set(d) - {"deadlines", "resolve_within", "verify", "escalate_on_overdue"}
        if unknown:
            raise IntakeError(
                f"workflow: unknown keys {sorted(unknown)}", field=f"workflow.{sorted(unknown)[0]}"
            )
        return cls(
            deadlines=dl,
            resolve_within=parse_duration(
                d.get("resolve_within", base.resolve_within), field="workflow.resolve_within"
            ),
            verify=bool(d.get("verify", base.verify)),
            escalate_on_overdue=bool(d.get("escalate_on_overdue", base.escalate_on_overdue)),
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "deadlines": {k: f"{int(v.total_seconds())}s" for k, v in self.deadlines.items()},
            "resolve_within": f"{int(self.resolve_within.total_seconds())}s",
            "verify": self.verify,
            "escalate_on_overdue": self.escalate_on_overdue,
        }


def _iso(v: datetime | None) -> str | None:
    return None if v is None else v.astimezone(UTC).isoformat().replace("+00:00", "Z")


@dataclass(frozen=True)
class Event:
    """The current state of an event (``version`` is what you pass back to act on it)."""

    id: str
    service_code: str
    category: str
    title: str
    description: str
    status: str
    department: str | None
    assisting: tuple[str, ...]
    level: str | None
    unit: str | None
    district: str | None
    priority: int
    channel: str
    parent_id: str | None
    source_id: str | None
    warning_id: str | None
    x: float
    y: float
    address: str
    attributes: dict[str, Any]
    media_url: str | None
    received_at: datetime
    updated_at: datetime
    due_at: datetime | None
    resolve_by: datetime | None
    resolved_at: datetime | None
    closed_at: datetime | None
    overdue: bool
    escalations: int
    reopens: int
    dispatch_mode: str | None
    dispatch_confidence: float | None
    satisfaction: int | None
    version: int
    #: the grid worker the event is assigned to (``Governance.assign``)
    assignee: str | None = None

    @property
    def number(self) -> int:
        return event_number(self.id)

    @property
    def is_open(self) -> bool:
        return self.status in OPEN_STATUSES

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["assisting"] = list(self.assisting)
        for k in ("received_at", "updated_at", "due_at", "resolve_by", "resolved_at", "closed_at"):
            d[k] = _iso(d[k])
        return d


@dataclass(frozen=True)
class Report:
    """One report of an event (a merged duplicate's reports belong to the parent)."""

    id: int
    event_id: str
    first_event: str
    channel: str
    source_id: str | None
    token: str
    reporter: str | None
    contact: dict[str, Any]
    description: str
    media_url: str | None
    attachments: list[Any]
    x: float
    y: float
    received_at: datetime

    def to_dict(self, *, contact: bool = True) -> dict[str, Any]:
        d = asdict(self)
        d["received_at"] = _iso(self.received_at)
        if not contact:
            d.pop("contact")
        return d


@dataclass(frozen=True)
class Transition:
    """One recorded step: who did what, when and why."""

    seq: int
    event_id: str
    action: str
    from_status: str | None
    to_status: str
    from_department: str | None
    department: str | None
    actor: str
    note: str
    at: datetime
    version: int

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["at"] = _iso(self.at)
        return d


@dataclass(frozen=True)
class Warning:
    """An early warning: raised by a rule, acknowledged, turned into an event, and given
    an outcome (``confirmed`` or ``false_alarm``)."""

    id: str
    rule: str
    kind: str
    severity: str
    status: str
    title: str
    x: float
    y: float
    t: datetime
    evidence: dict[str, Any]
    event_id: str | None
    service_code: str | None
    updated_at: datetime
    version: int
    dedup_key: str | None = None

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["t"] = _iso(self.t)
        d["updated_at"] = _iso(self.updated_at)
        return d


def dumps(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, sort_keys=True, default=str)

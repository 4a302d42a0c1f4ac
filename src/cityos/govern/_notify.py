"""Notifications: in-process subscribers (the SSE stream) and signed webhooks, to
departments and to grid workers.

A webhook is a real HTTP ``POST`` of JSON ``{"kind", "event", "department" | "username"}``:

- to a department's ``webhook_url`` whenever an event is assigned to it (dispatch,
  reassignment, escalation) or reopened;
- to a grid worker's subscriptions whenever an event is assigned to them (``assign``),
  an event assigned to them changes, or an event of their grid is dispatched to a
  department at their grid (community level).

Every delivery is signed when its target has a secret (subscriptions always do):
``X-CityOS-Signature: sha256=<hex HMAC-SHA256 of "<timestamp>.<body>">`` with
``X-CityOS-Timestamp`` and ``X-CityOS-Delivery`` (check it with
:func:`verify_signature`); it is retried on a connection error, a timeout, 429 or 5xx
(``max_attempts`` tries, exponential back-off); and its outcome is recorded
(``govern_webhook_deliveries``) and written to the audit chain
(``govern.webhook.deliver``)."""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import json
import logging
import secrets
import socket
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import select

from cityos.access import Principal
from cityos.access._audit import append_audit, audit_transaction
from cityos.access.errors import PermissionDenied
from cityos.db import Database, utcnow
from cityos.govern._model import Event, utc
from cityos.govern._tables import StaffRow, SubscriptionRow, WebhookDeliveryRow
from cityos.govern.errors import EventNotFound, IntakeError

if TYPE_CHECKING:
    from cityos.govern._core import Governance

__all__ = [
    "Hub",
    "Subscription",
    "Target",
    "Webhooks",
    "in_grid",
    "sign",
    "verify_signature",
]

log = logging.getLogger("cityos.govern")

Listener = Callable[[str, dict[str, Any]], None]
#: kind published when an event is assigned to a grid worker
ASSIGNED = "event.assigned"


class Hub:
    """Fan-out of governance changes to subscribers (thread-safe)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._subs: list[Listener] = []

    def subscribe(self, fn: Listener) -> Callable[[], None]:
        with self._lock:
            self._subs.append(fn)

        def unsubscribe() -> None:
            with self._lock:
                if fn in self._subs:
                    self._subs.remove(fn)

        return unsubscribe

    @property
    def active(self) -> bool:
        """Whether anyone listens (a publisher may skip building the payload)."""
        return bool(self._subs)

    def publish(self, kind: str, payload: dict[str, Any]) -> None:
        with self._lock:
            subs = list(self._subs)
        for fn in subs:
            try:
                fn(kind, payload)
            except Exception:  # a broken subscriber never breaks the workflow
                log.exception("governance subscriber failed on %s", kind)


def sign(secret: str, timestamp: str, body: bytes) -> str:
    """The ``X-CityOS-Signature`` of a delivery.

    >>> sign("s3cret", "1767225600", b'{"kind": "event.assigned"}')[:15]
    'sha256=ba195ace'
    """
    mac = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256)
    return "sha256=" + mac.hexdigest()


def verify_signature(
    secret: str,
    body: bytes,
    timestamp: str,
    signature: str,
    *,
    tolerance_s: float = 300.0,
    now: float | None = None,
) -> bool:
    """Whether a delivery's signature is right and its timestamp recent (what a receiver
    checks before trusting a webhook).

    >>> ts = str(int(time.time()))
    >>> verify_signature("k", b"{}", ts, sign("k", ts, b"{}"))
    True
    >>> verify_signature("k", b"{ }", ts, sign("k", ts, b"{}"))
    False
    """
    try:
        age = abs((time.time() if now is None else now) - float(timestamp))
    except ValueError:
        return False
    return age <= tolerance_s and hmac.compare_digest(sign(secret, timestamp, body), signature)


@dataclass(frozen=True)
class Target:
    """Where one notification goes: a department's webhook or a person's subscription."""

    url: str
    secret: str | None = None
    department: str | None = None
    username: str | None = None
    subscription_id: int | None = None

    @property
    def name(self) -> str:
        return self.department or f"user:{self.username}"


@dataclass(frozen=True)
class Subscription:
    """A grid worker's webhook (the secret is shown once, when it is created)."""

    id: int
    username: str
    url: str
    active: bool
    created_by: str
    created_at: datetime
    secret: str | None = None

    def to_dict(self) -> dict[str, Any]:
        d = {
            "id": self.id,
            "username": self.username,
            "url": self.url,
            "active": self.active,
            "created_by": self.created_by,
            "created_at": self.created_at.isoformat().replace("+00:00", "Z"),
        }
        if self.secret is not None:
            d["secret"] = self.secret
        return d


class Webhooks:
    """Posts notifications to webhook targets on a small thread pool: signed, retried,
    recorded and audited.

    ``allow_private`` lets people subscribe URLs on loopback or private networks (tests,
    a single-machine demo); a production server refuses them, so a subscriber cannot make
    the server call its own internal services."""

    def __init__(
        self,
        db: Database,
        timeout_s: float = 5.0,
        *,
        max_attempts: int = 3,
        backoff_s: float = 0.5,
        allow_private: bool = False,
    ) -> None:
        self.db = db
        self.timeout_s = timeout_s
        self.max_attempts = max_attempts
        self.backoff_s = backoff_s
        self.allow_private = allow_private
        self._pool = ThreadPoolExecutor(max_workers=2, thread_name_prefix="cityos-webhook")
        self._pending: list[Future[None]] = []
        self._lock = threading.Lock()

    def send(self, target: Target, kind: str, event: dict[str, Any]) -> None:
        fut = self._pool.submit(self._post, target, kind, event)
        with self._lock:
            self._pending = [f for f in self._pending if not f.done()] + [fut]

    def _attempt(self, target: Target, body: bytes, delivery: str, kind: str) -> int:
        ts = str(int(time.time()))
        headers = {
            "Content-Type": "application/json",
            "User-Agent": "cityos-govern-webhook",
            "X-CityOS-Event": kind,
            "X-CityOS-Delivery": delivery,
            "X-CityOS-Timestamp": ts,
        }
        if target.secret:
            headers["X-CityOS-Signature"] = sign(target.secret, ts, body)
        req = urllib.request.Request(target.url, data=body, method="POST", headers=headers)
        with urllib.request.urlopen(req, timeout=self.timeout_s) as resp:
            return int(resp.status)

    def _post(self, target: Target, kind: str, event: dict[str, Any]) -> None:
        who = {"department": target.department} if target.department else {}
        if target.username:
            who = {"username": target.username}
        body = json.dumps({"kind": kind, **who, "event": event}, ensure_ascii=False).encode()
        delivery = secrets.token_hex(16)
        code: int | None = None
        err: str | None = None
        attempts = 0
        while attempts < max(1, self.max_attempts):
            attempts += 1
            code, err = None, None
            try:
                code = self._attempt(target, body, delivery, kind)
            except urllib.error.HTTPError as exc:
                code, err = int(exc.code), f"HTTPError: {exc}"[:2000]
            except Exception as exc:  # recorded; delivery failures never stop the workflow
                err = f"{type(exc).__name__}: {exc}"[:2000]
            retry = code is None or code == 429 or code >= 500
            if not retry or attempts >= self.max_attempts:
                break
            time.sleep(self.backoff_s * 2 ** (attempts - 1))
        eid = str(event.get("id") or "")
        with audit_transaction(self.db) as s:
            s.add(
                WebhookDeliveryRow(
                    department=target.department,
                    username=target.username,
                    subscription_id=target.subscription_id,
                    delivery_id=delivery,
                    attempts=attempts,
                    url=target.url,
                    kind=kind,
                    event_id=int(eid[2:]) if eid[2:].isdigit() else None,
                    status_code=code,
                    error=err,
                    at=utcnow(),
                )
            )
            append_audit(
                s,
                actor="system:webhook",
                action="govern.webhook.deliver",
                dataset="events",
                detail={
                    "event": eid,
                    "kind": kind,
                    "to": target.name,
                    "subscription": target.subscription_id,
                    "delivery": delivery,
                    "status": code,
                    "attempts": attempts,
                    "ok": code is not None and 200 <= code < 300,
                },
            )

    def wait(self, timeout: float = 30.0) -> None:
        """Block until every delivery started so far has finished (tests, shutdown)."""
        with self._lock:
            pending = list(self._pending)
        for f in pending:
            f.result(timeout=timeout)

    def close(self) -> None:
        self._pool.shutdown(wait=True)


# -- who receives what ---------------------------------------------------------------------
def in_grid(unit: str | None, grid: str | None) -> bool:
    """Whether an event's unit lies in a worker's unit (the unit itself or one below it).

    >>> in_grid("d01-s2-g3", "d01-s2-g3"), in_grid("d01-s2-g3", "d01-s2"), in_grid("d01-s2-g3", "d01-s2-g1")
    (True, True, False)
    """
    return bool(unit and grid and (unit == grid or unit.startswith(grid + "-")))


def targets(gov: Governance, e: Event, kind: str) -> list[Target]:
    """The webhooks one change of ``e`` goes to (see the module docstring)."""
    out: list[Target] = []
    j = gov.jurisdictions
    dispatched = e.department is not None and e.status in ("dispatched", "reopened")
    if dispatched:
        for code in (e.department, *e.assisting):
            d = j.departments.get(code or "")
            if d is not None and d.webhook_url:
                out.append(Target(d.webhook_url, d.webhook_secret, department=d.code))
    people: set[str] = set()
    if e.assignee:
        people.add(e.assignee)
    lead = j.departments.get(e.department or "") if dispatched else None
    if lead is not None and j.level_of(lead.unit) == "community" and in_grid(e.unit, lead.unit):
        with gov.db.session() as s:
            people |= set(
                s.scalars(
                    select(StaffRow.username).where(
                        StaffRow.role == "grid_worker", StaffRow.unit == lead.unit
                    )
                )
            )
    if people:
        with gov.db.session() as s:
            subs = list(
                s.scalars(
                    select(SubscriptionRow)
                    .where(SubscriptionRow.username.in_(sorted(people)), SubscriptionRow.active)
                    .order_by(SubscriptionRow.id)
                )
            )
        out += [Target(r.url, r.secret, username=r.username, subscription_id=r.id) for r in subs]
    return out


def notify(gov: Governance, e: Event, kind: str) -> None:
    """Send the webhooks of one change (nothing when webhooks are off)."""
    if gov.webhooks is None:
        return
    payload: dict[str, Any] | None = None
    for t in targets(gov, e, kind):
        payload = payload or e.to_dict()
        gov.webhooks.send(t, kind, payload)


def stream_filter(gov: Governance, user: Principal) -> Callable[[str, dict[str, Any]], bool]:
    """What a subscriber of the live stream may receive: dispatchers and supervisors
    everything; department staff their department's events; grid workers the events of
    their grid and those assigned to them (never a warning, never another grid's event)."""
    roles = user.roles
    if roles & {"dispatcher", "supervisor", "admin"}:
        return lambda kind, obj: True
    dept = user.department if "department_staff" in roles else None
    grid: str | None = None
    if "grid_worker" in roles:
        st = gov.staff(user.username)
        grid = st.unit if st is not None else None
    name = user.username

    def ok(kind: str, obj: dict[str, Any]) -> bool:
        if not kind.startswith("event."):
            return False
        if dept is not None and (
            obj.get("department") == dept or dept in (obj.get("assisting") or [])
        ):
            return True
        return "grid_worker" in roles and (
            obj.get("assignee") == name or in_grid(obj.get("unit"), grid)
        )

    return ok


# -- subscriptions -------------------------------------------------------------------------
def _may_manage(actor: str | Principal, username: str) -> str:
    if not isinstance(actor, Principal):
        return str(actor)  # trusted callers of the Python API
    if actor.roles & {"supervisor", "admin"} or actor.username == username:
        return actor.username
    raise PermissionDenied(f"{actor.username} may not manage the webhooks of {username}")


def check_url(url: str, *, allow_private: bool) -> str:
    """An http(s) URL whose host resolves only to public addresses (unless allowed).

    >>> check_url("ftp://example.org/x", allow_private=True)
    Traceback (most recent call last):
    cityos.govern.errors.IntakeError: url: 'ftp://example.org/x' is not an http(s) URL
    >>> check_url("http://127.0.0.1:9/hook", allow_private=False)
    Traceback (most recent call last):
    cityos.govern.errors.IntakeError: url: 127.0.0.1 is a loopback or private address; webhooks go to public addresses
    """
    u = urllib.parse.urlsplit(url.strip())
    if u.scheme not in ("http", "https") or not u.hostname or len(url) > 2000:
        raise IntakeError(f"url: {url!r} is not an http(s) URL", field="url")
    if allow_private:
        return url.strip()
    try:
        infos = socket.getaddrinfo(u.hostname, u.port or 80, proto=socket.IPPROTO_TCP)
    except OSError as exc:
        raise IntakeError(f"url: cannot resolve {u.hostname!r}", field="url") from exc
    for info in infos:
        ip = ipaddress.ip_address(info[4][0])
        if not ip.is_global:
            raise IntakeError(
                f"url: {ip} is a loopback or private address; webhooks go to public addresses",
                field="url",
            )
    return url.strip()


def _sub_obj(r: SubscriptionRow, secret: bool = False) -> Subscription:
    return Subscription(
        id=r.id,
        username=r.username,
        url=r.url,
        active=r.active,
        created_by=r.created_by,
        created_at=utc(r.created_at),  # type: ignore[arg-type]
        secret=r.secret if secret else None,
    )


def add_subscription(
    gov: Governance, username: str, url: str, actor: str | Principal
) -> Subscription:
    """Subscribe a grid worker's webhook; the answer carries the signing secret (once)."""
    name = _may_manage(actor, username)
    st = gov.staff(username)
    if st is None or st.role != "grid_worker":
        raise IntakeError(f"username: {username!r} is not a grid worker", field="username")
    allow = gov.webhooks.allow_private if gov.webhooks is not None else False
    url = check_url(url, allow_private=allow)
    with audit_transaction(gov.db) as s:
        row = SubscriptionRow(
            username=username,
            url=url,
            secret=secrets.token_urlsafe(32),
            active=True,
            created_by=name,
            created_at=gov.now(),
        )
        s.add(row)
        s.flush()
        append_audit(
            s,
            actor=name,
            action="govern.subscription.create",
            detail={"subscription": row.id, "username": username, "url": url},
        )
        return _sub_obj(row, secret=True)


def subscriptions(
    gov: Governance, username: str | None, actor: str | Principal
) -> list[Subscription]:
    """Active subscriptions (of ``username``; all of them for supervisors)."""
    if (
        username is None
        and isinstance(actor, Principal)
        and not actor.roles & {"supervisor", "admin"}
    ):
        username = actor.username
    if username is not None:
        _may_manage(actor, username)
    stmt = select(SubscriptionRow).where(SubscriptionRow.active).order_by(SubscriptionRow.id)
    if username is not None:
        stmt = stmt.where(SubscriptionRow.username == username)
    with gov.db.session() as s:
        return [_sub_obj(r) for r in s.scalars(stmt)]


def remove_subscription(gov: Governance, sub_id: int, actor: str | Principal) -> Subscription:
    if not 0 < int(sub_id) < 2**63:  # no such row can exist; the databases' ids are 64-bit
        raise EventNotFound(f"no webhook subscription {sub_id}")
    with audit_transaction(gov.db) as s:
        row = s.get(SubscriptionRow, int(sub_id))
        if row is None or not row.active:
            raise EventNotFound(f"no webhook subscription {sub_id}")
        name = _may_manage(actor, row.username)
        row.active = False
        append_audit(
            s,
            actor=name,
            action="govern.subscription.delete",
            detail={"subscription": row.id, "username": row.username},
        )
        s.flush()
        return _sub_obj(row)


def check_assignee(gov: Governance, unit: str | None, assignee: str, event_id: str) -> None:
    """A grid worker may be assigned only an event of their own grid."""
    st = gov.staff(assignee)
    if st is None or st.role != "grid_worker":
        raise IntakeError(f"assignee: {assignee!r} is not a grid worker", field="assignee")
    if not in_grid(unit, st.unit):
        raise IntakeError(
            f"assignee: {assignee} works grid {st.unit!r}; event {event_id} is in {unit!r}",
            field="assignee",
        )


def deliveries(
    gov: Governance, *, username: str | None = None, department: str | None = None
) -> Sequence[WebhookDeliveryRow]:
    """Recorded webhook deliveries, oldest first (to a person or a department)."""
    stmt = select(WebhookDeliveryRow).order_by(WebhookDeliveryRow.id)
    if username is not None:
        stmt = stmt.where(WebhookDeliveryRow.username == username)
    if department is not None:
        stmt = stmt.where(WebhookDeliveryRow.department == department)
    with gov.db.session() as s:
        rows = list(s.scalars(stmt))
        for r in rows:
            s.expunge(r)
        return rows

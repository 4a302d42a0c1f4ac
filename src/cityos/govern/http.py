"""The governance REST routes (mounted by :mod:`cityos.server`): native intake and the
workflow, queues, warnings, KPI, evaluation, analysis and the live SSE stream, plus the
Open311 GeoReport v2 routes of :mod:`cityos.govern.open311`.

Every route authenticates the caller (bearer token or API key; the stream also takes
``?access_token=``) and checks the governance role: citizens take in reports and read
their own, dispatchers dispatch, department staff act on their department's events, grid
workers on their grid's, supervisors (and admins) everything. Changes are audited by
:class:`Governance`; reads of events (which carry reporters' contacts) are audited here.
Errors are 4xx JSON naming the field; nothing stored changes."""

# no `from __future__ import annotations`: FastAPI reads the annotations at runtime

import asyncio
import importlib
import json
from collections.abc import AsyncIterator, Callable
from datetime import datetime
from typing import Annotated, Any, TypeVar

from fastapi import APIRouter, Header, Path, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse, StreamingResponse
from pydantic import BaseModel, Field

from cityos import access
from cityos.access import (
    AuthenticationError,
    InvalidCredentials,
    PermissionDenied,
    Principal,
    principal_from_api_key,
    principal_from_token,
)
from cityos.govern import open311
from cityos.govern._app import governance
from cityos.govern._core import Governance
from cityos.govern._evaluate import breakdown, hotspots, trends
from cityos.govern._model import Event
from cityos.govern._notify import stream_filter
from cityos.govern.errors import GovernError, http_status
from cityos.server._errors import ERRORS
from cityos.server.deps import CurrentUser

__all__ = ["router"]

router = APIRouter()
native = APIRouter(prefix="/govern", tags=["govern"], responses=ERRORS)

T = TypeVar("T")
_ALL = frozenset({"supervisor", "admin"})
_DISPATCH = frozenset({"dispatcher"}) | _ALL
_GOV = frozenset({"citizen", "dispatcher", "department_staff", "grid_worker"}) | _ALL


def _error(exc: Exception) -> JSONResponse:
    if isinstance(exc, GovernError):
        code, field = http_status(exc), getattr(exc, "field", None)
    elif isinstance(exc, PermissionDenied):
        code, field = 403, None
    elif isinstance(exc, AuthenticationError):
        code, field = 401, None
    else:
        code, field = 400, None
    body: dict[str, Any] = {"detail": str(exc), "error": type(exc).__name__}
    if field:
        body["field"] = field
    return JSONResponse(body, status_code=code)


async def _run(fn: Callable[[], T]) -> T | JSONResponse:
    try:
        return await run_in_threadpool(fn)
    except (GovernError, PermissionDenied, AuthenticationError) as exc:
        return _error(exc)


def _need(user: Principal, roles: frozenset[str], what: str) -> None:
    if not (user.roles & roles):
        raise PermissionDenied(
            f"{user.username} may not {what} (needs one of: {', '.join(sorted(roles))})"
        )


def _visible(gov: Governance, user: Principal, e: Event) -> bool:
    roles = user.roles
    if roles & _DISPATCH:
        return True
    if (
        "department_staff" in roles
        and user.department
        and (e.department == user.department or user.department in e.assisting)
    ):
        return True
    if "grid_worker" in roles:
        st = gov.staff(user.username)
        if (
            st is not None
            and st.unit
            and e.unit
            and (e.unit == st.unit or e.unit.startswith(st.unit + "-"))
        ):
            return True
    if "citizen" in roles:
        return any(r.reporter == user.username for r in gov.reports(e.id))
    return False


def _parse_bbox(bbox: str | None) -> tuple[float, float, float, float] | None:
    if not bbox:
        return None
    from cityos.govern.errors import IntakeError

    try:
        v = [float(p) for p in bbox.split(",")]
    except ValueError as exc:
        raise IntakeError(f"bbox: {bbox!r} is not minx,miny,maxx,maxy", field="bbox") from exc
    if len(v) != 4 or v[0] > v[2] or v[1] > v[3]:
        raise IntakeError(f"bbox: {bbox!r} is not minx,miny,maxx,maxy", field="bbox")
    return v[0], v[1], v[2], v[3]


# -- bodies ------------------------------------------------------------------------------
class IntakeBody(BaseModel):
    service_code: str = Field(max_length=100)
    lat: float | None = Field(None, description="WGS84 latitude")
    long: float | None = Field(None, description="WGS84 longitude")
    title: str = Field("", max_length=500)
    description: str = Field("", max_length=10_000)
    channel: str = Field("native", max_length=40)
    source_id: str | None = Field(None, max_length=200)
    address: str = Field("", max_length=1000)
    priority: int = 3
    attributes: dict[str, Any] = Field(default_factory=dict)
    contact: dict[str, str] = Field(
        default_factory=dict, description="email, phone, first_name, last_name"
    )
    media_url: str | None = Field(None, max_length=2000)
    attachments: list[str] = Field(
        default_factory=list, max_length=20, description="URLs of attachments"
    )
    received_at: datetime | None = None


class DispatchBody(BaseModel):
    department: str = Field(max_length=100)
    version: int
    note: str = Field("", max_length=5000)
    assisting: list[str] = Field(default_factory=list, max_length=20)


class TransitionBody(BaseModel):
    action: str = Field(max_length=40)
    version: int
    note: str = Field("", max_length=5000)
    department: str | None = Field(None, max_length=100)
    assisting: list[str] | None = Field(None, max_length=20)
    outcome: str | None = Field(None, description="confirmed | false_alarm (events from warnings)")
    parent: str | None = Field(None, description="merge: the parent event")
    assignee: str | None = Field(None, max_length=100, description="assign: the grid worker")


class AssignBody(BaseModel):
    assignee: str = Field(max_length=100, description="a grid worker of the event's grid")
    version: int
    note: str = Field("", max_length=5000)


class SubscriptionBody(BaseModel):
    url: str = Field(max_length=2000, description="http(s) URL the deliveries are posted to")
    username: str | None = Field(
        None, max_length=100, description="the grid worker (default: you; supervisors: anyone)"
    )


class FeedbackBody(BaseModel):
    satisfaction: int
    note: str = Field("", max_length=5000)


class NoteBody(BaseModel):
    note: str = Field("", max_length=5000)


class OpenEventBody(BaseModel):
    service_code: str | None = Field(None, max_length=100)


class OutcomeBody(BaseModel):
    confirmed: bool


def _event_out(
    gov: Governance, user: Principal, e: Event, *, detail: bool = False
) -> dict[str, Any]:
    d = e.to_dict()
    if detail:
        d["history"] = [t.to_dict() for t in gov.history(e.id)]
        see_contact = bool(user.roles & _DISPATCH)
        d["reports"] = [
            r.to_dict(contact=see_contact or r.reporter == user.username) for r in gov.reports(e.id)
        ]
    return d


# -- events ------------------------------------------------------------------------------
@native.get("/events")
async def list_events(
    request: Request,
    user: CurrentUser,
    bbox: str | None = None,
    status: str | None = None,
    department: str | None = None,
    service_code: str | None = None,
    start: datetime | None = None,
    end: datetime | None = None,
    limit: Annotated[int, Query(ge=1, le=10_000)] = 500,
) -> Any:
    """Events you may see, newest first (citizens: their own)."""

    def run() -> list[dict[str, Any]]:
        gov = governance(request)
        _need(user, _GOV, "read events")
        st = [s for s in (status or "").split(",") if s] or None
        reporter = user.username if not (user.roles - {"citizen"}) & (_GOV - {"citizen"}) else None
        evs = gov.events(
            status=st,
            department=department,
            service_code=service_code,
            bbox=_parse_bbox(bbox),
            start=start,
            end=end,
            reporter=reporter,
            limit=None if reporter is None and not user.roles & _DISPATCH else limit,
        )
        out = [e for e in evs if _visible(gov, user, e)][:limit]
        access.record(
            gov.db,
            actor=user.username,
            action="govern.read",
            dataset="events",
            detail={"query": "list", "rows": len(out)},
        )
        return [_event_out(gov, user, e) for e in out]

    return await _run(run)


@native.get("/events/{event_id}")
async def get_event(request: Request, user: CurrentUser, event_id: str) -> Any:
    """One event with its history and reports (contacts for dispatchers and the reporter)."""

    def run() -> dict[str, Any]:
        gov = governance(request)
        _need(user, _GOV, "read events")
        e = gov.event(event_id)
        if not _visible(gov, user, e):
            raise PermissionDenied(f"{user.username} may not read event {e.id}")
        access.record(
            gov.db,
            actor=user.username,
            action="govern.read",
            dataset="events",
            detail={"query": "event", "event": e.id},
        )
        return _event_out(gov, user, e, detail=True)

    return await _run(run)


@native.post("/events", status_code=201)
async def post_event(
    request: Request,
    user: CurrentUser,
    body: IntakeBody,
    idempotency_key: Annotated[str | None, Header(max_length=300)] = None,
) -> Any:
    """Native intake (richer than Open311: channel, contact, attachments, title).
    ``Idempotency-Key`` makes a retry answer the first event (200 instead of 201)."""

    def run() -> Any:
        gov = governance(request)
        _need(user, _GOV, "report events")
        channel = body.channel
        if (
            "citizen" in user.roles
            and not (user.roles & (_GOV - {"citizen"}))
            and channel not in ("native", "app")
        ):
            raise PermissionDenied(
                f"citizens report through the native or app channel, not {channel!r}"
            )
        res = gov.intake(
            body.service_code,
            x=body.long,
            y=body.lat,
            description=body.description,
            title=body.title,
            channel=channel,
            source_id=body.source_id,
            idempotency_key=idempotency_key,
            reporter=user,
            contact=dict(body.contact),
            attributes=body.attributes,
            media_url=body.media_url,
            attachments=list(body.attachments),
            address=body.address,
            priority=body.priority,
            received_at=body.received_at,
            actor=user,
        )
        out = {
            "event": _event_out(gov, user, res.event),
            "id": res.id,
            "token": res.report.token,
            "created": res.created,
            "merged_into": res.merged_into,
            "dispatched": res.dispatched,
        }
        return JSONResponse(out, status_code=201 if res.created else 200)

    return await _run(run)


@native.post("/events/{event_id}/dispatch")
async def dispatch_event(
    request: Request, user: CurrentUser, event_id: str, body: DispatchBody
) -> Any:
    def run() -> dict[str, Any]:
        gov = governance(request)
        e = gov.dispatch(
            event_id, body.department, user, body.version, body.note, assisting=body.assisting
        )
        return _event_out(gov, user, e)

    return await _run(run)


@native.post("/events/{event_id}/transition")
async def transition_event(
    request: Request, user: CurrentUser, event_id: str, body: TransitionBody
) -> Any:
    """accept | start | resolve | verify | close | return | reassign | escalate | reopen |
    merge | note, at ``version``; stale → 409, illegal in the state → 409."""

    def run() -> dict[str, Any]:
        gov = governance(request)
        e = gov.transition(
            event_id,
            body.action,
            user,
            body.version,
            body.note,
            department=body.department,
            assisting=body.assisting,
            outcome=body.outcome,
            parent=body.parent,
            assignee=body.assignee,
        )
        return _event_out(gov, user, e)

    return await _run(run)


@native.post("/events/{event_id}/assign")
async def assign_event(request: Request, user: CurrentUser, event_id: str, body: AssignBody) -> Any:
    """Assign an event to a grid worker of its grid (dispatchers, or staff of the
    department holding it); the worker's webhooks and stream receive ``event.assigned``."""

    def run() -> dict[str, Any]:
        gov = governance(request)
        e = gov.assign(event_id, body.assignee, user, body.version, body.note)
        return _event_out(gov, user, e)

    return await _run(run)


# -- grid workers' webhooks --------------------------------------------------------------
@native.get("/subscriptions")
async def list_subscriptions(
    request: Request, user: CurrentUser, username: str | None = None
) -> Any:
    """Your webhook subscriptions (supervisors: anyone's, or all); secrets are not shown."""

    def run() -> list[dict[str, Any]]:
        _need(user, frozenset({"grid_worker"}) | _ALL, "read webhook subscriptions")
        return [x.to_dict() for x in governance(request).subscriptions(username, user)]

    return await _run(run)


@native.post("/subscriptions", status_code=201)
async def post_subscription(request: Request, user: CurrentUser, body: SubscriptionBody) -> Any:
    """Subscribe a webhook for a grid worker (yourself, or anyone for supervisors); the
    answer carries the signing ``secret``, shown only here."""

    def run() -> Any:
        _need(user, frozenset({"grid_worker"}) | _ALL, "subscribe webhooks")
        sub = governance(request).add_subscription(body.username or user.username, body.url, user)
        return JSONResponse(sub.to_dict(), status_code=201)

    return await _run(run)


@native.delete("/subscriptions/{subscription_id}")
async def delete_subscription(
    request: Request,
    user: CurrentUser,
    subscription_id: Annotated[int, Path(ge=1, le=2**63 - 1)],
) -> Any:
    def run() -> dict[str, Any]:
        _need(user, frozenset({"grid_worker"}) | _ALL, "remove webhook subscriptions")
        return governance(request).remove_subscription(subscription_id, user).to_dict()

    return await _run(run)


@native.post("/events/{event_id}/feedback")
async def feedback_event(
    request: Request, user: CurrentUser, event_id: str, body: FeedbackBody
) -> Any:
    def run() -> dict[str, Any]:
        gov = governance(request)
        _need(user, _GOV, "give feedback")
        return _event_out(gov, user, gov.feedback(event_id, body.satisfaction, user, body.note))

    return await _run(run)


@native.get("/queue")
async def queue(request: Request, user: CurrentUser, department: str | None = None) -> Any:
    """The dispatcher queue, or a department's open work (staff: their own department)."""

    def run() -> list[dict[str, Any]]:
        gov = governance(request)
        if department is None:
            _need(user, _DISPATCH, "read the dispatcher queue")
        elif not (user.roles & _DISPATCH) and user.department != department:
            raise PermissionDenied(
                f"{user.username} may read only the queue of {user.department!r}"
            )
        return [_event_out(gov, user, e) for e in gov.queue(department)]

    return await _run(run)


@native.get("/departments")
async def departments(request: Request, user: CurrentUser) -> Any:
    def run() -> list[dict[str, Any]]:
        _need(user, _GOV, "read the organisation")
        return governance(request).departments()

    return await _run(run)


# -- warnings ----------------------------------------------------------------------------
@native.get("/warnings")
async def list_warnings(
    request: Request,
    user: CurrentUser,
    status: str | None = None,
    severity: str | None = None,
    limit: Annotated[int, Query(ge=1, le=10_000)] = 500,
) -> Any:
    def run() -> list[dict[str, Any]]:
        _need(user, _DISPATCH | {"department_staff"}, "read warnings")
        st = [s for s in (status or "").split(",") if s] or None
        return [
            w.to_dict()
            for w in governance(request).warnings(status=st, severity=severity, limit=limit)
        ]

    return await _run(run)


@native.post("/warnings/{warning_id}/acknowledge")
async def acknowledge(request: Request, user: CurrentUser, warning_id: str, body: NoteBody) -> Any:
    def run() -> dict[str, Any]:
        _need(user, _DISPATCH, "acknowledge warnings")
        return governance(request).acknowledge_warning(warning_id, user, body.note).to_dict()

    return await _run(run)


@native.post("/warnings/{warning_id}/open-event")
async def open_event(
    request: Request, user: CurrentUser, warning_id: str, body: OpenEventBody
) -> Any:
    def run() -> dict[str, Any]:
        _need(user, _DISPATCH, "open events from warnings")
        return (
            governance(request)
            .open_event_from_warning(warning_id, user, body.service_code)
            .to_dict()
        )

    return await _run(run)


@native.post("/warnings/{warning_id}/outcome")
async def outcome(request: Request, user: CurrentUser, warning_id: str, body: OutcomeBody) -> Any:
    def run() -> dict[str, Any]:
        _need(user, _DISPATCH, "record warning outcomes")
        return governance(request).warning_outcome(warning_id, body.confirmed, user).to_dict()

    return await _run(run)


# -- figures -----------------------------------------------------------------------------
@native.get("/kpi")
async def kpi(request: Request, user: CurrentUser) -> Any:
    """events_today, open_events, overdue, open_warnings, on_time_rate of live intake;
    imported history apart under ``history``."""

    def run() -> dict[str, Any]:
        _need(user, _DISPATCH | {"department_staff"}, "read the KPI")
        return governance(request).kpi()

    return await _run(run)


@native.get("/evaluation")
async def evaluation(
    request: Request,
    user: CurrentUser,
    level: str = "department",
    start: datetime | None = None,
    end: datetime | None = None,
    min_sample: Annotated[int, Query(ge=1, le=100_000)] = 20,
    scope: str = "all",
) -> Any:
    """Per ``level`` (department, level, district, service, source); ``scope`` all, live
    or history (imported requests, judged by their own dates)."""

    def run() -> list[dict[str, Any]]:
        _need(user, _DISPATCH, "read the evaluation")
        return governance(request).evaluate(
            level, start=start, end=end, min_sample=min_sample, scope=scope
        )

    return await _run(run)


@native.get("/analysis/hotspots")
async def analysis_hotspots(
    request: Request,
    user: CurrentUser,
    cell_m: Annotated[float, Query(gt=10, le=100_000)] = 500.0,
    start: datetime | None = None,
    end: datetime | None = None,
    time_bin: str | None = "1D",
    regions: str | None = None,
    top: Annotated[int, Query(ge=1, le=10_000)] = 50,
) -> Any:
    """Event counts per grid cell (or region of the ``regions`` dataset) per time bin."""

    def run() -> Any:
        _need(user, _DISPATCH, "read the analysis")
        gov = governance(request)
        j = gov.jurisdictions
        city = next((g for c, g in j.geoms.items() if j.units[c].level == "city"), None)
        bbox = (
            (
                float(city.bounds[0]),
                float(city.bounds[1]),
                float(city.bounds[2]),
                float(city.bounds[3]),
            )
            if city is not None
            else None
        )
        if regions is not None:
            from cityos.access import SecureStore

            SecureStore(gov.store, user).describe(regions)  # read right on the regions
        return hotspots(
            gov.store,
            cell_m=cell_m,
            start=start,
            end=end,
            time_bin=time_bin or None,
            regions=regions,
            bbox=bbox,
            top=top,
        )

    return await _run(run)


@native.get("/analysis/breakdown")
async def analysis_breakdown(
    request: Request,
    user: CurrentUser,
    by: str = "category",
    start: datetime | None = None,
    end: datetime | None = None,
) -> Any:
    def run() -> Any:
        _need(user, _DISPATCH, "read the analysis")
        return breakdown(governance(request), by, start=start, end=end)

    return await _run(run)


@native.get("/analysis/trends")
async def analysis_trends(
    request: Request,
    user: CurrentUser,
    time_bin: str = "1D",
    by: str | None = None,
    start: datetime | None = None,
    end: datetime | None = None,
) -> Any:
    def run() -> Any:
        _need(user, _DISPATCH, "read the analysis")
        return trends(governance(request), time_bin=time_bin, by=by, start=start, end=end)

    return await _run(run)


# -- live stream -------------------------------------------------------------------------
def _stream_principal(request: Request, access_token: str | None) -> Principal:
    city = request.app.state.city
    auth = request.headers.get("authorization", "")
    token = auth[7:].strip() if auth.lower().startswith("bearer ") else access_token
    if token:
        return principal_from_token(city.db, token, city.secret)
    key = request.headers.get("x-api-key")
    if key:
        return principal_from_api_key(city.db, key)
    raise InvalidCredentials(
        "authentication required: a bearer token (header or ?access_token=) or X-API-Key"
    )


@native.get(
    "/stream",
    response_class=StreamingResponse,
    responses={200: {"content": {"text/event-stream": {"schema": {"type": "string"}}}}},
)
async def stream(
    request: Request,
    access_token: str | None = None,
    max_events: Annotated[int | None, Query(ge=1, le=1_000_000)] = None,
    heartbeat_s: Annotated[float, Query(ge=0.05, le=300)] = 15.0,
) -> Any:
    """Server-sent events: ``event.created``, ``event.updated``, ``event.assigned``,
    ``warning.raised``, ``warning.updated`` with the object as JSON ``data``. Department
    staff receive their department's events only; grid workers the events of their grid
    and those assigned to them. ``max_events`` ends the stream after that many."""
    try:
        user = await run_in_threadpool(_stream_principal, request, access_token)
        _need(user, _DISPATCH | {"department_staff", "grid_worker"}, "follow the live stream")
    except (AuthenticationError, PermissionDenied) as exc:
        return _error(exc)
    gov = await run_in_threadpool(governance, request)
    loop = asyncio.get_running_loop()
    q: asyncio.Queue[tuple[str, dict[str, Any]]] = asyncio.Queue(maxsize=10_000)
    dept_only = None if user.roles & _DISPATCH else user.department
    allowed = await run_in_threadpool(stream_filter, gov, user)

    def on_change(kind: str, obj: dict[str, Any]) -> None:
        if allowed(kind, obj):
            loop.call_soon_threadsafe(_put, q, (kind, obj))

    unsubscribe = gov.subscribe(on_change)
    await run_in_threadpool(
        access.record,
        gov.db,
        actor=user.username,
        action="govern.stream",
        dataset="events",
        detail={"department": dept_only},
    )

    async def body() -> AsyncIterator[bytes]:
        sent = 0
        try:
            yield b": cityos governance stream\n\n"
            while max_events is None or sent < max_events:
                try:
                    kind, obj = await asyncio.wait_for(q.get(), timeout=heartbeat_s)
                except TimeoutError:
                    if await request.is_disconnected():
                        return
                    yield b": keep-alive\n\n"
                    continue
                sent += 1
                data = json.dumps(obj, ensure_ascii=False, default=str)
                yield f"event: {kind}\nid: {sent}\ndata: {data}\n\n".encode()
        finally:
            unsubscribe()

    return StreamingResponse(
        body(),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )


def _put(q: "asyncio.Queue[tuple[str, dict[str, Any]]]", item: tuple[str, dict[str, Any]]) -> None:
    try:
        q.put_nowait(item)
    except asyncio.QueueFull:  # a stalled client loses the oldest news, never blocks the workflow
        q.get_nowait()
        q.put_nowait(item)


router.include_router(open311.router)
router.include_router(native)
router.include_router(importlib.import_module("cityos.govern.http_intel").router)  # govern-intel

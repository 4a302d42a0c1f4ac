"""Open311 GeoReport v2 (http://wiki.open311.org/GeoReport_v2), JSON and XML, plus
FixMyStreet's ``servicerequestupdates`` extension, over the city's :class:`Governance`.

- ``GET  /open311/v2/discovery.{fmt}``                service discovery
- ``GET  /open311/v2/services.{fmt}``                 service list
- ``GET  /open311/v2/services/{service_code}.{fmt}``  service definition (attributes)
- ``POST /open311/v2/requests.{fmt}``                 create a request (``api_key`` required)
- ``GET  /open311/v2/requests.{fmt}``                 query requests (ids, codes, dates, status)
- ``GET  /open311/v2/requests/{id}.{fmt}``            one request
- ``GET  /open311/v2/tokens/{token}.{fmt}``           token → service_request_id
- ``GET|POST /open311/v2/servicerequestupdates.{fmt}`` FixMyStreet request updates

Errors follow the spec: an array of ``{code, description}`` (``<errors><error>`` in XML)
with the HTTP status of ``code``. Reads are public, like every city's Open311 endpoint,
and show only the spec's public fields (never a reporter's contact); writes need an API
key of an ``access`` user with a governance role (or admin), and are audited.
"""

# no `from __future__ import annotations`: FastAPI reads the annotations at runtime

import math
import xml.etree.ElementTree as ET
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import Response

from cityos.access import AuthenticationError, PermissionDenied, Principal, principal_from_api_key
from cityos.errors import CityOSError
from cityos.govern._app import governance
from cityos.govern._core import Governance
from cityos.govern._geocode import Geocoded, geocoder_for, reverse_geocode
from cityos.govern._model import Event
from cityos.govern.errors import EventNotFound, GovernError, IntakeError, http_status

__all__ = ["FMS_STATUS", "router"]

#: The spec's error answer: a list of ``{code, description}``, in the request's format.
_ERROR_LIST = {
    "type": "array",
    "items": {
        "type": "object",
        "properties": {"code": {"type": "integer"}, "description": {"type": "string"}},
    },
}
_ERROR_CONTENT = {
    "application/json": {"schema": _ERROR_LIST},
    "text/xml": {"schema": {"type": "string"}},
}
#: Every answer a route may give, declared in the OpenAPI document: JSON or XML by ``fmt``.
OPEN311_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {"content": {"text/xml": {"schema": {"type": "string"}}}},
    **{
        code: {"description": text, "content": _ERROR_CONTENT}
        for code, text in [
            (400, "Open311 error: malformed request or invalid field"),
            (401, "Open311 error: not authenticated"),
            (403, "Open311 error: api_key missing or not allowed"),
            (404, "Open311 error: unknown format, service, request, token or jurisdiction"),
            (409, "Open311 error: conflict"),
            (413, "Body too large"),
            (422, "Invalid input"),
            (503, "Open311 error: unavailable"),
        ]
    },
}

router = APIRouter(prefix="/open311/v2", tags=["open311"], responses=OPEN311_RESPONSES)

#: The spec's default window and limit for GET requests.
DEFAULT_DAYS = 90
DEFAULT_LIMIT = 1000
_CLOSED = frozenset({"resolved", "verified", "closed"})
#: FixMyStreet update states for our statuses
FMS_STATUS = {
    "received": "OPEN",
    "returned": "OPEN",
    "reopened": "OPEN",
    "dispatched": "INVESTIGATING",
    "accepted": "ACTION_SCHEDULED",
    "in_progress": "IN_PROGRESS",
    "resolved": "FIXED",
    "verified": "FIXED",
    "closed": "CLOSED",
}
_GOV_ROLES = frozenset(
    {"citizen", "dispatcher", "department_staff", "grid_worker", "supervisor", "admin"}
)


class Open311Error(Exception):
    def __init__(self, code: int, description: str) -> None:
        self.code = code
        self.description = description
        super().__init__(description)


# -- rendering ---------------------------------------------------------------------------
def _iso(v: datetime | None) -> str | None:
    if v is None:
        return None
    return v.astimezone(UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z")


def _xml_value(el: ET.Element, value: Any) -> None:
    if value is None:
        return
    if isinstance(value, bool):
        el.text = "true" if value else "false"
    else:
        el.text = str(value)


def _to_xml(root: str, item: str, rows: list[dict[str, Any]]) -> bytes:
    top = ET.Element(root)
    for r in rows:
        el = ET.SubElement(top, item)
        _fill(el, r)
    return b'<?xml version="1.0" encoding="utf-8"?>\n' + bytes(ET.tostring(top, encoding="utf-8"))


def _fill(el: ET.Element, d: dict[str, Any]) -> None:
    for k, v in d.items():
        if k == "attributes" and isinstance(v, list):
            attrs = ET.SubElement(el, "attributes")
            for a in v:
                _fill(ET.SubElement(attrs, "attribute"), a)
        elif k == "values" and isinstance(v, list):
            vals = ET.SubElement(el, "values")
            for a in v:
                _fill(ET.SubElement(vals, "value"), a)
        elif k in ("formats", "endpoints") and isinstance(v, list):
            box = ET.SubElement(el, k)
            for a in v:
                if isinstance(a, dict):
                    _fill(ET.SubElement(box, "endpoint"), a)
                else:
                    _xml_value(ET.SubElement(box, "format"), a)
        elif isinstance(v, list):
            _xml_value(ET.SubElement(el, k), ",".join(str(i) for i in v))
        else:
            _xml_value(ET.SubElement(el, k), v)


def _render(
    fmt: str, root: str, item: str, rows: list[dict[str, Any]] | dict[str, Any], status: int = 200
) -> Response:
    if fmt == "xml":
        if isinstance(rows, dict):
            top = ET.Element(root)
            _fill(top, rows)
            body = b'<?xml version="1.0" encoding="utf-8"?>\n' + ET.tostring(top, encoding="utf-8")
        else:
            body = _to_xml(root, item, rows)
        return Response(body, status_code=status, media_type="text/xml; charset=utf-8")
    import json

    return Response(
        json.dumps(rows, ensure_ascii=False).encode(),
        status_code=status,
        media_type="application/json; charset=utf-8",
    )


def _error(fmt: str, code: int, description: str) -> Response:
    return _render(
        fmt if fmt in ("json", "xml") else "json",
        "errors",
        "error",
        [{"code": code, "description": description}],
        status=code,
    )


def _fmt(fmt: str) -> str:
    if fmt not in ("json", "xml"):
        raise Open311Error(404, f"format {fmt!r} is not served; use .json or .xml")
    return fmt


async def _answer(fmt: str, fn: Callable[[], Response]) -> Response:
    try:
        _fmt(fmt)
        return await run_in_threadpool(fn)
    except Open311Error as exc:
        return _error(fmt, exc.code, exc.description)
    except IntakeError as exc:
        return _error(fmt, 400, str(exc))
    except EventNotFound as exc:
        return _error(fmt, 404, str(exc))
    except GovernError as exc:
        return _error(fmt, http_status(exc), str(exc))
    except (AuthenticationError, PermissionDenied) as exc:
        return _error(fmt, 403, str(exc))
    except CityOSError as exc:
        return _error(fmt, 400, str(exc))


# -- shared pieces -----------------------------------------------------------------------
def _jurisdiction(gov: Governance, params: Any) -> None:
    jid = params.get("jurisdiction_id")
    if not jid:
        return
    cities = {c for c, u in gov.jurisdictions.units.items() if u.level == "city"}
    names = {gov.jurisdictions.units[c].name for c in cities}
    if jid not in cities | names:
        raise Open311Error(
            404, f"jurisdiction_id {jid!r} is not served here (served: {', '.join(sorted(cities))})"
        )


def _principal(
    request: Request, gov: Governance, params: Any, *, required: bool
) -> Principal | None:
    key = params.get("api_key") or request.headers.get("x-api-key")
    if not key:
        if required:
            raise Open311Error(403, "api_key: required to write; ask the city for an API key")
        return None
    try:
        p = principal_from_api_key(gov.db, str(key))
    except AuthenticationError as exc:
        raise Open311Error(403, f"api_key: {exc}") from exc
    if required and not (p.roles & _GOV_ROLES):
        raise Open311Error(403, f"api_key: user {p.username!r} has no governance role")
    return p


def _public_status(e: Event) -> str:
    return "closed" if e.status in _CLOSED else "open"


def _request_row(gov: Governance, e: Event) -> dict[str, Any]:
    hist = gov.history(e.id)
    notes = next((t.note for t in reversed(hist) if t.note and t.action != "receive"), "")
    dept = gov.jurisdictions.departments.get(e.department or "")
    svc = gov.services.get(e.service_code)
    notice = f"merged into {e.parent_id} (a duplicate)" if e.parent_id else ""
    return {
        "service_request_id": e.id,
        "status": _public_status(e),
        "status_notes": notes or None,
        "service_name": svc.name if svc else e.service_code,
        "service_code": e.service_code,
        "description": e.description or None,
        "agency_responsible": dept.name if dept else None,
        "service_notice": notice or None,
        "requested_datetime": _iso(e.received_at),
        "updated_datetime": _iso(e.updated_at),
        "expected_datetime": _iso(e.resolve_by),
        "address": e.address or None,
        "address_id": e.attributes.get("address_id"),
        "zipcode": e.attributes.get("zipcode"),
        "lat": e.y,
        "long": e.x,
        "media_url": e.media_url,
    }


def _parse_time(value: str, name: str) -> datetime:
    try:
        t = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError as exc:
        raise Open311Error(
            400, f"{name}: {value!r} is not a W3C date-time such as 2026-03-02T08:00:00Z"
        ) from exc
    if t.tzinfo is None:
        raise Open311Error(400, f"{name}: {value!r} has no timezone (Z or +HH:MM is required)")
    return t.astimezone(UTC)


def _csv(value: str | None) -> list[str]:
    return [v.strip() for v in (value or "").split(",") if v.strip()]


# -- discovery and services --------------------------------------------------------------
@router.get("/discovery.{fmt}", summary="Open311 service discovery")
async def discovery(request: Request, fmt: str) -> Response:
    def run() -> Response:
        base = str(request.base_url).rstrip("/") + "/open311/v2/"
        return _render(
            fmt,
            "discovery",
            "",
            {
                "changeset": "2026-12-02T00:00:00Z",
                "contact": "The city's command centre",
                "key_service": "Ask the city for an API key",
                "endpoints": [
                    {
                        "specification": "http://wiki.open311.org/GeoReport_v2",
                        "url": base,
                        "changeset": "2026-12-02T00:00:00Z",
                        "type": "production",
                        "formats": ["text/xml", "application/json"],
                    }
                ],
            },
        )

    return await _answer(fmt, run)


def _service_row(s: Any) -> dict[str, Any]:
    import json

    return {
        "service_code": s.code,
        "service_name": s.name,
        "description": s.description,
        "metadata": bool(json.loads(s.attributes or "[]")),
        "type": s.type,
        "keywords": s.keywords,
        "group": s.group,
    }


@router.get("/services.{fmt}", summary="GET Service List")
async def services(request: Request, fmt: str) -> Response:
    def run() -> Response:
        gov = governance(request)
        _jurisdiction(gov, request.query_params)
        return _render(fmt, "services", "service", [_service_row(s) for s in gov.services.values()])

    return await _answer(fmt, run)


@router.get("/services/{service_code}.{fmt}", summary="GET Service Definition")
async def service_definition(request: Request, service_code: str, fmt: str) -> Response:
    def run() -> Response:
        import json

        gov = governance(request)
        _jurisdiction(gov, request.query_params)
        s = gov.services.get(service_code)
        if s is None:
            raise Open311Error(404, f"service_code {service_code!r} is not a service of this city")
        attrs = sorted(json.loads(s.attributes or "[]"), key=lambda a: a["order"])
        rows = [
            {
                "variable": a["variable"],
                "code": a["code"],
                "datatype": a["datatype"],
                "required": a["required"],
                "datatype_description": a["datatype_description"] or None,
                "order": a["order"],
                "description": a["description"],
                **({"values": a["values"]} if a["values"] else {}),
            }
            for a in attrs
        ]
        return _render(fmt, "service_definition", "", {"service_code": s.code, "attributes": rows})

    return await _answer(fmt, run)


# -- requests ----------------------------------------------------------------------------
async def _form(request: Request) -> dict[str, Any]:
    ctype = request.headers.get("content-type", "")
    if ctype.startswith("application/json"):
        import json

        try:
            data = json.loads(await request.body() or b"{}")
        except ValueError as exc:
            raise Open311Error(400, "the body is not valid JSON") from exc
        if not isinstance(data, dict):
            raise Open311Error(400, "the JSON body must be an object of request parameters")
        return data
    form = await request.form()
    out: dict[str, Any] = {k: v for k, v in request.query_params.multi_items()}
    for k, v in form.multi_items():
        if not isinstance(v, str):
            raise Open311Error(400, f"{k}: file uploads are not accepted; send media_url")
        if k.endswith("[]") and k.startswith("attribute["):
            out.setdefault(k[:-2], []).append(v)
        else:
            out[k] = v
    return out


def _geocode(gov: Governance, address: str, address_id: str) -> Geocoded:
    """Where an address-only request is: its ``address_id`` (``<dataset>:<id>`` of the
    gazetteer) or its ``address_string`` in the city's gazetteer, or the spec's 400
    naming the field."""
    if not address and not address_id:
        raise Open311Error(
            400, "location: one of lat & long, address_string or address_id is required"
        )
    g = geocoder_for(gov)
    if address_id:
        hit = g.by_id(address_id)
        if hit is not None:
            return hit
        if not address:
            raise Open311Error(
                400, f"address_id: {address_id!r} is no place of this city's gazetteer"
            )
    try:
        return g.locate(address, field="address_string")
    except IntakeError as exc:
        raise Open311Error(400, str(exc)) from exc


@router.post("/requests.{fmt}", summary="POST Service Request")
async def post_request(request: Request, fmt: str) -> Response:
    try:
        _fmt(fmt)
        params = await _form(request)
    except Open311Error as exc:
        return _error(fmt, exc.code, exc.description)

    def run() -> Response:
        gov = governance(request)
        _jurisdiction(gov, params)
        who = _principal(request, gov, params, required=True)
        assert who is not None
        code = params.get("service_code")
        if not code:
            raise Open311Error(400, "service_code: required")
        if code not in gov.services:
            raise Open311Error(400, f"service_code: {code!r} is not a service of this city")
        lat, lon = params.get("lat"), params.get("long")
        addr = str(params.get("address_string") or "")
        if (lat in (None, "")) != (lon in (None, "")):
            raise Open311Error(400, "lat and long: give both, or address_string / address_id")
        located: Geocoded | None = None
        if lat in (None, ""):
            located = _geocode(gov, addr, str(params.get("address_id") or ""))
            x, y = located.x, located.y
        else:
            try:
                x, y = float(lon), float(lat)  # type: ignore[arg-type]
            except ValueError as exc:
                raise Open311Error(400, f"lat/long: {lat!r}, {lon!r} are not numbers") from exc
            if not addr and math.isfinite(x) and math.isfinite(y):
                addr = reverse_geocode(gov, x, y)  # the address of the position, for the reader
        attributes: dict[str, Any] = {}
        for k, v in params.items():
            if k.startswith("attribute[") and k.endswith("]"):
                attributes[k[len("attribute[") : -1]] = v
        contact = {
            k: params.get(k)
            for k in ("email", "device_id", "account_id", "first_name", "last_name", "phone")
        }
        res = gov.intake(
            str(code),
            x=x,
            y=y,
            description=str(params.get("description") or ""),
            channel="open311",
            idempotency_key=request.headers.get("idempotency-key"),
            reporter=who,
            contact={k: v for k, v in contact.items() if v},
            attributes=attributes,
            media_url=params.get("media_url") or None,
            address=str(addr),
            actor=who,
            source_id=None,
        )
        svc = gov.services[str(code)]
        notice = (
            f"merged into {res.merged_into}, which is already being handled"
            if res.merged_into
            else ""
        )
        if located is not None:
            where = f"located at {located.feature.name} (confidence {located.confidence:.2f})"
            notice = f"{where}; {notice}" if notice else where
        row: dict[str, Any] = {
            "service_notice": notice or None,
            "account_id": contact.get("account_id"),
        }
        if svc.type == "batch":
            row = {"token": res.report.token, **row}
        else:
            row = {"service_request_id": res.id, **row}
        return _render(
            fmt, "service_requests", "request", [row], status=201 if res.created else 200
        )

    return await _answer(fmt, run)


@router.get("/requests.{fmt}", summary="GET Service Requests")
async def get_requests(request: Request, fmt: str) -> Response:
    def run() -> Response:
        gov = governance(request)
        q = request.query_params
        _jurisdiction(gov, q)
        _principal(request, gov, q, required=False)
        ids = _csv(q.get("service_request_id"))
        if ids:
            evs = []
            for i in ids:
                try:
                    evs += gov.events(ids=[i], limit=1)
                except IntakeError as exc:
                    raise Open311Error(400, f"service_request_id: {exc}") from exc
            return _render(fmt, "service_requests", "request", [_request_row(gov, e) for e in evs])
        statuses = _csv(q.get("status"))
        bad = [s for s in statuses if s not in ("open", "closed")]
        if bad:
            raise Open311Error(400, f"status: {bad[0]!r} is not 'open' or 'closed'")
        codes = _csv(q.get("service_code"))
        unknown = [c for c in codes if c not in gov.services]
        if unknown:
            raise Open311Error(400, f"service_code: {unknown[0]!r} is not a service of this city")
        end = _parse_time(q["end_date"], "end_date") if q.get("end_date") else None
        start = _parse_time(q["start_date"], "start_date") if q.get("start_date") else None
        if end is None:
            end = (
                (start + timedelta(days=DEFAULT_DAYS))
                if start is not None
                else gov.now() + timedelta(seconds=1)
            )
        if start is None:
            start = end - timedelta(days=DEFAULT_DAYS)
        if start > end:
            raise Open311Error(400, "start_date: after end_date")
        if end - start > timedelta(days=DEFAULT_DAYS):
            raise Open311Error(
                400, f"start_date/end_date: a query may not span more than {DEFAULT_DAYS} days"
            )
        limit = DEFAULT_LIMIT
        page = 1
        if q.get("page_size") or q.get("page"):
            try:
                limit = min(int(q.get("page_size") or DEFAULT_LIMIT), DEFAULT_LIMIT)
                page = int(q.get("page") or 1)
            except ValueError as exc:
                raise Open311Error(400, "page and page_size: positive integers") from exc
            if limit < 1 or page < 1:
                raise Open311Error(400, "page and page_size: positive integers")
        st: list[str] | None = None
        if statuses and set(statuses) != {"open", "closed"}:
            from cityos.govern._model import STATUSES

            st = [s for s in STATUSES if (s in _CLOSED) == (statuses[0] == "closed")]
        evs = gov.events(
            status=st,
            service_code=codes or None,
            start=start,
            end=end,
            limit=limit,
            offset=(page - 1) * limit,
        )
        return _render(fmt, "service_requests", "request", [_request_row(gov, e) for e in evs])

    return await _answer(fmt, run)


@router.get("/requests/{service_request_id}.{fmt}", summary="GET Service Request")
async def get_request(request: Request, service_request_id: str, fmt: str) -> Response:
    def run() -> Response:
        gov = governance(request)
        _jurisdiction(gov, request.query_params)
        _principal(request, gov, request.query_params, required=False)
        try:
            e = gov.event(service_request_id)
        except IntakeError as exc:
            raise Open311Error(
                404, f"service_request_id {service_request_id!r} is not a request here"
            ) from exc
        return _render(fmt, "service_requests", "request", [_request_row(gov, e)])

    return await _answer(fmt, run)


@router.get("/tokens/{token}.{fmt}", summary="GET service_request_id from a token")
async def get_token(request: Request, token: str, fmt: str) -> Response:
    def run() -> Response:
        gov = governance(request)
        _jurisdiction(gov, request.query_params)
        rep = gov.report_by_token(token)
        return _render(
            fmt,
            "service_requests",
            "request",
            [{"service_request_id": rep.first_event, "token": token}],
        )

    return await _answer(fmt, run)


# -- FixMyStreet: request updates -------------------------------------------------------
@router.get("/servicerequestupdates.{fmt}", summary="FixMyStreet: GET service request updates")
async def get_updates(request: Request, fmt: str) -> Response:
    def run() -> Response:
        gov = governance(request)
        q = request.query_params
        _jurisdiction(gov, q)
        _principal(request, gov, q, required=False)
        end = (
            _parse_time(q["end_date"], "end_date")
            if q.get("end_date")
            else gov.now() + timedelta(seconds=1)
        )
        start = (
            _parse_time(q["start_date"], "start_date")
            if q.get("start_date")
            else end - timedelta(days=1)
        )
        rows = []
        for e in gov.events(
            updated_after=start - timedelta(microseconds=1), limit=None, newest_first=False
        ):
            for t in gov.history(e.id):
                if t.action in ("receive", "note", "feedback", "overdue") or not (
                    start <= t.at < end
                ):
                    continue
                status = "DUPLICATE" if t.action == "merge" else FMS_STATUS.get(t.to_status, "OPEN")
                rows.append(
                    {
                        "update_id": f"{e.id}-{t.seq}",
                        "service_request_id": e.id,
                        "status": status,
                        "updated_datetime": _iso(t.at),
                        "description": t.note or None,
                        "media_url": None,
                    }
                )
        rows.sort(key=lambda r: (r["updated_datetime"], r["update_id"]))
        return _render(fmt, "service_request_updates", "request_update", rows)

    return await _answer(fmt, run)


@router.post("/servicerequestupdates.{fmt}", summary="FixMyStreet: POST a service request update")
async def post_update(request: Request, fmt: str) -> Response:
    try:
        _fmt(fmt)
        params = await _form(request)
    except Open311Error as exc:
        return _error(fmt, exc.code, exc.description)

    def run() -> Response:
        gov = governance(request)
        _jurisdiction(gov, params)
        who = _principal(request, gov, params, required=True)
        assert who is not None
        rid = params.get("service_request_id")
        if not rid:
            raise Open311Error(400, "service_request_id: required")
        status = str(params.get("status") or "").upper()
        if status not in ("OPEN", "CLOSED", "FIXED"):
            raise Open311Error(400, f"status: {params.get('status')!r} is not OPEN or CLOSED")
        desc = str(params.get("description") or "")
        try:
            e = gov.event(str(rid))
        except IntakeError as exc:
            raise Open311Error(404, f"service_request_id {rid!r} is not a request here") from exc
        name = f"open311:{who.username}"
        if status == "OPEN" and e.status in _CLOSED:
            e = gov.transition(e.id, "reopen", name, e.version, desc or "reopened by the reporter")
        else:
            e = gov.transition(e.id, "note", name, e.version, desc or f"reporter says {status}")
        seq = len(gov.history(e.id))
        return _render(
            fmt, "service_request_updates", "request_update", [{"update_id": f"{e.id}-{seq}"}]
        )

    return await _answer(fmt, run)

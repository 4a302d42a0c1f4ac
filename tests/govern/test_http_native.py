"""The native REST routes through access: roles, visibility, bad input as 4xx naming the
field with nothing changed, warnings, figures, the SSE stream (over real HTTP) and
webhooks to a real local HTTP server."""

from __future__ import annotations

import http.server
import json
import threading
from typing import Any, ClassVar

import httpx
import pytest
from sqlalchemy import func, select

from cityos.access import read_audit
from cityos.govern import load_organisation
from cityos.govern._tables import EventRow, TransitionRow, WebhookDeliveryRow

from .conftest import Served


def state(s: Served) -> tuple[int, int]:
    with s.city.db.session() as ss:
        return (
            int(ss.scalar(select(func.count()).select_from(EventRow)) or 0),
            int(ss.scalar(select(func.count()).select_from(TransitionRow)) or 0),
        )


def intake(s: Served, user: str = "ann", **body: Any) -> Any:
    payload = {"service_code": "garbage", "lat": 0.3, "long": 0.3, "description": "bins", **body}
    return s.client.post("/govern/events", json=payload, headers=s.auth(user))


def test_intake_roles_and_workflow_over_http(served: Served) -> None:
    c = served.client
    r = c.post(
        "/govern/events",
        json={"service_code": "garbage", "lat": 0.3, "long": 0.3},
        headers={**served.auth("ann"), "Idempotency-Key": "ann-1"},
    )
    assert r.status_code == 201, r.text
    eid = r.json()["id"]
    again = c.post(
        "/govern/events",
        json={"service_code": "garbage", "lat": 0.3, "long": 0.3},
        headers={**served.auth("ann"), "Idempotency-Key": "ann-1"},
    )
    assert again.status_code == 200 and again.json()["id"] == eid and not again.json()["created"]
    assert (
        c.post(
            "/govern/events", json={"service_code": "garbage", "lat": 0.3, "long": 0.3}
        ).status_code
        == 401
    )
    assert intake(served, "nobody").status_code == 403
    other = intake(served, "bob").json()["id"]
    mine = {e["id"] for e in c.get("/govern/events", headers=served.auth("ann")).json()}
    assert eid in mine and other not in mine
    assert c.get(f"/govern/events/{other}", headers=served.auth("ann")).status_code == 403
    d = c.get(f"/govern/events/{eid}", headers=served.auth("ann")).json()
    assert [h["action"] for h in d["history"]] == ["receive"] and d["reports"][0][
        "reporter"
    ] == "ann"
    assert c.get("/govern/queue", headers=served.auth("ann")).status_code == 403
    assert eid in {e["id"] for e in c.get("/govern/queue", headers=served.auth("disp")).json()}
    # citizens cannot dispatch; dispatchers can
    r = c.post(
        f"/govern/events/{eid}/dispatch",
        json={"department": "d1-sanitation", "version": 1},
        headers=served.auth("ann"),
    )
    assert r.status_code == 403
    r = c.post(
        f"/govern/events/{eid}/dispatch",
        json={"department": "d1-sanitation", "version": 1, "note": "go"},
        headers=served.auth("disp"),
    )
    assert r.status_code == 200 and r.json()["status"] == "dispatched" and r.json()["version"] == 2
    # department staff: only their department's events
    assert c.get(f"/govern/events/{eid}", headers=served.auth("road1")).status_code == 403
    r = c.post(
        f"/govern/events/{eid}/transition",
        json={"action": "accept", "version": 2},
        headers=served.auth("road1"),
    )
    assert r.status_code == 403 and "d1-sanitation" in r.json()["detail"]
    r = c.post(
        f"/govern/events/{eid}/transition",
        json={"action": "accept", "version": 2},
        headers=served.auth("san1"),
    )
    assert r.status_code == 200
    assert eid in {e["id"] for e in c.get("/govern/events", headers=served.auth("san1")).json()}
    assert eid in {
        e["id"]
        for e in c.get("/govern/queue?department=d1-sanitation", headers=served.auth("san1")).json()
    }
    assert (
        c.get("/govern/queue?department=d2-roads", headers=served.auth("san1")).status_code == 403
    )
    r = c.post(
        f"/govern/events/{eid}/transition",
        json={"action": "resolve", "version": 3, "note": "done"},
        headers=served.auth("san1"),
    )
    assert r.json()["status"] == "resolved"
    r = c.post(
        f"/govern/events/{eid}/feedback", json={"satisfaction": 5}, headers=served.auth("ann")
    )
    assert r.status_code == 200 and r.json()["satisfaction"] == 5
    assert any(a.action == "govern.read" and a.actor == "ann" for a in read_audit(served.city.db))


def test_bad_input_is_4xx_naming_what_and_nothing_changes(served: Served) -> None:
    c = served.client
    eid = intake(served).json()["id"]
    before = state(served)
    cases = [
        (intake(served, service_code="unicorn"), 422, "service_code"),
        (intake(served, lat=45.0, long=45.0), 422, "lat"),
        (intake(served, priority=0), 422, "priority"),
        (
            intake(served, service_code="pothole", attributes={"severity": "9"}),
            422,
            "attribute[severity]",
        ),
        (c.post("/govern/events", json={"lat": 0.3}, headers=served.auth("ann")), 422, None),
        (
            c.post(
                "/govern/events",
                content=b"{not json",
                headers={**served.auth("ann"), "content-type": "application/json"},
            ),
            400,
            None,
        ),
        (
            c.post(
                f"/govern/events/{eid}/dispatch",
                json={"department": "nosuch", "version": 1},
                headers=served.auth("disp"),
            ),
            422,
            "department",
        ),
        (
            c.post(
                f"/govern/events/{eid}/dispatch",
                json={"department": "d1-sanitation", "version": 7},
                headers=served.auth("disp"),
            ),
            409,
            None,
        ),
        (
            c.post(
                f"/govern/events/{eid}/transition",
                json={"action": "close", "version": 1},
                headers=served.auth("disp"),
            ),
            409,
            None,
        ),
        (
            c.post(
                f"/govern/events/{eid}/transition",
                json={"action": "teleport", "version": 1},
                headers=served.auth("disp"),
            ),
            422,
            "action",
        ),
        (
            c.post(
                "/govern/events/E-999999/transition",
                json={"action": "accept", "version": 1},
                headers=served.auth("disp"),
            ),
            404,
            None,
        ),
        (c.get("/govern/events?bbox=1,2,3", headers=served.auth("disp")), 422, "bbox"),
        (c.get("/govern/evaluation?level=galaxy", headers=served.auth("disp")), 422, "level"),
    ]
    for r, code, field in cases:
        assert r.status_code == code, r.text
        if field:
            assert r.json()["field"] == field and field.split("[")[0] in r.json()["detail"]
    stale = c.post(
        f"/govern/events/{eid}/dispatch",
        json={"department": "d1-sanitation", "version": 7},
        headers=served.auth("disp"),
    ).json()["detail"]
    assert "version 1, not 7" in stale
    illegal = c.post(
        f"/govern/events/{eid}/transition",
        json={"action": "close", "version": 1},
        headers=served.auth("disp"),
    ).json()["detail"]
    assert "'received'" in illegal and "close" in illegal
    assert state(served) == before


def test_warnings_and_figures(served: Served) -> None:
    c, g = served.client, served.city.gov
    w, _ = g.raise_warning(
        "pm25",
        kind="threshold",
        severity="critical",
        x=0.2,
        y=0.8,
        service_code="garbage",
        evidence={"pm25": 180},
    )
    ws = c.get("/govern/warnings?status=open&severity=critical", headers=served.auth("disp")).json()
    assert w.id in {x["id"] for x in ws}
    assert c.get("/govern/warnings", headers=served.auth("ann")).status_code == 403
    r = c.post(
        f"/govern/warnings/{w.id}/acknowledge",
        json={"note": "looking"},
        headers=served.auth("disp"),
    )
    assert r.json()["status"] == "acknowledged"
    r = c.post(f"/govern/warnings/{w.id}/open-event", json={}, headers=served.auth("disp"))
    assert r.json()["status"] == "event_opened" and r.json()["event_id"].startswith("E-")
    r = c.post(
        f"/govern/warnings/{w.id}/outcome", json={"confirmed": True}, headers=served.auth("disp")
    )
    assert r.json()["status"] == "confirmed"
    again = c.post(
        f"/govern/warnings/{w.id}/outcome", json={"confirmed": False}, headers=served.auth("disp")
    )
    assert again.status_code == 409
    k = c.get("/govern/kpi", headers=served.auth("disp")).json()
    assert set(k) >= {"events_today", "open_events", "overdue", "open_warnings", "on_time_rate"}
    assert k["open_events"] == len(
        g.events(
            status=["received", "dispatched", "accepted", "in_progress", "returned", "reopened"],
            include_merged=False,
            limit=None,
        )
    )
    ev = c.get(
        "/govern/evaluation?level=department&min_sample=1", headers=served.auth("boss")
    ).json()
    assert ev[-1]["department"] == "(all)" and ev[-1]["events"] >= 1
    hs = c.get(
        "/govern/analysis/hotspots?cell_m=5000&time_bin=", headers=served.auth("disp")
    ).json()
    assert sum(h["n"] for h in hs) == served.city.store.describe("events").rows or len(hs) == 50
    bd = c.get("/govern/analysis/breakdown?by=service_code", headers=served.auth("disp")).json()
    assert {r["service_code"] for r in bd} >= {"garbage"}
    tr = c.get("/govern/analysis/trends?time_bin=1h", headers=served.auth("disp")).json()
    assert sum(r["n"] for r in tr) == len(g.events(include_merged=False, limit=None))
    assert c.get("/govern/kpi", headers=served.auth("ann")).status_code == 403


def test_sse_stream_over_http(served: Served) -> None:
    got: list[tuple[str, dict[str, Any]]] = []
    ready = threading.Event()

    def listen(url: str, headers: dict[str, str]) -> None:
        with httpx.stream("GET", url, headers=headers, timeout=20) as r:
            assert r.status_code == 200 and r.headers["content-type"].startswith(
                "text/event-stream"
            )
            kind = None
            for line in r.iter_lines():
                if line.startswith(":"):
                    ready.set()
                elif line.startswith("event: "):
                    kind = line[7:]
                elif line.startswith("data: "):
                    got.append((str(kind), json.loads(line[6:])))

    url = f"{served.base_url}/govern/stream?max_events=2&access_token={served.tokens['disp']}"
    t = threading.Thread(target=listen, args=(url, {}))
    t.start()
    assert ready.wait(10)
    e = intake(served).json()["event"]
    served.client.post(
        f"/govern/events/{e['id']}/dispatch",
        json={"department": "d1-sanitation", "version": 1},
        headers=served.auth("disp"),
    )
    t.join(20)
    assert [k for k, _ in got] == ["event.created", "event.updated"]
    assert got[0][1]["id"] == e["id"] and got[1][1]["status"] == "dispatched"
    # staff see only their department's events; citizens may not follow the stream
    no = httpx.get(
        f"{served.base_url}/govern/stream?access_token={served.tokens['ann']}", timeout=10
    )
    assert no.status_code == 403
    assert httpx.get(f"{served.base_url}/govern/stream", timeout=10).status_code == 401


class _Hook(http.server.BaseHTTPRequestHandler):
    received: ClassVar[list[dict[str, Any]]] = []

    def do_POST(self) -> None:
        n = int(self.headers["Content-Length"])
        _Hook.received.append(json.loads(self.rfile.read(n)))
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


def test_webhook_to_department(served: Served) -> None:
    _Hook.received.clear()
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Hook)
    th = threading.Thread(target=srv.serve_forever, daemon=True)
    th.start()
    try:
        url = f"http://127.0.0.1:{srv.server_address[1]}/hook"
        load_organisation(
            served.city.db,
            {
                "departments": [
                    {"code": "city-water", "unit": "city", "function": "water", "webhook_url": url}
                ]
            },
        )
        g = served.city.gov
        g.reload()
        e = g.intake("leak", x=0.9, y=0.9).event
        g.dispatch(e.id, "city-water", "disp", e.version, "burst main")
        assert g.webhooks is not None
        g.webhooks.wait()
        mine = [r for r in _Hook.received if r["event"]["id"] == e.id]
        assert len(mine) == 1 and mine[0]["department"] == "city-water"
        assert mine[0]["event"]["status"] == "dispatched" and mine[0]["kind"] == "event.updated"
        with served.city.db.session() as s:
            rows = list(
                s.scalars(
                    select(WebhookDeliveryRow).where(WebhookDeliveryRow.department == "city-water")
                )
            )
        assert rows[-1].status_code == 204 and rows[-1].error is None
    finally:
        srv.shutdown()


@pytest.mark.parametrize(
    "path", ["/govern/events", "/govern/kpi", "/govern/warnings", "/govern/queue"]
)
def test_routes_need_authentication(served: Served, path: str) -> None:
    assert served.client.get(path).status_code == 401

"""Notifications to grid workers: assignment in the workflow, signed and retried webhooks
to a real local HTTP receiver (recorded and audited), the live stream scoped to the
worker's grid over real HTTP, the REST routes' rights and the CLI."""

from __future__ import annotations

import http.server
import json
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar

import httpx
import pytest
from typer.testing import CliRunner

from cityos import access
from cityos.access import read_audit
from cityos.access.errors import PermissionDenied
from cityos.govern import IntakeError, load_organisation
from cityos.govern._notify import deliveries, verify_signature
from cityos.govern.errors import EventNotFound, IllegalTransition

from .conftest import SECRET, GovCity, Served, make_city


class Receiver:
    """A real HTTP server recording every POST (path, headers, body) and answering the
    status codes queued for its path (204 once the queue is empty)."""

    def __init__(self) -> None:
        rec = self

        class H(http.server.BaseHTTPRequestHandler):
            codes: ClassVar[dict[str, list[int]]] = {}

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                with rec.lock:
                    rec.got.append(
                        (self.path, {k.lower(): v for k, v in self.headers.items()}, body)
                    )
                    queue = rec.codes.get(self.path) or []
                    code = queue.pop(0) if queue else 204
                self.send_response(code)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.lock = threading.Lock()
        self.got: list[tuple[str, dict[str, str], bytes]] = []
        self.codes: dict[str, list[int]] = {}
        self.srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), H)
        threading.Thread(target=self.srv.serve_forever, daemon=True).start()
        self.base = f"http://127.0.0.1:{self.srv.server_address[1]}"

    def to(self, path: str) -> list[dict[str, Any]]:
        with self.lock:
            return [json.loads(b) for p, _, b in self.got if p == path]

    def stop(self) -> None:
        self.srv.shutdown()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.stop()


def _grid_org() -> dict[str, Any]:
    """A second grid worker (next grid over) and a community-level office at grid 1."""
    return {
        "departments": [{"code": "g1-office", "unit": "d1-s1-g1", "function": "grid_office"}],
        "staff": [
            {"username": "grid2", "role": "grid_worker", "unit": "d1-s1-g2"},
            {"username": "g1clerk", "role": "department_staff", "department": "g1-office"},
        ],
    }


@pytest.fixture
def city(tmp_path: Path, db_url: str) -> Iterator[GovCity]:
    c = make_city(tmp_path / "city", db_url)
    load_organisation(c.db, _grid_org())
    c.gov.reload()
    assert c.gov.webhooks is not None
    c.gov.webhooks.allow_private = True  # the receiver is on loopback
    c.gov.webhooks.backoff_s = 0.05
    yield c
    c.gov.close()
    c.store.close()


def _dispatched(c: GovCity, x: float = 0.2, y: float = 0.2) -> Any:
    e = c.gov.intake("pothole", x=x, y=y, attributes={"severity": "2"}).event
    return c.gov.dispatch(e.id, "d1-roads", "disp", e.version)


def test_assignment_reaches_only_that_workers_signed_webhook(
    city: GovCity, receiver: Receiver
) -> None:
    g = city.gov
    s1 = g.add_subscription("grid1", receiver.base + "/grid1", "boss")
    s2 = g.add_subscription("grid2", receiver.base + "/grid2", "boss")
    assert s1.secret and s1.secret != s2.secret
    assert [s.to_dict().get("secret") for s in g.subscriptions("grid1")] == [None]
    e = _dispatched(city)  # in d1-s1-g1, grid1's grid
    assert e.unit == "d1-s1-g1" and e.assignee is None
    a = g.assign(e.id, "grid1", "disp", e.version, "please check on site")
    assert a.assignee == "grid1" and a.status == "dispatched" and a.version == e.version + 1
    assert [t.action for t in g.history(e.id)][-1] == "assign"
    assert g.webhooks is not None
    g.webhooks.wait()
    got = receiver.to("/grid1")
    assert [(m["kind"], m["event"]["id"], m["username"]) for m in got] == [
        ("event.assigned", e.id, "grid1")
    ]
    assert receiver.to("/grid2") == []  # never another grid's event
    _, headers, body = next(x for x in receiver.got if x[0] == "/grid1")
    assert verify_signature(
        s1.secret, body, headers["x-cityos-timestamp"], headers["x-cityos-signature"]
    )
    assert not verify_signature(
        s2.secret or "", body, headers["x-cityos-timestamp"], headers["x-cityos-signature"]
    )
    (row,) = deliveries(g, username="grid1")
    assert row.status_code == 204 and row.attempts == 1 and row.subscription_id == s1.id
    assert row.delivery_id == headers["x-cityos-delivery"]
    audit = [a for a in read_audit(city.db) if a.action == "govern.webhook.deliver"]
    assert audit[-1].detail["to"] == "user:grid1" and audit[-1].detail["ok"] is True
    # later changes of an event assigned to them reach them too; a reassignment takes the
    # event (and the assignment) away
    a = g.transition(e.id, "accept", "road1", a.version)
    g.webhooks.wait()
    assert [m["event"]["status"] for m in receiver.to("/grid1")][-1] == "accepted"
    r = g.transition(e.id, "reassign", "disp", a.version, department="city-roads")
    assert r.assignee is None


def test_assignment_rights_and_bad_input_change_nothing(city: GovCity) -> None:
    g = city.gov
    e = _dispatched(city)
    with pytest.raises(IntakeError) as exc:
        g.assign(e.id, "grid2", "disp", e.version)  # grid2 works the next grid
    assert exc.value.field == "assignee" and "d1-s1-g2" in str(exc.value)
    with pytest.raises(IntakeError, match="not a grid worker"):
        g.assign(e.id, "road1", "disp", e.version)
    with pytest.raises(PermissionDenied):
        g.assign(e.id, "grid1", city.principal("grid1"), e.version)  # workers do not assign
    with pytest.raises(PermissionDenied):
        g.assign(e.id, "grid1", city.principal("road2"), e.version)  # not their department
    assert g.event(e.id).version == e.version and g.event(e.id).assignee is None
    a = g.assign(e.id, "grid1", city.principal("road1"), e.version)  # the holding department
    assert a.assignee == "grid1"
    fresh = g.intake("pothole", x=0.2, y=0.2, attributes={"severity": "1"}, dedup=False).event
    with pytest.raises(IllegalTransition, match="only an event with a department"):
        g.assign(fresh.id, "grid1", "disp", fresh.version)
    # the worker may now act on it; the other grid's worker may not
    g.transition(e.id, "accept", city.principal("grid1"), a.version)
    with pytest.raises(PermissionDenied):
        g.transition(e.id, "note", city.principal("grid2"), a.version + 1, "mine?")
    with pytest.raises(PermissionDenied):
        g.add_subscription("grid1", "http://127.0.0.1:9/x", city.principal("grid2"))
    with pytest.raises(IntakeError, match="not a grid worker"):
        g.add_subscription("road1", "http://127.0.0.1:9/x", "boss")
    g.webhooks.allow_private = False  # type: ignore[union-attr]
    with pytest.raises(IntakeError) as bad:
        g.add_subscription("grid1", "http://127.0.0.1:9/x", "boss")
    assert bad.value.field == "url"
    assert g.subscriptions("grid1") == []
    # an id no database can hold is simply not there (it overflowed SQLite's INTEGER: a 500)
    for sub_id in (2**63, -1, 0):
        with pytest.raises(EventNotFound, match="no webhook subscription"):
            g.remove_subscription(sub_id, "boss")


def test_dispatch_to_a_grid_office_notifies_its_workers_and_retries(
    city: GovCity, receiver: Receiver
) -> None:
    g = city.gov
    receiver.codes["/grid1"] = [503, 502]  # down twice, then up
    g.add_subscription("grid1", receiver.base + "/grid1", "boss")
    g.add_subscription("grid2", receiver.base + "/grid2", "boss")
    e = g.intake("pothole", x=0.2, y=0.2, attributes={"severity": "2"}).event
    d = g.dispatch(e.id, "g1-office", "disp", e.version)
    assert d.level == "community"
    assert g.webhooks is not None
    g.webhooks.wait()
    got = receiver.to("/grid1")
    assert len(got) == 3 and {m["event"]["id"] for m in got} == {e.id}  # two retries
    assert receiver.to("/grid2") == []
    (row,) = deliveries(g, username="grid1")
    assert row.attempts == 3 and row.status_code == 204 and row.error is None
    # a refusal (4xx) is not retried and is recorded as failed
    receiver.codes["/grid1"] = [410]
    g.transition(d.id, "note", "disp", d.version, "still there?")
    g.webhooks.wait()
    last = deliveries(g, username="grid1")[-1]
    assert last.attempts == 1 and last.status_code == 410 and last.error
    # a department's webhook is signed too, with its own secret
    load_organisation(
        city.db,
        {
            "departments": [
                {
                    "code": "city-water",
                    "unit": "city",
                    "function": "water",
                    "webhook_url": receiver.base + "/water",
                    "webhook_secret": "water-key",
                }
            ]
        },
    )
    g.reload()
    w = g.intake("leak", x=0.9, y=0.9).event
    g.dispatch(w.id, "city-water", "disp", w.version)
    g.webhooks.wait()
    _, headers, body = next(x for x in receiver.got if x[0] == "/water")
    assert verify_signature(
        "water-key", body, headers["x-cityos-timestamp"], headers["x-cityos-signature"]
    )
    assert deliveries(g, department="city-water")[-1].status_code == 204


# -- over HTTP ---------------------------------------------------------------------------
def _listen(url: str, got: list[tuple[str, dict[str, Any]]], ready: threading.Event) -> None:
    with httpx.stream("GET", url, timeout=30) as r:
        assert r.status_code == 200
        kind = None
        for line in r.iter_lines():
            if line.startswith(":"):
                ready.set()
            elif line.startswith("event: "):
                kind = line[7:]
            elif line.startswith("data: "):
                got.append((str(kind), json.loads(line[6:])))


def test_grid_worker_stream_and_routes_over_http(served: Served, receiver: Receiver) -> None:
    c, g = served.client, served.city.gov
    load_organisation(served.city.db, _grid_org())
    g.reload()
    assert g.webhooks is not None
    g.webhooks.allow_private = True
    tok2 = access.issue_token(access.principal_for(served.city.db, "grid2"), SECRET)
    h1, h2 = served.auth("grid1"), {"Authorization": f"Bearer {tok2}"}
    # subscriptions: yours only (supervisors: anyone's); the secret is shown once
    r = c.post("/govern/subscriptions", json={"url": receiver.base + "/w1"}, headers=h1)
    assert r.status_code == 201, r.text
    secret = r.json()["secret"]
    assert r.json()["username"] == "grid1"
    r = c.post(
        "/govern/subscriptions",
        json={"url": receiver.base + "/w2", "username": "grid1"},
        headers=h2,
    )
    assert r.status_code == 403
    assert c.get("/govern/subscriptions?username=grid1", headers=h2).status_code == 403
    assert c.get("/govern/subscriptions", headers=served.auth("ann")).status_code == 403
    r = c.post("/govern/subscriptions", json={"url": "gopher://x"}, headers=h2)
    assert r.status_code == 422 and r.json()["field"] == "url"
    assert (
        c.post("/govern/subscriptions", json={"url": receiver.base + "/w2"}, headers=h2).status_code
        == 201
    )
    mine = c.get("/govern/subscriptions", headers=h1).json()
    assert [s["url"] for s in mine] == [receiver.base + "/w1"] and "secret" not in mine[0]
    # the stream: grid1 receives its grid's events and its assignments, never grid2's
    got: list[tuple[str, dict[str, Any]]] = []
    ready = threading.Event()
    url = f"{served.base_url}/govern/stream?max_events=3&access_token={served.tokens['grid1']}"
    t = threading.Thread(target=_listen, args=(url, got, ready))
    t.start()
    assert ready.wait(10)
    other = c.post(
        "/govern/events",
        json={"service_code": "garbage", "lat": 0.2, "long": 0.7},  # d1-s1-g2
        headers=served.auth("ann"),
    ).json()["event"]
    assert other["unit"] == "d1-s1-g2"
    e = c.post(
        "/govern/events",
        json={"service_code": "garbage", "lat": 0.2, "long": 0.2},  # d1-s1-g1
        headers=served.auth("ann"),
    ).json()["event"]
    d = c.post(
        f"/govern/events/{e['id']}/dispatch",
        json={"department": "d1-sanitation", "version": e["version"]},
        headers=served.auth("disp"),
    ).json()
    bad = c.post(
        f"/govern/events/{e['id']}/assign",
        json={"assignee": "grid1", "version": d["version"]},
        headers=served.auth("road1"),
    )
    assert bad.status_code == 403
    bad = c.post(
        f"/govern/events/{e['id']}/assign",
        json={"assignee": "grid2", "version": d["version"]},
        headers=served.auth("san1"),
    )
    assert bad.status_code == 422 and bad.json()["field"] == "assignee"
    r = c.post(
        f"/govern/events/{e['id']}/assign",
        json={"assignee": "grid1", "version": d["version"], "note": "go look"},
        headers=served.auth("san1"),
    )
    assert r.status_code == 200 and r.json()["assignee"] == "grid1", r.text
    t.join(30)
    assert [(k, o["id"]) for k, o in got] == [
        ("event.created", e["id"]),
        ("event.updated", e["id"]),
        ("event.assigned", e["id"]),
    ]
    g.webhooks.wait()
    (_, headers, body) = next(x for x in receiver.got if x[0] == "/w1")
    assert json.loads(body)["event"]["id"] == e["id"]
    assert verify_signature(
        secret, body, headers["x-cityos-timestamp"], headers["x-cityos-signature"]
    )
    assert receiver.to("/w2") == []
    # grid2 may not read grid1's event
    assert c.get(f"/govern/events/{e['id']}", headers=h2).status_code == 403
    sub = mine[0]["id"]
    assert c.delete(f"/govern/subscriptions/{sub}", headers=h2).status_code == 403
    assert c.delete(f"/govern/subscriptions/{sub}", headers=h1).status_code == 200
    assert c.get("/govern/subscriptions", headers=h1).json() == []


def test_cli_subscribe_and_assign(tmp_path: Path, receiver: Receiver) -> None:
    from cityos.cli import app

    c = make_city(tmp_path / "city", f"sqlite:///{tmp_path / 'city' / 'cityos.db'}")
    load_organisation(c.db, _grid_org())
    c.gov.reload()
    e = _dispatched(c)
    c.store.close()
    runner = CliRunner()
    home = str(tmp_path / "city")

    def run(*args: str) -> str:
        res = runner.invoke(app, ["govern", *args, "--home", home], catch_exceptions=False)
        assert res.exit_code == 0, res.output
        return res.output

    out = run("webhooks", "add", "grid1", receiver.base + "/cli", "--allow-private")
    assert "secret:" in out
    assert "grid1" in run("webhooks", "list")
    out = json.loads(run("assign", e.id, "grid1", "--version", str(e.version), "--json"))
    assert out["assignee"] == "grid1"
    assert [m["kind"] for m in receiver.to("/cli")] == ["event.assigned"]

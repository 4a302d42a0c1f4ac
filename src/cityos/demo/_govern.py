"""Chapter 5 of the city story, *govern*: the demo city gets an organisation over its 12
districts; a day of citizen reports (generated, in Chinese and English, with known
duplicates and responsible departments) comes in through Open311 (real HTTP, in process),
the native API and the hotline, New York's real 311 history through the bulk import;
duplicates merge, confident events dispatch themselves, dispatchers take the rest;
departments work against their deadlines while the timer marks overdue work and
escalates it; a citizen's address-only Open311 report is placed by the city's own
geocoder and handed to the grid worker of its grid, who receives it on a signed webhook
and on the live stream; the chapter ends with the evaluation (行政问效)."""

from __future__ import annotations

import time
import warnings
from typing import Any

import numpy as np
import pandas as pd

from cityos.demo._story import Chapter, DemoContext, Section

__all__ = ["Govern", "run_govern"]

_CHANNEL = {
    "12345": "hotline",
    "app": "app",
    "wechat": "app",
    "web": "open311",
    "grid_worker": "grid",
}


def _pct(v: float | None) -> str:
    return "-" if v is None else f"{v:.0%}"


def _hours(v: float | None) -> str:
    return "-" if v is None else f"{v:.1f}"


def run_govern(
    ctx: DemoContext, *, incidents: int = 150, seed: int = 12, intel: bool = True
) -> dict[str, Any]:
    """The chapter's work; returns its figures (also in ``ctx.report.figures``).
    ``intel=False`` runs the plain workflow (no duplicate detector, no dispatcher)."""
    from cityos import access
    from cityos.govern import Governance, OutsideJurisdiction, generate_organisation
    from cityos.synth._reports import make_reports
    from cityos.testing.clock import FakeClock

    store, city = ctx.require_store(), ctx.city
    if city is None:
        raise RuntimeError("the Sense chapter must build the city first")
    report = ctx.report
    t0 = time.perf_counter()
    ctx.log("generating the organisation: city → 12 districts → streets → community grids ...")
    org = generate_organisation(store.db, store)
    reports = make_reports(city, incidents, start="2026-03-02", days=1, seed=seed)
    start = pd.Timestamp(reports["t"].min()).floor("h")
    clock = FakeClock(start.to_pydatetime())
    dedup, dispatcher, intel = _intel(city, ctx) if intel else (None, None, False)
    gov = Governance(
        store.db,
        store,
        clock=clock,
        deduplicator=dedup,
        dispatcher=dispatcher,
        auto_dispatch_threshold=getattr(dispatcher, "threshold", 0.9) if dispatcher else 0.9,
    )
    if dispatcher is not None:  # govern-intel: learnt roles → this organisation's departments
        dispatcher.organisation = gov.jurisdictions
    ctx.state["governance"] = gov
    client, key = _open311_client(ctx, store, gov, access)
    rng = np.random.default_rng(seed)
    slow = {d for d in sorted(j_codes(gov)) if rng.random() < 0.25}
    truth_dept: dict[str, str | None] = {}
    incident_of: dict[str, int] = {}
    merged_right = merged = should_merge = 0
    first_of_incident: dict[int, str] = {}
    via: dict[str, int] = {}
    auto = auto_right = outside = 0
    ctx.log(
        f"a day of {len(reports):,} citizen reports ({incidents} incidents) through Open311, the app, "
        "the hotline and grid workers ..."
    )
    j = gov.jurisdictions
    seq = 0
    step = pd.Timedelta("30min")
    now = start
    warned = _raise_warnings(ctx, gov)
    rows: list[dict[str, Any]] = [
        {str(k): v for k, v in r.items()} for r in reports.to_dict("records")
    ]
    i = 0
    end = pd.Timestamp(reports["t"].max()) + pd.Timedelta("12h")
    with gov.batch("demo"):
        while now <= end:
            now = now + step
            # 1. intake of the reports received in this step
            while i < len(rows) and pd.Timestamp(rows[i]["t"]) <= now:
                r = rows[i]
                i += 1
                clock.set(pd.Timestamp(r["t"]).to_pydatetime())
                channel = _CHANNEL.get(str(r["channel"]), "native")
                via[channel] = via.get(channel, 0) + 1
                try:
                    eid, parent = _take_in(gov, client, key, r, channel)
                except OutsideJurisdiction:
                    outside += 1
                    continue
                incident = int(r["incident_id"])
                if incident in first_of_incident:
                    should_merge += 1
                if parent is not None:
                    merged += 1
                    merged_right += incident_of.get(parent) == incident
                    continue
                first_of_incident.setdefault(incident, eid)
                incident_of[eid] = incident
                truth_dept[eid] = j.resolve(str(r["department"]))
                e = gov.event(eid)
                if e.status == "dispatched":
                    auto += 1
                    auto_right += e.department == truth_dept[eid]
            clock.set(now.to_pydatetime())
            # 2. dispatchers take the queue (every step: half an hour)
            for e in gov.queue():
                choice = truth_dept.get(e.id) if rng.random() < 0.9 else None
                choice = choice or _suggested(gov, e.id) or "command"
                try:
                    gov.dispatch(e.id, choice, "dispatcher1", e.version, "from the queue")
                except Exception:
                    continue
            # 3. departments work at their own pace
            for e in gov.events(
                status=["dispatched", "accepted", "in_progress", "resolved", "verified"],
                limit=None,
                include_merged=False,
            ):
                busy = e.department in slow  # an overloaded office: its work goes overdue
                if e.status == "dispatched" and rng.random() < (0.08 if busy else 0.6):
                    action = "return" if rng.random() < 0.03 else "accept"
                elif e.status == "accepted" and rng.random() < 0.5:
                    action = "start"
                elif e.status == "in_progress" and rng.random() < 0.12:
                    action = "resolve"
                elif e.status == "resolved" and rng.random() < 0.5:
                    action = "verify"
                elif e.status == "verified" and rng.random() < 0.6:
                    action = "close"
                else:
                    continue
                actor = "dispatcher1" if action in ("verify", "close") else f"{e.department}-staff1"
                outcome = None
                if action == "resolve" and e.warning_id is not None:
                    outcome = "confirmed" if rng.random() < 0.8 else "false_alarm"
                try:
                    gov.transition(
                        e.id,
                        action,
                        actor,
                        e.version,
                        "not ours" if action == "return" else "",
                        outcome=outcome,
                    )
                except Exception:
                    continue
                if action == "close":
                    if rng.random() < 0.4:
                        gov.feedback(e.id, int(rng.integers(2, 6)), "citizen")
                    if rng.random() < 0.04:
                        gov.transition(
                            e.id, "reopen", "citizen", gov.event(e.id).version, "it is back"
                        )
            # 4. the timer
            gov.sweep()
            seq += 1
        nyc = _nyc(ctx, gov)
    grid_figures: dict[str, float] = {}
    grid_rows: list[tuple[str, ...]] = []
    grid_rows += _grid_worker(ctx, gov, client, key, grid_figures) if client is not None else []
    dt = time.perf_counter() - t0
    evs = gov.events(limit=None, include_merged=False)
    day = [e for e in evs if e.channel != "bulk"]
    escalated = sum(1 for e in day if e.escalations > 0)
    overdue_open = sum(1 for e in day if e.overdue and e.is_open)
    k = gov.kpi()
    figures = {
        "govern.reports": float(len(rows)),
        "govern.events": float(len(day)),
        "govern.dedup_merged": float(merged),
        "govern.dedup_precision": merged_right / merged if merged else float("nan"),
        "govern.dedup_recall": merged_right / should_merge if should_merge else float("nan"),
        "govern.auto_dispatched_share": auto / max(len(day), 1),
        "govern.auto_dispatch_precision": auto_right / auto if auto else float("nan"),
        "govern.escalated": float(escalated),
        "govern.on_time_rate": float(k["on_time_rate"] or 0.0),
        "govern.nyc_imported": float(nyc),
        "govern.outside": float(outside),
        "govern.seconds": dt,
    }
    figures.update(grid_figures)
    figures["govern.warnings_raised"] = float(warned[0])
    figures["govern.warning_events"] = float(warned[1])
    report.figures.update(figures)
    prec = gov.rule_precision()
    if prec:
        rp = Section(
            "Warnings → events → outcomes: each rule's measured precision",
            ("rule", "raised", "confirmed", "false alarm", "pending", "precision"),
        )
        for rule, p in sorted(prec.items()):
            rp.rows.append(
                (
                    rule,
                    str(p["raised"]),
                    str(p["confirmed"]),
                    str(p["false_alarm"]),
                    str(p["pending"]),
                    _pct(p["precision"]),
                )
            )
        report.sections.append(rp)
    sec = Section("Governance: one day of the demo city", ("figure", "value"))
    sec.rows += [
        (
            "organisation",
            f"{org.levels.get('district', 0)} districts, {org.levels.get('street', 0)} streets, "
            f"{org.levels.get('community', 0)} grids, {org.departments} departments, {org.staff} staff",
        ),
        (
            "reports taken in",
            f"{len(rows):,} ({', '.join(f'{k2} {v}' for k2, v in sorted(via.items()))})",
        ),
        ("refused: outside every jurisdiction", f"{outside}"),
        ("events after merging duplicates", f"{len(day):,}"),
        (
            "duplicates merged (precision / recall vs. ground truth)",
            f"{merged} ({_pct(figures['govern.dedup_precision'] if merged else None)} / "
            f"{_pct(figures['govern.dedup_recall'] if should_merge else None)})"
            + ("" if intel else " — no detector"),
        ),
        (
            "dispatched automatically (right department)",
            f"{_pct(figures['govern.auto_dispatched_share'])} ({_pct(figures['govern.auto_dispatch_precision'] if auto else None)})",
        ),
        ("escalated by the timer", f"{escalated}"),
        ("open and overdue at the end", f"{overdue_open}"),
        ("warnings from the Warn chapter → events", f"{warned[0]} → {warned[1]}"),
        ("NYC 311 history imported", f"{nyc:,}" if nyc else "no shared data"),
        (
            "KPI: live open / overdue; history open / overdue at export",
            f"{k['open_events']} / {k['overdue']}; {k['history']['open_at_export']} / "
            f"{k['history']['overdue_at_export']} ({k['history']['events']:,} imported)",
        ),
        ("chapter time", f"{dt:.1f} s"),
    ]
    report.sections.append(sec)
    if grid_rows:
        report.sections.append(
            Section(
                "A grid worker's event: geocoded, assigned, delivered", ("step", "what"), grid_rows
            )
        )
    ev = Section(
        "Evaluation (行政问效) per level",
        (
            "level",
            "events",
            "on time",
            "open overdue",
            "p50 h",
            "p90 h",
            "reopen",
            "satisfaction",
            "note",
        ),
    )
    for r in gov.evaluate("level", start=start.to_pydatetime()):
        ev.rows.append(
            (
                str(r["level"]),
                str(r["events"]),
                _pct(r["on_time_rate"]),
                str(r["open_overdue"]),
                _hours(r["handling_h_p50"]),
                _hours(r["handling_h_p90"]),
                _pct(r["reopen_rate"]),
                "-" if r["satisfaction"] is None else f"{r['satisfaction']:.1f}",
                r["note"],
            )
        )
    report.sections.append(ev)
    dep = Section(
        "Busiest departments", ("department", "events", "on time", "open overdue", "p50 h", "note")
    )
    rows_d = [
        r
        for r in gov.evaluate("department", start=start.to_pydatetime())
        if r["department"] != "(all)"
    ]
    for r in sorted(rows_d, key=lambda r: -r["events"])[:6]:
        dep.rows.append(
            (
                str(r["department"]),
                str(r["events"]),
                _pct(r["on_time_rate"]),
                str(r["open_overdue"]),
                _hours(r["handling_h_p50"]),
                r["note"],
            )
        )
    report.sections.append(dep)
    report.notes.append(
        f"govern: {len(day)} events from {len(rows)} reports in {dt:.1f} s; KPI {k['open_events']} open, "
        f"{k['overdue']} overdue, on-time {_pct(k['on_time_rate'])}"
    )
    if client is not None:
        client.close()
    return figures


def _intel(city: Any, ctx: DemoContext) -> tuple[Any, Any, bool]:
    """govern-intel's detector and dispatcher, trained on generated reports (None when
    their modules are missing: the plain workflow then). Training runs on one thread:
    the machine's cores are shared, and oversubscribed OpenMP threads are far slower."""
    try:
        from cityos.govern.dedup import DuplicateDetector
        from cityos.govern.dispatch import Dispatcher
    except ImportError:
        return None, None, False
    from threadpoolctl import threadpool_limits

    from cityos.synth._reports import make_reports

    ctx.log("training the duplicate detector and the dispatcher on generated reports ...")
    with threadpool_limits(limits=1):
        dedup = DuplicateDetector().fit(make_reports(city, 200, seed=901))
        dispatcher = Dispatcher.pretrained(city)
    return dedup, dispatcher, True


def _open311_client(ctx: DemoContext, store: Any, gov: Any, access: Any) -> tuple[Any, str]:
    from cityos.config import Settings
    from cityos.server import create_app

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from fastapi.testclient import TestClient
    if "open311-app" not in {u.username for u in access.list_users(store.db)}:
        access.create_user(store.db, "open311-app", None, roles=["citizen"])
    _, key = access.create_api_key(store.db, "open311-app", name="demo")
    app = create_app(Settings(home=ctx.home), store=store)
    app.state.governance = gov
    return TestClient(app), key


def _raise_warnings(ctx: DemoContext, gov: Any) -> tuple[int, int]:
    """The Warn chapter's warnings (``ctx.state["warnings"]``) raised through governance:
    those whose rule opens events become events, dispatched like any intake. Returns
    (warnings raised, events opened)."""
    from cityos.govern import GovernError

    frame = ctx.state.get("warnings")
    if frame is None or len(frame) == 0:
        return 0, 0
    raised = opened = 0
    keys = ("kind", "severity", "x", "y", "t", "evidence", "title", "dedup_key", "service_code")
    for w in frame.to_dict("records"):
        kw = {k: w.get(k) for k in keys if k in w}
        if kw.get("service_code") is not None and kw["service_code"] not in gov.services:
            kw["service_code"] = None
        try:
            t = kw.get("t")
            kw["t"] = pd.Timestamp(t).to_pydatetime() if t is not None else None
            warning, created = gov.raise_warning(str(w["rule"]), **kw)
        except GovernError:
            continue
        raised += created
        if created and w.get("open_event") and warning.service_code:
            try:
                gov.open_event_from_warning(warning.id, "system:rules")
                opened += 1
            except GovernError:  # e.g. a station outside every jurisdiction of the demo city
                continue
    return raised, opened


def j_codes(gov: Any) -> list[str]:
    """The departments that do the work (not the command centre)."""
    return [c for c, d in gov.jurisdictions.departments.items() if d.function != "command"]


def _take_in(
    gov: Any, client: Any, key: str, r: dict[str, Any], channel: str
) -> tuple[str, str | None]:
    """One report through its door; returns (its event, the parent it merged into)."""
    if channel == "open311" and client is not None:
        res = client.post(
            "/open311/v2/requests.json",
            data={
                "api_key": key,
                "service_code": r["service_code"],
                "lat": str(r["y"]),
                "long": str(r["x"]),
                "description": r["description"],
                "jurisdiction_id": "city",
            },
        )
        if res.status_code >= 300:
            from cityos.govern import OutsideJurisdiction

            raise OutsideJurisdiction(res.json()[0]["description"], field="lat")
        eid = res.json()[0]["service_request_id"]
        e = gov.event(eid)
        return eid, e.parent_id
    res = gov.intake(
        str(r["service_code"]),
        x=float(r["x"]),
        y=float(r["y"]),
        title=str(r["title"]),
        description=str(r["description"]),
        channel=channel,
        source_id=str(r["id"]),
        received_at=pd.Timestamp(r["t"]).to_pydatetime(),
    )
    return res.id, res.merged_into


class _Receiver:
    """The grid worker's phone, as far as the city can tell: a real HTTP endpoint on
    loopback that checks each delivery's signature."""

    def __init__(self) -> None:
        import http.server
        import threading

        got = self.got = []  # type: list[tuple[dict[str, str], bytes]]

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                got.append(({k.lower(): v for k, v in self.headers.items()}, body))
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.srv.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.srv.server_address[1]}/hook"

    def stop(self) -> None:
        self.srv.shutdown()


def _grid_worker(
    ctx: DemoContext, gov: Any, client: Any, key: str, grid_figures: dict[str, float]
) -> list[tuple[str, str]]:
    """A citizen reports by address only (Chinese, as written); the city's geocoder places
    it; the dispatcher sends it on and assigns it to the grid worker of its grid, whose
    signed webhook and live stream (over real HTTP) receive it. Returns the table rows."""
    import json
    import threading

    import httpx
    import uvicorn
    from sqlalchemy import select

    from cityos import access
    from cityos.demo._see import _free_port
    from cityos.govern import verify_signature
    from cityos.govern._geocode import geocoder_for, to_zh
    from cityos.govern._tables import StaffRow

    j = gov.jurisdictions
    g = geocoder_for(gov)
    places = [f for f in g.features if f.kind == "poi" and "community" in j.locate(f.x, f.y)]
    place = places[len(places) // 2] if places else None
    if place is None:
        place = next((f for f in g.features if f.kind == "community"), None)
    if place is None:
        return []
    address = f"{to_zh(place.name) or place.name}门口"
    ctx.log(f"an address-only Open311 report ({address}) → geocoder → a grid worker ...")
    r = client.post(
        "/open311/v2/requests.json",
        data={
            "api_key": key,
            "service_code": "road",
            "address_string": address,
            "description": "井盖丢了，路口很危险",
            "jurisdiction_id": "city",
        },
    )
    if r.status_code >= 300:
        return [
            ("address-only Open311 report", f"{address!r}: refused ({r.json()[0]['description']})")
        ]
    row = r.json()[0]
    e = gov.event(row["service_request_id"])
    if e.parent_id:
        e = gov.event(e.parent_id)
    if e.status in ("received", "returned", "reopened"):
        e = gov.dispatch(e.id, _suggested(gov, e.id) or "command", "dispatcher1", e.version)
    with gov.db.session() as s:
        worker = s.scalar(
            select(StaffRow.username).where(StaffRow.role == "grid_worker", StaffRow.unit == e.unit)
        )
    if worker is None or gov.webhooks is None:
        return [("address-only Open311 report", f"{address!r} → {row['service_notice']}")]
    recv = _Receiver()
    gov.webhooks.allow_private = True  # the receiver is on this machine
    sub = gov.add_subscription(worker, recv.url, "supervisor")
    app = client.app
    token = access.issue_token(access.principal_for(gov.db, worker), app.state.city.secret)
    port = _free_port(0)
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="off")
    )
    th = threading.Thread(target=server.run, name="cityos-govern-demo", daemon=True)
    th.start()
    streamed: list[tuple[str, str]] = []
    ready = threading.Event()

    def listen() -> None:
        url = f"http://127.0.0.1:{port}/govern/stream?max_events=1&access_token={token}"
        with httpx.stream("GET", url, timeout=30) as resp:
            kind = ""
            for line in resp.iter_lines():
                if line.startswith(":"):
                    ready.set()
                elif line.startswith("event: "):
                    kind = line[7:]
                elif line.startswith("data: "):
                    streamed.append((kind, json.loads(line[6:])["id"]))

    try:
        for _ in range(600):
            if server.started:
                break
            time.sleep(0.05)
        lt = threading.Thread(target=listen, daemon=True)
        lt.start()
        ready.wait(20)
        a = gov.assign(e.id, worker, "dispatcher1", e.version, "please check on site")
        lt.join(30)
        gov.webhooks.wait()
    finally:
        server.should_exit = True
        th.join(timeout=10)
        recv.stop()
    mine = [(h, b) for h, b in recv.got if json.loads(b)["event"]["id"] == a.id]
    ok = [
        verify_signature(sub.secret or "", b, h["x-cityos-timestamp"], h["x-cityos-signature"])
        for h, b in mine
    ]
    grid_figures["govern.grid_webhook_delivered"] = float(len(mine))
    grid_figures["govern.grid_stream_received"] = float(len(streamed))
    return [
        ("address-only Open311 report", f"{address!r}: {row['service_notice']}"),
        ("event", f"{a.id} in grid {a.unit}, with {a.department}"),
        ("assigned to", f"{worker} (grid worker of {a.unit})"),
        (
            "webhook to the worker",
            f"{len(mine)} delivery(ies), signature {'verified' if ok and all(ok) else 'NOT verified'}",
        ),
        ("the worker's live stream", ", ".join(f"{k} {i}" for k, i in streamed) or "nothing"),
    ]


def _suggested(gov: Any, eid: str) -> str | None:
    from cityos.govern._model import event_number
    from cityos.govern._tables import EventRow

    with gov.db.session() as s:
        row = s.get(EventRow, event_number(eid))
        return None if row is None else row.suggested_department


def _nyc(ctx: DemoContext, gov: Any) -> int:
    from pathlib import Path

    from cityos.govern import bulk_import

    d = Path(ctx.shared_data) / "nyc-311" if ctx.shared_data is not None else None
    if d is None or not d.is_dir():
        return 0
    ctx.log("importing New York's real 311 history through the shipped mapping ...")
    return int(bulk_import(gov, d).created)


class Govern(Chapter):
    """Chapter 5: organisation, a day of intake, dedup, dispatch, workflow, evaluation."""

    title = "Govern: one door for intake, dispatch, deadlines, evaluation"

    def run(self, ctx: DemoContext) -> None:
        run_govern(ctx)

"""The workflow: every step, return, reassign, co-handling, escalation, reopen; illegal
transitions and stale versions refused with nothing changed; deadlines exact with the
fake clock; the timer marks overdue work once and escalates it; roles."""

from __future__ import annotations

import threading
from datetime import timedelta

import pytest

from cityos.access import PermissionDenied, read_audit, verify_audit
from cityos.govern import IllegalTransition, StaleVersion, UnknownDepartment

from .conftest import GovCity, make_city


def _pothole(c: GovCity, x: float = 0.2, y: float = 0.2, **kw: object) -> str:
    return c.gov.intake("pothole", x=x, y=y, attributes={"severity": "1"}, **kw).event.id  # type: ignore[arg-type]


def test_full_path_recorded_audited_and_mirrored(gcity: GovCity) -> None:
    g, clock = gcity.gov, gcity.clock
    eid = _pothole(gcity, reporter="ann")
    e = g.dispatch(eid, "d1-roads", "disp", 1, "yours")
    assert (e.status, e.department, e.level, e.version) == ("dispatched", "d1-roads", "district", 2)
    assert e.due_at == clock.now() + timedelta(hours=1)
    clock.advance(minutes=10)
    e = g.transition(eid, "accept", "road1", e.version)
    e = g.transition(eid, "start", "road1", e.version, "crew on site")
    clock.advance(hours=3)
    e = g.transition(eid, "resolve", "road1", e.version, "filled")
    assert e.resolved_at == clock.now() and e.due_at == clock.now() + timedelta(days=1)
    with pytest.raises(IllegalTransition, match="verified before it closes"):
        g.transition(eid, "close", "disp", e.version)
    e = g.transition(eid, "verify", "disp", e.version, "checked")
    e = g.transition(eid, "close", "disp", e.version)
    assert e.status == "closed" and e.due_at is None and e.version == 7
    h = g.history(eid)
    assert [t.action for t in h] == [
        "receive",
        "dispatch",
        "accept",
        "start",
        "resolve",
        "verify",
        "close",
    ]
    assert [t.actor for t in h][1:3] == ["disp", "road1"] and h[3].note == "crew on site"
    assert h[4].at == clock.now() - timedelta(0) or h[4].at <= clock.now()
    rows = gcity.store.read("events").table.to_pylist()
    assert len(rows) == 1 and rows[0]["status"] == "closed" and rows[0]["version"] == 7
    actions = [a.action for a in read_audit(gcity.db) if a.action.startswith("govern.")]
    assert actions[-6:] == [
        "govern.dispatch",
        "govern.accept",
        "govern.start",
        "govern.resolve",
        "govern.verify",
        "govern.close",
    ]
    assert verify_audit(gcity.db).ok


def test_illegal_and_stale_change_nothing(gcity: GovCity) -> None:
    g = gcity.gov
    eid = _pothole(gcity)
    with pytest.raises(IllegalTransition, match="'received': cannot accept"):
        g.transition(eid, "accept", "road1", 1)
    e = g.dispatch(eid, "d1-roads", "disp", 1)
    with pytest.raises(StaleVersion, match="version 2, not 1"):
        g.transition(eid, "accept", "road1", 1)
    with pytest.raises(UnknownDepartment, match="nosuch"):
        g.transition(eid, "reassign", "disp", e.version, department="nosuch")
    after = g.event(eid)
    assert after == e and len(g.history(eid)) == 2


def test_two_dispatchers_cannot_both_win(gcity: GovCity) -> None:
    g = gcity.gov
    eid = _pothole(gcity)
    results: list[str] = []
    barrier = threading.Barrier(2)

    def act(dept: str, who: str) -> None:
        barrier.wait()
        try:
            g.dispatch(eid, dept, who, 1)
            results.append("ok")
        except StaleVersion:
            results.append("stale")

    ts = [
        threading.Thread(target=act, args=a)
        for a in (("d1-roads", "disp"), ("city-roads", "disp2"))
    ]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    assert sorted(results) == ["ok", "stale"]
    assert [t.action for t in g.history(eid)] == ["receive", "dispatch"]


def test_return_reassign_cohandling_escalate_reopen(gcity: GovCity) -> None:
    g = gcity.gov
    eid = _pothole(gcity)
    e = g.dispatch(eid, "d2-roads", "disp", 1, assisting=["d1-sanitation"])
    assert e.assisting == ("d1-sanitation",)
    e = g.transition(eid, "return", "disp", e.version, "not our district")
    assert (e.status, e.department) == ("returned", None)
    assert [x.id for x in g.queue()] == [eid]
    e = g.dispatch(eid, "d2-roads", "disp", e.version)
    e = g.transition(
        eid, "reassign", "disp", e.version, department="d1-roads", assisting=["d1-sanitation"]
    )
    assert (e.status, e.department) == ("dispatched", "d1-roads")
    assert [x.id for x in g.queue("d1-sanitation")] == [eid]  # the assisting department sees it
    e = g.transition(eid, "note", "san1", e.version, "we clear the debris")
    e = g.transition(eid, "escalate", "road1", e.version, "too big for us")
    assert (e.department, e.level, e.escalations) == ("city-roads", "city", 1)
    j = g.jurisdictions
    assert j.parent_department("city-roads", 0.2, 0.2) == "command"  # above the top: command
    assert j.parent_department("command", 0.2, 0.2) is None
    e = g.transition(eid, "accept", "croad", e.version)
    e = g.transition(eid, "resolve", "croad", e.version)
    e = g.transition(eid, "reopen", "disp", e.version, "still there")
    assert (e.status, e.reopens, e.resolved_at) == ("reopened", 1, None)
    assert e.resolve_by == gcity.clock.now() + timedelta(days=2)
    d = g.overrides()
    assert [o["chosen"] for o in d] == ["d2-roads", "d2-roads", "d1-roads"]


def test_deadlines_and_timer_exact(gcity: GovCity) -> None:
    g, clock = gcity.gov, gcity.clock
    eid = _pothole(gcity)  # dispatch within 30 min
    clock.advance(minutes=30)
    assert g.sweep().overdue == ()  # at the deadline is not past it
    clock.advance(seconds=1)
    r = g.sweep()
    assert r.overdue == (eid,) and r.escalated == ()  # no department yet: marked, not escalated
    assert g.sweep().overdue == ()  # once per step
    e = g.event(eid)
    assert e.overdue is False or e.overdue is True
    e = g.dispatch(eid, "d1-roads", "disp", e.version)
    clock.advance(hours=1)
    assert g.sweep().overdue == ()
    clock.advance(seconds=1)
    r = g.sweep()
    assert r.escalated == (eid,)
    e = g.event(eid)
    assert (e.department, e.level, e.escalations, e.status) == (
        "city-roads",
        "city",
        1,
        "dispatched",
    )
    assert g.history(eid)[-1].actor == "system:timer" and g.history(eid)[-1].action == "escalate"
    # garbage: no escalation in its workflow; overdue resolution marks the event overdue
    gid = g.intake("garbage", x=0.3, y=0.3).event.id
    e = g.dispatch(gid, "d1-sanitation", "disp", 1)
    e = g.transition(gid, "accept", "san1", e.version)
    clock.advance(days=1, seconds=1)
    r = g.sweep()
    assert gid in r.overdue and gid not in r.escalated
    assert g.event(gid).overdue
    assert g.event(gid).department == "d1-sanitation"


def test_roles_through_principals(gcity: GovCity) -> None:
    g = gcity.gov
    p = gcity.principal
    eid = _pothole(gcity, reporter="ann")
    with pytest.raises(PermissionDenied, match="may not dispatch"):
        g.dispatch(eid, "d1-roads", p("ann"), 1)
    with pytest.raises(PermissionDenied, match="may not dispatch"):
        g.dispatch(eid, "d1-roads", p("road1"), 1)
    e = g.dispatch(eid, "d1-roads", p("disp"), 1)
    with pytest.raises(PermissionDenied, match="d2-roads"):
        g.transition(eid, "accept", p("road2"), e.version)
    e = g.transition(eid, "accept", p("road1"), e.version)
    e = g.transition(eid, "resolve", p("grid1"), e.version)  # the grid's worker, in grid d1-s1-g1
    with pytest.raises(PermissionDenied, match="did not report"):
        g.transition(eid, "reopen", p("bob"), e.version)
    with pytest.raises(PermissionDenied, match="did not report"):
        g.feedback(eid, 5, p("bob"))
    e = g.feedback(eid, 4, p("ann"), "quick")
    e = g.transition(eid, "reopen", p("ann"), e.version, "it is back")
    e = g.transition(eid, "dispatch", p("boss"), e.version, department="d1-roads")
    assert e.status == "dispatched" and e.satisfaction == 4


def test_same_rules_on_a_second_instance(tmp_path: object, db_url: str) -> None:
    """Two Governance objects (two API workers) over one database share versions."""
    from pathlib import Path

    c = make_city(Path(str(tmp_path)) / "a", db_url)
    from cityos.govern import Governance

    other = Governance(c.db, c.store, clock=c.clock)
    eid = _pothole(c)
    c.gov.dispatch(eid, "d1-roads", "disp", 1)
    with pytest.raises(StaleVersion):
        other.dispatch(eid, "d1-roads", "disp2", 1)
    c.store.close()

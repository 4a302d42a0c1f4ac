"""The hooks govern-intel plugs into: duplicate merging (the parent keeps every report
and reporter), automatic dispatch above a confidence threshold (the rest queue with the
suggestion; human overrides recorded), and warnings with outcomes and rule precision."""

from __future__ import annotations

from pathlib import Path

import pytest

from cityos.govern import IllegalTransition, IntakeError

from .conftest import GovCity, NearbySameService, TableDispatcher, make_city


def test_duplicates_merge_into_parent_keeping_reports(tmp_path: Path, db_url: str) -> None:
    c = make_city(tmp_path / "c", db_url, deduplicator=NearbySameService(100))
    g = c.gov
    a = g.intake("garbage", x=0.3000, y=0.3000, description="bins overflowing", reporter="ann")
    c.clock.advance(minutes=20)
    b = g.intake("garbage", x=0.3003, y=0.3002, description="rubbish everywhere", reporter="bob")
    far = g.intake("garbage", x=0.8, y=0.8, description="other street")
    assert a.merged_into is None and b.merged_into == a.event.id and far.merged_into is None
    assert b.own_event != a.event.id
    child = g.event(b.own_event)  # type: ignore[arg-type]
    assert (child.status, child.parent_id) == ("closed", a.event.id)
    assert [r.reporter for r in g.reports(a.event.id)] == ["ann", "bob"]
    assert g.reports(child.id) == []
    rows = {r["id"]: r for r in c.store.read("events").table.to_pylist()}
    assert rows[child.id]["parent_id"] == a.event.id and rows[child.id]["status"] == "closed"
    # a dispatcher merges by hand too: reports follow
    m = g.merge(far.event.id, a.event.id, "disp", far.event.version)
    assert m.parent_id == a.event.id
    assert [r.reporter for r in g.reports(a.event.id)] == ["ann", "bob", None]
    with pytest.raises(IllegalTransition):
        g.merge(a.event.id, a.event.id, "disp", g.event(a.event.id).version)
    c.store.close()


def test_auto_dispatch_threshold_queue_and_overrides(tmp_path: Path, db_url: str) -> None:
    c = make_city(
        tmp_path / "c",
        db_url,
        dispatcher=TableDispatcher({"pothole": 0.97, "garbage": 0.6}),
        auto_dispatch_threshold=0.9,
    )
    g = c.gov
    auto = g.intake("pothole", x=1.5, y=0.5, attributes={"severity": "2"})
    assert (
        auto.dispatched
        and auto.event.status == "dispatched"
        and auto.event.department == "d2-roads"
    )
    assert auto.event.dispatch_mode == "auto" and auto.event.dispatch_confidence == pytest.approx(
        0.97
    )
    assert g.history(auto.event.id)[-1].actor == "system:auto-dispatch"
    low = g.intake("garbage", x=0.2, y=0.7)
    assert not low.dispatched and low.event.status == "received"
    assert [e.id for e in g.queue()] == [low.event.id]
    e = g.dispatch(low.event.id, "city-sanitation", "disp", low.event.version, "district is busy")
    assert e.dispatch_mode == "manual"
    ov = g.overrides()
    assert ov[-1]["predicted"] == "d1-sanitation" and ov[-1]["chosen"] == "city-sanitation"
    assert ov[-1]["overridden"] and ov[-1]["confidence"] == pytest.approx(0.6)
    c.store.close()


def test_routing_table_suggests_without_dispatcher(gcity: GovCity) -> None:
    g = gcity.gov
    r = g.intake("pothole", x=1.2, y=0.2, attributes={"severity": "1"})
    assert r.event.status == "received"  # no dispatcher: never automatic
    e = g.dispatch(r.event.id, "d2-roads", "disp", 1)
    assert g.overrides()[-1]["predicted"] == "d2-roads" and not g.overrides()[-1]["overridden"]
    assert e.level == "district"


def test_warnings_open_events_and_outcomes_give_precision(tmp_path: Path, db_url: str) -> None:
    c = make_city(tmp_path / "c", db_url, dispatcher=TableDispatcher({"leak": 0.99}))
    g = c.gov
    w, created = g.raise_warning(
        "pipe_pressure",
        kind="threshold",
        severity="critical",
        x=0.6,
        y=0.6,
        evidence={"bar": 0.4},
        dedup_key="pp:s1:2026-03-02T08",
        service_code="leak",
        title="Pressure drop",
    )
    again, created2 = g.raise_warning(
        "pipe_pressure",
        kind="threshold",
        severity="critical",
        x=0.6,
        y=0.6,
        dedup_key="pp:s1:2026-03-02T08",
        service_code="leak",
    )
    assert created and not created2 and again.id == w.id == "W-000001"
    w = g.open_event_from_warning(w.id, "disp")
    assert w.status == "event_opened" and w.event_id is not None
    ev = g.event(w.event_id)
    assert (ev.channel, ev.warning_id, ev.status, ev.department, ev.priority) == (
        "warning",
        w.id,
        "dispatched",
        "city-water",
        1,
    )
    ev = g.transition(ev.id, "accept", "disp", ev.version)
    ev = g.transition(ev.id, "resolve", "disp", ev.version, "valve fixed", outcome="confirmed")
    assert g.warning(w.id).status == "confirmed"
    w2, _ = g.raise_warning("pipe_pressure", kind="threshold", x=0.7, y=0.2)
    g.acknowledge_warning(w2.id, "disp")
    g.warning_outcome(w2.id, False, "disp")
    g.raise_warning("pipe_pressure", kind="threshold", x=0.7, y=0.3)
    p = g.rule_precision()["pipe_pressure"]
    assert (p["raised"], p["confirmed"], p["false_alarm"], p["pending"]) == (3, 1, 1, 1)
    assert p["precision"] == pytest.approx(0.5)
    with pytest.raises(IllegalTransition, match="already has its outcome"):
        g.warning_outcome(w2.id, True, "disp")
    with pytest.raises(IntakeError, match="severity"):
        g.raise_warning("r", kind="k", severity="panic", x=0.1, y=0.1)
    ws = {r["id"]: r for r in c.store.read("warnings").table.to_pylist()}
    assert (
        ws[w.id]["status"] == "confirmed" and ws[w2.id]["status"] == "false_alarm" and len(ws) == 3
    )
    c.store.close()


def test_batch_writes_store_once(gcity: GovCity) -> None:
    g = gcity.gov
    with g.batch():
        ids = [g.intake("garbage", x=0.1 + i / 100, y=0.1).event.id for i in range(20)]
        for eid in ids[:10]:
            g.dispatch(eid, "d1-sanitation", "disp", 1)
    rows = {r["id"]: r for r in gcity.store.read("events").table.to_pylist()}
    assert len(rows) == 20 and sum(r["status"] == "dispatched" for r in rows.values()) == 10
    assert g.resync() == 20
    assert gcity.store.describe("events").rows == 20


def test_write_behind_mirror(sqlite_city: GovCity) -> None:
    import time

    from cityos.govern import Governance

    c = sqlite_city
    g = Governance(c.db, c.store, clock=c.clock, mirror_every_s=0.05)
    try:
        ids = [g.intake("garbage", x=0.1 + i / 100, y=0.2).event.id for i in range(5)]
        e = g.dispatch(ids[0], "d1-sanitation", "disp", 1)
        for _ in range(200):  # the background writer catches up within a few intervals
            names = {d.name for d in c.store.list_datasets()}
            if "events" in names and c.store.describe("events").rows == 5:
                rows = {r["id"]: r for r in c.store.read("events").table.to_pylist()}
                if rows[ids[0]]["version"] == e.version:
                    break
            time.sleep(0.05)
        rows = {r["id"]: r for r in c.store.read("events").table.to_pylist()}
        assert len(rows) == 5 and rows[ids[0]]["status"] == "dispatched"
        g.transition(ids[1], "dispatch", "disp", 1, department="d1-sanitation")
    finally:
        g.close()  # flushes what is left
    rows = {r["id"]: r for r in c.store.read("events").table.to_pylist()}
    assert rows[ids[1]]["status"] == "dispatched"

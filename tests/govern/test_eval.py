"""Evaluation (行政问效) and analysis: on-time rates counting open overdue work,
handling-time percentiles, reopen rate, satisfaction, small-sample warnings, KPI, hot
spots through the store's aggregation, breakdowns and trends."""

from __future__ import annotations

import pytest

from cityos.govern import breakdown, hotspots, trends

from .conftest import GovCity


def _resolved(c: GovCity, x: float, hours: float, dept: str = "d1-sanitation") -> str:
    g = c.gov
    e = g.intake("garbage", x=x, y=0.3).event
    e = g.dispatch(e.id, dept, "disp", e.version)
    e = g.transition(e.id, "accept", "x", e.version)
    c.clock.advance(hours=hours)
    e = g.transition(e.id, "resolve", "x", e.version)
    return e.id


def test_on_time_rate_counts_open_overdue(gcity: GovCity) -> None:
    g, clock = gcity.gov, gcity.clock  # garbage: resolve within 1 day
    a = _resolved(gcity, 0.1, 2)  # on time, 2 h
    b = _resolved(gcity, 0.2, 30)  # late, 30 h
    c = _resolved(gcity, 0.3, 4)  # on time, 4 h
    g.feedback(a, 5, "ann")
    g.feedback(b, 2, "ann")
    e = g.transition(c, "reopen", "disp", g.event(c).version)
    open_late = g.intake("garbage", x=0.4, y=0.3).event.id
    clock.advance(days=2)
    g.intake("garbage", x=0.5, y=0.3)  # open, not yet due: not judged
    rows = {r["department"]: r for r in g.evaluate("department", min_sample=3)}
    d = rows["d1-sanitation"]
    # c was reopened and stays with the department: open past its new deadline
    assert (d["events"], d["resolved"], d["on_time"], d["open_overdue"]) == (3, 2, 1, 1)
    assert d["on_time_rate"] == pytest.approx(1 / 3)
    allr = rows["(all)"]
    # a on time; b late; c reopened 2 days ago with a fresh 1-day deadline and open_late:
    # both open overdue, both count against the rate
    assert (allr["resolved"], allr["on_time"], allr["open_overdue"]) == (2, 1, 2)
    assert allr["on_time_rate"] == pytest.approx(1 / 4)
    assert d["handling_h_p50"] == pytest.approx(16.0)
    assert d["reopen_rate"] == pytest.approx(1 / 3)
    assert d["satisfaction"] == pytest.approx(3.5) and d["feedback"] == 2
    assert d["small_sample"] is False and allr["small_sample"] is False
    small = {r["department"]: r for r in g.evaluate("department", min_sample=20)}
    assert small["d1-sanitation"]["small_sample"] and "too few" in small["d1-sanitation"]["note"]
    by_level = {r["level"]: r for r in g.evaluate("level", min_sample=1)}
    assert by_level["district"]["events"] == 3
    by_district = {r["district"]: r for r in g.evaluate("district", min_sample=1)}
    assert by_district["d1"]["events"] == 5
    k = g.kpi()
    assert (
        k["open_events"] == 3
        and k["events_today"] == 1
        and k["on_time_rate"] == pytest.approx(0.25)
    )
    assert k["open_warnings"] == 0 and k["overdue"] >= 2
    assert open_late and e


def test_hotspots_breakdown_trends(sqlite_city: GovCity) -> None:
    c = sqlite_city
    g = c.gov
    with g.batch():
        for i in range(12):
            g.intake("garbage", x=0.101 + i * 1e-4, y=0.101)
        for i in range(3):
            g.intake("leak", x=1.701, y=0.801 + i * 1e-4)
        c.clock.advance(days=1)
        g.intake("garbage", x=0.102, y=0.102)
    hs = hotspots(c.store, cell_m=2000, bbox=(0, 0, 2, 1), time_bin="1D")
    assert hs[0]["n"] == 12 and sum(h["n"] for h in hs) == 16
    hs_all = hotspots(c.store, cell_m=2000, bbox=(0, 0, 2, 1), time_bin=None)
    assert hs_all[0]["n"] == 13
    b = {r["category"]: r for r in breakdown(g, "category")}
    assert b["sanitation"]["events"] == 13 and b["water"]["events"] == 3
    t = trends(g, time_bin="1D")
    assert [r["n"] for r in t] == [15, 1]
    t2 = trends(g, time_bin="1D", by="service_code")
    assert {(r["service_code"], r["n"]) for r in t2} == {
        ("garbage", 12),
        ("leak", 3),
        ("garbage", 1),
    }

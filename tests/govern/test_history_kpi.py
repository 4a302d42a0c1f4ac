"""Imported history keeps its own clock: the real NYC 311 samples keep their source
status and dates, their deadlines are judged at each export's own time, the live timer
leaves them alone, and the KPI counts them apart from live intake — without hiding live
work that is overdue. Checked against figures computed straight from the CSV files."""

from __future__ import annotations

import csv
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import func, select

from cityos.govern import bulk_import, load_organisation
from cityos.govern._tables import TransitionRow

from .conftest import GovCity, make_city, small_org

NY = ZoneInfo("America/New_York")
FMT = "%m/%d/%Y %I:%M:%S %p"


@pytest.fixture
def nyc(shared_data: Path) -> Path:
    d = shared_data / "nyc-311"
    if not any(d.glob("nyc311_*.csv")):
        pytest.skip("NYC 311 samples not present")
    return d


def _t(s: str) -> datetime | None:
    return datetime.strptime(s, FMT).replace(tzinfo=NY).astimezone(UTC) if s else None


def _from_csv(d: Path) -> tuple[int, int, int, int, int]:
    """(rows with a position, open in their export, overdue at their export, resolved,
    resolved on time), by the rules the platform states: deadline = the source's due
    date (if after creation) or creation + 3 days; an export's time = the latest time its
    file records."""
    n = open_ = overdue = resolved = on_time = 0
    for f in sorted(d.glob("nyc311_*.csv")):
        with f.open(newline="") as fh:
            rows = [r for r in csv.DictReader(fh) if r["Latitude"] and r["Longitude"]]
        stamps = [
            _t(r[k])
            for r in rows
            for k in ("Created Date", "Closed Date", "Resolution Action Updated Date")
        ]
        as_of = max(s for s in stamps if s is not None)
        for r in rows:
            n += 1
            created, due = _t(r["Created Date"]), _t(r["Due Date"])
            assert created is not None
            deadline = due if due is not None and due > created else created + timedelta(days=3)
            if r["Status"].strip().lower() in ("closed", "resolved"):
                resolved += 1
                closed = _t(r["Closed Date"]) or created
                on_time += closed <= deadline
            else:
                open_ += 1
                overdue += deadline < as_of
    return n, open_, overdue, resolved, on_time


def test_history_is_judged_by_its_own_dates_and_kept_apart(gcity: GovCity, nyc: Path) -> None:
    g = gcity.gov
    n, open_, overdue, resolved, on_time = _from_csv(nyc)
    res = bulk_import(g, nyc)
    assert res.created == n
    k = g.kpi()
    # live intake: nothing yet, however old and open the imported requests are
    assert (k["events_today"], k["open_events"], k["overdue"]) == (0, 0, 0)
    h = k["history"]
    assert (h["events"], h["open_at_export"], h["overdue_at_export"]) == (n, open_, overdue)
    assert h["on_time_rate"] == pytest.approx(on_time / (resolved + overdue))
    assert h["sources"] == ["govern_nyc311"]
    assert 0 < overdue < open_  # some open requests were still within their deadline
    # the live timer leaves history alone
    with gcity.db.session() as s:
        before = s.scalar(select(func.count()).select_from(TransitionRow))
    assert g.sweep().overdue == ()
    with gcity.db.session() as s:
        assert s.scalar(select(func.count()).select_from(TransitionRow)) == before
    # live work that goes overdue is counted, next to the history
    e = g.intake("garbage", x=0.3, y=0.3, description="bins")
    gcity.clock.advance(days=2)
    g.sweep()
    k = g.kpi()
    assert (k["open_events"], k["overdue"]) == (1, 1)
    assert k["history"]["overdue_at_export"] == overdue
    rows = {r["source"]: r for r in g.evaluate("source", min_sample=1)}
    assert rows["live"]["events"] == 1 and rows["live"]["open_overdue"] == 1
    assert rows["history:govern_nyc311"]["open_overdue"] == overdue
    assert rows["history:govern_nyc311"]["resolved"] == resolved
    live = {r["department"]: r for r in g.evaluate("department", scope="live", min_sample=1)}
    assert set(live) == {"(all)"} and live["(all)"]["open_overdue"] == 1  # not dispatched
    hist = g.evaluate("department", scope="history", min_sample=1)
    assert sum(r["events"] for r in hist if r["department"] != "(all)") == n
    assert e.event.id not in {x.id for x in g.events(limit=None) if x.dispatch_mode == "imported"}
    # a dispatcher who takes an imported request on makes it live work, overdue since 2025
    old = next(
        x
        for x in g.events(limit=None)
        if x.dispatch_mode == "imported" and x.status == "dispatched" and x.department != "DEP"
    )
    g.transition(old.id, "reassign", "disp", old.version, department="DEP")
    k = g.kpi()
    assert (k["open_events"], k["overdue"]) == (2, 2)
    assert k["history"]["events"] == n - 1


def test_a_backlog_moved_in_as_live_work_is_timed(tmp_path: Path, nyc: Path) -> None:
    c = make_city(tmp_path / "city", f"sqlite:///{tmp_path / 'c.db'}")
    g = c.gov
    n, open_, _, _, _ = _from_csv(nyc)
    res = bulk_import(g, nyc, history=False)
    assert res.created == n
    k = g.kpi()
    # open rows are live work now, judged at today's date: every one is past its deadline
    assert k["open_events"] == open_ and k["overdue"] == open_
    assert k["history"]["events"] == 0
    swept = g.sweep()
    assert len(swept.overdue) == open_
    c.store.close()


def test_evaluate_rejects_an_unknown_scope(gcity: GovCity) -> None:
    from cityos.govern import IntakeError

    load_organisation(gcity.db, small_org())
    with pytest.raises(IntakeError) as exc:
        gcity.gov.evaluate("department", scope="yesterday")
    assert exc.value.field == "scope"

"""The demo's Govern chapter on a small generated city: runs, merges duplicates, dispatches
automatically, escalates overdue work and prints the evaluation."""

from __future__ import annotations

from pathlib import Path

import pytest

from cityos.demo._govern import run_govern
from cityos.demo._story import DemoContext, DemoReport
from cityos.store import Store

from .conftest import add_places


def _ctx(tmp_path: Path) -> DemoContext:
    from cityos.synth import make_city

    city = make_city(seed=7, size_km=8, spacing_m=800)
    store = Store(tmp_path / "city")
    add_places(store, city)
    return DemoContext(
        home=tmp_path / "city",
        report=DemoReport(home=tmp_path),
        store=store,
        city=city,
        shared_data=None,
        log=lambda m: None,
    )


@pytest.mark.slow  # the default suite runs the chapter in tests/demo/test_story.py's whole demo
def test_govern_chapter_plain_workflow(tmp_path: Path) -> None:
    import pandas as pd

    ctx = _ctx(tmp_path)
    store = ctx.require_store()
    x0, y0, x1, y1 = ctx.city.bounds
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
    ctx.state["warnings"] = pd.DataFrame(
        [  # what the Warn chapter leaves
            {
                "id": "W-1",
                "rule": "pm25_episode",
                "kind": "threshold",
                "severity": "critical",
                "x": cx,
                "y": cy,
                "t": pd.Timestamp("2026-03-02T01:00Z"),
                "evidence": {"place": "s1"},
                "title": "PM2.5",
                "dedup_key": "pm:s1",
                "service_code": "air_quality",
                "open_event": True,
            },
            {
                "id": "W-2",
                "rule": "pm25_episode",
                "kind": "threshold",
                "severity": "warning",
                "x": x1 + 1,
                "y": cy,
                "t": pd.Timestamp("2026-03-02T02:00Z"),
                "evidence": {"place": "far"},
                "title": "PM2.5",
                "dedup_key": "pm:far",
                "service_code": "air_quality",
                "open_event": True,
            },
        ]
    )
    f = run_govern(ctx, incidents=30, seed=3, intel=False)
    assert (f["govern.warnings_raised"], f["govern.warning_events"]) == (
        2,
        1,
    )  # one station is outside
    # + the warning's event and the address-only report of the grid worker's scene
    assert f["govern.events"] == f["govern.reports"] - f["govern.outside"] + 2
    assert f["govern.reports"] > 30
    assert f["govern.dedup_merged"] == 0 and f["govern.auto_dispatched_share"] == 0
    assert f["govern.escalated"] >= 0 and 0 <= f["govern.on_time_rate"] <= 1
    titles = [s.title for s in ctx.report.sections]
    assert "Evaluation (行政问效) per level" in titles
    assert store.describe("events").rows == f["govern.events"] + f["govern.dedup_merged"]
    assert store.describe("warnings").rows == 2
    day = next(s for s in ctx.report.sections if s.title.startswith("Governance: one day"))
    assert "open311" in day.rows[1][1]
    assert "Warnings → events → outcomes: each rule's measured precision" in titles
    # an address-only Open311 report, geocoded, reaches its grid worker on both channels
    grid = next(s for s in ctx.report.sections if s.title.startswith("A grid worker's event"))
    what = dict(grid.rows)
    assert "located at" in what["address-only Open311 report"]
    assert what["assigned to"].startswith("grid-")
    assert "signature verified" in what["webhook to the worker"]
    assert f["govern.grid_webhook_delivered"] == 1 and f["govern.grid_stream_received"] == 1
    assert what["the worker's live stream"].startswith("event.assigned E-")
    gov = ctx.state["governance"]
    assert all(
        e.status
        in (
            "closed",
            "verified",
            "resolved",
            "in_progress",
            "accepted",
            "dispatched",
            "returned",
            "reopened",
            "received",
        )
        for e in gov.events(limit=None)
    )
    store.close()


@pytest.mark.slow
def test_govern_chapter_with_dedup_and_dispatch(tmp_path: Path) -> None:
    ctx = _ctx(tmp_path)
    f = run_govern(ctx, incidents=40, seed=3)
    assert f["govern.dedup_merged"] > 0 and f["govern.dedup_precision"] >= 0.7
    assert 0 < f["govern.auto_dispatched_share"] <= 1
    assert f["govern.auto_dispatch_precision"] >= 0.8
    ctx.require_store().close()

"""The demo's Govern chapter on a small generated city: runs, merges duplicates, dispatches
automatically, escalates overdue work and prints the evaluation."""

from __future__ import annotations

from pathlib import Path

import pytest

from cityos.demo._govern import run_govern
from cityos.demo._story import DemoContext, DemoReport
from cityos.model import DatasetSchema, Field, GeometryType, ModelKind
from cityos.store import Store


def _ctx(tmp_path: Path) -> DemoContext:
    from cityos.synth import make_city

    city = make_city(seed=7, size_km=8, spacing_m=800)
    store = Store(tmp_path / "city")
    store.create_dataset(
        "districts",
        DatasetSchema(
            ModelKind.POINT_STATIC,
            geometry_type=GeometryType.REGION,
            id_type="int64",
            fields=(Field("name"),),
        ),
    )
    store.append("districts", city.districts.rename(columns={"district_id": "id"}))
    return DemoContext(
        home=tmp_path / "city",
        report=DemoReport(home=tmp_path),
        store=store,
        city=city,
        shared_data=None,
        log=lambda m: None,
    )


def test_govern_chapter_plain_workflow(tmp_path: Path) -> None:
    ctx = _ctx(tmp_path)
    store = ctx.require_store()
    f = run_govern(ctx, incidents=30, seed=3, intel=False)
    assert f["govern.reports"] > 30 and f["govern.events"] == f["govern.reports"] - f.get(
        "govern.outside", 0
    )
    assert f["govern.dedup_merged"] == 0 and f["govern.auto_dispatched_share"] == 0
    assert f["govern.escalated"] >= 0 and 0 <= f["govern.on_time_rate"] <= 1
    titles = [s.title for s in ctx.report.sections]
    assert "Evaluation (行政问效) per level" in titles
    assert store.describe("events").rows == f["govern.events"] + f["govern.dedup_merged"]
    assert "open311" in ctx.report.sections[0].rows[1][1]
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

"""The demo story runs its chapters in order on one context and records each chapter."""

from __future__ import annotations

from pathlib import Path

from cityos.demo import Chapter, DemoContext, DemoReport, run_demo, run_story


class _Mark(Chapter):
    title = "Mark: leaves a figure"

    def run(self, ctx: DemoContext) -> None:
        ctx.report.figures["seen"] = float(len(ctx.report.chapters))


def test_chapters_run_in_order_and_are_timed(tmp_path: Path) -> None:
    ctx = DemoContext(home=tmp_path, report=DemoReport(home=tmp_path), log=lambda m: None)
    report = run_story((_Mark, _Mark), ctx)
    assert [t for t, _ in report.chapters] == [_Mark.title, _Mark.title]
    assert report.figures["seen"] == 1.0  # the second run saw the first one recorded


def test_demo_runs_on_generated_data_alone(tmp_path: Path) -> None:
    # two days, so the Learn chapter also trains its crowd-flow model and raises a warning
    report = run_demo(tmp_path / "demo", vehicles=12, days=2, shared_data=tmp_path / "none")
    assert report.datasets["vehicles"] > 0
    assert "sensor_readings" in report.datasets  # generated instead of the real readings
    assert [t.split(":")[0] for t, _ in report.chapters][:2] == ["Sense", "Store and query"]

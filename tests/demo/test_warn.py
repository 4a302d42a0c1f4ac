"""The Warn chapter runs on generated data alone and prints its figures."""

from __future__ import annotations

from pathlib import Path

import pytest

from cityos.demo import CHAPTERS, DemoContext, DemoReport, run_story
from cityos.demo._city import Sense
from cityos.demo._learn import Learn
from cityos.demo._warn import Warn


def test_warn_follows_learn_in_the_story() -> None:
    titles = [c for c in CHAPTERS]
    assert titles.index(Warn) == titles.index(Learn) + 1


@pytest.mark.slow
def test_warn_chapter_on_generated_data(tmp_path: Path) -> None:
    ctx = DemoContext(
        home=tmp_path / "demo",
        report=DemoReport(home=tmp_path / "demo"),
        vehicles=12,
        days=2,
        shared_data=tmp_path / "none",
        log=lambda m: None,
    )
    report = run_story((Sense, Learn, Warn), ctx)
    f = report.figures
    assert f["hazchem.recall"] >= 0.85 and f["hazchem.precision"] >= 0.80
    assert f["dedup.precision"] >= 0.9 and f["dedup.recall"] >= 0.85
    assert f["dispatch.accuracy"] >= 0.9
    assert f["warn.warnings"] >= f["hazchem.warnings"] > 0
    assert len(ctx.state["warnings"]) == int(f["warn.warnings"])
    titles = [s.title for s in report.sections]
    assert any(t.startswith("Duplicate detection") for t in titles)
    assert any(t.startswith("Early-warning rules") for t in titles)

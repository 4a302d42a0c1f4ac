"""The Learn chapter on generated data: trains forecasters, registers and deploys the best,
scores a day into a predictions dataset and raises a crowd-gathering warning."""

from __future__ import annotations

from pathlib import Path

from cityos.demo import run_demo
from cityos.demo._city import Sense
from cityos.demo._learn import Learn


def test_learn_trains_deploys_and_warns(tmp_path: Path) -> None:
    report = run_demo(
        tmp_path / "demo",
        vehicles=12,
        days=2,
        shared_data=tmp_path / "none",
        chapters=(Sense, Learn),
    )
    assert [t.split(":")[0] for t, _ in report.chapters] == ["Sense", "Learn"]
    table = next(s for s in report.sections if s.title.startswith("Model table"))
    assert [r[0] for r in table.rows] == ["persistence", "historical_average", "lightgbm"]
    assert any(n.startswith("deployed sensor_value") and "predictions" in n for n in report.notes)
    assert report.figures["learn.crowd_detections"] >= 1
    assert any("scored one day into sensor_value_forecast" in n for n in report.notes)

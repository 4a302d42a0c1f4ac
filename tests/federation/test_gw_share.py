"""The demo's Share chapter: two gateway processes forecast tomorrow's PM2.5; the federated
model's predictions equal pooled training's and beat the environment bureau alone."""

from __future__ import annotations

from pathlib import Path

import pytest

from cityos.demo import DemoContext, DemoReport, run_story
from cityos.demo._share import Share, beijing_bureaus


def test_the_bureaus_split_columns_and_hide_the_test_labels(tmp_path: Path) -> None:
    env, weather, truth, source = beijing_bureaus(tmp_path / "none")
    assert "generated" in source
    assert list(env["id"]) == list(weather["id"])
    assert not set(env.columns) & set(weather.columns) - {"id"}
    assert env.set_index("id").loc[truth.index, "pm25_next"].isna().all()
    assert len(truth) > 100


@pytest.mark.slow  # the default suite runs the chapter in tests/demo (the whole story)
@pytest.mark.integration
def test_share_chapter_on_generated_data(tmp_path: Path) -> None:
    ctx = DemoContext(
        home=tmp_path,
        report=DemoReport(home=tmp_path),
        log=lambda m: None,
        shared_data=tmp_path / "none",
    )
    report = run_story((Share,), ctx)
    f = report.figures
    assert f["share.identical_to_pooled"] == 1.0
    assert f["share.rmse_federated"] == f["share.rmse_pooled"]
    assert f["share.rmse_federated"] < f["share.rmse_env_alone"]
    # the joint model is the environment bureau's registry version in production, with
    # both bureaus' data versions and the project and job as lineage; the weather
    # bureau's part is in its own registry
    from cityos.ai._registry import ModelRegistry
    from cityos.store import Store

    (sec,) = [x for x in report.sections if "AI registry" in x.title]
    assert sec.rows[0][0] == "pm25-tomorrow" and sec.rows[0][3] == "production"
    for bureau, part in (("environment", "joint model (guest)"), ("weather", "host part")):
        store = Store(tmp_path / "federation" / bureau)
        try:
            v = ModelRegistry.of(store).get("pm25-tomorrow")
        finally:
            store.close()
        assert v.family == "federated-secureboost" and v.lineage is not None
        assert v.lineage["part"] == part and v.lineage["job"].startswith("j-")
        assert set(v.datasets) == {"air_daily" if bureau == "environment" else "meteo_daily"}
        assert {x["dataset"] for x in v.lineage["parties"].values()} == {"air_daily", "meteo_daily"}


@pytest.mark.slow
@pytest.mark.integration
def test_share_chapter_on_real_beijing_data(tmp_path: Path, shared_data: Path) -> None:
    ctx = DemoContext(
        home=tmp_path, report=DemoReport(home=tmp_path), log=lambda m: None, shared_data=shared_data
    )
    f = run_story((Share,), ctx).figures
    assert f["share.identical_to_pooled"] == 1.0
    assert f["share.rmse_federated"] < f["share.rmse_env_alone"]

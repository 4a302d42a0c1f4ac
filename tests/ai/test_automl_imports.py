"""AutoML under a budget registers the best model with its study; importing cityos and the
non-deep models never imports torch."""

from __future__ import annotations

import subprocess
import sys

from tests.ai.builders import air_city

from cityos.ai import FeatureSpec
from cityos.ai._automl import automl
from cityos.ai._registry import ModelRegistry
from cityos.store import Store


def test_automl_registers_best_with_study(city: Store) -> None:
    p = air_city(city, 400)
    spec = FeatureSpec("air", "pm25", covariates=("temperature",))
    r = automl(
        city,
        spec,
        horizon=3,
        budget_s=20,
        train_end=p.times[300],
        val_end=p.times[350],
        families=("persistence", "historical_average", "lightgbm"),
        name="auto",
    )
    assert r.version is not None and r.version.family == r.best_family
    v = ModelRegistry.of(city).get("auto")
    assert v.study is not None and len(v.study["trials"]) >= 3
    fams = {t["params"]["family"] for t in v.study["trials"]}
    assert fams == {"persistence", "historical_average", "lightgbm"}
    done = [t for t in v.study["trials"] if t["state"] == "COMPLETE"]
    assert min(t["value"] for t in done) == r.best_value


def test_import_never_pulls_torch() -> None:
    code = (
        "import sys, cityos, cityos.ai, cityos.ai._lifecycle, cityos.ai._anomaly, cityos.ai._monitor;"
        "from cityos.ai import make_model; import numpy as np; from cityos.ai import Panel;"
        "p = Panel.from_array(np.arange(60.0).reshape(60, 1), '2026-03-02', '1h');"
        "[make_model(f, 3).fit(p).predict(p) for f in ('persistence', 'historical_average', 'seasonal_naive')];"
        "make_model('lightgbm', 2, n_estimators=5, min_child_samples=2).fit(p);"
        "assert 'torch' not in sys.modules, 'torch was imported'"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_cli_train_evaluate_deploy_predict(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from typer.testing import CliRunner

    from cityos.cli import app

    home = tmp_path / "city"
    s = Store(home)
    p = air_city(s, 300)
    s.close()
    run = CliRunner().invoke
    r = run(
        app,
        [
            "ai",
            "train",
            "air",
            "pm25",
            "--family",
            "seasonal_naive",
            "--name",
            "pm",
            "--horizon",
            "3",
            "--train-end",
            str(p.times[200]),
            "--val-end",
            str(p.times[250]),
            "--home",
            str(home),
        ],
    )
    assert r.exit_code == 0, r.output
    assert "registered pm v1" in r.output
    assert run(app, ["ai", "deploy", "pm", "--home", str(home)]).exit_code == 0
    out = run(app, ["ai", "predict", "pm", "--home", str(home)])
    assert out.exit_code == 0 and "yhat" in out.output
    bad = run(app, ["ai", "deploy", "pm", "--version", "5", "--home", str(home)])
    assert bad.exit_code == 2 and "no version 5" in bad.output

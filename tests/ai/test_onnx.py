"""ONNX export of a deep model served with onnxruntime gives the same forecasts as torch."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from tests.ai.builders import make_panel

from cityos.ai import make_model


@pytest.mark.parametrize("family", ["stid", "st_resnet"])
def test_onnx_matches_torch(family: str, tmp_path: Path) -> None:
    pytest.importorskip("onnxruntime")
    p = make_panel(300)
    small = {"epochs": 1, "max_batches_per_epoch": 5, "hidden": 8}
    if family == "st_resnet":
        small.update(units=1, trend_len=48)
    m = make_model(family, 4, **small).fit(p, train=(0, 250))
    o = np.arange(250, 290)
    ref = m.predict(p, o)
    m.export_onnx(tmp_path / "m.onnx", p)  # type: ignore[attr-defined]
    m.use_onnx(tmp_path / "m.onnx")  # type: ignore[attr-defined]
    np.testing.assert_allclose(m.predict(p, o), ref, rtol=1e-4, atol=1e-4)


def test_registered_deep_model_is_served_by_onnxruntime(city) -> None:  # type: ignore[no-untyped-def]
    from tests.ai.builders import air_city

    from cityos.ai import FeatureSpec
    from cityos.ai._lifecycle import predict_fresh, train
    from cityos.ai._registry import ModelRegistry

    p = air_city(city, 300)
    r = train(
        city,
        FeatureSpec("air", "pm25", covariates=("temperature",)),
        "stid",
        horizon=3,
        params={"epochs": 1, "max_batches_per_epoch": 5, "hidden": 8},
        train_end=p.times[200],
        val_end=p.times[250],
        name="deep",
    )
    m, _ = ModelRegistry.of(city).load("deep")
    assert m.runtime == "onnx"  # type: ignore[attr-defined]
    fc = predict_fresh(city, "deep")
    ref = r.model.predict(r.panel, np.array([r.panel.shape[0] - 1]))[0]
    order = [list(map(str, r.panel.nodes)).index(n) for n in fc["id"][:12]]
    np.testing.assert_allclose(fc["yhat"].to_numpy()[:12], ref[0][order], rtol=1e-4, atol=1e-4)

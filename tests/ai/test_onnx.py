"""ONNX export of a deep model served with onnxruntime gives the same forecasts as torch."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from cityos.ai import make_model
from tests.ai.builders import make_panel


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

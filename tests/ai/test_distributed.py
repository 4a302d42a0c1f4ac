"""Data-parallel training across processes: two processes (torch.distributed, gloo, on
loopback) each taking half of every batch train the same model as one process."""

from __future__ import annotations

import numpy as np
import pytest
from tests.ai.builders import make_panel

from cityos.ai import make_model

pytest.importorskip("torch")

#: no dropout: its random masks are drawn per process, so they would differ from one process's
STID = {"epochs": 3, "hidden": 16, "batch_size": 32, "max_batches_per_epoch": 8, "dropout": 0.0}


def test_two_processes_train_the_model_one_process_trains() -> None:
    from cityos.ai._deep import fit_distributed

    p = make_panel(360)
    one = make_model("stid", 6, seed=3, **STID).fit(p, train=(0, 280), val=(280, 330))
    two = fit_distributed(
        make_model("stid", 6, seed=3, **STID), p, train=(0, 280), val=(280, 330), world_size=2
    )
    assert [h["world_size"] for h in two.history] == [2] * len(two.history)
    assert [h["world_size"] for h in one.history] == [1] * len(one.history)
    o = np.arange(280, 350)
    a, b = one.predict(p, o), two.predict(p, o)
    np.testing.assert_allclose(b, a, rtol=1e-4, atol=1e-3)
    # the training moved the weights: a model trained on other batches is not within tolerance
    other = make_model("stid", 6, seed=4, **STID).fit(p, train=(0, 280), val=(280, 330))
    assert np.abs(other.predict(p, o) - a).max() > 1e-2
    for ha, hb in zip(one.history, two.history, strict=True):
        assert hb["val"] == pytest.approx(ha["val"], rel=1e-4, abs=1e-5)


def test_workers_are_for_the_deep_families(city) -> None:  # type: ignore[no-untyped-def]
    from tests.ai.builders import air_city

    from cityos.ai import FeatureSpec, FeatureSpecError
    from cityos.ai._lifecycle import train

    air_city(city, 120)
    with pytest.raises(FeatureSpecError, match="only the deep families"):
        train(city, FeatureSpec("air", "pm25"), "lightgbm", horizon=6, workers=2)

"""One contract test over every model of the zoo: fits a small problem, predicts the right
shapes for horizons 1..H, round-trips save/load with identical predictions, handles
missing values, is deterministic under a seed, refuses predict-before-fit and bad shapes."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import numpy as np
import pytest
from tests.ai.builders import make_panel

from cityos.ai import (
    FAMILIES,
    HorizonError,
    NotFittedError,
    ShapeError,
    UnknownModel,
    load_model,
    make_model,
    masked_mae,
    targets,
)

H = 6
#: small settings so the whole zoo fits in seconds; the families' defaults are for real data
SMALL: dict[str, dict[str, Any]] = {
    "lightgbm": {"n_estimators": 30, "num_leaves": 15, "min_child_samples": 10},
    "stid": {"epochs": 3, "hidden": 16, "max_batches_per_epoch": 20},
    "graph_wavenet": {
        "epochs": 2,
        "hidden": 8,
        "dilations": (1, 2, 4),
        "max_batches_per_epoch": 10,
    },
    "st_resnet": {
        "epochs": 3,
        "hidden": 8,
        "units": 1,
        "trend_len": 48,
        "max_batches_per_epoch": 20,
    },
    "ensemble": {
        "members": [
            ["lightgbm", {"n_estimators": 30, "num_leaves": 15, "min_child_samples": 10}],
            ["seasonal_naive", {}],
        ]
    },
}


def fit(family: str, seed: int = 0) -> Any:
    p = make_panel()
    return make_model(family, H, seed=seed, **SMALL.get(family, {})).fit(
        p, train=(0, 300), val=(300, 360)
    ), p


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_model_contract(family: str, tmp_path: Any) -> None:
    m, p = fit(family)
    origins = np.arange(300, 390)
    yhat = m.predict(p, origins)
    assert yhat.shape == (len(origins), H, p.shape[1])
    assert np.isfinite(yhat).all(), "missing inputs must still give forecasts"
    for h in range(1, H + 1):
        assert m.predict(p, origins, horizon=h).shape == (len(origins), h, p.shape[1])
    with pytest.raises(HorizonError):
        m.predict(p, origins, horizon=H + 1)
    # it learned something: no worse than twice the error of a flat mean
    y = targets(p, origins, H)
    flat = np.full_like(y, np.nanmean(p.series[:300]))
    assert masked_mae(y, yhat) < 2 * masked_mae(y, flat)
    # save / load: identical predictions
    m.save(tmp_path / "m")
    again = load_model(tmp_path / "m")
    np.testing.assert_array_equal(again.predict(p, origins), yhat)
    # deterministic under a seed
    m2, _ = fit(family)
    np.testing.assert_allclose(m2.predict(p, origins), yhat, rtol=1e-5, atol=1e-5)
    # the forecast frame has one row per node and step ahead
    fc = m.forecast(p)
    assert len(fc) == H * p.shape[1] and set(fc["horizon"]) == set(range(1, H + 1))
    # wrong shapes: other nodes / channels
    other = replace(p, nodes=np.array([f"z{i}" for i in range(p.shape[1])]))
    with pytest.raises(ShapeError):
        m.predict(other)
    with pytest.raises(NotFittedError):
        make_model(family, H, **SMALL.get(family, {})).predict(p)


def test_unknown_family_and_parameter() -> None:
    with pytest.raises(UnknownModel, match="zoo has"):
        make_model("prophet")
    with pytest.raises(UnknownModel, match="no parameter"):
        make_model("persistence", 6, window=3)


def test_horizon_longer_than_data() -> None:
    p = make_panel(steps=20)
    with pytest.raises(HorizonError, match="cannot hold horizon"):
        make_model("persistence", 24).fit(p)


def test_ensemble_weighs_its_members_on_validation_only() -> None:
    from cityos.ai import evaluate
    from cityos.ai._zoo import Ensemble

    p = make_panel()
    members = [["seasonal_naive", {}], ["persistence", {}], ["historical_average", {}]]
    e = make_model("ensemble", H, members=members).fit(p, train=(0, 300), val=(300, 360))
    assert e.weights.shape == (H, 3) and np.allclose(e.weights.sum(1), 1.0)
    fitted = [make_model(f, H).fit(p, train=(0, 300)) for f, _ in members]
    again = Ensemble.from_fitted(fitted, p, (300, 360))
    np.testing.assert_allclose(again.weights, e.weights)
    # on the validation span the weighted mean is no worse than its best member
    val = {m.family: evaluate(m, p, (300, 360)).mae for m in fitted}
    mine = evaluate(e, p, (300, 360)).mae
    for h in range(1, H + 1):
        assert mine[h] <= min(v[h] for v in val.values()) + 1e-9
    # the weights come from validation: the test span's data play no part
    cut = p.truncated(359)
    blind = make_model("ensemble", H, members=members).fit(cut, train=(0, 300), val=(300, 360))
    np.testing.assert_allclose(blind.weights, e.weights)

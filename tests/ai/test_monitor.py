"""Monitoring: live error vs persistence and input drift (PSI); alerts fire on a shifted
input and stay quiet on data like the training data."""

from __future__ import annotations

import numpy as np
from tests.ai.builders import air_city, make_panel

from cityos.ai import FeatureSpec, make_model
from cityos.ai._lifecycle import drift_reference, train
from cityos.ai._monitor import monitor, monitor_panel
from cityos.store import Store

LGB = {"n_estimators": 60, "num_leaves": 15, "min_child_samples": 10}


def test_quiet_on_like_data_alerts_on_shifted_input() -> None:
    p = make_panel(600, missing=0.0, stationary=True)
    m = make_model("lightgbm", 3, **LGB).fit(p, train=(0, 400), val=(400, 450))
    ref = {"inputs": drift_reference(p, (0, 400))}
    ok = monitor_panel(m, p, (450, 600), ref)
    assert ok.alerts == [] and ok.error_ratio < 1.0
    shifted = make_panel(600, missing=0.0, stationary=True)
    v = shifted.values.copy()
    v[450:, :, 1] += 25.0  # a broken temperature sensor: inputs shift, the target does not
    object.__setattr__(shifted, "values", v)
    bad = monitor_panel(m, shifted, (450, 600), ref)
    assert bad.drift["temperature"] > 0.2 and bad.drift["pm25"] < 0.2
    assert any(a.startswith("drift: input 'temperature'") for a in bad.alerts)
    # the daily cycle the model learned stops (a sensor stuck near its last value):
    # persistence is right, the model is not
    flipped = make_panel(600, missing=0.0, stationary=True)
    v = flipped.values.copy()
    v[450:, :, 0] = v[449, :, 0] + np.random.default_rng(3).normal(0, 0.5, v[450:, :, 0].shape)
    object.__setattr__(flipped, "values", v)
    worse = monitor_panel(m, flipped, (450, 600), ref)
    assert worse.error_ratio > 1.0 and any(a.startswith("error:") for a in worse.alerts), worse
    assert ok.error_ratio < worse.error_ratio


def test_monitor_a_registered_version(city: Store) -> None:
    p = air_city(city, 400)
    spec = FeatureSpec("air", "pm25", covariates=("temperature",))
    train(
        city,
        spec,
        "seasonal_naive",
        horizon=3,
        train_end=p.times[250],
        val_end=p.times[300],
        name="pm",
    )
    r = monitor(city, "pm", start=p.times[300], end=p.times[399])
    assert set(r.drift) == {"pm25", "temperature"} and r.version == "1"
    assert np.isfinite(r.error_ratio) and set(r.mae) == {1, 2, 3}

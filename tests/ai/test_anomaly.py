"""Detectors on data with injected anomalies of known time and place: residual band,
change points, crowd gathering; precision / recall / delay; detections as a dataset."""

from __future__ import annotations

import numpy as np
import pandas as pd
from tests.ai.builders import make_panel

from cityos.ai import Panel, make_model
from cityos.ai._anomaly import (
    DETECTION_FIELDS,
    change_points,
    crowd_gathering,
    measure_detections,
    residual_anomalies,
    write_detections,
)
from cityos.ai._lifecycle import _band
from cityos.store import Store


def _inject(
    p: Panel, spikes: list[tuple[int, int, int]], size: float
) -> list[tuple[str, object, object]]:
    v = p.values.copy()
    truth = []
    for node, t0, length in spikes:
        v[t0 : t0 + length, node, 0] += size
        truth.append((str(p.nodes[node]), p.times[t0], p.times[t0 + length - 1]))
    object.__setattr__(p, "values", v)
    return truth


def test_residual_band_finds_injected_spikes() -> None:
    p = make_panel(600, missing=0.0, stationary=True)
    m = make_model("lightgbm", 1, n_estimators=60, num_leaves=15, min_child_samples=10).fit(
        p, train=(0, 400), val=(400, 480)
    )
    band = _band(m, p, (400, 480), per_node=True)[0]
    spikes = [(1, 500, 3), (4, 520, 2), (7, 545, 4), (10, 570, 2), (2, 590, 3)]
    truth = _inject(p, spikes, 12 * float(band.mean()))
    det = residual_anomalies(m, p, (490, 600), band)
    q = measure_detections(det, truth, "1h")
    assert q.recall == 1.0 and q.precision >= 0.6, q
    assert q.mean_delay_steps <= 1.0
    assert set(DETECTION_FIELDS) <= set(det.columns)
    # clean data raises few false alarms
    clean = make_panel(600, missing=0.0, stationary=True)
    assert len(residual_anomalies(m, clean, (490, 600), band)) <= 5


def test_change_point_dated_near_the_shift() -> None:
    p = make_panel(400, missing=0.0, stationary=True)
    v = p.values.copy()
    v[250:, 3, 0] += 40.0
    object.__setattr__(p, "values", v)
    det = change_points(p, (0, 400))
    at3 = det[det["place"] == "s3"]
    assert len(at3) >= 1
    first = pd.Timestamp(at3["t"].min())
    assert p.times[250] <= first <= p.times[260]
    q = measure_detections(det, [("s3", p.times[250], p.times[399])], "1h")
    assert q.recall == 1.0 and q.precision >= 0.5


def _flows(steps: int = 400, seed: int = 1) -> Panel:
    rng = np.random.default_rng(seed)
    ny, nx = 3, 3
    lam = 20 + 15 * np.sin(2 * np.pi * np.arange(steps) / 24)[:, None] + rng.uniform(0, 10, ny * nx)
    inflow = rng.poisson(lam).astype(float)
    outflow = rng.poisson(lam).astype(float)
    return Panel.from_array(
        np.stack([inflow, outflow], -1),
        "2026-03-02",
        "1h",
        channels=("inflow", "outflow"),
        target="inflow",
        grid=(ny, nx),
        x=np.arange(9.0),
        y=np.zeros(9),
    )


def test_crowd_gathering_on_injected_inflow(city: Store) -> None:
    p = _flows()
    m = make_model("historical_average", 1).fit(p, train=(0, 300), val=(300, 340))
    band = _band(m, p, (300, 340))[0]
    v = p.values.copy()
    v[360:362, 4, 0] *= 4
    v[380, 7, 0] += 150
    object.__setattr__(p, "values", v)
    det = crowd_gathering(m, p, (341, 400), band)
    q = measure_detections(
        det, [("4", p.times[360], p.times[361]), ("7", p.times[380], p.times[380])], "1h"
    )
    assert q.recall == 1.0 and q.precision == 1.0, det
    assert (det["kind"] == "crowd_gathering").all() and (det["observed"] > det["upper"]).all()
    assert write_detections(city, det) == len(det)
    assert write_detections(city, det) == 0  # idempotent by (id, t)
    back = city.read("detections").to_pandas()
    assert set(back["place"]) == {"4", "7"}

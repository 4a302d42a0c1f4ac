"""Monitoring a deployed model: its live error against the persistence baseline as ground
truth arrives, input drift per channel (population stability index against the training
distribution recorded in the registry), and alerts when either crosses its threshold."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from cityos.ai._errors import HorizonError
from cityos.ai._metrics import eval_origins, score, targets
from cityos.ai._panel import Panel
from cityos.ai._zoo import Forecaster, Persistence

__all__ = ["MonitorReport", "monitor", "monitor_panel", "psi"]

#: PSI above this is a significant shift (the usual rule of thumb: 0.1 some, 0.25 major).
PSI_ALERT = 0.2
#: Alert when the model's MAE exceeds this multiple of persistence's on the same window.
ERROR_RATIO_ALERT = 1.0


def psi(reference: dict[str, Any], values: np.ndarray) -> float:
    """Population stability index of ``values`` against a reference
    (``{"edges": [...], "share": [...]}`` from :func:`cityos.ai._lifecycle.drift_reference`).

    Examples
    --------
    >>> ref = {"edges": [0.0], "share": [0.5, 0.5]}
    >>> round(psi(ref, np.array([-1.0, 1.0] * 50)), 6)
    0.0
    >>> psi(ref, np.array([1.0] * 100)) > 1
    True
    """
    v = values[np.isfinite(values)]
    if not len(v):
        return float("nan")
    edges = np.asarray(reference["edges"], dtype="float64")
    exp = np.maximum(np.asarray(reference["share"], dtype="float64"), 1e-4)
    got = np.bincount(np.searchsorted(edges, v, side="right"), minlength=len(exp)) / len(v)
    got = np.maximum(got, 1e-4)
    return float(np.sum((got - exp) * np.log(got / exp)))


@dataclass
class MonitorReport:
    """Live error, drift and the alerts raised for one model on one window."""

    model: str
    version: str
    start: str
    end: str
    mae: dict[int, float]
    persistence_mae: dict[int, float]
    error_ratio: float
    drift: dict[str, float]
    alerts: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "version": self.version,
            "start": self.start,
            "end": self.end,
            "mae": self.mae,
            "persistence_mae": self.persistence_mae,
            "error_ratio": self.error_ratio,
            "drift": self.drift,
            "alerts": self.alerts,
        }


def monitor_panel(
    model: Forecaster,
    panel: Panel,
    span: tuple[int, int],
    reference: dict[str, Any] | None,
    *,
    name: str = "",
    version: str = "",
    error_ratio: float = ERROR_RATIO_ALERT,
    psi_threshold: float = PSI_ALERT,
) -> MonitorReport:
    """Monitor ``model`` on the steps ``span`` of ``panel`` (targets known up to its end)."""
    h = model.horizon
    try:
        o = eval_origins(span, h)
    except HorizonError:
        o = eval_origins(span, 1)
        h = 1
    y = targets(panel, o, h)
    ev = score(y, model.predict(panel, o, horizon=h), range(1, h + 1))
    base = Persistence(h)
    base.meta = model.meta
    pe = score(y, base.predict(panel, o), range(1, h + 1))
    m = np.nanmean(list(ev.mae.values()))
    p = np.nanmean(list(pe.mae.values()))
    ratio = float(m / p) if p > 0 else float("nan")
    lo, hi = span
    drift = {}
    for ch, ref in ((reference or {}).get("inputs") or {}).items():
        if ch in panel.channels:
            drift[ch] = psi(ref, panel.values[lo:hi, :, panel.channels.index(ch)].ravel())
    alerts = []
    if np.isfinite(ratio) and ratio > error_ratio:
        alerts.append(
            f"error: MAE {m:.3g} is {ratio:.2f}x persistence's {p:.3g} (threshold {error_ratio:.2f}x)"
        )
    for ch, v in drift.items():
        if np.isfinite(v) and v > psi_threshold:
            alerts.append(f"drift: input {ch!r} PSI {v:.3f} > {psi_threshold}")
    return MonitorReport(
        name or model.family,
        version,
        str(panel.times[lo]),
        str(panel.times[hi - 1]),
        ev.mae,
        pe.mae,
        ratio,
        drift,
        alerts,
    )


def monitor(
    store: Any,
    name: str,
    version: int | str | None = None,
    *,
    start: Any,
    end: Any,
    error_ratio: float = ERROR_RATIO_ALERT,
    psi_threshold: float = PSI_ALERT,
) -> MonitorReport:
    """Monitor a registered version (default: production) on the store's data in
    [start, end): live error vs persistence, input drift, alerts."""
    from cityos.ai._anomaly import ForecastBandDetector

    det = ForecastBandDetector(name, version)
    model, v, panel, span = det._panel(store, start, end)
    return monitor_panel(
        model,
        panel,
        span,
        v.reference,
        name=v.name,
        version=str(v.version),
        error_ratio=error_ratio,
        psi_threshold=psi_threshold,
    )


def _ts(v: Any) -> pd.Timestamp:
    t = pd.Timestamp(v)
    return t.tz_localize("UTC") if t.tzinfo is None else t

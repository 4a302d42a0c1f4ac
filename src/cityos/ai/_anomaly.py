"""Anomaly detection and early warning: residuals outside a calibrated forecast band,
change points (two-sided CUSUM) in sensor series, and crowd gathering (inflow to a cell
far above its forecast). Every detection carries its evidence and is stored as a POINT_ST
dataset (``detections``; CONTRACTS.md), so governance can turn it into an event."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa

from cityos.ai._errors import ShapeError
from cityos.ai._panel import Panel
from cityos.ai._zoo import Forecaster

__all__ = [
    "DETECTION_FIELDS",
    "CrowdGatheringDetector",
    "DetectionQuality",
    "ForecastBandDetector",
    "change_points",
    "crowd_gathering",
    "detections_schema",
    "measure_detections",
    "residual_anomalies",
    "write_detections",
]

#: Columns of a detection besides id, t, x, y (CONTRACTS.md).
DETECTION_FIELDS = (
    "kind",
    "source_dataset",
    "place",
    "window_start",
    "window_end",
    "observed",
    "expected",
    "lower",
    "upper",
    "score",
    "model",
    "model_version",
)


def detections_schema() -> Any:
    """The POINT_ST schema of a detections dataset, keyed by (id, t)."""
    from cityos.model import DatasetSchema, Field, ModelKind

    return DatasetSchema(
        ModelKind.POINT_ST,
        fields=(
            Field("kind"),
            Field("source_dataset"),
            Field("place"),
            Field("window_start", "timestamp"),
            Field("window_end", "timestamp"),
            Field("observed", "float64"),
            Field("expected", "float64"),
            Field("lower", "float64"),
            Field("upper", "float64"),
            Field("score", "float64"),
            Field("model"),
            Field("model_version"),
        ),
        time_partition="30D",
        description="Detections of the AI engine's detectors (evidence for warnings)",
    )


def _empty() -> pd.DataFrame:
    cols = ["id", "t", "x", "y", *DETECTION_FIELDS]
    return pd.DataFrame({c: pd.Series(dtype="object") for c in cols})


def _runs(flag: np.ndarray) -> list[tuple[int, int]]:
    """Index ranges [a, b] of consecutive True values."""
    out, start = [], None
    for i, f in enumerate(flag):
        if f and start is None:
            start = i
        elif not f and start is not None:
            out.append((start, i - 1))
            start = None
    if start is not None:
        out.append((start, len(flag) - 1))
    return out


def _rows(
    kind: str,
    panel: Panel,
    flags: np.ndarray,
    obs: np.ndarray,
    exp: np.ndarray,
    lo: np.ndarray,
    hi: np.ndarray,
    sc: np.ndarray,
    steps: np.ndarray,
    model: str,
    version: str,
) -> pd.DataFrame:
    rows = []
    for j, node in enumerate(panel.nodes):
        for a, b in _runs(flags[:, j]):
            k = a + int(np.nanargmax(sc[a : b + 1, j]))
            t0, t1 = panel.times[steps[a]], panel.times[steps[b]] + panel.freq
            rows.append(
                {
                    "id": f"{kind}:{node}:{t0.isoformat()}",
                    "t": t0,
                    "x": float(panel.x[j]),
                    "y": float(panel.y[j]),
                    "kind": kind,
                    "source_dataset": ",".join(panel.datasets) or "",
                    "place": str(node),
                    "window_start": t0,
                    "window_end": t1,
                    "observed": float(obs[k, j]),
                    "expected": float(exp[k, j]),
                    "lower": float(lo[k, j]),
                    "upper": float(hi[k, j]),
                    "score": float(sc[k, j]),
                    "model": model,
                    "model_version": version,
                }
            )
    return pd.DataFrame(rows) if rows else _empty()


def _one_step(
    model: Forecaster, panel: Panel, span: tuple[int, int]
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    steps = np.arange(max(span[0], 1), span[1])
    yhat = model.predict(panel, steps - 1, horizon=1)[:, 0]  # issued one step before
    return steps, panel.series[steps], yhat


def residual_anomalies(
    model: Forecaster,
    panel: Panel,
    span: tuple[int, int],
    band: float | np.ndarray,
    *,
    version: str = "",
    name: str = "",
    widen: float = 3.0,
) -> pd.DataFrame:
    """Observations outside ``yhat ± widen * band`` of the one-step forecast (``band``: the
    calibrated half-width, e.g. ``reference["band"][0]`` of a registered version); runs of
    consecutive out-of-band steps at one place become one detection."""
    steps, obs, yhat = _one_step(model, panel, span)
    half = widen * np.broadcast_to(np.asarray(band, dtype="float64"), yhat.shape)
    lo, hi = yhat - half, yhat + half
    with np.errstate(invalid="ignore"):
        flag = np.isfinite(obs) & ((obs > hi) | (obs < lo))
        score = np.abs(obs - yhat) / np.maximum(half, 1e-9)
    return _rows(
        "residual", panel, flag, obs, yhat, lo, hi, score, steps, name or model.family, version
    )


def crowd_gathering(
    model: Forecaster,
    panel: Panel,
    span: tuple[int, int],
    band: float | np.ndarray,
    *,
    factor: float = 2.0,
    min_excess: float = 20.0,
    min_score: float = 3.0,
    version: str = "",
    name: str = "",
) -> pd.DataFrame:
    """Cells whose inflow is far above its forecast: at least ``min_score`` band
    half-widths above it, at least ``factor`` times the forecast, and at least
    ``min_excess`` arrivals more."""
    if "inflow" not in panel.channels or panel.target != "inflow":
        raise ShapeError(
            "crowd-gathering detection needs an inflow panel (grid-flow spec, target 'inflow')"
        )
    steps, obs, yhat = _one_step(model, panel, span)
    half = np.broadcast_to(np.asarray(band, dtype="float64"), yhat.shape)
    exp = np.maximum(yhat, 0.0)
    hi = exp + half
    with np.errstate(invalid="ignore"):
        score = (obs - exp) / np.maximum(half, 1.0)
        flag = (
            np.isfinite(obs)
            & (obs > hi)
            & (score >= min_score)
            & (obs >= factor * np.maximum(exp, 1.0))
            & (obs - exp >= min_excess)
        )
    return _rows(
        "crowd_gathering",
        panel,
        flag,
        obs,
        exp,
        exp - half,
        hi,
        score,
        steps,
        name or model.family,
        version,
    )


def change_points(
    panel: Panel,
    span: tuple[int, int],
    *,
    threshold: float = 15.0,
    drift: float = 2.0,
    warmup: int = 72,
    season: int = 24,
) -> pd.DataFrame:
    """Level shifts in each place's series by a two-sided CUSUM on the deseasonalised
    series (the median profile over ``season`` steps from the first ``warmup`` steps,
    scaled by the residuals' robust spread); an alarm re-estimates the level and restarts
    the statistics, so each shift is one detection, dated when it was detected."""
    lo, hi = span
    s = panel.series[lo:hi]
    rows = []
    phase = np.arange(len(s)) % max(season, 1)
    for j, node in enumerate(panel.nodes):
        v = s[:, j]
        w = v[:warmup]
        prof = np.array(
            [
                np.nanmedian(w[phase[:warmup] == k])
                if np.isfinite(w[phase[:warmup] == k]).any()
                else np.nan
                for k in range(max(season, 1))
            ]
        )
        if not np.isfinite(prof).all():
            continue
        r = v - prof[phase]
        ref = r[:warmup][np.isfinite(r[:warmup])]
        if len(ref) < 8:
            continue
        level = float(np.median(ref))
        # spread from seasonal differences: the in-sample residuals of a profile fitted
        # on the same few days would understate it
        d = (w[season:] - w[:-season]) if 0 < season < len(w) else np.diff(w)
        d = d[np.isfinite(d)]
        scale = (
            float(1.4826 * np.median(np.abs(d - np.median(d))) / np.sqrt(2)) if len(d) >= 8 else 0.0
        )
        scale = scale or float(np.std(ref)) or 1.0
        gp = gn = 0.0
        start = 0
        for i in range(warmup, len(v)):
            if not np.isfinite(r[i]):
                continue
            z = (r[i] - level) / scale
            gp, gn = max(0.0, gp + z - drift), max(0.0, gn - z - drift)
            if gp > threshold or gn > threshold:
                t = panel.times[lo + i]
                exp = float(prof[phase[i]] + level)
                rows.append(
                    {
                        "id": f"change_point:{node}:{t.isoformat()}",
                        "t": t,
                        "x": float(panel.x[j]),
                        "y": float(panel.y[j]),
                        "kind": "change_point",
                        "source_dataset": ",".join(panel.datasets) or "",
                        "place": str(node),
                        "window_start": panel.times[lo + start],
                        "window_end": t + panel.freq,
                        "observed": float(v[i]),
                        "expected": exp,
                        "lower": exp - threshold * scale,
                        "upper": exp + threshold * scale,
                        "score": float(max(gp, gn)),
                        "model": "cusum",
                        "model_version": "",
                    }
                )
                nxt = r[i : i + season][np.isfinite(r[i : i + season])]
                level = float(np.median(nxt)) if len(nxt) else level
                gp = gn = 0.0
                start = i
    return pd.DataFrame(rows) if rows else _empty()


def write_detections(store: Any, detections: pd.DataFrame, dataset: str = "detections") -> int:
    """Append detections to ``dataset`` (created with :func:`detections_schema`); idempotent."""
    from cityos.errors import DatasetNotFound

    try:
        store.describe(dataset)
    except DatasetNotFound:
        store.create_dataset(dataset, detections_schema())
    if not len(detections):
        return 0
    return int(store.append(dataset, detections, source="cityos.ai.detect").rows_written)


@dataclass(frozen=True)
class DetectionQuality:
    """Precision, recall and mean detection delay (steps) against injected anomalies."""

    precision: float
    recall: float
    mean_delay_steps: float
    detections: int
    injected: int


def measure_detections(
    detections: pd.DataFrame,
    injected: list[tuple[str, Any, Any]],
    freq: Any,
    *,
    tolerance: int = 2,
) -> DetectionQuality:
    """Score detections against injected anomalies ``(place, start, end)``: a detection is
    a true positive when at its place its window overlaps ``[start, end + tolerance steps)``."""
    step = pd.Timedelta(freq)
    hit = set()
    tp = 0
    delays = []
    for d in detections.itertuples(index=False):
        ok = False
        for k, (place, s, e) in enumerate(injected):
            s, e = pd.Timestamp(s), pd.Timestamp(e) + tolerance * step
            ws, we = pd.Timestamp(d.window_start), pd.Timestamp(d.window_end)  # type: ignore[arg-type]
            if str(d.place) == str(place) and ws < e and we > s:
                ok = True
                if k not in hit:
                    hit.add(k)
                    delays.append(max((pd.Timestamp(d.t) - s) / step, 0.0))  # type: ignore[arg-type]
        tp += ok
    n = len(detections)
    return DetectionQuality(
        tp / n if n else float("nan"),
        len(hit) / len(injected) if injected else float("nan"),
        float(np.mean(delays)) if delays else float("nan"),
        n,
        len(injected),
    )


class ForecastBandDetector:
    """A registered forecaster as a detector for governance: ``detect(store, start, end)``
    returns residual detections with exactly :data:`DETECTION_FIELDS` (and id, t, x, y)."""

    kind = "residual"

    def __init__(self, name: str, version: int | str | None = None, *, widen: float = 3.0) -> None:
        self.name, self.version, self.widen = name, version, widen

    def _panel(
        self, store: Any, start: Any, end: Any
    ) -> tuple[Forecaster, Any, Panel, tuple[int, int]]:
        from dataclasses import replace

        from cityos.ai._features import FeatureSpec, build_panel
        from cityos.ai._lifecycle import _reindex, align_panel
        from cityos.ai._registry import ModelRegistry

        model, v = ModelRegistry.of(store).load(self.name, self.version)
        spec = FeatureSpec.from_dict(v.feature_spec)
        freq = pd.Timedelta(spec.freq)
        lo, hi = pd.Timestamp(start), pd.Timestamp(end)
        lo = lo.tz_localize("UTC") if lo.tzinfo is None else lo
        hi = hi.tz_localize("UTC") if hi.tzinfo is None else hi
        first = lo.floor(freq) - freq * (model.lookback() + 1)
        panel = build_panel(
            store, replace(spec, start=first.isoformat(), end=hi.isoformat()), cache=False
        )
        panel = align_panel(_reindex(panel, first, hi.ceil(freq)), model.meta or {})
        return model, v, panel, (panel.index_of(lo), panel.shape[0])

    def _band(self, v: Any) -> Any:
        ref = v.reference or {}
        if ref.get("band_nodes"):
            return np.array(
                [np.nan if b is None else b for b in ref["band_nodes"]], dtype="float64"
            )
        band = ref.get("band") or [None]
        return float(band[0]) if band[0] is not None else float("nan")

    def detect(self, store: Any, start: Any, end: Any) -> pa.Table:
        model, v, panel, span = self._panel(store, start, end)
        df = residual_anomalies(
            model, panel, span, self._band(v), version=str(v.version), name=v.name, widen=self.widen
        )
        return pa.Table.from_pandas(df, preserve_index=False)


class CrowdGatheringDetector(ForecastBandDetector):
    """A registered grid-inflow forecaster as a crowd-gathering detector."""

    kind = "crowd_gathering"

    def __init__(
        self,
        name: str,
        version: int | str | None = None,
        *,
        factor: float = 2.0,
        min_excess: float = 20.0,
    ) -> None:
        super().__init__(name, version)
        self.factor, self.min_excess = factor, min_excess

    def detect(self, store: Any, start: Any, end: Any) -> pa.Table:
        model, v, panel, span = self._panel(store, start, end)
        df = crowd_gathering(
            model,
            panel,
            span,
            self._band(v),
            factor=self.factor,
            min_excess=self.min_excess,
            version=str(v.version),
            name=v.name,
        )
        return pa.Table.from_pandas(df, preserve_index=False)

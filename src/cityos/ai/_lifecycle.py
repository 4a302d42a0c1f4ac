"""The model lifecycle in a few calls: :func:`train` (build features, chronological split,
fit, score per horizon against persistence, calibrate a forecast band, register),
:func:`predict_fresh` (forecast from the store's latest data with a deployed version, in
one call), :func:`predict_inputs` (forecast from the model's real inputs), and
:func:`score_to_dataset` (batch scoring into a predictions dataset; CONTRACTS.md)."""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import pandas as pd

from cityos.ai._errors import FeatureSpecError, HorizonError, ShapeError
from cityos.ai._features import FeatureSpec, build_panel, panel_from_meta
from cityos.ai._metrics import Evaluation, eval_origins, evaluate, score, targets
from cityos.ai._panel import Panel, chrono_split
from cityos.ai._registry import ModelRegistry, ModelVersion
from cityos.ai._zoo import Forecaster, make_model

__all__ = [
    "PREDICTION_FIELDS",
    "TrainResult",
    "align_panel",
    "drift_reference",
    "predict_fresh",
    "predict_inputs",
    "predictions_schema",
    "score_to_dataset",
    "train",
]

#: Columns of a predictions dataset besides id, t, x, y (CONTRACTS.md).
PREDICTION_FIELDS = ("yhat", "horizon", "issued_at", "model", "model_version", "lower", "upper")
#: Coverage of the calibrated forecast band.
BAND_COVERAGE = 0.9


def predictions_schema() -> Any:
    """The POINT_SERIES schema of a predictions dataset, keyed by (id, t, horizon)."""
    from cityos.model import DatasetSchema, Field, ModelKind

    return DatasetSchema(
        ModelKind.POINT_SERIES,
        fields=(
            Field("yhat", "float64"),
            Field("horizon", "int64"),
            Field("issued_at", "timestamp"),
            Field("model"),
            Field("model_version"),
            Field("lower", "float64"),
            Field("upper", "float64"),
        ),
        key=("id", "t", "horizon"),
        time_partition="30D",
        description="Forecasts written by cityos.ai batch scoring",
    )


def _clean(v: Any) -> Any:
    if isinstance(v, dict):
        return {str(k): _clean(x) for k, x in v.items()}
    if isinstance(v, float) and not math.isfinite(v):
        return None
    return v


def drift_reference(panel: Panel, span: tuple[int, int], bins: int = 10) -> dict[str, Any]:
    """Per input channel: quantile bin edges and the training share in each bin (for PSI)."""
    lo, hi = span
    out: dict[str, Any] = {}
    for i, ch in enumerate(panel.channels):
        v = panel.values[lo:hi, :, i].ravel()
        v = v[np.isfinite(v)]
        if len(v) < bins:
            continue
        edges = np.unique(np.quantile(v, np.linspace(0, 1, bins + 1)[1:-1]))
        counts = np.bincount(np.searchsorted(edges, v, side="right"), minlength=len(edges) + 1)
        out[ch] = {"edges": edges.tolist(), "share": (counts / counts.sum()).tolist()}
    return out


@dataclass
class TrainResult:
    """What :func:`train` did: the model, its registered version, metrics and timings."""

    model: Forecaster
    version: ModelVersion | None
    panel: Panel
    splits: list[tuple[int, int]]
    metrics: dict[str, Any]
    fit_seconds: float
    evaluations: dict[str, Evaluation]


def _band(model: Forecaster, panel: Panel, span: tuple[int, int], *, per_node: bool = False) -> Any:
    """Split-conformal half-width per horizon (``per_node``: per horizon and node): the
    BAND_COVERAGE quantile of |residual| on ``span``."""
    o = eval_origins(span, model.horizon, stride=max((span[1] - span[0]) // 1000, 1))
    y, yhat = targets(panel, o, model.horizon), model.predict(panel, o)
    r = np.abs(y - yhat)  # (O, H, N)
    out = np.full(r.shape[1:], np.nan)
    for h in range(model.horizon):
        if per_node:
            for j in range(r.shape[2]):
                v = r[:, h, j][np.isfinite(r[:, h, j])]
                out[h, j] = np.quantile(v, BAND_COVERAGE) if len(v) >= 10 else np.nan
        v = r[:, h][np.isfinite(r[:, h])]
        glob = float(np.quantile(v, BAND_COVERAGE)) if len(v) else float("nan")
        out[h] = np.where(np.isfinite(out[h]), out[h], glob)
    if per_node:
        return out
    return [
        float(np.quantile(r[:, h][np.isfinite(r[:, h])], BAND_COVERAGE))
        if np.isfinite(r[:, h]).any()
        else float("nan")
        for h in range(model.horizon)
    ]


def train(
    store: Any,
    spec: FeatureSpec,
    family: str,
    *,
    horizon: int = 24,
    params: dict[str, Any] | None = None,
    train_end: Any = None,
    val_end: Any = None,
    test_end: Any = None,
    name: str | None = None,
    seed: int = 0,
    register: bool = True,
    eval_stride: int = 1,
    horizons: tuple[int, ...] | None = None,
    actor: str = "",
    study: dict[str, Any] | None = None,
    panel: Panel | None = None,
    workers: int = 1,
) -> TrainResult:
    """Train ``family`` on the features of ``spec`` with a chronological split and register it.

    ``train_end`` and ``val_end`` split the panel into train / validation / test (test runs
    to ``test_end`` or the end). Without them the last 20% is validation and nothing is test.
    Metrics per horizon on validation and test, for the model and for persistence, are
    recorded with the exact dataset versions and the code version. ``workers`` > 1 trains a
    deep model data-parallel across that many processes (``torch.distributed``, gloo).
    """
    panel = panel if panel is not None else build_panel(store, spec)
    t = panel.shape[0]
    if train_end is None:
        cut = int(t * 0.8)
        splits = [(0, cut), (cut, t)]
    else:
        bounds = [train_end] + ([val_end] if val_end is not None else [])
        if test_end is not None:
            bounds.append(test_end)
        splits = chrono_split(panel, *bounds)
        if test_end is not None:
            splits = splits[:-1]
    tr, va = splits[0], splits[1] if len(splits) > 1 else None
    model = make_model(family, horizon, seed=seed, **(params or {}))
    t0 = time.perf_counter()
    if workers > 1:
        if not model.deep:
            raise FeatureSpecError(
                f"workers={workers}: only the deep families train data-parallel, not {family!r}"
            )
        from cityos.ai._deep import fit_distributed

        model = fit_distributed(model, panel, train=tr, val=va, world_size=workers)  # type: ignore[arg-type]
    else:
        model.fit(panel, train=tr, val=va)
    fit_s = time.perf_counter() - t0
    hs = tuple(horizons or sorted({1, *range(6, horizon + 1, 6), horizon}))
    metrics: dict[str, Any] = {"fit_seconds": fit_s}
    evals: dict[str, Evaluation] = {}
    base = make_model("persistence", horizon).fit(panel, train=tr)
    for label, span in zip(("val", "test"), splits[1:], strict=False):
        if span[1] - span[0] <= horizon + 1:
            continue
        ev = evaluate(model, panel, span, hs, stride=eval_stride)
        pe = evaluate(base, panel, span, hs, stride=eval_stride)
        evals[label], evals[f"{label}_persistence"] = ev, pe
        metrics[label] = ev.to_dict()
        metrics[f"{label}_persistence"] = pe.to_dict()
    reference: dict[str, Any] = {"inputs": drift_reference(panel, tr)}
    if va is not None and va[1] - va[0] > horizon + 1:
        reference["band"] = _band(model, panel, va)
        reference["band_nodes"] = _band(model, panel, va, per_node=True)[0].tolist()
        reference["band_coverage"] = BAND_COVERAGE
    version = None
    if register:
        reg = ModelRegistry.of(store)
        version = reg.register(
            name or f"{spec.dataset}_{spec.target}",
            model,
            metrics=_clean(metrics),
            feature_spec=spec.to_dict(),
            study=study,
            reference=_clean(reference),
            actor=actor,
        )
        if model.deep:  # serve deep models with onnxruntime: ~4x faster (benchmarks/ai.py)
            import tempfile
            from pathlib import Path

            with tempfile.TemporaryDirectory() as d:
                f = model.export_onnx(Path(d) / "model.onnx", panel)  # type: ignore[attr-defined]
                version = reg.add_file(version.name, version.version, "model.onnx", f.read_bytes())
    return TrainResult(model, version, panel, splits, metrics, fit_s, evals)


# -- serving ---------------------------------------------------------------------------------
def align_panel(panel: Panel, meta: dict[str, Any]) -> Panel:
    """``panel`` with exactly the nodes and channels a model was fitted on (nodes with no
    data in the window become missing); a channel the model needs but the panel lacks is
    a :class:`ShapeError`."""
    missing = [c for c in meta["channels"] if c not in panel.channels]
    if missing:
        raise ShapeError(f"the data lacks channel(s) {missing} the model was fitted on")
    nodes = [str(n) for n in panel.nodes]
    pos = {n: i for i, n in enumerate(nodes)}
    want = meta["nodes"]
    v = np.full((panel.shape[0], len(want), len(meta["channels"])), np.nan)
    ci = [panel.channels.index(c) for c in meta["channels"]]
    for j, n in enumerate(want):
        if n in pos:
            v[:, j, :] = panel.values[:, pos[n], ci]
    p = panel_from_meta(v, panel.times, meta)
    return replace(p, datasets=panel.datasets)


def predict_fresh(
    store: Any,
    name: str,
    version: int | str | None = None,
    *,
    at: Any = None,
    ids: list[str] | None = None,
    horizon: int | None = None,
    registry: ModelRegistry | None = None,
) -> pd.DataFrame:
    """Forecast from the freshest data in the store with a registered version (default:
    production), in one call: reads the model's own feature spec's dataset up to ``at``
    (default: its latest reading) through ``store`` (a SecureStore authorises and audits
    the read), and returns ``id, t, horizon, yhat, lower, upper, issued_at, model,
    model_version, x, y``."""
    reg = registry or ModelRegistry.of(store)
    model, v = reg.load(name, version)
    spec = FeatureSpec.from_dict(v.feature_spec)
    info = store.describe(spec.dataset)
    freq = pd.Timedelta(spec.freq)
    if at is None:
        if info.t_max is None:
            raise FeatureSpecError(f"dataset {spec.dataset!r} is empty: nothing to forecast from")
        end = pd.Timestamp(info.t_max, unit="ms", tz="UTC").floor(freq) + freq
    else:
        ts = pd.Timestamp(at)
        end = (ts.tz_localize("UTC") if ts.tzinfo is None else ts.tz_convert("UTC")).floor(
            freq
        ) + freq
    start = end - freq * (model.lookback() + 1)
    window = replace(spec, start=start.isoformat(), end=end.isoformat())
    key = _window_key(store, window, int(info.version), v)
    panel = _WINDOWS.get(key) if key is not None else None
    if panel is None:
        panel = build_panel(store, window, cache=False)
        panel = align_panel(_reindex(panel, start, end), model.meta or {})
        if key is not None:
            _WINDOWS.put(key, panel)
    return _frame(model, v, panel, np.array([panel.shape[0] - 1]), horizon, ids)


class _WindowCache:
    """The recent windows fresh predictions read, keyed by who read them (their user and
    read decision: rows filtered and fields masked for them), the model version, the
    window and the exact dataset version: a new append makes a new version, so a cached
    window is always what the store would return now. Small LRU, thread-safe."""

    def __init__(self, size: int = 64) -> None:
        import threading
        from collections import OrderedDict

        self.size = size
        self._d: OrderedDict[tuple[Any, ...], Panel] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: tuple[Any, ...]) -> Panel | None:
        with self._lock:
            p = self._d.get(key)
            if p is not None:
                self._d.move_to_end(key)
            return p

    def put(self, key: tuple[Any, ...], panel: Panel) -> None:
        with self._lock:
            self._d[key] = panel
            self._d.move_to_end(key)
            while len(self._d) > self.size:
                self._d.popitem(last=False)


_WINDOWS = _WindowCache()


def _window_key(store: Any, window: FeatureSpec, version: int, v: ModelVersion) -> Any:
    if window.kind != "station":  # grids and networks read more than one dataset version
        return None
    who: Any = None
    if hasattr(store, "principal"):  # a SecureStore: what this user may see of the dataset
        dec = store.can_read(window.dataset)
        who = (store.principal.username, repr(dec))
    inner = getattr(store, "store", store)
    home = str(getattr(getattr(inner, "settings", None), "home", id(inner)))
    return (home, who, v.name, v.version, v.sha256, window.key({window.dataset: version}))


def _reindex(panel: Panel, start: pd.Timestamp, end: pd.Timestamp) -> Panel:
    times = pd.date_range(start, end - panel.freq, freq=panel.freq)
    idx = times.get_indexer(panel.times)
    v = np.full((len(times), *panel.shape[1:]), np.nan)
    ok = idx >= 0
    v[idx[ok]] = panel.values[ok]
    return replace(panel, values=v, times=times)


def _frame(
    model: Forecaster,
    v: ModelVersion,
    panel: Panel,
    origins: np.ndarray,
    horizon: int | None,
    ids: list[str] | None,
) -> pd.DataFrame:
    yhat = model.predict(panel, origins, horizon=horizon)  # (O, H, N)
    names = np.array([str(x) for x in panel.nodes])
    px, py = panel.x, panel.y
    if ids is not None:
        unknown = sorted(set(ids) - set(names.tolist()))
        if unknown:
            raise ShapeError(f"model {v.name!r} does not forecast place(s) {unknown}")
        keep = np.isin(names, ids)
        yhat, names, px, py = yhat[:, :, keep], names[keep], px[keep], py[keep]
    o, h, n = yhat.shape
    band = np.asarray(
        [
            np.nan if b is None else b
            for b in (v.reference or {}).get("band", [np.nan] * model.horizon)
        ]
    )[:h]
    issued = panel.times[origins]
    steps = np.arange(1, h + 1)
    df = pd.DataFrame(
        {
            "id": np.tile(names, o * h),
            "t": (np.repeat(issued, h * n) + np.tile(np.repeat(steps, n), o) * panel.freq),
            "horizon": np.tile(np.repeat(steps, n), o).astype("int64"),
            "yhat": yhat.ravel(),
            "issued_at": np.repeat(issued, h * n),
            "model": v.name,
            "model_version": str(v.version),
            "x": np.tile(px, o * h),
            "y": np.tile(py, o * h),
        }
    )
    b = np.tile(np.repeat(band, n), o)
    df["lower"] = df["yhat"] - b
    df["upper"] = df["yhat"] + b
    return df


def predict_inputs(
    registry: ModelRegistry,
    name: str,
    values: Any,
    start: Any,
    version: int | str | None = None,
    *,
    horizon: int | None = None,
    ids: list[str] | None = None,
) -> pd.DataFrame:
    """Forecast from the model's real inputs: ``values`` is the recent window
    ``(L, N, C)`` (steps, the model's nodes in order, its channels in order; null for
    missing) whose first step is at ``start``; the forecast is issued at the last step."""
    model, v = registry.load(name, version)
    meta = model.meta or {}
    arr = np.asarray(
        [[[np.nan if c is None else c for c in row] for row in step] for step in values]
        if isinstance(values, list)
        else values,
        dtype="float64",
    )
    n, c = len(meta["nodes"]), len(meta["channels"])
    if arr.ndim != 3 or arr.shape[1:] != (n, c) or arr.shape[0] < 1:
        raise ShapeError(
            f"model {name!r} takes values of shape (steps, {n} nodes, {c} channels "
            f"{meta['channels']}); got {arr.shape}"
        )
    if arr.shape[0] < model.lookback():
        pad = np.full((model.lookback() - arr.shape[0], n, c), np.nan)
        first = pd.Timestamp(start)
        first = first.tz_localize("UTC") if first.tzinfo is None else first.tz_convert("UTC")
        start = first - pd.Timedelta(seconds=meta["freq_s"]) * len(pad)
        arr = np.concatenate([pad, arr])
    st = pd.Timestamp(start)
    st = st.tz_localize("UTC") if st.tzinfo is None else st.tz_convert("UTC")
    times = pd.date_range(st, periods=arr.shape[0], freq=pd.Timedelta(seconds=meta["freq_s"]))
    panel = panel_from_meta(arr, times, meta)
    return _frame(model, v, panel, np.array([arr.shape[0] - 1]), horizon, ids)


def score_to_dataset(
    store: Any,
    name: str,
    output: str,
    start: Any,
    end: Any,
    version: int | str | None = None,
    *,
    registry: ModelRegistry | None = None,
) -> int:
    """Batch scoring: forecasts issued at every step in [start, end) with a registered
    version, written to the predictions dataset ``output`` (created with
    :func:`predictions_schema` when missing). Returns the rows written."""
    from cityos.errors import DatasetNotFound

    reg = registry or ModelRegistry.of(store)
    model, v = reg.load(name, version)
    spec = FeatureSpec.from_dict(v.feature_spec)
    freq = pd.Timedelta(spec.freq)
    lo = (
        pd.Timestamp(start, tz="UTC") if pd.Timestamp(start).tzinfo is None else pd.Timestamp(start)
    )
    hi = pd.Timestamp(end, tz="UTC") if pd.Timestamp(end).tzinfo is None else pd.Timestamp(end)
    if hi <= lo:
        raise HorizonError(f"scoring window [{start}, {end}) is empty")
    first = lo - freq * (model.lookback() + 1)
    panel = build_panel(
        store, replace(spec, start=first.isoformat(), end=hi.isoformat()), cache=False
    )
    panel = align_panel(_reindex(panel, first, hi), model.meta or {})
    origins = np.arange(panel.index_of(lo), panel.shape[0])
    df = _frame(model, v, panel, origins, None, None)
    try:
        store.describe(output)
    except DatasetNotFound:
        store.create_dataset(output, predictions_schema())
    res = store.append(output, df, source=f"cityos.ai:{name}:v{v.version}")
    return int(res.rows_written)


def evaluate_version(model: Forecaster, panel: Panel, span: tuple[int, int]) -> Evaluation:
    """Metrics per horizon of a loaded model on a span (the CLI's ``evaluate``)."""
    o = eval_origins(span, model.horizon)
    return score(
        targets(panel, o, model.horizon),
        model.predict(panel, o),
        range(1, model.horizon + 1),
        model.family,
    )

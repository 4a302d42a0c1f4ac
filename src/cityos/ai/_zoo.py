"""The model zoo: :class:`Forecaster` (the base owns fit / predict / save / load and the
checks; each model fills in ``_fit``, ``_predict`` and its state hooks), the explicit
registry of families, and the non-deep models (persistence, historical average, seasonal
naive, a LightGBM global model over lag features). The deep models live in
:mod:`cityos.ai._deep` and are the only place torch is imported."""

from __future__ import annotations

import importlib
import json
from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pandas as pd

from cityos.ai._errors import HorizonError, NotFittedError, ShapeError, UnknownModel
from cityos.ai._features import TabularSpec, calendar_features, tabular_features
from cityos.ai._panel import Panel

__all__ = [
    "FAMILIES",
    "Ensemble",
    "Forecaster",
    "HistoricalAverage",
    "LightGBMForecaster",
    "Persistence",
    "SeasonalNaive",
    "load_model",
    "make_model",
    "model_class",
]

_META = "model.json"


class Forecaster(ABC):
    """A multi-step spatial time-series forecaster over a :class:`Panel`.

    ``predict(panel, origins)`` returns ``(len(origins), H, N)``: for each origin step o,
    the target at o+1 .. o+H for every node, reading only steps <= o.

    Subclasses set :attr:`family` and :attr:`defaults` and implement :meth:`_fit`,
    :meth:`_predict`, and (when they learn arrays) :meth:`_state` / :meth:`_set_state`.

    Examples
    --------
    >>> p = Panel.from_array(np.arange(48.0).reshape(48, 1), "2026-03-02", "1h")
    >>> Persistence(horizon=2).fit(p).predict(p, np.array([10]))[0, :, 0].tolist()
    [10.0, 10.0]
    """

    family: ClassVar[str] = ""
    deep: ClassVar[bool] = False
    grid_only: ClassVar[bool] = False
    defaults: ClassVar[dict[str, Any]] = {}

    def __init__(self, horizon: int = 24, *, seed: int = 0, **params: Any) -> None:
        unknown = set(params) - set(self.defaults)
        if unknown:
            raise UnknownModel(
                f"{self.family} has no parameter(s) {sorted(unknown)}; "
                f"its parameters are {sorted(self.defaults)}"
            )
        if int(horizon) < 1:
            raise HorizonError(f"horizon must be at least 1 step, not {horizon}")
        self.horizon = int(horizon)
        self.seed = int(seed)
        self.params: dict[str, Any] = {**self.defaults, **params}
        self.meta: dict[str, Any] | None = None
        self.history: list[dict[str, float]] = []

    # -- hooks -------------------------------------------------------------------------------
    def lookback(self) -> int:
        """Steps of history (including the origin) a prediction reads."""
        return 1

    @abstractmethod
    def _fit(self, panel: Panel, train: np.ndarray, val: np.ndarray | None) -> None:
        """Learn from training origins ``train`` (targets within the training span)."""

    @abstractmethod
    def _predict(self, panel: Panel, origins: np.ndarray) -> np.ndarray:
        """``(O, H, N)`` forecasts."""

    def _state(self) -> dict[str, Any]:
        """Learned state to save: a dict of numpy arrays, strings and JSON-able values."""
        return {}

    def _set_state(self, state: dict[str, Any]) -> None:
        """Restore what :meth:`_state` returned."""
        return None

    # -- the loop ----------------------------------------------------------------------------
    def fit(
        self,
        panel: Panel,
        *,
        train: tuple[int, int] | None = None,
        val: tuple[int, int] | None = None,
    ) -> Forecaster:
        """Fit on the steps ``train`` (default: all), validating on ``val`` (after train)."""
        t = panel.shape[0]
        lo, hi = train or (0, t)
        if val is not None and val[0] < hi:
            raise ShapeError(
                f"validation span {val} must start after the training span ends ({hi})"
            )
        if self.grid_only and panel.grid is None:
            raise ShapeError(f"{self.family} needs a grid panel (kind='grid' feature spec)")
        tr = np.arange(lo, hi - self.horizon)
        if len(tr) < 2:
            raise HorizonError(
                f"{self.family}: {hi - lo} training steps cannot hold horizon {self.horizon}; "
                "use more data or a shorter horizon"
            )
        va = None
        if val is not None and val[1] - val[0] > self.horizon + 1:
            va = np.arange(val[0] - 1, val[1] - self.horizon)
        np.random.seed(self.seed)
        self.meta = panel.meta()
        self.meta["train"] = [str(panel.times[lo]), str(panel.times[hi - 1])]
        self._fit(panel, tr, va)
        return self

    @property
    def fitted(self) -> bool:
        return self.meta is not None

    def check(self, panel: Panel) -> None:
        """Raise :class:`ShapeError` unless ``panel`` has the nodes and channels fitted on."""
        if self.meta is None:
            raise NotFittedError(f"{self.family} is not fitted: call fit() first")
        nodes = [str(n) for n in panel.nodes]
        if nodes != self.meta["nodes"]:
            raise ShapeError(
                f"{self.family} was fitted on {len(self.meta['nodes'])} nodes "
                f"{self.meta['nodes'][:5]}...; got {len(nodes)} nodes {nodes[:5]}..."
            )
        if list(panel.channels) != self.meta["channels"] or panel.target != self.meta["target"]:
            raise ShapeError(
                f"{self.family} was fitted on channels {self.meta['channels']} (target "
                f"{self.meta['target']!r}); got {list(panel.channels)} (target {panel.target!r})"
            )

    def predict(
        self, panel: Panel, origins: Any = None, *, horizon: int | None = None
    ) -> np.ndarray:
        """Forecasts ``(O, H, N)`` issued at ``origins`` (step indices; default: the last)."""
        self.check(panel)
        h = horizon or self.horizon
        if h > self.horizon or h < 1:
            raise HorizonError(
                f"{self.family} forecasts 1..{self.horizon} steps ahead; asked for {h}"
            )
        t = panel.shape[0]
        o = np.atleast_1d(np.asarray(t - 1 if origins is None else origins, dtype=np.int64))
        if len(o) and (o.min() < 0 or o.max() >= t):
            raise ShapeError(f"origins must be step indices in [0, {t}); got {o.min()}..{o.max()}")
        out = np.asarray(self._predict(panel, o), dtype="float64")
        return out[:, :h]

    def forecast(self, panel: Panel, *, horizon: int | None = None) -> pd.DataFrame:
        """The next ``horizon`` steps after the panel's last step as long rows:
        ``id, t, horizon, yhat, issued_at, x, y``."""
        yhat = self.predict(panel, horizon=horizon)[0]
        h, n = yhat.shape
        issued = panel.times[-1]
        return pd.DataFrame(
            {
                "id": np.tile([str(v) for v in panel.nodes], h),
                "t": np.repeat(issued + panel.freq * np.arange(1, h + 1), n),
                "horizon": np.repeat(np.arange(1, h + 1), n).astype("int64"),
                "yhat": yhat.ravel(),
                "issued_at": issued,
                "x": np.tile(panel.x, h),
                "y": np.tile(panel.y, h),
            }
        )

    # -- persistence -------------------------------------------------------------------------
    def save(self, path: str | Path) -> Path:
        """Write the model to the folder ``path`` (``model.json`` plus state files)."""
        if self.meta is None:
            raise NotFittedError(f"{self.family} is not fitted: nothing to save")
        d = Path(path)
        d.mkdir(parents=True, exist_ok=True)
        arrays: dict[str, np.ndarray] = {}
        blobs: dict[str, str] = {}
        plain: dict[str, Any] = {}
        for k, v in self._state().items():
            if isinstance(v, np.ndarray):
                arrays[k] = v
            elif isinstance(v, bytes):
                (d / f"{k}.bin").write_bytes(v)
                blobs[k] = f"{k}.bin"
            else:
                plain[k] = v
        if arrays:
            np.savez(d / "arrays.npz", **arrays)  # type: ignore[arg-type]
        doc = {
            "family": self.family,
            "horizon": self.horizon,
            "seed": self.seed,
            "params": self.params,
            "meta": self.meta,
            "state": plain,
            "arrays": sorted(arrays),
            "blobs": blobs,
            "history": self.history,
        }
        (d / _META).write_text(json.dumps(doc, default=_jsonable))
        return d

    @classmethod
    def load(cls, path: str | Path) -> Forecaster:
        """Read a model written by :meth:`save` (any family)."""
        return load_model(path)


def _jsonable(v: Any) -> Any:
    if isinstance(v, np.generic):
        return v.item()
    if isinstance(v, tuple):
        return list(v)
    raise TypeError(f"cannot store {type(v).__name__} in model.json")


def load_model(path: str | Path) -> Forecaster:
    """A model from the folder :meth:`Forecaster.save` wrote."""
    d = Path(path)
    if not (d / _META).is_file():
        raise NotFittedError(f"no saved model in {d} (missing {_META})")
    doc = json.loads((d / _META).read_text())
    m = make_model(doc["family"], doc["horizon"], seed=doc["seed"], **doc["params"])
    m.meta = doc["meta"]
    m.history = doc.get("history", [])
    state: dict[str, Any] = dict(doc["state"])
    if doc["arrays"]:
        with np.load(d / "arrays.npz", allow_pickle=False) as z:
            state.update({k: z[k] for k in doc["arrays"]})
    for k, f in doc["blobs"].items():
        state[k] = (d / f).read_bytes()
    m._set_state(state)
    return m


# -- baselines -------------------------------------------------------------------------------
def _last_observed(s: np.ndarray, origins: np.ndarray) -> np.ndarray:
    """``(O, N)``: the last non-missing value at or before each origin."""
    t, n = s.shape
    idx = np.where(np.isfinite(s), np.arange(t)[:, None], -1)
    idx = np.maximum.accumulate(idx, axis=0)
    at = idx[origins]
    out = np.full(at.shape, np.nan)
    ok = at >= 0
    cols = np.broadcast_to(np.arange(n), at.shape)
    out[ok] = s[at[ok], cols[ok]]
    return out


class Persistence(Forecaster):
    """Tomorrow is like now: the last observed value, for every step ahead."""

    family = "persistence"

    def _fit(self, panel: Panel, train: np.ndarray, val: np.ndarray | None) -> None:
        pass

    def _predict(self, panel: Panel, origins: np.ndarray) -> np.ndarray:
        last = _last_observed(panel.series, origins)
        return np.repeat(last[:, None, :], self.horizon, axis=1)


class SeasonalNaive(Forecaster):
    """The value one season (default 24 steps) before each target step; the last observed
    value where that is missing."""

    family = "seasonal_naive"
    defaults: ClassVar[dict[str, Any]] = {"season": 24}

    def lookback(self) -> int:
        return int(self.params["season"])

    def _fit(self, panel: Panel, train: np.ndarray, val: np.ndarray | None) -> None:
        pass

    def _predict(self, panel: Panel, origins: np.ndarray) -> np.ndarray:
        s = panel.series
        season = int(self.params["season"])
        h = np.arange(1, self.horizon + 1)
        k = np.ceil(h / season).astype(int)  # whole seasons back so the step is <= origin
        idx = origins[:, None] + h[None, :] - k[None, :] * season
        out = np.full((len(origins), self.horizon, s.shape[1]), np.nan)
        ok = idx >= 0
        out[ok] = s[idx[ok]]
        fallback = _last_observed(s, origins)[:, None, :]
        return np.where(np.isfinite(out), out, fallback)


class HistoricalAverage(Forecaster):
    """Mean of the training target per node and slot of the week (local hour x weekday)."""

    family = "historical_average"

    def _slots(self, times: pd.DatetimeIndex) -> np.ndarray:
        assert self.meta is not None
        cal = calendar_features(times, self.meta.get("timezone") or "UTC")
        out: np.ndarray = (cal[:, 1] * 24 + cal[:, 0]).astype(np.int64)
        return out

    def _fit(self, panel: Panel, train: np.ndarray, val: np.ndarray | None) -> None:
        lo, hi = int(train[0]), int(train[-1]) + self.horizon + 1
        s = panel.series[lo:hi]
        slot = self._slots(panel.times[lo:hi])
        n = s.shape[1]
        tab = np.full((168, n), np.nan)
        ok = np.isfinite(s)
        z = np.where(ok, s, 0.0)
        sums = np.zeros((168, n))
        cnt = np.zeros((168, n))
        np.add.at(sums, slot, z)
        np.add.at(cnt, slot, ok)
        np.divide(sums, cnt, out=tab, where=cnt > 0)
        with np.errstate(invalid="ignore"):
            node_mean = np.where(ok.any(0), z.sum(0) / np.maximum(ok.sum(0), 1), 0.0)
        self.table = np.where(np.isfinite(tab), tab, node_mean[None, :])

    def _predict(self, panel: Panel, origins: np.ndarray) -> np.ndarray:
        steps = (
            panel.times[0]
            + panel.freq * (origins[:, None] + np.arange(1, self.horizon + 1)[None, :]).ravel()
        )
        slot = self._slots(pd.DatetimeIndex(steps)).reshape(len(origins), self.horizon)
        return np.asarray(self.table[slot])

    def _state(self) -> dict[str, Any]:
        return {"table": self.table}

    def _set_state(self, state: dict[str, Any]) -> None:
        self.table = np.asarray(state["table"])


class LightGBMForecaster(Forecaster):
    """A global LightGBM model over lag, rolling, period/trend, covariate, calendar and
    neighbour features (:func:`tabular_features`), one booster per step ahead (direct
    multi-step), trained on every node together."""

    family = "lightgbm"
    defaults: ClassVar[dict[str, Any]] = {
        "n_estimators": 300,
        "learning_rate": 0.05,
        "num_leaves": 63,
        "min_child_samples": 50,
        "feature_fraction": 0.8,
        "objective": "l1",
        "max_rows": 400_000,
        "early_stopping": 30,
        "num_threads": 1,  # more threads slow down badly on a shared, loaded machine
        "tabular": None,
    }

    def _tab(self) -> TabularSpec:
        t = self.params.get("tabular")
        if not t:
            return TabularSpec()
        kw: dict[str, Any] = {k: tuple(v) if isinstance(v, list) else v for k, v in t.items()}
        return TabularSpec(**kw)

    def lookback(self) -> int:
        return self._tab().lookback() + 1

    def _design(self, panel: Panel, origins: np.ndarray) -> np.ndarray:
        X, _ = tabular_features(panel, origins, self._tab())
        return X

    def _fit(self, panel: Panel, train: np.ndarray, val: np.ndarray | None) -> None:
        import lightgbm as lgb

        from cityos.ai._metrics import targets

        rng = np.random.default_rng(self.seed)
        n = panel.shape[1]
        cap = max(int(self.params["max_rows"]) // n, 1)
        tr = np.sort(rng.choice(train, cap, replace=False)) if len(train) > cap else train
        X = self._design(panel, tr)
        Y = targets(panel, tr, self.horizon).transpose(0, 2, 1).reshape(len(tr) * n, -1)
        Xv = Yv = None
        if val is not None and len(val):
            vv = val[:: max(len(val) // 2000, 1)]
            Xv = self._design(panel, vv)
            Yv = targets(panel, vv, self.horizon).transpose(0, 2, 1).reshape(len(vv) * n, -1)
        names = self._tab().names(panel.channels, panel.target)
        params = {
            "objective": self.params["objective"],
            "learning_rate": self.params["learning_rate"],
            "num_leaves": self.params["num_leaves"],
            "min_child_samples": self.params["min_child_samples"],
            "feature_fraction": self.params["feature_fraction"],
            "bagging_seed": self.seed,
            "feature_fraction_seed": self.seed,
            "seed": self.seed,
            "deterministic": True,
            "force_row_wise": True,
            "num_threads": self.params["num_threads"],
            "verbosity": -1,
        }
        self.boosters: list[Any] = []
        for h in range(self.horizon):
            ok = np.isfinite(Y[:, h])
            ds = lgb.Dataset(X[ok], Y[ok, h], feature_name=names, free_raw_data=True)
            sets, cbs = [], []
            if Xv is not None and Yv is not None:
                okv = np.isfinite(Yv[:, h])
                if okv.sum() > 10:
                    sets = [lgb.Dataset(Xv[okv], Yv[okv, h], reference=ds)]
                    cbs = [lgb.early_stopping(int(self.params["early_stopping"]), verbose=False)]
            b = lgb.train(
                params,
                ds,
                num_boost_round=int(self.params["n_estimators"]),
                valid_sets=sets,
                callbacks=cbs,  # type: ignore[arg-type]  # lightgbm's callback classes are callables
            )
            self.boosters.append(b)

    def _predict(self, panel: Panel, origins: np.ndarray) -> np.ndarray:
        n = panel.shape[1]
        X = self._design(panel, origins)
        out = np.stack(
            [
                b.predict(
                    X,
                    num_iteration=b.best_iteration or None,
                    num_threads=int(self.params["num_threads"]),
                )
                for b in self.boosters
            ],
            axis=-1,
        )
        return out.reshape(len(origins), n, self.horizon).transpose(0, 2, 1)

    def _state(self) -> dict[str, Any]:
        return {f"booster_{h}": b.model_to_string().encode() for h, b in enumerate(self.boosters)}

    def _set_state(self, state: dict[str, Any]) -> None:
        import lightgbm as lgb

        self.boosters = [
            lgb.Booster(model_str=state[f"booster_{h}"].decode()) for h in range(self.horizon)
        ]


class Ensemble(Forecaster):
    """A weighted mean of other zoo models' forecasts: each member is fitted on the training
    span, then per step ahead the non-negative weights (summing to 1, on a 0.05 grid) with
    the lowest masked MAE on the validation span are chosen — chronological validation only,
    never the test span. Without a validation span the members weigh equally.

    ``members`` lists ``[family, params]`` pairs; :meth:`from_fitted` combines models that
    are already fitted (no refit).
    """

    family = "ensemble"
    defaults: ClassVar[dict[str, Any]] = {
        "members": [["lightgbm", {}], ["stid", {}]],
        "grid_step": 0.05,
    }

    def lookback(self) -> int:
        return max(m.lookback() for m in self.members) if getattr(self, "members", None) else 1

    def _fit(self, panel: Panel, train: np.ndarray, val: np.ndarray | None) -> None:
        lo, hi = int(train[0]), int(train[-1]) + self.horizon + 1
        vspan = None if val is None else (int(val[0]) + 1, int(val[-1]) + self.horizon + 1)
        self.members = [
            make_model(f, self.horizon, seed=self.seed, **dict(p)).fit(
                panel, train=(lo, hi), val=vspan
            )
            for f, p in self.params["members"]
        ]
        self._weigh(panel, val)

    @classmethod
    def from_fitted(
        cls, members: list[Forecaster], panel: Panel, val: tuple[int, int] | None
    ) -> Ensemble:
        """An ensemble of fitted models, weighted on the validation span ``val``."""
        h = min(m.horizon for m in members)
        e = cls(h, members=[[m.family, {k: v for k, v in m.params.items()}] for m in members])
        e.members = list(members)
        e.meta = dict(members[0].meta or {})
        vo = None
        if val is not None and val[1] - val[0] > h + 1:
            vo = np.arange(val[0] - 1, val[1] - h)
        e._weigh(panel, vo)
        return e

    def _weigh(self, panel: Panel, val: np.ndarray | None) -> None:
        from itertools import product

        from cityos.ai._metrics import targets

        k = len(self.members)
        self.weights = np.full((self.horizon, k), 1.0 / k)
        if val is None or not len(val) or k == 1:
            return
        v = val[:: max(len(val) // 2000, 1)]
        preds = np.stack([m.predict(panel, v, horizon=self.horizon) for m in self.members])
        y = targets(panel, v, self.horizon)
        step = float(self.params["grid_step"])
        ticks = np.round(np.arange(0.0, 1.0 + 1e-9, step), 6)
        cands = np.array([w for w in product(ticks, repeat=k - 1) if sum(w) <= 1 + 1e-9])
        cands = np.column_stack([cands, 1.0 - cands.sum(1)])
        for h in range(self.horizon):
            yh, ph = y[:, h], preds[:, :, h]  # (O, N), (K, O, N)
            ok = np.isfinite(yh) & np.isfinite(ph).all(0)
            if not ok.any():
                continue
            a, b = yh[ok], ph[:, ok]  # (M,), (K, M)
            mae = np.abs(cands @ b - a[None, :]).mean(1)
            self.weights[h] = cands[int(np.argmin(mae))]

    def _predict(self, panel: Panel, origins: np.ndarray) -> np.ndarray:
        out = np.zeros((len(origins), self.horizon, panel.shape[1]))
        for w, m in zip(self.weights.T, self.members, strict=True):
            if np.any(w > 0):
                out += w[None, :, None] * m.predict(panel, origins, horizon=self.horizon)
        return out

    def _state(self) -> dict[str, Any]:
        import io
        import tempfile
        import zipfile

        state: dict[str, Any] = {"weights": self.weights}
        for i, m in enumerate(self.members):
            with tempfile.TemporaryDirectory() as d:
                folder = m.save(Path(d) / "m")
                buf = io.BytesIO()
                with zipfile.ZipFile(buf, "w") as z:
                    for f in sorted(folder.iterdir()):
                        z.write(f, f.name)
                state[f"member_{i}"] = buf.getvalue()
        return state

    def _set_state(self, state: dict[str, Any]) -> None:
        import io
        import tempfile
        import zipfile

        self.weights = np.asarray(state["weights"])
        self.members = []
        for i in range(len(self.params["members"])):
            with tempfile.TemporaryDirectory() as d:
                with zipfile.ZipFile(io.BytesIO(state[f"member_{i}"])) as z:
                    z.extractall(d)
                self.members.append(load_model(d))


# -- the registry ----------------------------------------------------------------------------
#: Every model family of the zoo: name -> "module:Class". Explicit (no discovery); the deep
#: families are imported only when asked for, so the rest never import torch.
FAMILIES: dict[str, str] = {
    "persistence": "cityos.ai._zoo:Persistence",
    "historical_average": "cityos.ai._zoo:HistoricalAverage",
    "seasonal_naive": "cityos.ai._zoo:SeasonalNaive",
    "lightgbm": "cityos.ai._zoo:LightGBMForecaster",
    "stid": "cityos.ai._deep:STID",
    "graph_wavenet": "cityos.ai._deep:GraphWaveNet",
    "st_resnet": "cityos.ai._deep:STResNet",
    "ensemble": "cityos.ai._zoo:Ensemble",
}


def model_class(family: str) -> type[Forecaster]:
    """The class of a zoo family (imports torch only for the deep families)."""
    try:
        target = FAMILIES[family]
    except KeyError:
        raise UnknownModel(
            f"unknown model family {family!r}; the zoo has {sorted(FAMILIES)}"
        ) from None
    mod, _, name = target.partition(":")
    cls: type[Forecaster] = getattr(importlib.import_module(mod), name)
    return cls


def make_model(family: str, horizon: int = 24, *, seed: int = 0, **params: Any) -> Forecaster:
    """A fresh, unfitted model of ``family``.

    Examples
    --------
    >>> make_model("seasonal_naive", 6, season=12).params
    {'season': 12}
    """
    return model_class(family)(horizon, seed=seed, **params)

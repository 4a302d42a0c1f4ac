"""AutoML: an Optuna search over model families and their hyper-parameters under a
wall-clock budget, scored by chronological validation (rolling-origin folds inside the
training span), pruning bad trials after their first fold; the best model is refitted and
registered with its study."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from cityos.ai._features import FeatureSpec, build_panel
from cityos.ai._metrics import evaluate
from cityos.ai._panel import Panel
from cityos.ai._zoo import make_model

__all__ = ["SEARCH_SPACE", "AutoMLResult", "automl"]


def _space(trial: Any, family: str) -> dict[str, Any]:
    if family == "lightgbm":
        return {
            "n_estimators": trial.suggest_int("n_estimators", 50, 400, log=True),
            "learning_rate": trial.suggest_float("learning_rate", 0.02, 0.2, log=True),
            "num_leaves": trial.suggest_int("num_leaves", 15, 127, log=True),
            "min_child_samples": trial.suggest_int("min_child_samples", 10, 200, log=True),
        }
    if family == "seasonal_naive":
        return {"season": trial.suggest_categorical("season", [24, 168])}
    if family == "stid":
        return {
            "hidden": trial.suggest_categorical("hidden", [16, 32, 64]),
            "window": trial.suggest_categorical("window", [12, 24, 48]),
            "lr": trial.suggest_float("lr", 5e-4, 5e-3, log=True),
            "epochs": 8,
        }
    return {}


#: Families searched by default (the deep ones are opt-in: they need torch and time).
SEARCH_SPACE = ("persistence", "historical_average", "seasonal_naive", "lightgbm")


@dataclass
class AutoMLResult:
    best_family: str
    best_params: dict[str, Any]
    best_value: float
    trials: list[dict[str, Any]]
    version: Any


def automl(
    store: Any,
    spec: FeatureSpec,
    *,
    horizon: int = 24,
    budget_s: float = 600.0,
    families: tuple[str, ...] = SEARCH_SPACE,
    train_end: Any = None,
    val_end: Any = None,
    folds: int = 2,
    name: str | None = None,
    seed: int = 0,
    panel: Panel | None = None,
    register: bool = True,
) -> AutoMLResult:
    """Search ``families`` for ``budget_s`` seconds; the objective is the mean validation
    MAE over ``folds`` rolling origins inside the training span (chronological, never
    the test data). Registers the best model (refitted by :func:`train`) with its study."""
    import optuna

    from cityos.ai._lifecycle import train
    from cityos.ai._panel import chrono_split

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    panel = panel if panel is not None else build_panel(store, spec)
    end = (
        chrono_split(panel, train_end)[0][1] if train_end is not None else int(panel.shape[0] * 0.8)
    )
    fold_len = max((end // 5) // folds, horizon + 2)
    deadline = time.monotonic() + budget_s

    def objective(trial: Any) -> float:
        family = trial.suggest_categorical("family", list(families))
        params = _space(trial, family)
        scores = []
        for k in range(folds):
            tr_end = end - (folds - k) * fold_len
            m = make_model(family, horizon, seed=seed, **params).fit(panel, train=(0, tr_end))
            ev = evaluate(m, panel, (tr_end, tr_end + fold_len), stride=max(fold_len // 200, 1))
            scores.append(float(np.nanmean(list(ev.mae.values()))))
            trial.report(float(np.mean(scores)), k)
            if trial.should_prune():
                raise optuna.TrialPruned()
        return float(np.mean(scores))

    study = optuna.create_study(
        direction="minimize",
        sampler=optuna.samplers.TPESampler(seed=seed),
        pruner=optuna.pruners.MedianPruner(n_startup_trials=3, n_warmup_steps=0),
    )
    for fam in families:  # every family gets at least one look
        study.enqueue_trial({"family": fam})
    study.optimize(objective, timeout=max(deadline - time.monotonic(), 1.0), catch=())
    best = study.best_trial
    fam = best.params["family"]
    params = {k: v for k, v in best.params.items() if k != "family"}
    params.update({k: v for k, v in _space(_Fixed(best.params), fam).items() if k not in params})
    trials = [
        {"number": t.number, "state": t.state.name, "value": t.value, "params": t.params}
        for t in study.trials
    ]
    summary = {"best_value": best.value, "trials": trials, "budget_s": budget_s, "folds": folds}
    version = None
    if register:
        version = train(
            store,
            spec,
            fam,
            horizon=horizon,
            params=params,
            train_end=train_end,
            val_end=val_end,
            name=name,
            seed=seed,
            study=summary,
            panel=panel,
        ).version
    assert best.value is not None  # a completed trial always has a value
    return AutoMLResult(fam, params, float(best.value), trials, version)


class _Fixed:
    """A stand-in trial answering with the best trial's values (for fixed extras such as epochs)."""

    def __init__(self, values: dict[str, Any]) -> None:
        self.values = values

    def suggest_int(self, name: str, *a: Any, **k: Any) -> Any:
        return self.values[name]

    suggest_float = suggest_int
    suggest_categorical = suggest_int

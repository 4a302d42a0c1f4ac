"""Masked forecast metrics per horizon (MAE, RMSE, MAPE), the one evaluation routine every
zoo model is scored by, and rolling-origin backtests."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from cityos.ai._errors import HorizonError
from cityos.ai._panel import Panel

if TYPE_CHECKING:
    from cityos.ai._zoo import Forecaster

__all__ = [
    "Evaluation",
    "backtest",
    "eval_origins",
    "evaluate",
    "masked_mae",
    "masked_mape",
    "masked_rmse",
    "targets",
]

#: MAPE ignores true values below this (PM2.5 near zero would make it explode).
MAPE_FLOOR = 1.0


def masked_mae(y: np.ndarray, yhat: np.ndarray) -> float:
    """Mean absolute error over the entries where both are known.

    Examples
    --------
    >>> masked_mae(np.array([1.0, np.nan, 3.0]), np.array([2.0, 5.0, 3.0]))
    0.5
    """
    m = np.isfinite(y) & np.isfinite(yhat)
    return float(np.abs(y[m] - yhat[m]).mean()) if m.any() else float("nan")


def masked_rmse(y: np.ndarray, yhat: np.ndarray) -> float:
    """Root mean squared error over the known entries.

    Examples
    --------
    >>> round(masked_rmse(np.array([0.0, 0.0]), np.array([3.0, 4.0])) ** 2, 9)
    12.5
    """
    m = np.isfinite(y) & np.isfinite(yhat)
    return float(np.sqrt(((y[m] - yhat[m]) ** 2).mean())) if m.any() else float("nan")


def masked_mape(y: np.ndarray, yhat: np.ndarray, floor: float = MAPE_FLOOR) -> float:
    """Mean absolute percentage error (%) over known entries with ``|y| >= floor``.

    Examples
    --------
    >>> masked_mape(np.array([10.0, 0.1]), np.array([11.0, 5.0]))
    10.0
    """
    m = np.isfinite(y) & np.isfinite(yhat) & (np.abs(y) >= floor)
    return float((np.abs(y[m] - yhat[m]) / np.abs(y[m])).mean() * 100) if m.any() else float("nan")


def targets(panel: Panel, origins: np.ndarray, horizon: int) -> np.ndarray:
    """True values ``(O, H, N)`` at ``origin + 1 .. origin + H`` (NaN past the end)."""
    s = panel.series
    idx = np.asarray(origins)[:, None] + np.arange(1, horizon + 1)[None, :]
    out = np.full((len(origins), horizon, s.shape[1]), np.nan)
    ok = idx < s.shape[0]
    out[ok] = s[idx[ok]]
    return out


def eval_origins(span: tuple[int, int], horizon: int, stride: int = 1) -> np.ndarray:
    """Origins whose targets ``o+1 .. o+H`` all fall in ``[start, stop)``."""
    start, stop = span
    o = np.arange(max(start - 1, 0), stop - horizon, stride)
    if not len(o):
        raise HorizonError(
            f"horizon {horizon} does not fit in a span of {stop - start} steps; "
            "use a longer span or a shorter horizon"
        )
    return o


@dataclass
class Evaluation:
    """Metrics per horizon (1-based) of one model on one span."""

    model: str
    horizons: list[int]
    mae: dict[int, float]
    rmse: dict[int, float]
    mape: dict[int, float]
    n: dict[int, int] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "mae": {str(h): v for h, v in self.mae.items()},
            "rmse": {str(h): v for h, v in self.rmse.items()},
            "mape": {str(h): v for h, v in self.mape.items()},
            "n": {str(h): v for h, v in self.n.items()},
        }


def score(y: np.ndarray, yhat: np.ndarray, horizons: Sequence[int], model: str = "") -> Evaluation:
    """Metrics per horizon from true and predicted ``(O, H, N)`` arrays.

    Examples
    --------
    >>> y = np.ones((2, 2, 1)); yhat = y + np.array([0.0, 2.0])[None, :, None]
    >>> score(y, yhat, [1, 2]).mae
    {1: 0.0, 2: 2.0}
    """
    ev = Evaluation(model, list(horizons), {}, {}, {})
    for h in horizons:
        a, b = y[:, h - 1], yhat[:, h - 1]
        ev.mae[h] = masked_mae(a, b)
        ev.rmse[h] = masked_rmse(a, b)
        ev.mape[h] = masked_mape(a, b)
        ev.n[h] = int((np.isfinite(a) & np.isfinite(b)).sum())
    return ev


def evaluate(
    model: Forecaster,
    panel: Panel,
    span: tuple[int, int],
    horizons: Sequence[int] | None = None,
    *,
    stride: int = 1,
) -> Evaluation:
    """Score a fitted model on ``span`` (indices): forecasts issued at every origin whose
    targets lie in the span, masked metrics per horizon. The same code scores every model.
    """
    hs = list(horizons or range(1, model.horizon + 1))
    if max(hs) > model.horizon:
        raise HorizonError(f"horizon {max(hs)} exceeds the model's {model.horizon}")
    origins = eval_origins(span, model.horizon, stride)
    yhat = model.predict(panel, origins)
    return score(targets(panel, origins, model.horizon), yhat, hs, model.family)


def backtest(
    make: Any,
    panel: Panel,
    *,
    first_train_end: int,
    test_len: int,
    folds: int = 3,
    horizons: Sequence[int] | None = None,
    stride: int = 1,
) -> list[Evaluation]:
    """Rolling-origin backtest: fold k trains on ``[0, first_train_end + k * test_len)``
    and is scored on the next ``test_len`` steps. ``make()`` returns a fresh model."""
    out = []
    for k in range(folds):
        end = first_train_end + k * test_len
        if end + test_len > panel.shape[0]:
            break
        m = make().fit(panel, train=(0, end))
        out.append(evaluate(m, panel, (end, end + test_len), horizons, stride=stride))
    if not out:
        raise HorizonError("no backtest fold fits in the panel; lower first_train_end or test_len")
    return out

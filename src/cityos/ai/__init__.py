"""The spatio-temporal AI engine: feature specs over store datasets, the model zoo (one
base class, one registry, one contract test), evaluation and backtests, the model registry,
serving, anomaly detection, monitoring and AutoML.

``import cityos.ai`` never imports torch: the deep models load when their family is asked
for (:func:`make_model`).

>>> from cityos.ai import FAMILIES, make_model
>>> "lightgbm" in FAMILIES and make_model("persistence", 6).horizon
6
"""

from cityos.ai._errors import (
    AIError,
    FeatureSpecError,
    HorizonError,
    NotFittedError,
    RegistryError,
    ShapeError,
    UnknownModel,
    VersionNotFound,
)
from cityos.ai._features import (
    FeatureSpec,
    TabularSpec,
    build_panel,
    calendar_features,
    distance_adjacency,
    knn_indices,
    panel_from_frame,
    road_adjacency,
    tabular_features,
)
from cityos.ai._metrics import (
    Evaluation,
    backtest,
    eval_origins,
    evaluate,
    masked_mae,
    masked_mape,
    masked_rmse,
    score,
    targets,
)
from cityos.ai._panel import Panel, chrono_split
from cityos.ai._zoo import (
    FAMILIES,
    Forecaster,
    HistoricalAverage,
    LightGBMForecaster,
    Persistence,
    SeasonalNaive,
    load_model,
    make_model,
    model_class,
)

__all__ = [
    "FAMILIES",
    "AIError",
    "Evaluation",
    "FeatureSpec",
    "FeatureSpecError",
    "Forecaster",
    "HistoricalAverage",
    "HorizonError",
    "LightGBMForecaster",
    "NotFittedError",
    "Panel",
    "Persistence",
    "RegistryError",
    "SeasonalNaive",
    "ShapeError",
    "TabularSpec",
    "UnknownModel",
    "VersionNotFound",
    "backtest",
    "build_panel",
    "calendar_features",
    "chrono_split",
    "distance_adjacency",
    "eval_origins",
    "evaluate",
    "knn_indices",
    "load_model",
    "make_model",
    "masked_mae",
    "masked_mape",
    "masked_rmse",
    "model_class",
    "panel_from_frame",
    "road_adjacency",
    "score",
    "tabular_features",
    "targets",
]

"""CityOS: an open-source urban operating system.

The public surface is imported lazily so that ``import cityos`` stays cheap (no torch,
FastAPI or Spark until used)::

    import cityos
    city = cityos.open_city("mycity")          # a Store over ./mycity
    city.create_dataset("taxis", cityos.MovingPoints.schema(...))
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

_LAZY = {
    "Store": "cityos.store",
    "open_city": "cityos.store",
    "Settings": "cityos.config",
    "CityOSError": "cityos.errors",
    "ValidationError": "cityos.errors",
    "DatasetNotFound": "cityos.errors",
    "QueryError": "cityos.errors",
    "ModelKind": "cityos.model",
    "DatasetSchema": "cityos.model",
    "Field": "cityos.model",
    "StaticFeatures": "cityos.model",
    "PointSeries": "cityos.model",
    "MovingPoints": "cityos.model",
    "RoadNetwork": "cityos.model",
    "NetworkSeries": "cityos.model",
    "Trajectories": "cityos.model",
    "PlainTable": "cityos.model",
}

__all__ = ["__version__", *sorted(_LAZY)]

if TYPE_CHECKING:  # re-exported lazily through __getattr__
    from cityos.config import Settings  # noqa: F401
    from cityos.errors import CityOSError, DatasetNotFound, QueryError, ValidationError  # noqa: F401
    from cityos.model import (  # noqa: F401
        DatasetSchema,
        Field,
        ModelKind,
        MovingPoints,
        NetworkSeries,
        PlainTable,
        PointSeries,
        RoadNetwork,
        StaticFeatures,
        Trajectories,
    )
    from cityos.store import Store, open_city  # noqa: F401


def __getattr__(name: str) -> Any:
    mod = _LAZY.get(name)
    if mod is None:
        raise AttributeError(f"module 'cityos' has no attribute {name!r}")
    value = getattr(importlib.import_module(mod), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return __all__

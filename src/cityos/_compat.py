"""Optional imports funnelled through one place, with an actionable message."""

from __future__ import annotations

import importlib
from types import ModuleType

from cityos.errors import MissingDependency

_EXTRA = {
    "pyspark": "spark",
    "psycopg": "postgres",
    "fastapi": "server",
    "uvicorn": "server",
    "paho": "mqtt",
    "pyogrio": "files",
    "torch": "ai",
}


def import_optional(module: str, feature: str) -> ModuleType:
    """Import ``module`` or raise :class:`MissingDependency` naming the extra to install."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        root = module.split(".")[0]
        raise MissingDependency(root, feature, _EXTRA.get(root, "all")) from exc

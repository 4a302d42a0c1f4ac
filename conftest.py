"""Collection rules for the doctests of ``src/cityos`` (run with ``--doctest-modules``, see
pyproject): a module whose optional dependency is not installed is not collected, and the
Alembic environment script (which only runs inside Alembic) never is."""

from __future__ import annotations

import importlib.util

#: module or package path (from the repository root) -> the optional dependency it needs
OPTIONAL = {
    "src/cityos/server": "fastapi",
    "src/cityos/access": "jwt",
    "src/cityos/ingest/mqtt.py": "paho",
    "src/cityos/store/_spark.py": "pyspark",
    "src/cityos/testing/mosquitto.py": "paho",
}

collect_ignore = ["src/cityos/_migrations"]
collect_ignore += [path for path, dep in OPTIONAL.items() if importlib.util.find_spec(dep) is None]

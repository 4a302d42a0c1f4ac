"""The digital twin: the city on one screen, and map services for every other client.

The server mounts :func:`install`: Arrow IPC map layers filtered by viewport and time
(``/twin/layers``), OGC API – Features (``/ogc``), Mapbox Vector Tiles
(``/tiles/{dataset}/{z}/{x}/{y}.mvt``) and the dashboard built from ``web/`` (``/``,
``/twin/``). Every data route reads through :class:`cityos.access.SecureStore`.

Examples
--------
>>> from cityos.twin import layer_kind, parse_bbox
>>> layer_kind("network_static", "line"), parse_bbox("0,0,1,1")
('lines', (0.0, 0.0, 1.0, 1.0))
"""

from __future__ import annotations

from typing import Any

from cityos.twin._layers import (
    ARROW,
    LayerRequest,
    encode_arrow,
    layer_kind,
    layer_table,
    parse_bbox,
    parse_datetime,
    parse_time,
)
from cityos.twin.errors import TwinError, TwinRequestError

__all__ = [
    "ARROW",
    "LayerRequest",
    "TwinError",
    "TwinRequestError",
    "encode_arrow",
    "install",
    "layer_kind",
    "layer_table",
    "parse_bbox",
    "parse_datetime",
    "parse_time",
    "static_dir",
]


def install(app: Any, store_dep: Any, responses: dict[int | str, Any] | None = None) -> None:
    """Add the twin's routes and the dashboard to a FastAPI ``app``; ``store_dep`` is the
    server's dependency giving the caller's :class:`cityos.access.SecureStore`, and
    ``responses`` the server's documented error answers."""
    from cityos.twin._routes import install as _install

    _install(app, store_dep, responses)


def static_dir() -> Any:
    """The folder of the built dashboard inside the package (``twin/static``)."""
    from cityos.twin._routes import static_dir as _static_dir

    return _static_dir()

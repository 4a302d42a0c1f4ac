"""Coordinate reference systems through pyproj, with cached transformers."""

from __future__ import annotations

from functools import lru_cache
from typing import Any

import numpy as np
from pyproj import CRS, Transformer

__all__ = ["WGS84", "crs_from_user", "is_geographic", "to_crs", "transform_xy"]

WGS84 = "EPSG:4326"


@lru_cache(maxsize=128)
def _crs(spec: str) -> CRS:
    return CRS.from_user_input(spec)


def crs_from_user(spec: Any) -> str:
    """Normalise a CRS given as EPSG int, 'EPSG:xxxx', WKT or pyproj CRS to a string key."""
    if spec is None:
        return WGS84
    if isinstance(spec, int):
        return f"EPSG:{spec}"
    if isinstance(spec, CRS):
        code = spec.to_epsg()
        return f"EPSG:{code}" if code else spec.to_wkt()
    s = str(spec)
    c = _crs(s)
    code = c.to_epsg()
    return f"EPSG:{code}" if code else s


def is_geographic(crs: str) -> bool:
    """True when the CRS uses longitude/latitude degrees."""
    return bool(_crs(crs).is_geographic)


@lru_cache(maxsize=128)
def _transformer(src: str, dst: str) -> Transformer:
    return Transformer.from_crs(_crs(src), _crs(dst), always_xy=True)


def transform_xy(
    x: np.ndarray | float, y: np.ndarray | float, src: str, dst: str
) -> tuple[np.ndarray, np.ndarray]:
    """Transform coordinates between CRSs (x = longitude/easting first).

    Examples
    --------
    >>> x, y = transform_xy(116.4, 39.9, "EPSG:4326", "EPSG:3857")
    >>> round(float(x))
    12957589
    """
    xa = np.asarray(x, dtype="float64")
    ya = np.asarray(y, dtype="float64")
    if crs_from_user(src) == crs_from_user(dst):
        return xa, ya
    tx, ty = _transformer(crs_from_user(src), crs_from_user(dst)).transform(xa, ya)
    return np.asarray(tx, dtype="float64"), np.asarray(ty, dtype="float64")


def to_crs(geom: Any, src: str, dst: str) -> Any:
    """Transform a shapely geometry between CRSs."""
    import shapely

    if crs_from_user(src) == crs_from_user(dst):
        return geom
    t = _transformer(crs_from_user(src), crs_from_user(dst))
    return shapely.transform(geom, lambda c: np.column_stack(t.transform(c[:, 0], c[:, 1])))

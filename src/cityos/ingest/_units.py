"""Simple unit conversions for mapped fields (concentration, speed, length, temperature,
pressure, duration): each unit is a scale and offset onto its dimension's base unit."""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

__all__ = ["UNITS", "convert_units", "normalise_unit", "unit_dimension"]

# unit -> (dimension, scale, offset): base = value * scale + offset
UNITS: dict[str, tuple[str, float, float]] = {
    "ng/m3": ("concentration", 1e-3, 0.0),
    "ug/m3": ("concentration", 1.0, 0.0),
    "mg/m3": ("concentration", 1e3, 0.0),
    "g/m3": ("concentration", 1e6, 0.0),
    "m/s": ("speed", 1.0, 0.0),
    "km/h": ("speed", 1.0 / 3.6, 0.0),
    "mph": ("speed", 0.44704, 0.0),
    "kn": ("speed", 1852.0 / 3600.0, 0.0),
    "mm": ("length", 1e-3, 0.0),
    "cm": ("length", 1e-2, 0.0),
    "m": ("length", 1.0, 0.0),
    "km": ("length", 1e3, 0.0),
    "ft": ("length", 0.3048, 0.0),
    "mi": ("length", 1609.344, 0.0),
    "degc": ("temperature", 1.0, 0.0),
    "k": ("temperature", 1.0, -273.15),
    "degf": ("temperature", 5.0 / 9.0, -32.0 * 5.0 / 9.0),
    "pa": ("pressure", 1.0, 0.0),
    "hpa": ("pressure", 100.0, 0.0),
    "kpa": ("pressure", 1e3, 0.0),
    "mbar": ("pressure", 100.0, 0.0),
    "bar": ("pressure", 1e5, 0.0),
    "ms": ("duration", 1e-3, 0.0),
    "s": ("duration", 1.0, 0.0),
    "min": ("duration", 60.0, 0.0),
    "h": ("duration", 3600.0, 0.0),
    "ppb": ("mixing_ratio", 1.0, 0.0),
    "ppm": ("mixing_ratio", 1e3, 0.0),
    "%": ("fraction", 1.0, 0.0),
}
_ALIASES = {
    "°c": "degc",
    "celsius": "degc",
    "c": "degc",
    "°f": "degf",
    "fahrenheit": "degf",
    "kelvin": "k",
    "kmh": "km/h",
    "kph": "km/h",
    "knots": "kn",
    "kt": "kn",
    "mps": "m/s",
    "percent": "%",
    "sec": "s",
    "hour": "h",
    "hr": "h",
}


def normalise_unit(unit: str) -> str | None:
    """The canonical spelling of ``unit`` (``"µg/m³"`` → ``"ug/m3"``), or None if unknown.

    Examples
    --------
    >>> normalise_unit("µg/m³"), normalise_unit("KM/H"), normalise_unit("furlong")
    ('ug/m3', 'km/h', None)
    """
    u = unit.strip().lower().replace("µ", "u").replace("μ", "u").replace("³", "3").replace(" ", "")
    u = _ALIASES.get(u, u)
    return u if u in UNITS else None


def unit_dimension(unit: str) -> str | None:
    """The dimension of a unit (``"speed"``), or None if the unit is unknown."""
    u = normalise_unit(unit)
    return UNITS[u][0] if u else None


def convert_units(values: NDArray[np.float64], src: str, dst: str) -> NDArray[np.float64]:
    """Convert numbers from unit ``src`` to unit ``dst`` of the same dimension.

    Examples
    --------
    >>> float(convert_units(np.array([1.2]), "mg/m3", "ug/m3")[0])
    1200.0
    >>> round(float(convert_units(np.array([36.0]), "km/h", "m/s")[0]), 6)
    10.0
    """
    s, d = normalise_unit(src), normalise_unit(dst)
    if s is None or d is None or UNITS[s][0] != UNITS[d][0]:
        raise ValueError(f"cannot convert {src!r} to {dst!r}")
    _, s1, o1 = UNITS[s]
    _, s2, o2 = UNITS[d]
    if s == d:
        return values
    return ((values * s1 + o1) - o2) / s2

"""Errors of the analytics layer: one root, :class:`AnalyticsError`, under ``CityOSError``.

CityOSError
└── AnalyticsError        bad input or parameters to an analytics function
    └── MapMatchError     the road network cannot be used for matching
"""

from __future__ import annotations

from cityos.errors import CityOSError

__all__ = ["AnalyticsError", "MapMatchError"]


class AnalyticsError(CityOSError, ValueError):
    """Input or parameters that an analytics function cannot work with."""


class MapMatchError(AnalyticsError):
    """The road network given to the map matcher is unusable (no edges, bad geometry)."""

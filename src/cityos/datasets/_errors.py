"""The error raised by the public-data loaders."""

from __future__ import annotations

from cityos.errors import CityOSError

__all__ = ["DataSourceError"]


class DataSourceError(CityOSError, OSError):
    """A data source is missing, unreadable, or not in the expected format."""

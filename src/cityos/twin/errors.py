"""Errors of the digital twin's map services.

``TwinError`` is the root; a bad map request (``bbox``, ``datetime``, tile address) is a
:class:`TwinRequestError`, which is also a :class:`cityos.errors.QueryError` so the API
answers it with 422 and a message saying which parameter was wrong and how to fix it.
"""

from __future__ import annotations

from cityos.errors import CityOSError, QueryError

__all__ = ["TwinError", "TwinRequestError"]


class TwinError(CityOSError):
    """Root of every error raised by :mod:`cityos.twin`."""


class TwinRequestError(TwinError, QueryError):
    """A map request parameter that cannot be used as given.

    Examples
    --------
    >>> str(TwinRequestError("bbox must have 4 numbers, got '1,2'"))
    "bbox must have 4 numbers, got '1,2'"
    """

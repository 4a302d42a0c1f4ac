"""The error raised by the synthetic data generators."""

from __future__ import annotations

from cityos.errors import CityOSError

__all__ = ["SynthError"]


class SynthError(CityOSError, ValueError):
    """Bad arguments to a generator, or a network that cannot serve the request."""

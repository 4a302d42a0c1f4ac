"""Errors raised by the ingest layer, all under :class:`IngestError`.

Hierarchy::

    CityOSError
    └── IngestError          ingest could not proceed (names source, dataset and what to do)
        ├── MappingError     a mapping document is invalid (lists every mistake with its path)
        └── SourceError      a source cannot be read (file, database, broker, HTTP)
"""

from __future__ import annotations

from cityos.errors import CityOSError

__all__ = ["IngestError", "MappingError", "SourceError"]


class IngestError(CityOSError):
    """Ingest could not proceed."""


class MappingError(IngestError, ValueError):
    """A mapping document is invalid.

    ``mistakes`` holds one ``(path, message)`` pair per mistake, where ``path`` is the
    dotted location in the mapping document, e.g. ``fields.pm25.unit``.
    """

    def __init__(self, message: str, mistakes: list[tuple[str, str]] | None = None) -> None:
        self.mistakes = mistakes or []
        super().__init__(message)


class SourceError(IngestError):
    """A source cannot be read: missing file, unreachable database or broker."""

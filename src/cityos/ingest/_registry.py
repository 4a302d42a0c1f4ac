"""The explicit registry of source kinds; the source contract test runs over every entry."""

from __future__ import annotations

from cityos.ingest._base import Source
from cityos.ingest._files import FileSource
from cityos.ingest._push import HttpPushSource
from cityos.ingest._sql import SQLSource
from cityos.ingest.mqtt import MqttSource

__all__ = ["SOURCES", "register_source"]

#: kind -> source class. Add new sources here (and a feeder in the contract test).
SOURCES: dict[str, type[Source]] = {
    FileSource.kind: FileSource,
    SQLSource.kind: SQLSource,
    HttpPushSource.kind: HttpPushSource,
    MqttSource.kind: MqttSource,
}


def register_source(cls: type[Source]) -> type[Source]:
    """Add a source class to :data:`SOURCES` (usable as a class decorator)."""
    if cls.kind in SOURCES and SOURCES[cls.kind] is not cls:
        from cityos.ingest.errors import IngestError

        raise IngestError(
            f"source kind {cls.kind!r} is already registered by {SOURCES[cls.kind].__name__}"
        )
    SOURCES[cls.kind] = cls
    return cls

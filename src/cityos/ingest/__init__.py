"""The data through-train: sources (files, SQL, HTTP push, MQTT) mapped onto the six models,
validated, stored exactly once, with dead letters and lineage. Start with :class:`FileSource`
and :func:`load_mapping`. HTTP push is served by the server's ``POST /datasets/{name}/records``
(authorised and audited by :mod:`cityos.access`), which calls :func:`push_records`."""

from __future__ import annotations

from typing import TYPE_CHECKING

from cityos.ingest._base import (
    Batch,
    BatchResult,
    IngestReport,
    Part,
    Rejected,
    Source,
    SourceContext,
    identity_mapping,
    mapping_for,
    process_batch,
)
from cityos.ingest._coords import (
    BD09,
    GCJ02,
    bd09_to_gcj02,
    bd09_to_wgs84,
    gcj02_to_bd09,
    gcj02_to_wgs84,
    transform_coords,
    wgs84_to_bd09,
    wgs84_to_gcj02,
)
from cityos.ingest._deadletters import DeadLetters, ReplayReport
from cityos.ingest._examples import EXAMPLES_DIR, example_mapping
from cityos.ingest._files import FileSource, detect_delimiter, file_columns, read_file
from cityos.ingest._load import FileLoad, file_mapping, load_file
from cityos.ingest._mapping import Mapped, Mapping, RowProblem, load_mapping
from cityos.ingest._push import HttpPushSource, push_records
from cityos.ingest._registry import SOURCES, register_source
from cityos.ingest._sql import SQLSource
from cityos.ingest._state import DeadLetter, IngestState, LineageEntry
from cityos.ingest._units import convert_units
from cityos.ingest.errors import IngestError, MappingError, SourceError
from cityos.ingest.mqtt import MqttSource, observation

if TYPE_CHECKING:
    from cityos.store import Store

__all__ = [
    "BD09",
    "EXAMPLES_DIR",
    "GCJ02",
    "SOURCES",
    "Batch",
    "BatchResult",
    "DeadLetter",
    "DeadLetters",
    "FileLoad",
    "FileSource",
    "HttpPushSource",
    "IngestError",
    "IngestReport",
    "IngestState",
    "LineageEntry",
    "Mapped",
    "Mapping",
    "MappingError",
    "MqttSource",
    "Part",
    "Rejected",
    "ReplayReport",
    "RowProblem",
    "SQLSource",
    "Source",
    "SourceContext",
    "SourceError",
    "bd09_to_gcj02",
    "bd09_to_wgs84",
    "convert_units",
    "detect_delimiter",
    "example_mapping",
    "file_columns",
    "file_mapping",
    "gcj02_to_bd09",
    "gcj02_to_wgs84",
    "identity_mapping",
    "lineage",
    "load_file",
    "load_mapping",
    "mapping_for",
    "observation",
    "process_batch",
    "push_records",
    "read_file",
    "register_source",
    "transform_coords",
    "wgs84_to_bd09",
    "wgs84_to_gcj02",
]


def lineage(store: Store, dataset: str | None = None) -> list[LineageEntry]:
    """Which sources fed ``dataset`` (or every dataset), when, and how many records each
    run accepted and rejected."""
    return IngestState(store.db).lineage(dataset)

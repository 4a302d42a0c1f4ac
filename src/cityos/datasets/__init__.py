"""Loaders for real public city data (Beijing air quality, NYC 311) into CityOS's canonical
columns: ``id``, ``t`` (UTC), ``x``, ``y``, then the source's own columns.

Each loader is a thin wrapper over the shipped ingest mapping of its data set
(``cityos.ingest.example_mapping``): one parser and one mapping engine for loading into a
frame and for ingesting into a city. Sources are a path (file, folder or zip) or an http(s)
URL."""

from cityos.datasets._beijing import (
    BEIJING_AIR_QUALITY_URL,
    BEIJING_READING_COLUMNS,
    BEIJING_RENAME,
    read_beijing_air_quality,
    read_beijing_stations,
)
from cityos.datasets._errors import DataSourceError
from cityos.datasets._nyc311 import NYC311_NULL_VALUES, NYC311_SODA_URL, read_nyc311
from cityos.datasets._source import shared_data_dir

__all__ = [
    "BEIJING_AIR_QUALITY_URL",
    "BEIJING_READING_COLUMNS",
    "BEIJING_RENAME",
    "NYC311_NULL_VALUES",
    "NYC311_SODA_URL",
    "DataSourceError",
    "read_beijing_air_quality",
    "read_beijing_stations",
    "read_nyc311",
    "shared_data_dir",
]

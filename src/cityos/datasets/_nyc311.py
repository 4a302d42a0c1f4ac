"""Loader for NYC 311 service requests (NYC Open Data), keeping every column and adding the
canonical id, t (UTC), x, y; reads both the portal's CSV export and the SODA API's CSV.

A thin wrapper over the shipped ingest mapping ``nyc311``
(:func:`cityos.ingest.example_mapping`): its id, time (format and time zone) and geometry
rules, run by the ingest file parser and mapping engine. The loader keeps every column of
the file under its own name (where the mapping keeps a chosen few, renamed: ``Closed Date``
as ``closed_at``, ``Complaint Type`` as ``complaint_type``, ...) and keeps requests without
a position (x, y NaN), which ingest dead-letters instead."""

from __future__ import annotations

import re
import urllib.parse
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa

from cityos.datasets._errors import DataSourceError
from cityos.datasets._mapped import read_mapped
from cityos.datasets._source import csv_files, is_url
from cityos.ingest import Mapping, example_mapping, file_columns

__all__ = ["NYC311_NULL_VALUES", "NYC311_SODA_URL", "NYC311_TZ", "read_nyc311"]

NYC311_SODA_URL = "https://data.cityofnewyork.us/resource/erm2-nwe9.csv"
NYC311_TZ = "America/New_York"

#: Cell values read as missing: the same list as ``pandas.read_csv``'s defaults.
NYC311_NULL_VALUES = (
    "", "#N/A", "#N/A N/A", "#NA", "-1.#IND", "-1.#QNAN", "-NaN", "-nan", "1.#IND",
    "1.#QNAN", "<NA>", "N/A", "NA", "NULL", "NaN", "None", "n/a", "nan", "null",
)  # fmt: skip

_SHIPPED: dict[str, Any] = example_mapping("nyc311").doc.model_dump(
    mode="json", by_alias=True, exclude_defaults=True
)
# Export headers the loader types beyond the shipped mapping's id, time and geometry.
_DATES = ("Created Date", "Closed Date", "Due Date", "Resolution Action Updated Date")
_FLOATS = (
    "Longitude",
    "Latitude",
    "X Coordinate (State Plane)",
    "Y Coordinate (State Plane)",
)


def soda_name(header: str) -> str:
    """The SODA API's field name of an export header.

    Examples
    --------
    >>> soda_name("X Coordinate (State Plane)")
    'x_coordinate_state_plane'
    """
    return re.sub(r"[^a-z0-9]+", "_", header.lower()).strip("_")


def _mapping(columns: list[str]) -> tuple[Mapping, bool]:
    """The shipped mapping's id, time and geometry for a file with these columns (export
    or SODA headers), with every column of the file as a field under its own name."""
    soda = soda_name(_SHIPPED["id"]["from"]) in columns and _SHIPPED["id"]["from"] not in columns
    name = soda_name if soda else (lambda h: h)
    t = dict(_SHIPPED["time"])
    fmt = "iso8601" if soda else t.get("format", "iso8601")
    t.update({"from": name(t["from"]), "format": fmt})
    geometry = dict(_SHIPPED["geometry"])
    geometry.update({"x": name(geometry["x"]), "y": name(geometry["y"])})
    dates = {name(c) for c in _DATES}
    floats = {name(c) for c in _FLOATS}
    fields: dict[str, dict[str, Any]] = {}
    for c in columns:
        if c in dates:
            fields[c] = {"from": c, "type": "timestamp", "format": fmt, "timezone": t["timezone"]}
        elif c in floats:
            fields[c] = {"from": c, "type": "float64"}
        else:
            fields[c] = {"from": c, "type": "string"}
    doc = {
        "dataset": _SHIPPED["dataset"],
        "read": {"format": "csv", "null_values": list(NYC311_NULL_VALUES)},
        "id": {"from": name(_SHIPPED["id"]["from"])},
        "time": t,
        "geometry": geometry,
        "fields": fields,
    }
    return Mapping.from_dict(doc, origin="nyc311 loader mapping"), soda


def _soda_url(url: str, limit: int | None) -> str:
    if limit is None:
        return url
    parts = urllib.parse.urlsplit(url)
    query = urllib.parse.parse_qsl(parts.query, keep_blank_values=True)
    query = [(k, v) for k, v in query if k != "$limit"] + [("$limit", str(limit))]
    return urllib.parse.urlunsplit(parts._replace(query=urllib.parse.urlencode(query)))


def _float(col: pa.ChunkedArray) -> np.ndarray:
    if pa.types.is_floating(col.type) or pa.types.is_integer(col.type):
        return np.asarray(col.to_numpy(zero_copy_only=False), dtype="float64")
    values = pd.to_numeric(pd.Series(col.to_pandas(), dtype="object"), errors="coerce")
    return np.asarray(values, dtype="float64")


def _read_one(name: str, path: Path) -> pd.DataFrame:
    columns = file_columns(path, "csv")
    mapping, soda = _mapping(columns)
    doc = mapping.doc
    assert doc.time is not None and doc.geometry is not None
    need = [doc.id.from_, doc.time.from_, doc.geometry.x, doc.geometry.y]
    missing = sorted(str(c) for c in need if c not in columns)
    if missing:
        raise DataSourceError(
            f"{name} lacks column(s) {missing}; expected a NYC 311 service-request CSV "
            "(Open Data export or SODA API)"
        )
    table, problems = read_mapped(name, path, mapping)
    for p in problems:
        # a time that is present but does not parse is an error; a missing one is NaT and a
        # request without a position keeps NaN coordinates, as the columns are read
        if p.rule.startswith(("time", "fields.")) and "cannot read the time" in p.message:
            column = doc.time.from_ if p.rule == "time" else p.rule.split(".", 1)[1]
            fmt = doc.time.format
            raise DataSourceError(
                f"{name}: column {column!r} has a value that is not a time in the format "
                f"{fmt!r} (record {p.row + 1})"
            )
    out: dict[str, Any] = {
        "id": table["id"].to_pandas().astype("str"),
        "t": table["t"].to_pandas(),
        "x": _float(table["x"]),
        "y": _float(table["y"]),
    }
    frame = pd.DataFrame(out)
    rest: dict[str, Any] = {}
    for c in columns:
        f = doc.fields[c]
        if f.type == "float64":
            rest[c] = _float(table[c])
        elif f.type == "timestamp":
            rest[c] = table[c].to_pandas()
        else:
            rest[c] = table[c].to_pandas().astype("str")
    del soda
    return pd.concat([frame, pd.DataFrame(rest)], axis=1)


def read_nyc311(source: str | Path = NYC311_SODA_URL, *, limit: int | None = None) -> pd.DataFrame:
    """Read NYC 311 service requests into a frame with canonical ``id, t, x, y`` first.

    Parameters
    ----------
    source : str or Path
        A CSV file (the NYC Open Data export, headers like ``Created Date``, or the SODA
        API's CSV, headers like ``created_date``), a zip or folder of such files, or an
        http(s) URL to one. The default is the SODA endpoint, which needs the internet.
    limit : int, optional
        For a URL source, ask the SODA API for this many rows (``$limit``; the API's own
        default is 1000).

    Returns
    -------
    pandas.DataFrame
        ``id`` (Unique Key as str), ``t`` (created time, datetime64[ms, UTC]), ``x``
        (Longitude), ``y`` (Latitude), then every column of the file. The date columns
        (Created, Closed, Due, Resolution Action Updated) are parsed from New York local
        time to UTC (in the fall-back hour the first, daylight, reading; times in the
        spring-forward gap move forward); coordinates are float64; other columns stay
        strings (:data:`NYC311_NULL_VALUES` are missing). Row order is the file's.

    Raises
    ------
    DataSourceError
        The source is missing, lacks the key, date or coordinate columns, or a date does
        not parse.

    Examples
    --------
    >>> from cityos.datasets import read_nyc311, shared_data_dir
    >>> d = shared_data_dir()
    >>> if d is not None:
    ...     print(len(read_nyc311(d / "nyc-311" / "nyc311_2025-03-24_sample.csv")))
    ... else:
    ...     print(235)
    235
    """
    if is_url(source):
        source = _soda_url(str(source), limit)
    with csv_files(source) as items:
        if not items:
            raise DataSourceError(f"no CSV file found in {source!s}")
        out = [_read_one(name, path) for name, path in items]
    return pd.concat(out, ignore_index=True) if len(out) > 1 else out[0]

"""Loader for NYC 311 service requests (NYC Open Data), keeping every column and adding the
canonical id, t (UTC), x, y; reads both the portal's CSV export and the SODA API's CSV."""

from __future__ import annotations

import urllib.parse
from pathlib import Path

import numpy as np
import pandas as pd

from cityos.datasets._errors import DataSourceError
from cityos.datasets._source import is_url, iter_csv

__all__ = ["NYC311_SODA_URL", "NYC311_TZ", "read_nyc311"]

NYC311_SODA_URL = "https://data.cityofnewyork.us/resource/erm2-nwe9.csv"
NYC311_TZ = "America/New_York"

# Export headers and their SODA API field names.
_KEY = ("Unique Key", "unique_key")
_LON = ("Longitude", "longitude")
_LAT = ("Latitude", "latitude")
_DATES = (
    ("Created Date", "created_date"),
    ("Closed Date", "closed_date"),
    ("Due Date", "due_date"),
    ("Resolution Action Updated Date", "resolution_action_updated_date"),
)
_FLOATS = (
    _LON,
    _LAT,
    ("X Coordinate (State Plane)", "x_coordinate_state_plane"),
    ("Y Coordinate (State Plane)", "y_coordinate_state_plane"),
)
_EXPORT_FORMAT = "%m/%d/%Y %I:%M:%S %p"


def _local_to_utc(values: pd.Series, column: str, where: str) -> pd.Series:
    """Parse NYC wall-clock times and convert them to UTC.

    In the autumn fall-back hour a wall time occurs twice; the data does not say which, so
    it is read as the first (daylight) one. Times in the spring-forward gap move forward.
    """
    text = values.astype("str")
    try:
        local = pd.to_datetime(text, format=_EXPORT_FORMAT)
    except (ValueError, TypeError):
        try:
            local = pd.to_datetime(text, format="ISO8601")
        except (ValueError, TypeError) as exc:
            raise DataSourceError(
                f"{where}: column {column!r} has a value that is neither "
                f"'MM/DD/YYYY hh:mm:ss AM' nor ISO 8601: {exc}"
            ) from exc
    if local.dt.tz is not None:
        return local.dt.tz_convert("UTC").dt.as_unit("ms")
    first = np.ones(len(local), dtype=bool)
    aware = local.dt.tz_localize(NYC311_TZ, ambiguous=first, nonexistent="shift_forward")
    return aware.dt.tz_convert("UTC").dt.as_unit("ms")


def _soda_url(url: str, limit: int | None) -> str:
    if limit is None:
        return url
    parts = urllib.parse.urlsplit(url)
    query = urllib.parse.parse_qsl(parts.query, keep_blank_values=True)
    query = [(k, v) for k, v in query if k != "$limit"] + [("$limit", str(limit))]
    return urllib.parse.urlunsplit(parts._replace(query=urllib.parse.urlencode(query)))


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
        time to UTC; coordinates are float64; other columns stay strings. Row order is
        the file's.

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
    frames = []
    for name, opener in iter_csv(source):
        with opener() as fh:
            frames.append((name, pd.read_csv(fh, dtype="str")))
    if not frames:
        raise DataSourceError(f"no CSV file found in {source!s}")
    out = []
    for name, df in frames:
        cols = set(df.columns)
        soda = _KEY[1] in cols and _KEY[0] not in cols
        pick = 1 if soda else 0
        need = {_KEY[pick], _DATES[0][pick], _LON[pick], _LAT[pick]}
        missing = sorted(need - cols)
        if missing:
            raise DataSourceError(
                f"{name} lacks column(s) {missing}; expected a NYC 311 service-request CSV "
                "(Open Data export or SODA API)"
            )
        for pair in _FLOATS:
            if pair[pick] in cols:
                df[pair[pick]] = pd.to_numeric(df[pair[pick]], errors="coerce").astype("float64")
        for pair in _DATES:
            if pair[pick] in cols:
                df[pair[pick]] = _local_to_utc(df[pair[pick]], pair[pick], name)
        canon = pd.DataFrame(
            {
                "id": df[_KEY[pick]].astype("str"),
                "t": df[_DATES[0][pick]],
                "x": df[_LON[pick]],
                "y": df[_LAT[pick]],
            }
        )
        out.append(pd.concat([canon, df], axis=1))
    return pd.concat(out, ignore_index=True) if len(out) > 1 else out[0]

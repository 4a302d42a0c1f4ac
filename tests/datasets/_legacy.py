"""The real-data loaders as they were before they became wrappers over the ingest mappings
(commit 2f4cb8d), frozen here as the reference the new loaders must reproduce exactly."""

from __future__ import annotations

import io
import urllib.error
import urllib.parse
import urllib.request
import zipfile
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import IO, Literal

import numpy as np
import pandas as pd

from cityos.datasets import DataSourceError, shared_data_dir

CsvSource = tuple[str, Callable[[], IO[bytes]]]
_TIMEOUT_S = 120.0


def is_url(source: object) -> bool:
    """True for ``http://`` and ``https://`` strings."""
    return isinstance(source, str) and source.lower().startswith(("http://", "https://"))


def fetch(url: str) -> bytes:
    """Download ``url`` into memory, raising :class:`DataSourceError` with the cause."""
    try:
        with urllib.request.urlopen(url, timeout=_TIMEOUT_S) as resp:
            data: bytes = resp.read()
            return data
    except (urllib.error.URLError, TimeoutError, OSError) as exc:
        raise DataSourceError(
            f"could not download {url}: {exc}; check the network, or download the file "
            "yourself and pass its local path as source"
        ) from exc


def _bytes_opener(data: bytes) -> Callable[[], IO[bytes]]:
    return lambda: io.BytesIO(data)


def _file_opener(path: Path) -> Callable[[], IO[bytes]]:
    return lambda: path.open("rb")


def _from_zip(name: str, data: IO[bytes], want: Callable[[str], bool]) -> Iterator[CsvSource]:
    try:
        zf = zipfile.ZipFile(data)
    except zipfile.BadZipFile as exc:
        raise DataSourceError(f"{name} is not a valid zip archive: {exc}") from exc
    with zf:
        for info in sorted(zf.infolist(), key=lambda i: i.filename):
            member = info.filename
            base = member.rsplit("/", 1)[-1]
            if info.is_dir() or base.startswith(("._", ".")) or "__MACOSX" in member:
                continue
            if member.lower().endswith(".zip"):
                # The UCI release wraps the CSV folder in a second zip.
                yield from _from_zip(f"{name}!{member}", io.BytesIO(zf.read(member)), want)
            elif member.lower().endswith(".csv") and want(base):
                yield (f"{name}!{member}", _bytes_opener(zf.read(member)))


def iter_csv(
    source: str | Path, want: Callable[[str], bool] = lambda _: True
) -> Iterator[CsvSource]:
    """CSV members of ``source`` whose base name passes ``want``, in name order.

    ``source`` is a folder (its ``*.csv`` files), a ``.csv`` file, a ``.zip`` file, or an
    http(s) URL to either. Each item is ``(name, opener)``; ``opener()`` returns a binary
    stream of the CSV.
    """
    if is_url(source):
        url = str(source)
        data = fetch(url)
        if data[:4] == b"PK\x03\x04":
            yield from _from_zip(url, io.BytesIO(data), want)
        else:
            yield (url, _bytes_opener(data))
        return
    path = Path(source).expanduser()
    if path.is_dir():
        for f in sorted(path.glob("*.csv")):
            if want(f.name):
                yield (str(f), _file_opener(f))
    elif path.is_file():
        if zipfile.is_zipfile(path):
            with path.open("rb") as fh:
                yield from _from_zip(str(path), fh, want)
        else:
            yield (str(path), _file_opener(path))
    else:
        raise DataSourceError(
            f"data source {str(path)!r} does not exist; pass a folder, a CSV or zip file, "
            "or an http(s) URL"
        )


BEIJING_AIR_QUALITY_URL = (
    "https://archive.ics.uci.edu/static/public/501/beijing+multi+site+air+quality+data.zip"
)
BEIJING_TZ = "Asia/Shanghai"
BEIJING_READING_COLUMNS = (
    "PM2.5",
    "PM10",
    "SO2",
    "NO2",
    "CO",
    "O3",
    "TEMP",
    "PRES",
    "DEWP",
    "RAIN",
    "wd",
    "WSPM",
)
_TIME_PARTS = ("year", "month", "day", "hour")
_SHARED_SUBDIR = "beijing-air-quality"


def _default_source() -> str | Path:
    shared = shared_data_dir()
    if shared is not None and (shared / _SHARED_SUBDIR).is_dir():
        return shared / _SHARED_SUBDIR
    return BEIJING_AIR_QUALITY_URL


def read_beijing_stations(source: str | Path | None = None) -> pd.DataFrame:
    """Station positions: ``id`` (station name as in the readings), ``name_zh``, ``x``, ``y``.

    Parameters
    ----------
    source : str or Path, optional
        A ``stations.csv`` (columns ``station, name_zh, lat, lon``), or a folder holding
        one. By default the shared data folder (see :func:`shared_data_dir`). The UCI
        release has no station positions, so there is no URL default.

    Examples
    --------
    >>> from cityos.datasets import read_beijing_stations, shared_data_dir
    >>> if shared_data_dir() is not None:
    ...     print(len(read_beijing_stations()))
    ... else:
    ...     print(12)
    12
    """
    if source is None:
        shared = shared_data_dir()
        if shared is None:
            raise DataSourceError(
                "no station positions: the shared data folder was not found; pass "
                "source='path/to/stations.csv' (columns station, name_zh, lat, lon) or set "
                "CITYOS_SHARED_DATA"
            )
        source = shared / _SHARED_SUBDIR
    path = Path(source) if not is_url(source) else None
    if path is not None and path.is_dir():
        path = path / "stations.csv"
    items = list(iter_csv(path if path is not None else source))
    if not items:
        raise DataSourceError(f"no stations CSV found in {source!s}")
    name, opener = items[0]
    with opener() as fh:
        df = pd.read_csv(fh)
    missing = {"station", "lat", "lon"} - set(df.columns)
    if missing:
        raise DataSourceError(
            f"{name} lacks column(s) {sorted(missing)}; expected station, name_zh, lat, lon"
        )
    out = pd.DataFrame(
        {
            "id": df["station"].astype("str"),
            "name_zh": df["name_zh"].astype("str") if "name_zh" in df else pd.NA,
            "x": df["lon"].astype("float64"),
            "y": df["lat"].astype("float64"),
        }
    )
    return out


def read_beijing_air_quality(
    source: str | Path | None = None,
    stations: Iterable[str] | None = None,
    positions: str | Path | pd.DataFrame | Literal[False] | None = None,
) -> pd.DataFrame:
    """Read the Beijing multi-site air-quality readings as a point time series.

    Parameters
    ----------
    source : str or Path, optional
        A folder of ``PRSA_Data_*.csv`` files, one such CSV, a zip of them (the UCI
        release, whose inner zip is opened too), or an http(s) URL to a CSV or zip. By
        default the shared data folder if present, else :data:`BEIJING_AIR_QUALITY_URL`.
    stations : iterable of str, optional
        Read only these stations (names as in the ``station`` column, e.g. "Dongsi").
    positions : str, Path, DataFrame or False, optional
        Station positions: a ``stations.csv`` path or a frame from
        :func:`read_beijing_stations`. By default ``stations.csv`` beside a local source,
        else the shared data folder's. ``False`` leaves ``x`` and ``y`` as NaN.

    Returns
    -------
    pandas.DataFrame
        ``id`` (station name), ``t`` (datetime64[ms, UTC]; the files' year, month, day and
        hour are Beijing local time, UTC+8), ``x``, ``y`` (lon/lat), then
        :data:`BEIJING_READING_COLUMNS` with their original names (``NA`` becomes NaN;
        ``wd`` is a string). Sorted by ``t`` then ``id``.

    Raises
    ------
    DataSourceError
        The source is missing, holds no station CSV, a file lacks expected columns, or a
        station has no known position.

    Examples
    --------
    >>> from cityos.datasets import read_beijing_air_quality, shared_data_dir
    >>> if shared_data_dir() is not None:
    ...     df = read_beijing_air_quality(stations=["Dongsi"])
    ...     print(len(df), str(df["t"].iloc[0]))
    ... else:
    ...     print("35064 2013-02-28 16:00:00+00:00")
    35064 2013-02-28 16:00:00+00:00
    """
    if source is None:
        source = _default_source()
    wanted = None if stations is None else {str(s) for s in stations}

    def want(base: str) -> bool:
        if not base.startswith("PRSA_Data_"):
            return False
        return wanted is None or base.split("_")[2] in wanted

    frames = []
    for name, opener in iter_csv(source, want):
        with opener() as fh:
            df = pd.read_csv(fh, na_values=["NA"], keep_default_na=False)
        missing = {"station", *_TIME_PARTS, *BEIJING_READING_COLUMNS} - set(df.columns)
        if missing:
            raise DataSourceError(
                f"{name} lacks column(s) {sorted(missing)}; is it a PRSA_Data_*.csv file "
                "from the UCI Beijing Multi-Site Air Quality release?"
            )
        frames.append(df)
    if not frames:
        raise DataSourceError(
            f"no PRSA_Data_*.csv station files found in {source!s}"
            + (f" for stations {sorted(wanted)}" if wanted else "")
        )
    raw = pd.concat(frames, ignore_index=True)
    local = pd.to_datetime(
        pd.DataFrame({p: raw[p] for p in _TIME_PARTS}), errors="raise"
    ).dt.tz_localize(BEIJING_TZ)
    out = pd.DataFrame(
        {
            "id": raw["station"].astype("str"),
            "t": local.dt.tz_convert("UTC").dt.as_unit("ms"),
        }
    )
    xy = _positions(positions, source)
    if xy is None:
        out["x"] = np.nan
        out["y"] = np.nan
    else:
        unknown = sorted(set(out["id"].unique()) - set(xy["id"]))
        if unknown:
            raise DataSourceError(
                f"no position for station(s) {unknown} in the stations table; add them or "
                "pass positions=False"
            )
        lookup = xy.set_index("id")
        out["x"] = out["id"].map(lookup["x"]).astype("float64")
        out["y"] = out["id"].map(lookup["y"]).astype("float64")
    for c in BEIJING_READING_COLUMNS:
        out[c] = raw[c].astype("str") if c == "wd" else raw[c].astype("float64")
    return out.sort_values(["t", "id"], kind="stable", ignore_index=True)


def _positions(
    positions: str | Path | pd.DataFrame | Literal[False] | None, source: str | Path
) -> pd.DataFrame | None:
    if positions is False:
        return None
    if isinstance(positions, pd.DataFrame):
        return positions
    if positions is not None:
        return read_beijing_stations(positions)
    if not is_url(source):
        p = Path(source)
        folder = p if p.is_dir() else p.parent
        if (folder / "stations.csv").is_file():
            return read_beijing_stations(folder / "stations.csv")
    return read_beijing_stations(None)


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

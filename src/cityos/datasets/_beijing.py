"""Loader for the UCI Beijing Multi-Site Air Quality data (12 stations, hourly, 2013-2017)
into the canonical point time-series shape: id, t (UTC), x, y, then the readings."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd

from cityos.datasets._errors import DataSourceError
from cityos.datasets._source import is_url, iter_csv, shared_data_dir

__all__ = [
    "BEIJING_AIR_QUALITY_URL",
    "BEIJING_READING_COLUMNS",
    "read_beijing_air_quality",
    "read_beijing_stations",
]

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

"""Loader for the UCI Beijing Multi-Site Air Quality data (12 stations, hourly, 2013-2017)
into the canonical point time-series shape: id, t (UTC), x, y, then the readings.

A thin wrapper over the shipped ingest mappings ``beijing_air_quality`` and
``beijing_stations`` (:func:`cityos.ingest.example_mapping`): the files are parsed by the
ingest file parser and mapped by the mapping engine, exactly as ``cityos ingest`` stores
them. Two documented differences keep the loader's columns as they always were: the
readings keep the file's column names (the mapping's ``pm25`` is returned as ``PM2.5``,
``wind_direction`` as ``wd``, ...; see :data:`BEIJING_RENAME`), and CO stays in the file's
µg/m³ (the mapping's ``source_unit`` conversion to mg/m³ is not applied)."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any, Literal

import pandas as pd
import pyarrow as pa

from cityos.datasets._errors import DataSourceError
from cityos.datasets._mapped import read_mapped
from cityos.datasets._source import csv_files, is_url, shared_data_dir
from cityos.ingest import Mapping, example_mapping
from cityos.model import FIELD_TYPES

__all__ = [
    "BEIJING_AIR_QUALITY_URL",
    "BEIJING_READING_COLUMNS",
    "BEIJING_RENAME",
    "read_beijing_air_quality",
    "read_beijing_stations",
]

BEIJING_AIR_QUALITY_URL = (
    "https://archive.ics.uci.edu/static/public/501/beijing+multi+site+air+quality+data.zip"
)
BEIJING_TZ = "Asia/Shanghai"
_SHARED_SUBDIR = "beijing-air-quality"


def _reading_doc() -> dict[str, Any]:
    shipped = example_mapping("beijing_air_quality")
    doc: dict[str, Any] = shipped.doc.model_dump(mode="json", by_alias=True, exclude_defaults=True)
    for f in doc["fields"].values():
        if "source_unit" in f:  # keep the file's unit: the loader returns values as read
            f["unit"] = f.pop("source_unit")
    return doc


_DOC = _reading_doc()
#: The mapping's field name → the column name the loader returns (the file's header).
BEIJING_RENAME: dict[str, str] = {n: f.get("from", n) for n, f in _DOC["fields"].items()}
#: The readings' columns, in the order of the mapping's fields.
BEIJING_READING_COLUMNS: tuple[str, ...] = tuple(BEIJING_RENAME.values())
_TIME_PARTS: tuple[str, ...] = tuple(_DOC["time"]["from"].values())


def _default_source() -> str | Path:
    shared = shared_data_dir()
    if shared is not None and (shared / _SHARED_SUBDIR).is_dir():
        return shared / _SHARED_SUBDIR
    return BEIJING_AIR_QUALITY_URL


def _check_columns(name: str, table: pa.Table, need: Iterable[str], hint: str) -> None:
    missing = sorted(set(need) - set(table.column_names))
    if missing:
        raise DataSourceError(f"{name} lacks column(s) {missing}; {hint}")


def read_beijing_stations(source: str | Path | None = None) -> pd.DataFrame:
    """Station positions: ``id`` (station name as in the readings), ``name_zh``, ``x``, ``y``.

    Parameters
    ----------
    source : str or Path, optional
        A ``stations.csv`` (columns ``station, name_zh, lat, lon``), a folder holding
        one, or an http(s) URL to one. By default the shared data folder (see
        :func:`shared_data_dir`). The UCI release has no station positions, so there is no
        URL default.

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
    if not is_url(source) and Path(source).is_dir():
        source = Path(source) / "stations.csv"
    mapping = example_mapping("beijing_stations")
    with csv_files(source) as items:
        if not items:
            raise DataSourceError(f"no stations CSV found in {source!s}")
        name, path = items[0]
        missing = sorted(_source_columns(mapping) - _file_header(path))
        if missing:
            raise DataSourceError(
                f"{name} lacks column(s) {missing}; expected station, name_zh, lat, lon"
            )
        table, _ = read_mapped(name, path, mapping)
    df = table.to_pandas()
    return pd.DataFrame(
        {
            "id": df["id"].astype("str"),
            "name_zh": df["name_zh"].astype("str"),
            "x": df["x"].astype("float64"),
            "y": df["y"].astype("float64"),
        }
    )


def _source_columns(mapping: Mapping) -> set[str]:
    d = mapping.doc
    out = {d.id.from_} if isinstance(d.id.from_, str) else set(d.id.from_)
    if d.geometry is not None:
        out |= {c for c in (d.geometry.x, d.geometry.y) if c}
    return out


def _file_header(path: Path) -> set[str]:
    from cityos.ingest import file_columns

    return set(file_columns(path, "csv"))


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
        ``wd`` is a string; CO in µg/m³ as in the files). Sorted by ``t`` then ``id``.
        The records are those the ``beijing_air_quality`` ingest mapping produces, with
        :data:`BEIJING_RENAME` applied.

    Raises
    ------
    DataSourceError
        The source is missing, holds no station CSV, a file lacks expected columns, a
        time does not form a date, or a station has no known position.

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

    need = {_DOC["id"]["from"], *_TIME_PARTS, *BEIJING_READING_COLUMNS}
    tables: list[pa.Table] = []
    unknown: set[str] = set()
    with csv_files(source, want) as items:
        if not items:
            raise DataSourceError(
                f"no PRSA_Data_*.csv station files found in {source!s}"
                + (f" for stations {sorted(wanted)}" if wanted else "")
            )
        xy = _positions(positions, source)
        mapping = _reading_mapping(xy)
        for name, path in items:
            header = _file_header(path)
            if not need <= header:
                raise DataSourceError(
                    f"{name} lacks column(s) {sorted(need - header)}; is it a "
                    "PRSA_Data_*.csv file from the UCI Beijing Multi-Site Air Quality release?"
                )
            table, problems = read_mapped(name, path, mapping)
            for p in problems:
                if p.rule == "dataset.stations":
                    unknown.add(str(table["id"][p.row].as_py()))
                else:
                    raise DataSourceError(f"{name}: record {p.row + 1}: {p.rule}: {p.message}")
            tables.append(table)
    if unknown and xy is not None:
        raise DataSourceError(
            f"no position for station(s) {sorted(unknown)} in the stations table; add them or "
            "pass positions=False"
        )
    table = pa.concat_tables(tables, promote_options="permissive")
    cols: dict[str, pa.ChunkedArray] = {c: table[c] for c in ("id", "t", "x", "y")}
    for field_name, column in BEIJING_RENAME.items():
        ftype = FIELD_TYPES[_DOC["fields"][field_name].get("type", "string")]
        cols[column] = table[field_name].cast(ftype)
    out = pa.table(cols).sort_by([("t", "ascending"), ("id", "ascending")])
    df: pd.DataFrame = out.to_pandas()
    df["id"] = df["id"].astype("str")
    for c in BEIJING_READING_COLUMNS:
        if df[c].dtype == object:
            df[c] = df[c].astype("str")
    return df


def _reading_mapping(xy: pd.DataFrame | None) -> Mapping:
    """The loader's mapping with the station positions ``xy`` (none: x, y stay NaN)."""
    mapping = Mapping.from_dict(_DOC, origin="beijing_air_quality loader mapping")
    if xy is None:
        ids: list[str] = []
        x: list[float] = []
        y: list[float] = []
    else:
        ids = xy["id"].astype("str").tolist()
        x, y = xy["x"].astype("float64").tolist(), xy["y"].astype("float64").tolist()
    st = pa.table(
        {
            "id": pa.array(ids, pa.string()),
            "x": pa.array(x, pa.float64()),
            "y": pa.array(y, pa.float64()),
        }
    )
    return mapping.with_stations(st)


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

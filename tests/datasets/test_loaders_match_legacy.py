"""The loaders became thin wrappers over the shipped ingest mappings; they must return exactly
what the previous, separate implementation (frozen in ``_legacy``) returned: same columns,
dtypes, values and row order, on the real files and on generated ones."""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from tests.datasets import _legacy

from cityos.datasets import read_beijing_air_quality, read_beijing_stations, read_nyc311

READINGS = ("PM2.5", "PM10", "SO2", "NO2", "CO", "O3", "TEMP", "PRES", "DEWP", "RAIN", "WSPM")
WIND = ("N", "NNE", "NE", "E", "SE", "S", "SW", "W", "NW", "NNW")


def _same(new: pd.DataFrame, old: pd.DataFrame) -> None:
    assert list(new.columns) == list(old.columns)
    assert new.dtypes.to_dict() == old.dtypes.to_dict()
    pd.testing.assert_frame_equal(new, old, check_exact=True)


def test_real_beijing_files(shared_data: Path) -> None:
    folder = shared_data / "beijing-air-quality"
    _same(read_beijing_air_quality(folder), _legacy.read_beijing_air_quality(folder))
    _same(read_beijing_stations(folder), _legacy.read_beijing_stations(folder))
    one = folder / "PRSA_Data_Dingling_20130301-20170228.csv"
    _same(
        read_beijing_air_quality(one, positions=False),
        _legacy.read_beijing_air_quality(one, positions=False),
    )


@pytest.mark.parametrize("name", ["nyc311_2022-05-01_sample.csv", "nyc311_2025-03-24_sample.csv"])
def test_real_nyc311_files(shared_data: Path, name: str) -> None:
    path = shared_data / "nyc-311" / name
    _same(read_nyc311(path), _legacy.read_nyc311(path))


def test_real_nyc311_folder(shared_data: Path) -> None:
    _same(read_nyc311(shared_data / "nyc-311"), _legacy.read_nyc311(shared_data / "nyc-311"))


def _number(rng: np.random.Generator) -> str:
    kind = rng.integers(0, 6)
    v = rng.normal(50, 40)
    if kind == 0:
        return "NA"
    if kind == 1:
        return str(int(abs(v)))
    if kind == 2:
        return f"{v:.1f}"
    if kind == 3:
        return repr(float(v))  # 17 significant digits: where parsers can round differently
    if kind == 4:
        return f"{v:.3e}"
    return f"{abs(v) / 1000:.4f}"


def _beijing_files(folder: Path, seed: int) -> None:
    rng = np.random.default_rng(seed)
    folder.mkdir()
    stations = ["Alpha", "Beta", "Gamma"]
    pd.DataFrame(
        {
            "station": stations,
            "name_zh": ["甲", "乙", "丙"],
            "lat": [39.9, 40.05, 39.8],
            "lon": [116.3, 116.45, 116.6],
        }
    ).to_csv(folder / "stations.csv", index=False)
    hours = pd.date_range("2016-02-27 20:00", periods=150, freq="h")  # across 29 February
    for s in stations:
        lines = ['"No","year","month","day","hour",' + ",".join(f'"{c}"' for c in READINGS[:-1])]
        lines[0] += ',"wd","WSPM","station"'
        for i, h in enumerate(hours):
            vals = [_number(rng) for _ in READINGS[:-1]]
            wd = "NA" if rng.random() < 0.1 else f'"{WIND[rng.integers(0, len(WIND))]}"'
            lines.append(
                f"{i + 1},{h.year},{h.month},{h.day},{h.hour},{','.join(vals)},{wd},"
                f'{_number(rng)},"{s}"'
            )
        (folder / f"PRSA_Data_{s}_20160227-20160304.csv").write_text("\n".join(lines) + "\n")


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_generated_beijing_files(tmp_path: Path, seed: int) -> None:
    folder = tmp_path / "aq"
    _beijing_files(folder, seed)
    _same(read_beijing_air_quality(folder), _legacy.read_beijing_air_quality(folder))
    _same(
        read_beijing_air_quality(folder, stations=["Beta"]),
        _legacy.read_beijing_air_quality(folder, stations=["Beta"]),
    )
    _same(read_beijing_stations(folder), _legacy.read_beijing_stations(folder))
    zipped = tmp_path / "aq.zip"
    with zipfile.ZipFile(zipped, "w") as zf:
        for f in sorted(folder.glob("PRSA_*.csv")):
            zf.write(f, f"PRSA_Data/{f.name}")
    st = read_beijing_stations(folder)
    _same(
        read_beijing_air_quality(zipped, positions=st),
        _legacy.read_beijing_air_quality(zipped, positions=st),
    )


NYC_HEADER = (
    "Unique Key,Created Date,Closed Date,Agency,Complaint Type,Incident Zip,Status,Due Date,"
    "Resolution Action Updated Date,X Coordinate (State Plane),Y Coordinate (State Plane),"
    "Latitude,Longitude,Location"
)


def _nyc_rows(rng: np.random.Generator, n: int, soda: bool) -> list[str]:
    base = pd.Timestamp("2024-11-02 22:00")
    fmt = "%Y-%m-%dT%H:%M:%S.000" if soda else "%m/%d/%Y %I:%M:%S %p"
    rows = []
    for i in range(n):
        created = base + pd.Timedelta(minutes=int(rng.integers(0, 8 * 60)))  # the fall-back hour
        closed = "" if rng.random() < 0.3 else (created + pd.Timedelta(hours=5)).strftime(fmt)
        lat, lon = 40.5 + rng.random() * 0.4, -74.2 + rng.random() * 0.5
        pos = rng.random() < 0.85
        zipc = ["10001", "01234", "N/A", ""][int(rng.integers(0, 4))]
        rows.append(
            ",".join(
                [
                    str(60_000_000 + i),
                    created.strftime(fmt),
                    closed,
                    ["NYPD", "DOT", "DSNY"][int(rng.integers(0, 3))],
                    '"Noise - Street/Sidewalk"' if rng.random() < 0.5 else "Illegal Parking",
                    zipc,
                    "Closed" if closed else "Open",
                    "",
                    closed,
                    str(int(rng.integers(900_000, 1_050_000))) if pos else "",
                    str(int(rng.integers(120_000, 270_000))) if pos else "",
                    repr(lat) if pos else "",
                    repr(lon) if pos else "",
                    f'"({lat}, {lon})"' if pos else "",
                ]
            )
        )
    return rows


@pytest.mark.parametrize("seed", [0, 1])
def test_generated_nyc311_files(
    tmp_path: Path, http_dir: tuple[str, Path, list[str]], seed: int
) -> None:
    rng = np.random.default_rng(seed)
    export = tmp_path / "nyc311_export.csv"
    export.write_text(NYC_HEADER + "\n" + "\n".join(_nyc_rows(rng, 300, soda=False)) + "\n")
    _same(read_nyc311(export), _legacy.read_nyc311(export))
    base, served, _ = http_dir
    soda_header = ",".join(
        '"' + h.lower().replace(" (state plane)", "_state_plane").replace(" ", "_") + '"'
        for h in NYC_HEADER.split(",")
    )
    (served / "erm2-nwe9.csv").write_text(
        soda_header + "\n" + "\n".join(_nyc_rows(rng, 200, soda=True)) + "\n"
    )
    url = f"{base}/erm2-nwe9.csv"
    _same(read_nyc311(url, limit=200), _legacy.read_nyc311(url, limit=200))
    both = tmp_path / "both.zip"
    with zipfile.ZipFile(both, "w") as zf:
        zf.write(export, "a/nyc311_export.csv")
        zf.write(served / "erm2-nwe9.csv", "b/soda.csv")
    _same(read_nyc311(both), _legacy.read_nyc311(both))

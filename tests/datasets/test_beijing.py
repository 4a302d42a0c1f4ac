from __future__ import annotations

import io
import shutil
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from cityos.datasets import (
    BEIJING_READING_COLUMNS,
    DataSourceError,
    read_beijing_air_quality,
    read_beijing_stations,
)
from cityos.errors import CityOSError

STATIONS = [
    "Aotizhongxin", "Changping", "Dingling", "Dongsi", "Guanyuan", "Gucheng",
    "Huairou", "Nongzhanguan", "Shunyi", "Tiantan", "Wanliu", "Wanshouxigong",
]  # fmt: skip


def _csv(shared: Path, station: str) -> Path:
    return shared / "beijing-air-quality" / f"PRSA_Data_{station}_20130301-20170228.csv"


def test_reads_every_station_with_canonical_columns(shared_data: Path) -> None:
    df = read_beijing_air_quality(shared_data / "beijing-air-quality")
    assert list(df.columns) == ["id", "t", "x", "y", *BEIJING_READING_COLUMNS]
    assert len(df) == 420_768
    assert (df.groupby("id").size() == 35_064).all()
    assert sorted(df["id"].unique()) == STATIONS
    assert str(df["t"].dtype) == "datetime64[ms, UTC]"
    # 2013-03-01 00:00 to 2017-02-28 23:00 Beijing time (UTC+8, no daylight saving).
    assert df["t"].min() == pd.Timestamp("2013-02-28 16:00", tz="UTC")
    assert df["t"].max() == pd.Timestamp("2017-02-28 15:00", tz="UTC")
    assert df["t"].is_monotonic_increasing
    assert not df.duplicated(["id", "t"]).any()
    assert df["wd"].dtype == "str"
    for c in BEIJING_READING_COLUMNS:
        if c != "wd":
            assert df[c].dtype == np.float64


def test_na_becomes_nan_and_values_keep_their_row(shared_data: Path) -> None:
    raw = pd.read_csv(_csv(shared_data, "Dingling"), keep_default_na=False, dtype=str)
    df = read_beijing_air_quality(_csv(shared_data, "Dingling"))
    assert len(df) == 35_064
    for c in ("NO2", "PM2.5", "wd"):
        assert df[c].isna().sum() == (raw[c] == "NA").sum() > 0
    # Row No. 1 is 2013-03-01 00:00 local: PM2.5 4, NO2 NA, wd "E".
    first = df.iloc[0]
    assert first["t"] == pd.Timestamp("2013-03-01 00:00", tz="Asia/Shanghai")
    assert first["PM2.5"] == 4 and np.isnan(first["NO2"]) and first["wd"] == "E"


def test_positions_come_from_stations_csv(shared_data: Path) -> None:
    st = read_beijing_stations()
    assert list(st.columns) == ["id", "name_zh", "x", "y"]
    assert len(st) == 12
    df = read_beijing_air_quality(_csv(shared_data, "Dongsi"))
    assert (df["id"] == "Dongsi").all()
    dongsi = st.set_index("id").loc["Dongsi"]
    assert (df["x"] == dongsi["x"]).all() and (df["y"] == dongsi["y"]).all()
    assert dongsi["name_zh"] == "东四"
    assert 116.0 < dongsi["x"] < 117.0 and 39.5 < dongsi["y"] < 40.5
    no_xy = read_beijing_air_quality(_csv(shared_data, "Dongsi"), positions=False)
    assert no_xy["x"].isna().all()


def test_station_filter(shared_data: Path) -> None:
    df = read_beijing_air_quality(
        shared_data / "beijing-air-quality", stations=["Tiantan", "Huairou"]
    )
    assert sorted(df["id"].unique()) == ["Huairou", "Tiantan"]
    assert len(df) == 2 * 35_064


def _uci_like_zip(shared: Path, stations: list[str]) -> bytes:
    # The UCI download is a zip holding another zip holding the CSV folder.
    inner = io.BytesIO()
    with zipfile.ZipFile(inner, "w", zipfile.ZIP_DEFLATED) as z:
        for s in stations:
            p = _csv(shared, s)
            z.write(p, f"PRSA_Data_20130301-20170228/{p.name}")
    outer = io.BytesIO()
    with zipfile.ZipFile(outer, "w") as z:
        z.writestr("PRSA2017_Data_20130301-20170228.zip", inner.getvalue())
    return outer.getvalue()


def test_reads_nested_zip_from_disk_and_over_http(
    shared_data: Path, tmp_path: Path, http_dir: tuple[str, Path, list[str]]
) -> None:
    stations = ["Dongsi", "Wanliu"]
    expected = read_beijing_air_quality(shared_data / "beijing-air-quality", stations=stations)
    blob = _uci_like_zip(shared_data, stations)
    local = tmp_path / "uci.zip"
    local.write_bytes(blob)
    # A zip has no stations.csv, so positions default to the shared folder's.
    pd.testing.assert_frame_equal(read_beijing_air_quality(local), expected)

    base, served, requested = http_dir
    (served / "beijing.zip").write_bytes(blob)
    shutil.copy(_csv(shared_data, "Dongsi"), served / "dongsi.csv")
    from_url = read_beijing_air_quality(f"{base}/beijing.zip")
    pd.testing.assert_frame_equal(from_url, expected)
    one = read_beijing_air_quality(f"{base}/dongsi.csv")
    pd.testing.assert_frame_equal(one, expected[expected["id"] == "Dongsi"].reset_index(drop=True))
    assert requested == ["/beijing.zip", "/dongsi.csv"]


def test_errors_say_what_and_where(tmp_path: Path, http_dir: tuple[str, Path, list[str]]) -> None:
    with pytest.raises(DataSourceError, match="does not exist") as info:
        read_beijing_air_quality(tmp_path / "nowhere")
    assert isinstance(info.value, CityOSError)
    with pytest.raises(DataSourceError, match="no PRSA_Data_"):
        read_beijing_air_quality(tmp_path)
    bad = tmp_path / "PRSA_Data_Foo_2013.csv"
    bad.write_text("station,year\nFoo,2013\n")
    with pytest.raises(DataSourceError, match=r"PRSA_Data_Foo_2013\.csv lacks column"):
        read_beijing_air_quality(bad, positions=False)
    base, _, _ = http_dir
    with pytest.raises(DataSourceError, match="could not download"):
        read_beijing_air_quality(f"{base}/missing.zip")

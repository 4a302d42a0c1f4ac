from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from cityos.datasets import DataSourceError, read_nyc311, shared_data_dir

SAMPLES = {"nyc311_2022-05-01_sample.csv": 924, "nyc311_2025-03-24_sample.csv": 235}


@pytest.mark.parametrize(("name", "rows"), SAMPLES.items())
def test_reads_samples_keeping_every_column(shared_data: Path, name: str, rows: int) -> None:
    path = shared_data / "nyc-311" / name
    raw = pd.read_csv(path, dtype=str)
    df = read_nyc311(path)
    assert len(df) == rows
    assert list(df.columns) == ["id", "t", "x", "y", *raw.columns]
    assert (df["id"] == raw["Unique Key"]).all() and df["id"].is_unique
    assert str(df["t"].dtype) == "datetime64[ms, UTC]"
    assert (df["t"] == df["Created Date"]).all()
    assert str(df["Closed Date"].dtype) == "datetime64[ms, UTC]"
    assert df["Closed Date"].isna().sum() == raw["Closed Date"].isna().sum()
    closed = df["Closed Date"].notna()
    assert (df.loc[closed, "Closed Date"] >= df.loc[closed, "t"]).mean() > 0.95
    assert (df["x"] == pd.to_numeric(raw["Longitude"])).sum() == raw["Longitude"].notna().sum()
    xy = df.dropna(subset=["x", "y"])
    assert xy["x"].between(-74.3, -73.6).all() and xy["y"].between(40.4, 41.0).all()
    assert (df["Agency"] == raw["Agency"]).all()


def test_local_times_become_utc(shared_data: Path) -> None:
    may = read_nyc311(shared_data / "nyc-311" / "nyc311_2022-05-01_sample.csv")
    row = may.set_index("id").loc["54049402"]  # created 05/01/2022 12:00:03 AM, EDT (UTC-4)
    assert row["t"] == pd.Timestamp("2022-05-01 04:00:03", tz="UTC")
    march = read_nyc311(shared_data / "nyc-311" / "nyc311_2025-03-24_sample.csv")
    row = march.set_index("id").loc["64446107"]  # 03/24/2025 11:33:07 PM, after DST began
    assert row["t"] == pd.Timestamp("2025-03-25 03:33:07", tz="UTC")
    assert row["Closed Date"] == pd.Timestamp("2025-03-25 04:45:11", tz="UTC")


HEADER = "Unique Key,Created Date,Closed Date,Agency,Latitude,Longitude\n"


def test_winter_and_fall_back_times(tmp_path: Path) -> None:
    p = tmp_path / "311.csv"
    p.write_text(
        HEADER
        + "1,01/15/2024 09:00:00 AM,,DSNY,40.7,-73.9\n"  # EST: UTC-5
        + "2,11/03/2024 01:30:00 AM,11/03/2024 03:00:00 AM,NYPD,,\n"  # ambiguous hour
        + "3,03/10/2024 02:30:00 AM,,NYPD,40.7,-73.9\n"  # does not exist: moves forward
    )
    df = read_nyc311(p)
    assert list(df["t"]) == [
        pd.Timestamp("2024-01-15 14:00", tz="UTC"),
        pd.Timestamp("2024-11-03 05:30", tz="UTC"),  # first (daylight) occurrence
        pd.Timestamp("2024-03-10 07:00", tz="UTC"),  # 03:00 EDT
    ]
    assert df["Closed Date"].iloc[1] == pd.Timestamp("2024-11-03 08:00", tz="UTC")
    assert df["x"].isna().tolist() == [False, True, False]


def test_soda_csv_over_http_with_limit(http_dir: tuple[str, Path, list[str]]) -> None:
    base, served, requested = http_dir
    (served / "erm2-nwe9.csv").write_text(
        '"unique_key","created_date","closed_date","agency","latitude","longitude"\n'
        '"61000001","2024-06-01T12:00:00.000","","NYPD","40.75","-73.99"\n'
        '"61000002","2024-12-01T08:15:30.000","2024-12-02T08:00:00.000","DOT","",""\n'
    )
    df = read_nyc311(f"{base}/erm2-nwe9.csv", limit=50)
    assert requested == ["/erm2-nwe9.csv?%24limit=50"]
    assert list(df.columns[:4]) == ["id", "t", "x", "y"]
    assert list(df["id"]) == ["61000001", "61000002"]
    assert list(df["t"]) == [
        pd.Timestamp("2024-06-01 16:00", tz="UTC"),
        pd.Timestamp("2024-12-01 13:15:30", tz="UTC"),
    ]
    assert df["closed_date"].iloc[1] == pd.Timestamp("2024-12-02 13:00", tz="UTC")
    assert df["x"].iloc[0] == -73.99 and pd.isna(df["y"].iloc[1])


def test_rejects_files_that_are_not_311(tmp_path: Path) -> None:
    p = tmp_path / "other.csv"
    p.write_text("a,b\n1,2\n")
    with pytest.raises(DataSourceError, match="lacks column"):
        read_nyc311(p)
    bad = tmp_path / "bad.csv"
    bad.write_text(HEADER + "1,yesterday,,NYPD,40.7,-73.9\n")
    with pytest.raises(DataSourceError, match="Created Date"):
        read_nyc311(bad)


def test_shared_data_dir_honours_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("CITYOS_SHARED_DATA", str(tmp_path))
    assert shared_data_dir() == tmp_path
    monkeypatch.setenv("CITYOS_SHARED_DATA", str(tmp_path / "missing"))
    assert shared_data_dir() is None
    monkeypatch.delenv("CITYOS_SHARED_DATA")
    default = shared_data_dir()
    repo_root = Path(__file__).resolve().parents[2]
    expected = repo_root.parent / "shared" / "data"
    assert default == (expected if expected.is_dir() else None)

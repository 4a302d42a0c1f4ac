"""A mapping that targets an existing dataset must agree with it (nothing it says is dropped
silently, no column is stored without a field), and a point series can take its positions
from a static dataset of its stations."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pytest

from cityos.ingest import (
    Batch,
    FileSource,
    Mapping,
    MappingError,
    Part,
    example_mapping,
    mapping_for,
    process_batch,
)
from cityos.model import DatasetSchema, Field, ModelKind
from cityos.store import Store


def _points_mapping(**dataset: object) -> Mapping:
    return Mapping.from_dict(
        {
            "dataset": {"name": "cars", "model": "point_st", **dataset},
            "id": {"from": "k"},
            "time": {"from": "t"},
            "geometry": {"x": "lon", "y": "lat"},
            "fields": {"speed": {"type": "float64"}},
        }
    )


def _csv(tmp_path: Path, text: str, name: str = "in.csv") -> Path:
    p = tmp_path / name
    p.write_text(text)
    return p


@pytest.fixture
def cars(city: Store) -> Store:
    city.create_dataset(
        "cars",
        DatasetSchema(ModelKind.POINT_ST, fields=(Field("speed", "float64"),)),
        description="the fleet",
    )
    return city


CSV = "k,t,lon,lat,speed,heading\nA,2026-03-02T08:00Z,116.4,39.9,30,90\n"


# -- 2. settings for a dataset that already exists -------------------------------------------
@pytest.mark.parametrize(
    ("dataset", "where"),
    [
        ({"time_partition": "90D"}, "dataset.time_partition"),
        ({"crs": "EPSG:3857"}, "dataset.crs"),
        ({"description": "another"}, "dataset.description"),
        ({"key": ["id"]}, "dataset.key"),
    ],
)
def test_settings_that_disagree_with_the_dataset_are_refused(
    cars: Store, tmp_path: Path, dataset: dict[str, object], where: str
) -> None:
    src = FileSource(_csv(tmp_path, CSV), _points_mapping(**dataset))
    with pytest.raises(MappingError) as e:
        src.run(cars)
    assert [p for p, _ in e.value.mistakes] == [where]
    assert "already exists" in str(e.value) and "cityos dataset drop cars" in str(e.value)
    assert cars.describe("cars").rows == 0


def test_fields_the_dataset_does_not_declare_are_refused(cars: Store, tmp_path: Path) -> None:
    m = Mapping.from_dict(
        {
            **_points_mapping().doc.model_dump(by_alias=True, exclude_defaults=True),
            "fields": {"speed": {"type": "float64"}, "heading": {"type": "float64"}},
        }
    )
    with pytest.raises(MappingError) as e:
        FileSource(_csv(tmp_path, CSV), m).run(cars)
    assert e.value.mistakes == [
        ("fields.heading", "not a field of the dataset (its fields: speed)")
    ]


def test_a_mapping_that_agrees_is_accepted(cars: Store, tmp_path: Path) -> None:
    rep = FileSource(_csv(tmp_path, CSV), _points_mapping(description="the fleet")).run(cars)
    assert rep.accepted == 1
    assert sorted(cars.read("cars").table.column_names) == ["id", "speed", "t", "x", "y"]


def test_keep_unmapped_refuses_columns_without_a_field(city: Store, tmp_path: Path) -> None:
    doc = _points_mapping().doc.model_dump(by_alias=True, exclude_defaults=True)
    m = Mapping.from_dict({**doc, "keep_unmapped": True})
    with pytest.raises(MappingError, match=r"\['heading'\] are not fields of dataset 'cars'"):
        FileSource(_csv(tmp_path, CSV), m).run(city)
    assert city.describe("cars").rows == 0
    # declared fields of the stored dataset may be kept without naming them in the mapping
    ok = Mapping.from_dict({**doc, "keep_unmapped": True, "fields": {}})
    city.drop_dataset("cars")
    city.create_dataset(
        "cars",
        DatasetSchema(
            ModelKind.POINT_ST, fields=(Field("speed", "float64"), Field("heading", "float64"))
        ),
    )
    assert FileSource(_csv(tmp_path, CSV), ok).run(city).accepted == 1
    row = city.read("cars").table.to_pylist()[0]
    assert row["heading"] == 90 and row["speed"] == 30


# -- 3. a point series references its stations ---------------------------------------------
STATIONS = "station,name_zh,lat,lon\nDongsi,东四,39.929,116.417\nTiantan,天坛,39.886,116.407\n"
READINGS = (
    "No,year,month,day,hour,PM2.5,PM10,SO2,NO2,CO,O3,TEMP,PRES,DEWP,RAIN,wd,WSPM,station\n"
    "1,2013,3,1,0,4,4,4,7,300,77,-0.7,1023,-18.8,0,NNW,4.4,Dongsi\n"
    "2,2013,3,1,0,8,8,6,20,400,65,-1.1,1023,-18.2,0,N,4.7,Tiantan\n"
    "3,2013,3,1,0,9,9,9,9,300,70,-1.0,1023,-18.0,0,N,4.0,Nowhere\n"
)


def _beijing(tmp_path: Path) -> Path:
    d = tmp_path / "beijing"
    d.mkdir()
    (d / "stations.csv").write_text(STATIONS)
    (d / "PRSA_Data_Sample_20130301-20170228.csv").write_text(READINGS)
    return d


def test_shipped_beijing_mappings_resolve_positions_from_the_stations(
    city: Store, tmp_path: Path
) -> None:
    d = _beijing(tmp_path)
    readings = example_mapping("beijing_air_quality", base_dir=d)
    with pytest.raises(MappingError, match=r"stations dataset 'beijing_stations'.*does not exist"):
        FileSource(d, readings).run(city)
    st = FileSource(d, example_mapping("beijing_stations", base_dir=d)).run(city)
    assert st.accepted == 2
    assert city.schema("beijing_stations").model is ModelKind.POINT_STATIC
    rep = FileSource(d, example_mapping("beijing_air_quality", base_dir=d)).run(city)
    assert (rep.accepted, rep.rejected) == (2, 1)
    assert city.schema("beijing_air_quality").stations == "beijing_stations"
    rows = {
        r["id"]: r for r in city.read("beijing_air_quality").table.to_pylist()
    }  # positions of the stations, to the store's fixed-point precision
    assert rows["Dongsi"]["x"] == pytest.approx(116.417, abs=1e-6)
    assert rows["Tiantan"]["y"] == pytest.approx(39.886, abs=1e-6)
    assert rows["Dongsi"]["co"] == pytest.approx(0.3)
    problem = rep.datasets["beijing_air_quality"].problems[0]
    assert problem["rule"] == "dataset.stations" and "'Nowhere'" in problem["message"]


def test_pushed_readings_need_no_coordinates(city: Store) -> None:
    """The identity mapping of a series with stations (HTTP push, MQTT, replays) takes the
    positions from the stations dataset, in its CRS converted to the series' CRS."""
    city.create_dataset("sites", DatasetSchema(ModelKind.POINT_STATIC, crs="EPSG:3857"))
    city.append("sites", pa.table({"id": ["s1"], "x": [12958400.0], "y": [4852000.0]}))
    city.create_dataset(
        "noise",
        DatasetSchema(ModelKind.POINT_SERIES, fields=(Field("db", "float64"),), stations="sites"),
    )
    res = process_batch(
        city,
        mapping_for(city, "noise"),
        Batch("noise", [Part([{"id": "s1", "t": "2026-03-02T08:00Z", "db": 61.0}], "push")]),
        "push",
    )
    assert (res.accepted, res.rejected) == (1, 0)
    from pyproj import Transformer

    lon, lat = Transformer.from_crs(3857, 4326, always_xy=True).transform(12958400.0, 4852000.0)
    row = city.read("noise").table.to_pylist()[0]
    assert row["x"] == pytest.approx(lon, abs=1e-6)
    assert row["y"] == pytest.approx(lat, abs=1e-6)


def test_stations_only_for_point_series() -> None:
    with pytest.raises(MappingError, match="only a point_series references stations"):
        Mapping.from_dict(
            {
                "dataset": {"name": "x", "model": "point_st", "stations": "s"},
                "id": {"from": "k"},
                "time": {"from": "t"},
            }
        )
    with pytest.raises(Exception, match="only a point_series references a stations"):
        DatasetSchema(ModelKind.POINT_ST, stations="s")

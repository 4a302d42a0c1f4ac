"""Schemas of the six models and conform(): canonical form and located errors."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
import shapely

from cityos.errors import ValidationError
from cityos.model import (
    DatasetSchema,
    Field,
    GeometryType,
    ModelKind,
    MovingPoints,
    PlainTable,
    RoadNetwork,
    StaticFeatures,
    Trajectories,
    conform,
)


@pytest.mark.parametrize("kind", list(ModelKind))
def test_schema_round_trips_through_json(kind: ModelKind) -> None:
    s = DatasetSchema(
        kind, fields=(Field("a", "float64", unit="m", minimum=0), Field("b", personal="phone"))
    )
    assert DatasetSchema.from_json(s.to_json()) == s
    assert s.key == kind.default_key


def test_schema_rejects_bad_declarations() -> None:
    with pytest.raises(ValidationError, match="unknown type"):
        Field("a", "decimal")
    with pytest.raises(ValidationError, match="declared twice"):
        DatasetSchema(ModelKind.TABLE, fields=(Field("a"), Field("a")))
    with pytest.raises(ValidationError, match="canonical columns"):
        DatasetSchema(ModelKind.POINT_ST, fields=(Field("x", "float64"),))
    with pytest.raises(ValidationError, match="key column 'nope'"):
        DatasetSchema(ModelKind.POINT_ST, key=("id", "nope"))


def _pts(**over: object) -> list[dict[str, object]]:
    rows: list[dict[str, object]] = [
        {"id": "a", "t": "2026-03-02T08:00:00Z", "x": 116.4, "y": 39.9, "speed": 1.0},
        {"id": "b", "t": "2026-03-02T08:00:05Z", "x": 116.5, "y": 39.8, "speed": 2.0},
    ]
    rows[1].update(over)
    return rows


SCHEMA = DatasetSchema(
    ModelKind.POINT_ST, fields=(Field("speed", "float64", minimum=0, maximum=300),)
)


@pytest.mark.parametrize(
    ("override", "field", "expected"),
    [
        ({"x": math.nan}, "x", "finite"),
        ({"y": 95.0}, "y", "latitude"),
        ({"x": -181.0}, "x", "longitude"),
        ({"t": "not a time"}, "t", "ISO 8601"),
        ({"t": "1850-01-01T00:00:00Z"}, "t", "between 1970"),
        ({"t": None}, "t", "timestamp"),
        ({"speed": "fast"}, "speed", "double"),
        ({"speed": -3.0}, "speed", "[0"),
        ({"id": None}, "id", "an id"),
    ],
)
def test_bad_values_are_reported_with_dataset_row_key_and_field(
    override: dict[str, object], field: str, expected: str
) -> None:
    with pytest.raises(ValidationError) as ei:
        conform(_pts(**override), SCHEMA, "taxis")
    e = ei.value
    assert e.dataset == "taxis"
    assert e.row == 1
    assert e.field == field
    assert expected in (e.expected or "")
    assert "taxis" in str(e) and "row 1" in str(e) and "Nothing was written" in str(e)


def test_every_problem_is_listed() -> None:
    rows = _pts(x=math.nan, t="garbage")
    rows.append({"id": "c", "t": "2026-03-02T08:00:10Z", "x": 116.4, "y": 91.0, "speed": 1.0})
    with pytest.raises(ValidationError) as ei:
        conform(rows, SCHEMA, "taxis")
    found = {(p["row"], p["field"]) for p in ei.value.problems}
    assert {(1, "x"), (1, "t"), (2, "y")} <= found
    assert ei.value.problems[0]["key"] is not None


def test_missing_required_column() -> None:
    with pytest.raises(ValidationError, match=r"missing required column\(s\) \['t'\]"):
        conform([{"id": "a", "x": 1.0, "y": 2.0}], SCHEMA, "taxis")


def test_canonical_types_and_time_handling() -> None:
    tbl = conform(
        [
            {"id": 7, "t": "2026-03-02 08:00:00", "x": "116.4", "y": 39.9, "speed": 3},
            {"id": 8, "t": "2026-03-02T16:00:00+08:00", "x": 116.5, "y": 39.8, "speed": None},
        ],
        SCHEMA,
    )
    assert tbl.schema.field("id").type == pa.string()
    assert tbl.schema.field("t").type == pa.timestamp("ms", tz="UTC")
    t = tbl["t"].to_pylist()
    assert t[0] == t[1]  # naive is UTC; +08:00 is converted
    assert tbl["speed"].to_pylist() == [3.0, None]


def test_epoch_seconds_and_millis() -> None:
    tbl = conform(
        [
            {"id": "a", "t": 1772438400, "x": 1.0, "y": 2.0},
            {"id": "b", "t": 1772438400000, "x": 1.0, "y": 2.0},
        ],
        DatasetSchema(ModelKind.POINT_ST),
    )
    assert tbl["t"][0] == tbl["t"][1]


def test_geometry_validation_for_regions_and_lines() -> None:
    reg = DatasetSchema(ModelKind.POINT_STATIC, geometry_type=GeometryType.REGION, id_type="int64")
    good = shapely.to_wkb(shapely.box(0, 0, 1, 1))
    bowtie = shapely.to_wkb(shapely.Polygon([(0, 0), (1, 1), (1, 0), (0, 1)]))
    line = shapely.to_wkb(shapely.LineString([(0, 0), (1, 1)]))
    assert conform([{"id": 1, "geometry": good}], reg).num_rows == 1
    with pytest.raises(ValidationError, match="invalid"):
        conform([{"id": 1, "geometry": good}, {"id": 2, "geometry": bowtie}], reg, "d")
    with pytest.raises(ValidationError, match="is a LineString"):
        conform([{"id": 1, "geometry": line}], reg, "d")
    with pytest.raises(ValidationError, match="malformed"):
        conform([{"id": 1, "geometry": b"\x01\x02junk"}], reg, "d")
    with pytest.raises(ValidationError, match="outside"):
        conform([{"id": 1, "geometry": shapely.to_wkb(shapely.box(170, 0, 190, 1))}], reg, "d")


def test_frames_interop_pandas_geopandas_arrow() -> None:
    df = pd.DataFrame(
        {
            "car": ["a", "b"],
            "time": ["2026-03-02T08:00Z"] * 2,
            "lon": [116.4, 116.5],
            "lat": [39.9, 39.8],
        }
    )
    f = MovingPoints.from_pandas(df, id="car", t="time", x="lon", y="lat")
    gdf = f.to_geopandas()
    assert list(gdf.geometry.x) == [116.4, 116.5]
    assert str(gdf.crs) == "EPSG:4326"
    back = MovingPoints.from_geopandas(gdf)
    assert back.to_arrow().select(["id", "x", "y"]).equals(f.to_arrow().select(["id", "x", "y"]))
    roads = RoadNetwork.from_pandas(
        pd.DataFrame(
            {
                "id": ["e1"],
                "from_node": [1],
                "to_node": [2],
                "geometry": [shapely.to_wkb(shapely.LineString([(0, 0), (1, 1)]))],
            }
        )
    )
    assert roads.to_geopandas().geometry.iloc[0].geom_type == "LineString"
    poi = StaticFeatures.from_pandas(pd.DataFrame({"id": ["s"], "x": [1.0], "y": [2.0]}))
    assert len(poi) == 1
    assert len(PlainTable.from_pandas(pd.DataFrame({"id": ["p1"], "amount": [3]}))) == 1


def test_trajectories_need_one_time_per_point_in_order() -> None:
    s = Trajectories.schema()
    line = shapely.to_wkb(shapely.LineString([(116.0, 39.0), (116.1, 39.1), (116.2, 39.2)]))
    t = pd.to_datetime(["2026-03-02T08:00Z", "2026-03-02T08:01Z", "2026-03-02T08:02Z"]).tolist()
    ok = conform([{"id": "a", "traj_id": "1", "geometry": line, "times": t}], s)
    assert ok["t"][0].as_py() == t[0] and ok["t_end"][0].as_py() == t[2]
    with pytest.raises(ValidationError, match="3 points"):
        conform([{"id": "a", "traj_id": "1", "geometry": line, "times": t[:2]}], s, "trips")
    with pytest.raises(ValidationError, match="backwards"):
        conform(
            [{"id": "a", "traj_id": "1", "geometry": line, "times": [t[0], t[2], t[1]]}], s, "trips"
        )


def test_numpy_nan_strings_and_ints() -> None:
    s = DatasetSchema(ModelKind.TABLE, fields=(Field("n", "int64"),), id_type="int64")
    tbl = conform(pd.DataFrame({"id": [1, 2], "n": [1.0, np.nan]}), s)
    assert tbl["n"].to_pylist() == [1, None]
    with pytest.raises(ValidationError, match="convert"):
        conform(pd.DataFrame({"id": [1], "n": [1.5]}), s, "tbl")

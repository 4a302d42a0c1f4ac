"""Search across events, catalog datasets, enterprises and places: zh and en, place and
time filters, ranking, and data rights (a user never finds what they may not read)."""

from __future__ import annotations

import pandas as pd
import pytest

from cityos import access
from cityos.govern.search import Search
from cityos.model import DatasetSchema, Field, ModelKind
from cityos.store import Store

T0 = pd.Timestamp("2026-03-02T08:00Z")


@pytest.fixture
def populated(city: Store) -> Store:
    city.create_dataset(
        "events",
        DatasetSchema(
            ModelKind.POINT_ST,
            fields=(
                Field("title"),
                Field("description"),
                Field("category"),
                Field("department"),
                Field("status"),
            ),
        ),
    )
    city.append(
        "events",
        [
            {
                "id": "E-000001",
                "t": T0,
                "x": 116.40,
                "y": 39.90,
                "title": "路面有个大坑",
                "description": "学校门口路面有个大坑",
                "category": "road",
                "department": "Chaoyang road_maintenance",
                "status": "dispatched",
            },
            {
                "id": "E-000002",
                "t": T0 + pd.Timedelta("2D"),
                "x": 116.50,
                "y": 39.95,
                "title": "Pothole on the ring road",
                "description": "deep pothole, cars swerving",
                "category": "road",
                "department": "traffic_bureau",
                "status": "received",
            },
            {
                "id": "E-000003",
                "t": T0,
                "x": 116.41,
                "y": 39.91,
                "title": "路灯不亮",
                "description": "一排路灯全黑了",
                "category": "streetlight",
                "department": "Chaoyang lighting",
                "status": "received",
            },
        ],
    )
    city.create_dataset(
        "enterprises", DatasetSchema(ModelKind.POINT_STATIC, fields=(Field("name"), Field("kind")))
    )
    city.append(
        "enterprises",
        [
            {
                "id": "ENT-0001",
                "x": 116.30,
                "y": 39.80,
                "name": "东方化工厂",
                "kind": "chemical_plant",
            },
            {
                "id": "ENT-0002",
                "x": 116.35,
                "y": 39.85,
                "name": "Sinopec gas station No.3",
                "kind": "gas_station",
            },
        ],
    )
    city.create_dataset(
        "pois",
        DatasetSchema(
            ModelKind.POINT_STATIC,
            fields=(Field("name"), Field("category")),
            description="Points of interest",
        ),
    )
    city.append(
        "pois",
        [
            {
                "id": "1",
                "x": 116.40,
                "y": 39.90,
                "name": "Chaoyang School No.1",
                "category": "school",
            }
        ],
    )
    city.create_dataset(
        "medical_payments",
        DatasetSchema(
            ModelKind.TABLE,
            fields=(Field("resident_id"), Field("self_pay", "float64")),
            description="Medical self-pay records",
        ),
    )
    city.append("medical_payments", [{"id": "p1", "resident_id": "R1", "self_pay": 100.0}])
    return city


def test_chinese_and_english_queries_rank_across_kinds(populated: Store) -> None:
    s = Search(populated)
    zh = s.search("大坑")
    assert [h.id for h in zh] == ["E-000001"]
    en = s.search("pothole")
    assert en[0].id == "E-000002" and en[0].kind == "event"
    assert [h.id for h in s.search("化工厂")] == ["ENT-0001"]
    assert s.search("gas station")[0].id == "ENT-0002"
    assert s.search("school")[0].kind == "place"
    assert {h.id for h in s.search("medical self-pay")} == {"medical_payments"}
    assert s.search("路灯")[0].id == "E-000003"
    assert s.search("nothing-matches-this") == []


def test_place_and_time_filters(populated: Store) -> None:
    s = Search(populated)
    assert {h.id for h in s.search("pothole 大坑")} == {"E-000001", "E-000002"}
    assert [h.id for h in s.search("pothole 大坑", bbox=(116.45, 39.9, 116.6, 40.0))] == [
        "E-000002"
    ]
    assert [h.id for h in s.search("pothole 大坑", start=T0, end=T0 + pd.Timedelta("1D"))] == [
        "E-000001"
    ]
    with pytest.raises(ValueError, match="kinds"):
        s.search("x", kinds=("weird",))


def test_a_user_never_finds_what_they_may_not_read(populated: Store) -> None:
    db = populated.db
    for ds in ("events", "enterprises", "pois", "medical_payments"):
        access.set_dataset_policy(db, ds, "sensitive")
    access.create_role(db, "roads_staff")
    access.grant(db, "roads_staff", "events", "read")
    access.add_row_filter(
        db,
        "roads_staff",
        "events",
        access.RowFilter("column", {"column": "category", "values": ["road"]}),
    )
    access.create_user(db, "wang", "correct-horse-battery", roles=["roads_staff"])
    ss = access.SecureStore(populated, access.principal_for(db, "wang"))
    s = Search(ss)
    assert {h.id for h in s.search("pothole 大坑 路灯")} == {
        "E-000001",
        "E-000002",
    }  # not the light
    assert s.search("化工厂") == []  # enterprises: not granted
    assert s.search("medical self-pay") == []  # not even the dataset's name
    assert s.search("school") == []
    assert {h.id for h in Search(populated).search("路灯")} == {"E-000003"}  # the raw store sees it

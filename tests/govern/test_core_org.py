"""The organisation: loaded from YAML, from CSV files, generated over the demo city's 12
districts; staff are access users with roles and departments; bad files name the place."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import yaml

from cityos import access
from cityos.govern import Governance, IntakeError, generate_organisation, load_organisation
from cityos.model import DatasetSchema, Field, GeometryType, ModelKind
from cityos.store import Store

from .conftest import PASSWORD, small_org


def test_yaml_load_roles_and_lookup(tmp_path: Path, db_url: str) -> None:
    f = tmp_path / "org.yaml"
    f.write_text(yaml.safe_dump(small_org(), allow_unicode=True))
    store = Store(tmp_path / "c", database_url=db_url)
    s = load_organisation(store.db, f, password=PASSWORD)
    assert (s.units, s.departments, s.staff, s.services) == (15, 7, 10, 3)
    assert s.levels == {"city": 1, "district": 2, "street": 4, "community": 8}
    assert set(access.list_roles(store.db)) >= {
        "citizen",
        "dispatcher",
        "department_staff",
        "grid_worker",
        "supervisor",
    }
    u = access.get_user(store.db, "road1")
    assert (u.department, u.roles) == ("d1-roads", ("department_staff",))
    assert access.authenticate(store.db, "disp", PASSWORD).roles == frozenset({"dispatcher"})
    g = Governance(store.db, store)
    j = g.jurisdictions
    assert j.locate(1.7, 0.8) == {
        "city": "city",
        "district": "d2",
        "street": "d2-s2",
        "community": "d2-s2-g2",
    }
    assert j.locate(3, 3) == {}
    assert j.responsible(g.service("pothole"), 1.7, 0.8) == ["d2-roads", "city-roads"]
    # loading again replaces, never duplicates
    assert load_organisation(store.db, f).units == 15
    assert len(g.departments()) == 7
    store.close()


def test_csv_folder_and_region_from_dataset(tmp_path: Path) -> None:
    store = Store(tmp_path / "c")
    import shapely

    store.create_dataset(
        "zones",
        DatasetSchema(
            ModelKind.POINT_STATIC, geometry_type=GeometryType.REGION, fields=(Field("name"),)
        ),
    )
    store.append(
        "zones", [{"id": "z1", "name": "Old Town", "geometry": shapely.box(10, 10, 11, 11).wkb}]
    )
    d = tmp_path / "org"
    d.mkdir()
    (d / "units.csv").write_text(
        "code,name,level,parent,region_dataset,region_id,bbox\n"
        "city,City,city,,,,9 9 12 12\n"
        "old,Old Town,district,city,zones,z1,\n"
    )
    (d / "departments.csv").write_text(
        "code,name,unit,function,services\nold-parks,Parks,old,parks,tree;bench\n"
    )
    (d / "services.csv").write_text(
        "code,name,group,function,resolve_within\ntree,Tree,parks,parks,5d\n"
    )
    (d / "staff.csv").write_text("username,role,department\ngardener,department_staff,old-parks\n")
    s = load_organisation(store.db, d, store=store)
    assert (s.units, s.departments, s.services, s.staff) == (2, 1, 1, 1)
    g = Governance(store.db, store)
    assert g.jurisdictions.locate(10.5, 10.5)["district"] == "old"
    assert g.workflow("tree").resolve_within.days == 5
    e = g.intake("tree", x=10.5, y=10.5).event
    assert e.district == "old"
    store.close()


@pytest.mark.parametrize(
    ("org", "field"),
    [
        ({"units": [{"code": "a", "level": "planet"}]}, "units[0].level"),
        ({"units": [{"code": "a", "level": "district", "parent": "nowhere"}]}, "units.parent"),
        (
            {"departments": [{"code": "x", "unit": "nowhere", "function": "f"}]},
            "departments[0].unit",
        ),
        ({"staff": [{"username": "u", "role": "king"}]}, "staff[0].role"),
        (
            {"staff": [{"username": "u", "role": "citizen", "department": "nope"}]},
            "staff[0].department",
        ),
        (
            {"services": [{"code": "s", "name": "S", "workflow": {"deadlines": {"nap": "1h"}}}]},
            "workflow.deadlines.nap",
        ),
        (
            {
                "services": [
                    {"code": "s", "name": "S", "attributes": [{"code": "a", "datatype": "colour"}]}
                ]
            },
            "services[0].attributes[0].datatype",
        ),
        (
            {
                "units": [
                    {"code": "a", "level": "district", "region": {"dataset": "nosuch", "id": 1}}
                ]
            },
            "units[0].region.dataset",
        ),
        ({"planets": []}, "planets"),
    ],
)
def test_bad_organisation_names_the_place(
    tmp_path: Path, org: dict[str, object], field: str
) -> None:
    store = Store(tmp_path / "c")
    with pytest.raises(IntakeError) as info:
        load_organisation(store.db, org, store=store)
    assert info.value.field == field
    g = Governance(store.db, store)
    assert g.departments() == [] and g.services == {}
    store.close()


def test_generated_over_demo_districts(tmp_path: Path) -> None:
    from cityos.synth import make_city

    city = make_city(seed=7, size_km=8, spacing_m=800)
    store = Store(tmp_path / "c")
    store.create_dataset(
        "districts",
        DatasetSchema(
            ModelKind.POINT_STATIC,
            geometry_type=GeometryType.REGION,
            id_type="int64",
            fields=(Field("name"),),
        ),
    )
    store.append("districts", city.districts.rename(columns={"district_id": "id"}))
    s = generate_organisation(store.db, store)
    assert s.levels == {
        "city": 1,
        "district": 12,
        "street": s.levels["street"],
        "community": s.levels["community"],
    }
    assert s.levels["street"] >= 12 * 3 and s.levels["community"] >= s.levels["street"] * 3
    g = Governance(store.db, store)
    rng = np.random.default_rng(1)
    x0, y0, x1, y1 = city.bounds
    for x, y in zip(rng.uniform(x0, x1, 50), rng.uniform(y0, y1, 50), strict=True):
        where = g.jurisdictions.locate(float(x), float(y))
        assert set(where) == {"city", "district", "street", "community"}
        for code in ("road", "sanitation", "noise", "general", "hazchem"):
            assert g.jurisdictions.responsible(g.service(code), float(x), float(y))
    e = g.intake("road", x=float((x0 + x1) / 2), y=float((y0 + y1) / 2)).event
    dept = g.jurisdictions.responsible(g.service("road"), e.x, e.y)[0]
    assert dept == f"{e.district}-road_maintenance"
    assert g.jurisdictions.parent_department(dept, e.x, e.y) == "city-road_maintenance"
    name = g.jurisdictions.departments[dept].name
    assert g.jurisdictions.resolve(name) == dept  # the dispatcher's "<district> <role>" label
    assert "dispatcher1" in {u.username for u in access.list_users(store.db)}
    store.close()

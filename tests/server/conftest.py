"""A small served city for the API tests, on SQLite and on PostgreSQL: four copies of one
points dataset (one per classification), regions and roads, and one user per role."""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import shapely

from cityos import access
from cityos.config import Settings
from cityos.model import DatasetSchema, Field, GeometryType, ModelKind
from cityos.server import create_app
from cityos.store import Store
from cityos.testing.postgres import fresh_database

with warnings.catch_warnings():
    # starlette asks for `httpx2`; the TestClient works the same with httpx 0.28
    warnings.simplefilter("ignore")
    from fastapi.testclient import TestClient

access.configure_password_hashing(time_cost=1, memory_cost_kib=8, parallelism=1)

SECRET = "server-test-secret-" + "z" * 40
CLASSES = ("public", "internal", "sensitive", "secret")
PASSWORD = "pass-word-123"
#: role → (grants, department); users are named after their role
ROLES: dict[str, tuple[list[tuple[str, str]], str | None]] = {
    "admin": ([], None),
    "reader": ([(f"pts_{c}", "read") for c in CLASSES], None),
    "wildcard": ([("*", "read")], None),
    "member": ([], "traffic"),
    "outsider": ([], "parks"),
    "writer": ([(f"pts_{c}", "write") for c in CLASSES], None),
    "district": ([(f"pts_{c}", "read") for c in CLASSES], None),
}
WEST = [116.29, 39.89, 116.40, 40.0]


def point_rows(n: int = 40) -> list[dict[str, object]]:
    return [
        {
            "id": f"c{i % 5}",
            "t": f"2026-03-02T{8 + i // 10:02d}:{(i % 10) * 5:02d}Z",
            "x": 116.30 + 0.005 * i,
            "y": 39.90 + 0.002 * i,
            "phone": f"138{i:08d}",
            "owner": "张三",
            "district": "east" if i >= 20 else "west",
        }
        for i in range(n)
    ]


POINTS = DatasetSchema(
    ModelKind.POINT_ST,
    fields=(Field("phone", personal="phone"), Field("owner", personal="name"), Field("district")),
)


@dataclass
class ServedCity:
    client: TestClient
    store: Store
    tokens: dict[str, str] = field(default_factory=dict)

    @property
    def db(self) -> object:
        return self.store.db

    def auth(self, role: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.tokens[role]}"}


def build_city(home: Path, database_url: str) -> ServedCity:
    settings = Settings(home=home, database_url=database_url, secret_key=SECRET)
    store = Store(settings=settings)
    db = store.db
    for c in CLASSES:
        store.create_dataset(f"pts_{c}", POINTS)
        store.append(f"pts_{c}", point_rows())
    store.create_dataset(
        "districts",
        DatasetSchema(
            ModelKind.POINT_STATIC, geometry_type=GeometryType.REGION, fields=(Field("label"),)
        ),
    )
    store.append(
        "districts",
        [
            {"id": "west", "geometry": shapely.box(*WEST).wkb, "label": "W"},
            {"id": "east", "geometry": shapely.box(116.40, 39.89, 116.6, 40.0).wkb, "label": "E"},
        ],
    )
    store.create_dataset("roads", DatasetSchema(ModelKind.NETWORK_STATIC))
    store.append(
        "roads",
        [
            {
                "id": "r1",
                "from_node": 1,
                "to_node": 2,
                "geometry": shapely.LineString([(116.3, 39.9), (116.5, 39.98)]).wkb,
            }
        ],
    )
    for d in ("traffic", "parks"):
        access.create_department(db, d)
    for c in CLASSES:
        access.set_dataset_policy(db, f"pts_{c}", c, owner_department="traffic")
    for name in ("districts", "roads"):
        access.set_dataset_policy(db, name, "public")
    for role, (grants, dept) in ROLES.items():
        access.create_role(db, role)
        for ds, perm in grants:
            access.grant(db, role, ds, perm)
        access.create_user(db, role, PASSWORD, roles=[role], department=dept)
    for c in CLASSES:
        access.add_row_filter(db, "district", f"pts_{c}", access.RowFilter("bbox", {"bbox": WEST}))
    city = ServedCity(TestClient(create_app(settings, store=store)), store)
    for role in ROLES:
        city.tokens[role] = access.issue_token(access.principal_for(db, role), SECRET)
    return city


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def served(
    request: pytest.FixtureRequest,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[ServedCity]:
    home = tmp_path_factory.mktemp("city")
    url = (
        f"sqlite:///{home / 'cityos.db'}"
        if request.param == "sqlite"
        else fresh_database(request.getfixturevalue("pg_url"))
    )
    c = build_city(home, url)
    yield c
    c.client.close()
    c.store.close()

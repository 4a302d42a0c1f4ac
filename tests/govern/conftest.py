"""Fixtures of the governance tests: a small governed city on SQLite and on PostgreSQL
(two districts, four streets, eight grids, district and city offices), a fake clock,
and simple real implementations of the dedup and dispatch hooks."""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from cityos import access
from cityos.govern import Governance, load_organisation
from cityos.store import Store
from cityos.testing.clock import FakeClock
from cityos.testing.postgres import fresh_database

access.configure_password_hashing(time_cost=1, memory_cost_kib=8, parallelism=1)

PASSWORD = "pass-word-123"
START = "2026-03-02T08:00:00Z"


def small_org() -> dict[str, Any]:
    units: list[dict[str, Any]] = [
        {"code": "d1", "name": "West", "level": "district", "parent": "city", "bbox": [0, 0, 1, 1]},
        {"code": "d2", "name": "East", "level": "district", "parent": "city", "bbox": [1, 0, 2, 1]},
    ]
    for d, x0 in (("d1", 0.0), ("d2", 1.0)):
        for si, y0 in ((1, 0.0), (2, 0.5)):
            s = f"{d}-s{si}"
            units.append(
                {
                    "code": s,
                    "name": s,
                    "level": "street",
                    "parent": d,
                    "bbox": [x0, y0, x0 + 1, y0 + 0.5],
                }
            )
            for gi, gx in ((1, x0), (2, x0 + 0.5)):
                units.append(
                    {
                        "code": f"{s}-g{gi}",
                        "name": f"{s}-g{gi}",
                        "level": "community",
                        "parent": s,
                        "bbox": [gx, y0, gx + 0.5, y0 + 0.5],
                    }
                )
    depts = [
        {"code": "command", "unit": "city", "function": "command"},
        {"code": "city-roads", "unit": "city", "function": "roads"},
        {"code": "d1-roads", "unit": "d1", "function": "roads"},
        {"code": "d2-roads", "unit": "d2", "function": "roads"},
        {"code": "city-sanitation", "unit": "city", "function": "sanitation"},
        {"code": "d1-sanitation", "unit": "d1", "function": "sanitation"},
        {"code": "city-water", "unit": "city", "function": "water"},
    ]
    staff = [
        {"username": "disp", "role": "dispatcher"},
        {"username": "disp2", "role": "dispatcher"},
        {"username": "boss", "role": "supervisor"},
        {"username": "ann", "role": "citizen"},
        {"username": "bob", "role": "citizen"},
        {"username": "road1", "role": "department_staff", "department": "d1-roads"},
        {"username": "road2", "role": "department_staff", "department": "d2-roads"},
        {"username": "croad", "role": "department_staff", "department": "city-roads"},
        {"username": "san1", "role": "department_staff", "department": "d1-sanitation"},
        {"username": "grid1", "role": "grid_worker", "unit": "d1-s1-g1"},
    ]
    services = [
        {
            "code": "pothole",
            "name": "Pothole",
            "group": "roads",
            "function": "roads",
            "workflow": {
                "deadlines": {"dispatch": "30m", "accept": "1h", "resolve": "1d"},
                "resolve_within": "2d",
            },
            "attributes": [
                {
                    "code": "severity",
                    "datatype": "singlevaluelist",
                    "required": True,
                    "description": "How bad",
                    "values": [{"key": "1", "name": "minor"}, {"key": "2", "name": "bad"}],
                },
                {"code": "depth_cm", "datatype": "number", "description": "Depth"},
            ],
        },
        {
            "code": "garbage",
            "name": "Garbage",
            "group": "sanitation",
            "function": "sanitation",
            "workflow": {"verify": False, "escalate_on_overdue": False, "resolve_within": "1d"},
        },
        {"code": "leak", "name": "Water leak", "group": "water", "function": "water"},
    ]
    return {
        "city": {"code": "city", "name": "Test City", "bbox": [0, 0, 2, 1]},
        "units": units,
        "departments": depts,
        "staff": staff,
        "services": services,
    }


@dataclass
class GovCity:
    store: Store
    gov: Governance
    clock: FakeClock

    @property
    def db(self) -> Any:
        return self.store.db

    def principal(self, username: str) -> access.Principal:
        return access.principal_for(self.db, username)


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'cityos.db'}"
    return fresh_database(request.getfixturevalue("pg_url"))


def make_city(home: Path, url: str, **kwargs: Any) -> GovCity:
    store = Store(home, database_url=url)
    load_organisation(store.db, small_org(), password=PASSWORD)
    clock = FakeClock(START)
    return GovCity(store, Governance(store.db, store, clock=clock, **kwargs), clock)


@pytest.fixture
def gcity(tmp_path: Path, db_url: str) -> Iterator[GovCity]:
    c = make_city(tmp_path / "city", db_url)
    yield c
    c.store.close()


@pytest.fixture
def sqlite_city(tmp_path: Path) -> Iterator[GovCity]:
    c = make_city(tmp_path / "city", f"sqlite:///{tmp_path / 'c.db'}")
    yield c
    c.store.close()


@dataclass(frozen=True)
class Match:
    parent: str
    score: float


class NearbySameService:
    """A real (if simple) duplicate rule over the hook records: same service within
    ``radius_m``."""

    def __init__(self, radius_m: float = 100.0) -> None:
        self.radius_m = radius_m

    def find(self, event: dict[str, Any], candidates: Sequence[dict[str, Any]]) -> Match | None:
        best = None
        for c in candidates:
            if c["service_code"] != event["service_code"]:
                continue
            dx = (c["x"] - event["x"]) * 111_320 * math.cos(math.radians(event["y"]))
            d = math.hypot(dx, (c["y"] - event["y"]) * 111_320)
            if d <= self.radius_m and (best is None or d < best[0]):
                best = (d, c["id"])
        return Match(best[1], 1.0) if best else None


class TableDispatcher:
    """A real (if simple) dispatcher: service → district office, with a fixed confidence
    per service."""

    def __init__(self, confidence: dict[str, float]) -> None:
        self.confidence = confidence

    def predict(self, events: Sequence[dict[str, Any]]) -> list[tuple[str, str | None, float]]:
        out = []
        for e in events:
            fn = {"pothole": "roads", "garbage": "sanitation", "leak": "water"}[e["service_code"]]
            dist = "d1" if e["x"] < 1 else "d2"
            dept = f"{dist}-{fn}" if fn != "water" else "city-water"
            out.append(
                (
                    dept if dept != "d2-sanitation" else "city-sanitation",
                    None,
                    self.confidence.get(e["service_code"], 0.5),
                )
            )
        return out


# -- a served city ---------------------------------------------------------------------
SECRET = "govern-test-secret-" + "q" * 40


@dataclass
class Served:
    city: GovCity
    client: Any
    base_url: str
    keys: dict[str, str]
    tokens: dict[str, str]

    def auth(self, user: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.tokens[user]}"}


class LiveServer:
    """The real app under uvicorn on a loopback port, in a thread."""

    def __init__(self, app: Any) -> None:
        import socket
        import threading

        import uvicorn

        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.server = uvicorn.Server(
            uvicorn.Config(
                app, host="127.0.0.1", port=self.port, log_level="warning", lifespan="off"
            )
        )
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.thread.start()
        import time

        for _ in range(500):
            if self.server.started:
                break
            time.sleep(0.01)
        self.url = f"http://127.0.0.1:{self.port}"

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)


def build_served(home: Path, url: str, **gov_kwargs: Any) -> tuple[Served, LiveServer]:
    import warnings

    from cityos.config import Settings
    from cityos.server import create_app

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from fastapi.testclient import TestClient

    settings = Settings(home=home, database_url=url, secret_key=SECRET)
    store = Store(settings=settings)
    load_organisation(store.db, small_org(), password=PASSWORD)
    access.create_user(store.db, "app", None, roles=["citizen"])  # a reporting app's machine user
    access.create_user(store.db, "nobody", PASSWORD)  # a user without a governance role
    clock = FakeClock(START)
    gov = Governance(store.db, store, clock=clock, **gov_kwargs)
    app = create_app(settings, store=store)
    app.state.governance = gov
    keys = {u: access.create_api_key(store.db, u)[1] for u in ("app", "disp", "nobody")}
    users = (
        "disp",
        "disp2",
        "boss",
        "ann",
        "bob",
        "road1",
        "road2",
        "croad",
        "san1",
        "grid1",
        "nobody",
    )
    tokens = {u: access.issue_token(access.principal_for(store.db, u), SECRET) for u in users}
    live = LiveServer(app)
    return Served(GovCity(store, gov, clock), TestClient(app), live.url, keys, tokens), live


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def served(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Served]:
    home = tmp_path_factory.mktemp("served")
    url = (
        f"sqlite:///{home / 'cityos.db'}"
        if request.param == "sqlite"
        else fresh_database(request.getfixturevalue("pg_url"))
    )
    s, live = build_served(home, url)
    yield s
    live.stop()
    s.client.close()
    s.city.store.close()


def add_places(store: Store, city: Any) -> None:
    """The generated city's districts and POIs as the demo's Sense chapter stores them."""
    from cityos.model import DatasetSchema, Field, GeometryType, ModelKind

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
    store.create_dataset(
        "pois",
        DatasetSchema(
            ModelKind.POINT_STATIC,
            id_type="int64",
            fields=(Field("name"), Field("category"), Field("district_id", "int64")),
        ),
    )
    store.append("pois", city.pois.rename(columns={"poi_id": "id"}))

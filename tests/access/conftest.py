"""Fixtures of the access tests: one database per test on SQLite and on PostgreSQL (a
throwaway cluster per session, or ``CITYOS_TEST_PG_URL``), and a small city to query."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from cityos import access
from cityos.db import Database
from cityos.testing.postgres import fresh_database

# argon2 at its default cost takes ~50 ms per hash; tests check behaviour, not cost
access.configure_password_hashing(time_cost=1, memory_cost_kib=8, parallelism=1)


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'cityos.db'}"
    return fresh_database(request.getfixturevalue("pg_url"))


@pytest.fixture
def db(db_url: str) -> Iterator[Database]:
    database = Database(db_url)
    database.migrate()
    yield database
    database.dispose()

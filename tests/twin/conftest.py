"""A served city for the twin's map services: the API tests' city (points of every
classification, districts, roads, one user per role), on SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from tests.server.conftest import ServedCity, build_city, fresh_database


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def served(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ServedCity]:
    home = tmp_path_factory.mktemp("twin")
    url = (
        f"sqlite:///{home / 'cityos.db'}"
        if request.param == "sqlite"
        else fresh_database(request.getfixturevalue("pg_url"))
    )
    c = build_city(home, url)
    yield c
    c.client.close()
    c.store.close()

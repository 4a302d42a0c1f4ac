"""Fixtures shared by every test package."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from cityos.store import Store


def require(condition: bool, why: str) -> None:
    """Skip when a real service or tool is missing locally, but fail in CI: an
    integration suite must never be skipped silently there."""
    if condition:
        return
    if os.environ.get("CI"):
        pytest.fail(f"required in CI: {why}")
    pytest.skip(why)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> object:
    """Under CI a skipped test is a failed one: no suite may be skipped silently there."""
    report = yield
    if isinstance(item, pytest.DoctestItem):
        return report  # a doctest whose examples all carry +SKIP is documentation, not a suite
    if os.environ.get("CI") and report.skipped and not hasattr(report, "wasxfail"):
        report.outcome = "failed"
        report.longrepr = f"skipped in CI (every suite must run): {report.longrepr}"
    return report


@pytest.fixture
def city(tmp_path: Path) -> Iterator[Store]:
    """An empty city (SQLite catalog, data in a temp folder)."""
    store = Store(tmp_path / "city")
    yield store
    store.close()


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The real public data beside the repository (../shared/data), or CITYOS_SHARED_DATA."""
    env = os.environ.get("CITYOS_SHARED_DATA")
    p = Path(env) if env else Path(__file__).resolve().parents[2] / "shared" / "data"
    require(p.is_dir(), f"real data folder {p} is missing")
    return p


@pytest.fixture(scope="session")
def pg_url() -> Iterator[str]:
    """A throwaway PostgreSQL server for the session (or CITYOS_TEST_PG_URL)."""
    from cityos.testing.postgres import PostgresUnavailable, postgres_server

    try:
        with postgres_server() as url:
            yield url
    except PostgresUnavailable as exc:
        require(False, f"PostgreSQL is not available: {exc}")


@pytest.fixture(params=["sqlite", "postgresql"])
def any_city(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    """A city whose catalog is SQLite, then PostgreSQL."""
    if request.param == "sqlite":
        store = Store(tmp_path / "city")
    else:
        from cityos.testing.postgres import fresh_database

        url = fresh_database(request.getfixturevalue("pg_url"))
        store = Store(tmp_path / "city", database_url=url)
    yield store
    store.close()

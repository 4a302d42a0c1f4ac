"""The relational state of a city: one SQLAlchemy database (SQLite embedded, PostgreSQL in production).

Every layer declares its tables on :class:`Base` and ships its own Alembic migrations in
``cityos/<layer>/migrations/`` as a separate Alembic *branch* labelled with the layer's
name, so layers evolve their schemas independently. :func:`migrate` upgrades every branch
to its head; it is idempotent and runs when a city is opened.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, MetaData, create_engine, event
from sqlalchemy.orm import DeclarativeBase, Session, sessionmaker
from sqlalchemy.pool import StaticPool

__all__ = [
    "MIGRATION_LAYERS",
    "Base",
    "Database",
    "utcnow",
]

#: Layers that ship migrations, in dependency order. A layer appears here once it has tables.
MIGRATION_LAYERS = ("store", "access", "ingest", "ai", "federation", "govern")

_naming = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    """Declarative base shared by every layer's tables."""

    metadata = MetaData(naming_convention=_naming)


def utcnow() -> datetime:
    """Timezone-aware current time in UTC (stored as naive UTC by SQLite)."""
    return datetime.now(UTC)


def _version_locations() -> list[str]:
    root = Path(__file__).parent
    out = []
    for layer in MIGRATION_LAYERS:
        d = root / layer / "migrations"
        if d.is_dir():
            out.append(str(d))
    return out


class Database:
    """A connection to a city's relational database.

    Parameters
    ----------
    url:
        SQLAlchemy URL, e.g. ``sqlite:///city/cityos.db`` or
        ``postgresql+psycopg://user:pw@127.0.0.1/cityos``.

    Examples
    --------
    >>> db = Database("sqlite://")
    >>> db.migrate()
    >>> with db.session() as s:
    ...     _ = s.connection()
    """

    _migrate_lock = threading.Lock()

    def __init__(self, url: str, *, echo: bool = False) -> None:
        self.url = url
        kwargs: dict[str, Any] = {"echo": echo, "future": True}
        if url.startswith("sqlite"):
            kwargs["connect_args"] = {"check_same_thread": False, "timeout": 30}
            if url in ("sqlite://", "sqlite:///:memory:"):
                kwargs["poolclass"] = StaticPool
        else:
            kwargs["pool_pre_ping"] = True
        self.engine: Engine = create_engine(url, **kwargs)
        if url.startswith("sqlite"):
            event.listen(self.engine, "connect", _sqlite_pragmas)
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    @contextmanager
    def session(self) -> Iterator[Session]:
        """A session committed on success and rolled back on error."""
        s = self._sessions()
        try:
            yield s
            s.commit()
        except BaseException:
            s.rollback()
            raise
        finally:
            s.close()

    def migrate(self) -> None:
        """Upgrade every layer's migration branch to its head (idempotent)."""
        from alembic import command
        from alembic.config import Config

        cfg = Config()
        cfg.set_main_option("script_location", str(Path(__file__).parent / "_migrations"))
        cfg.set_main_option("version_locations", " ".join(_version_locations()))
        cfg.set_main_option("path_separator", "space")
        with self._migrate_lock, self.engine.begin() as conn:
            cfg.attributes["connection"] = conn
            command.upgrade(cfg, "heads")

    def dispose(self) -> None:
        self.engine.dispose()


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.close()

"""The relational state of a city: one SQLAlchemy database (SQLite embedded, PostgreSQL in production).

Every layer declares its tables on :class:`Base` and ships its own Alembic migrations in
``cityos/<layer>/migrations/`` as a separate Alembic *branch* labelled with the layer's
name, so layers evolve their schemas independently. :func:`migrate` upgrades every branch
to its head; it is idempotent and runs when a city is opened.
"""

from __future__ import annotations

import contextvars
import getpass
import importlib
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, ExitStack, contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

from sqlalchemy import Engine, MetaData, create_engine, event
from sqlalchemy.orm import DeclarativeBase, Session, sessionmaker
from sqlalchemy.pool import StaticPool

__all__ = [
    "CHANGE_HOOK_PROVIDERS",
    "MIGRATION_LAYERS",
    "Base",
    "ChangeHook",
    "Database",
    "DatasetChange",
    "acting_as",
    "add_change_hook",
    "current_actor",
    "utcnow",
]

#: Layers that ship migrations, in dependency order. A layer appears here once it has tables.
MIGRATION_LAYERS = ("store", "access", "ingest", "ai", "federation", "govern")
#: Modules that install a :class:`ChangeHook` when imported (the access layer's audit
#: log). They are imported before the first dataset change commits, whichever entry
#: point made it (CLI, ingest, server or a plain ``Store``), so no change goes unobserved.
CHANGE_HOOK_PROVIDERS = ("cityos.access._audit",)

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


# -- dataset changes ---------------------------------------------------------------------
@dataclass(frozen=True)
class DatasetChange:
    """One committed change of a dataset, as the catalog records it."""

    dataset: str
    operation: str  # create | append | delete | compact | drop
    version: int
    rows_added: int = 0
    rows_removed: int = 0
    files_added: int = 0
    files_removed: int = 0
    source: str = ""


class ChangeHook(Protocol):
    """Observes dataset changes inside the transaction that commits them.

    ``guard(db)`` is entered before the transaction begins and left after it ends (the
    audit log holds its append lock there); ``hook(session, change, actor)`` runs inside
    the transaction, so what it writes commits or rolls back with the change.
    """

    def guard(self, db: Database) -> AbstractContextManager[object]: ...

    def __call__(self, session: Session, change: DatasetChange, actor: str) -> None: ...


_hooks: list[ChangeHook] = []
_hooks_lock = threading.Lock()
_providers_loaded = False
_actor: contextvars.ContextVar[str | None] = contextvars.ContextVar("cityos_actor", default=None)


def add_change_hook(hook: ChangeHook) -> None:
    """Have ``hook`` observe every dataset change of this process (idempotent)."""
    with _hooks_lock:
        if hook not in _hooks:
            _hooks.append(hook)


def _change_hooks() -> list[ChangeHook]:
    global _providers_loaded
    if not _providers_loaded:
        for mod in CHANGE_HOOK_PROVIDERS:
            importlib.import_module(mod)
        _providers_loaded = True
    return list(_hooks)


@contextmanager
def acting_as(actor: str) -> Iterator[None]:
    """Attribute the dataset changes made inside the block to ``actor``.

    Examples
    --------
    >>> with acting_as("li"):
    ...     current_actor()
    'li'
    """
    token = _actor.set(actor[:100])
    try:
        yield
    finally:
        _actor.reset(token)


def current_actor() -> str:
    """Who changes made now are attributed to: set by :func:`acting_as` (``SecureStore``,
    the server), else the operating-system user and program (``cli``, ``python``...)."""
    actor = _actor.get()
    if actor is not None:
        return actor
    try:
        user = getpass.getuser()
    except (KeyError, OSError):  # no passwd entry (containers)
        user = "unknown"
    prog = Path(sys.argv[0]).name if sys.argv and sys.argv[0] else "python"
    via = "cli" if prog == "cityos" else "python"
    return f"{via}:{user}"[:100]


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

    @contextmanager
    def change_session(self) -> Iterator[tuple[Session, Callable[[DatasetChange], None]]]:
        """A session for a dataset change and ``changed(change)`` to announce it: every
        :class:`ChangeHook` observes the change inside the same transaction.

        Examples
        --------
        >>> db = Database("sqlite://"); db.migrate()
        >>> with db.change_session() as (s, changed):
        ...     changed(DatasetChange("taxis", "create", 0))
        """
        hooks = _change_hooks()
        with ExitStack() as guards:
            for h in hooks:
                guards.enter_context(h.guard(self))
            with self.session() as s:
                actor = current_actor()

                def changed(change: DatasetChange) -> None:
                    for h in hooks:
                        h(s, change, actor)

                yield s, changed

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

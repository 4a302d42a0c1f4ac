"""The access generation: one counter that every change of rights or identity bumps.

Policies, resolved principals and API keys are cached per process and labelled with the
generation they were loaded at. A request reads the counter once (one indexed row through
SQLAlchemy Core) and reuses a cache entry only when its label matches, so a revocation
made by any process takes effect at the next request, while unchanged rights cost no
further queries.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, cast

from sqlalchemy import Connection, CursorResult, insert, select, update
from sqlalchemy.orm import Session

from cityos.access._tables import MetaRow
from cityos.db import Database

__all__ = ["GENERATION_QUERY", "GEN_KEY", "bump_generation", "read_connection", "read_generation"]

#: Key of the counter in ``access_meta`` (the name predates identity caching).
GEN_KEY = "policy_generation"
#: The counter as a scalar select; callers may embed it in a larger statement.
GENERATION_QUERY = select(MetaRow.value).where(MetaRow.key == GEN_KEY)


def bump_generation(s: Session) -> None:
    """Increment the counter inside ``s``'s transaction.

    The increment is done by the database (``value = value + 1``), not read-modify-write
    in Python: two concurrent changes then yield two increments, so no cache can be left
    labelled with a generation that a later change reused.
    """
    res = cast(
        CursorResult[Any],
        s.execute(update(MetaRow).where(MetaRow.key == GEN_KEY).values(value=MetaRow.value + 1)),
    )
    if not res.rowcount:
        s.execute(insert(MetaRow).values(key=GEN_KEY, value=1))


@contextmanager
def read_connection(db: Database) -> Iterator[Connection]:
    """A connection for one read-only statement, in autocommit mode.

    One statement is atomic on its own; without an open transaction the pool's
    reset-on-return needs no ROLLBACK round trip (measured ~0.1 ms of ~0.35 ms per read
    on loopback PostgreSQL).
    """
    with db.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        yield conn


def read_generation(db: Database) -> int:
    """The current generation (0 before the first change)."""
    with read_connection(db) as conn:
        value = conn.execute(GENERATION_QUERY).scalar()
    return int(value or 0)

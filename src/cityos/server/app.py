"""The FastAPI application: one router per layer, error mapping, a body size limit, and
``serve`` to run it with uvicorn. Embedded SQLite by default, PostgreSQL by URL."""

from __future__ import annotations

import importlib
import logging
from collections.abc import Callable
from typing import Any

from fastapi import FastAPI

import cityos
from cityos.config import Settings, city_secret
from cityos.db import Database
from cityos.server._errors import ERRORS, BodyLimit, install_error_handlers
from cityos.server.deps import City, StoreDep
from cityos.server.routes import audit, auth, datasets, health, policies, users
from cityos.twin import install as install_twin

__all__ = ["DEFAULT_MAX_BODY", "create_app", "serve"]

log = logging.getLogger("cityos.server")

#: Largest request body accepted (bytes); record batches above it should be split.
DEFAULT_MAX_BODY = 8 * 1024 * 1024


def create_app(
    settings: Settings | None = None,
    *,
    store: Any = None,
    max_body_bytes: int = DEFAULT_MAX_BODY,
    vacuum_on_start: bool = False,
) -> FastAPI:
    """Build the API for one city.

    Parameters
    ----------
    settings:
        The city's settings (default: from ``CITYOS_*`` environment variables). Tokens
        are signed with ``CITYOS_SECRET_KEY`` if set, else with the city's own generated
        secret (see :func:`cityos.config.city_secret`); placeholders are refused outside
        the test environment.
    store:
        An open :class:`cityos.store.Store` to serve; by default one is opened from
        ``settings`` on first use.
    max_body_bytes:
        Larger request bodies get 413.
    vacuum_on_start:
        Remove unreferenced data files (crashed writes) on a background thread at start
        (``cityos serve`` does; safe while writers run, see :meth:`Store.vacuum`).

    Examples
    --------
    >>> import tempfile
    >>> app = create_app(Settings(home=tempfile.mkdtemp()))
    >>> sorted(p for p in app.openapi()["paths"] if p.startswith("/auth"))[:2]
    ['/auth/api-keys', '/auth/api-keys/{key_id}']
    """
    settings = settings or Settings()
    if store is not None:
        db: Database = store.db
    else:
        assert settings.database_url is not None
        if settings.database_url.startswith("sqlite:///"):
            settings.home.mkdir(parents=True, exist_ok=True)
        db = Database(settings.database_url)
    db.migrate()
    factory: Callable[[], Any] = (lambda: store) if store is not None else _store_factory(settings)
    secret, source = city_secret(settings)
    log.info("access tokens are signed with the secret from %s", source)
    app = FastAPI(
        title="CityOS API",
        version=cityos.__version__,
        description="Datasets, queries, identity, data rights and audit of one CityOS city. "
        "Authenticate with a bearer token from `POST /auth/token` or an "
        "`X-API-Key` header.",
    )
    app.state.city = City(settings=settings, db=db, store_factory=factory, secret=secret)
    if vacuum_on_start:
        _vacuum_in_background(app.state.city)
    install_error_handlers(app)
    app.add_middleware(BodyLimit, max_bytes=max_body_bytes)
    for module in (health, auth, users, policies, datasets, audit):
        app.include_router(module.router)
    app.include_router(importlib.import_module("cityos.ai.http").router)
    app.include_router(importlib.import_module("cityos.govern.http").router)  # Open311 + govern
    install_twin(app, StoreDep, ERRORS)  # map layers, OGC API - Features, vector tiles, dashboard
    return app


def _vacuum_in_background(city: City) -> None:
    import threading

    def run() -> None:
        try:
            res = city.store.vacuum()
            if res.removed:
                log.info("start-up vacuum removed %d unreferenced data files", len(res.removed))
        except Exception:  # never stop the server for housekeeping
            log.exception("start-up vacuum failed")

    threading.Thread(target=run, name="cityos-vacuum", daemon=True).start()


def _store_factory(settings: Settings) -> Callable[[], Any]:
    def open_store() -> Any:
        from cityos.store import Store

        return Store(settings=settings)

    return open_store


def serve(
    settings: Settings | None = None,
    host: str = "127.0.0.1",
    port: int = 8000,
    *,
    log_level: str = "info",
    access_log: bool = True,
) -> None:
    """Run the API with uvicorn until interrupted (``cityos serve``).

    Binds to loopback by default; pass ``host="0.0.0.0"`` deliberately to expose it.
    uvicorn picks the ``httptools`` parser and the ``uvloop`` event loop when they are
    installed (``uvicorn[standard]``) instead of the pure-Python h11 and asyncio;
    ``access_log=False`` skips one log record per request (the audit log, not
    the access log, is the record of who read what).
    """
    from cityos._compat import import_optional

    uvicorn = import_optional("uvicorn", "the API server")
    cityos_log = logging.getLogger("cityos")
    if not cityos_log.handlers:  # say which secret is in use (never the secret itself)
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("%(levelname)s:     %(message)s"))
        cityos_log.addHandler(handler)
        cityos_log.setLevel(logging.INFO)
    uvicorn.run(
        create_app(settings, vacuum_on_start=True),
        host=host,
        port=port,
        log_level=log_level,
        access_log=access_log,
        http="auto",
        loop="auto",
    )

"""The ``cityos serve`` command; :func:`register` adds it to the main Typer app."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

__all__ = ["register"]


def serve_command(
    home: Annotated[Path | None, typer.Option("--home", help="City folder")] = None,
    host: Annotated[
        str, typer.Option(help="Interface to bind (loopback by default)")
    ] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="TCP port")] = 8000,
    database_url: Annotated[
        str | None, typer.Option(help="SQLAlchemy URL, e.g. postgresql+psycopg://...")
    ] = None,
    log_level: str = "info",
    access_log: Annotated[
        bool, typer.Option(help="Log every request (uvicorn's access log)")
    ] = True,
) -> None:
    """Serve the city's HTTP API (OpenAPI docs at /docs)."""
    from cityos.config import get_settings
    from cityos.server import serve

    overrides: dict[str, object] = {}
    if home is not None:
        overrides["home"] = home
    if database_url is not None:
        overrides["database_url"] = database_url
    serve(
        get_settings(**overrides), host=host, port=port, log_level=log_level, access_log=access_log
    )


def register(app: typer.Typer) -> None:
    """Add ``serve`` to ``app``."""
    app.command("serve")(serve_command)

"""Dependencies shared by the routes: the city, a database session, the calling user and
the store as that user may see it (``SessionDep``, ``CurrentUser``, ``StoreDep``)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import Depends, Request, Security
from fastapi.concurrency import run_in_threadpool
from fastapi.security import APIKeyHeader, OAuth2PasswordBearer
from sqlalchemy.orm import Session

from cityos.access import (
    InvalidCredentials,
    PermissionDenied,
    Principal,
    SecureStore,
    principal_from_api_key,
    principal_from_token,
    verify_token,
)
from cityos.config import Settings
from cityos.db import Database

__all__ = [
    "AdminUser",
    "City",
    "CityDep",
    "CurrentUser",
    "SessionDep",
    "StoreDep",
    "get_city",
]


@dataclass
class City:
    """What the app serves: settings, the relational database and the store (opened on
    first use, so identity endpoints work before any data exists)."""

    settings: Settings
    db: Database
    store_factory: Any
    #: Signs and verifies access tokens (see :func:`cityos.config.city_secret`).
    secret: str
    _store: Any = None

    @property
    def store(self) -> Any:
        if self._store is None:
            self._store = self.store_factory()
        return self._store


# Dependencies that do no I/O are ``async``: FastAPI runs sync dependencies in the
# thread pool, one hop each, which costs more than the work they do.
async def get_city(request: Request) -> City:
    city: City = request.app.state.city
    return city


CityDep = Annotated[City, Depends(get_city)]


def get_session(city: CityDep) -> Iterator[Session]:
    with city.db.session() as s:
        yield s


SessionDep = Annotated[Session, Depends(get_session)]

_AUTH_REQUIRED = (
    "authentication required: send 'Authorization: Bearer <token>' (from "
    "POST /auth/token) or 'X-API-Key: <key>'"
)
oauth2 = OAuth2PasswordBearer(
    tokenUrl="/auth/token",
    auto_error=False,
    description="Short-lived access token from POST /auth/token",
)
api_key_header = APIKeyHeader(
    name="X-API-Key", auto_error=False, description="Long-lived API key for machines"
)


def get_current_user(
    city: CityDep,
    token: Annotated[str | None, Security(oauth2)],
    api_key: Annotated[str | None, Security(api_key_header)],
) -> Principal:
    """The caller, from a bearer token or an ``X-API-Key`` header (401 otherwise).

    Sync on purpose: it reads the access generation from the database, which must not
    block the event loop.
    """
    if token:
        return principal_from_token(city.db, token, city.secret)
    if api_key:
        return principal_from_api_key(city.db, api_key)
    raise InvalidCredentials(_AUTH_REQUIRED)


CurrentUser = Annotated[Principal, Depends(get_current_user)]


async def get_admin(user: CurrentUser) -> Principal:
    if not user.is_admin:
        raise PermissionDenied("this endpoint is for administrators (role 'admin')")
    return user


AdminUser = Annotated[Principal, Depends(get_admin)]


async def get_caller(
    city: CityDep,
    token: Annotated[str | None, Security(oauth2)],
    api_key: Annotated[str | None, Security(api_key_header)],
) -> Principal:
    """The caller for :class:`SecureStore` routes: a verified token's user *unresolved*
    (no roles), because ``SecureStore`` resolves its principal's current roles, and
    refuses disabled users, in the same database round trip as its policy check on every
    operation. Saves one lookup per request; an API key is still looked up here (its
    revocation is only visible in the database)."""
    if token:
        return verify_token(token, city.secret)  # CPU only: fine on the event loop
    if api_key:
        return await run_in_threadpool(principal_from_api_key, city.db, api_key)
    raise InvalidCredentials(_AUTH_REQUIRED)


async def get_secure_store(
    city: CityDep, user: Annotated[Principal, Depends(get_caller)]
) -> SecureStore:
    # opening the store (first request only) does I/O: keep it off the event loop
    store = city._store if city._store is not None else await run_in_threadpool(lambda: city.store)
    return SecureStore(
        store, user, mask_key=city.secret.encode(), timeout_s=city.settings.query_timeout_s
    )


StoreDep = Annotated[SecureStore, Depends(get_secure_store)]

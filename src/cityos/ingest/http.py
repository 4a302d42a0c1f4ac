"""HTTP push endpoint: ``POST /ingest/{dataset}/records`` takes a batch of JSON records and
answers only after they are durable. The server layer mounts :data:`router`; the access layer
plugs its API-key check in through :func:`api_key_dependency` or ``app.state``.
"""

# no `from __future__ import annotations`: FastAPI reads the route's annotations at runtime,
# and they refer to names local to make_router
from collections.abc import Callable
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header, HTTPException, Request, status
from pydantic import BaseModel, Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from cityos.errors import ConfigError, DatasetNotFound
from cityos.store import Store

__all__ = [
    "ApiKeyVerifier",
    "IngestSettings",
    "PushBatch",
    "PushResult",
    "api_key_dependency",
    "make_router",
    "router",
    "static_key_verifier",
]

#: Checks an API key; True when the key may push records.
ApiKeyVerifier = Callable[[str], bool]

MAX_RECORDS = 100_000
_PLACEHOLDERS = {"", "changeme", "change-me", "secret", "dev-ingest-key"}


class IngestSettings(BaseSettings):
    """Settings of the push endpoint (``CITYOS_INGEST_*`` environment variables)."""

    model_config = SettingsConfigDict(env_prefix="CITYOS_INGEST_", extra="ignore")

    api_key: str | None = None
    environment: str = Field(default="development", validation_alias="CITYOS_ENVIRONMENT")


def static_key_verifier(settings: "IngestSettings | None" = None) -> ApiKeyVerifier:
    """A verifier accepting the one key in ``CITYOS_INGEST_API_KEY`` (until the access layer
    provides per-user keys). With no key configured, every key is refused.

    Raises
    ------
    ConfigError
        In production, when the configured key is a placeholder.
    """
    import hmac

    s = settings or IngestSettings()
    key = s.api_key
    if key is not None and s.environment == "production" and key in _PLACEHOLDERS:
        raise ConfigError(
            "CITYOS_INGEST_API_KEY is a placeholder; set a long random value in production"
        )

    def verify(candidate: str) -> bool:
        return key is not None and hmac.compare_digest(candidate.encode(), key.encode())

    return verify


def api_key_dependency(verifier: ApiKeyVerifier | None = None) -> Callable[..., str]:
    """A FastAPI dependency that reads ``X-API-Key`` (or ``Authorization: Bearer``) and checks
    it with ``verifier``; without one, with ``app.state.ingest_api_key_verifier`` if the app
    sets it, else with :func:`static_key_verifier`.

    Examples
    --------
    >>> dep = api_key_dependency(lambda k: k == "k1")
    >>> callable(dep)
    True
    """

    def require_api_key(
        request: Request,
        x_api_key: Annotated[str | None, Header()] = None,
        authorization: Annotated[str | None, Header()] = None,
    ) -> str:
        key = x_api_key
        if key is None and authorization and authorization.lower().startswith("bearer "):
            key = authorization[7:].strip()
        if not key:
            raise HTTPException(
                status.HTTP_401_UNAUTHORIZED,
                "send an API key in the X-API-Key header",
                headers={"WWW-Authenticate": "Bearer"},
            )
        check = (
            verifier
            or getattr(request.app.state, "ingest_api_key_verifier", None)
            or static_key_verifier()
        )
        if not check(key):
            raise HTTPException(
                status.HTTP_401_UNAUTHORIZED,
                "API key not accepted",
                headers={"WWW-Authenticate": "Bearer"},
            )
        return key

    return require_api_key


def _default_store(request: Request) -> Store:
    store = getattr(request.app.state, "store", None)
    if store is None:
        raise HTTPException(
            status.HTTP_503_SERVICE_UNAVAILABLE,
            "the server has no city store (set app.state.store)",
        )
    return store  # type: ignore[no-any-return]


class PushBatch(BaseModel):
    """A batch of records in the source's own fields (the dataset's mapping applies)."""

    records: list[dict[str, Any]] = Field(max_length=MAX_RECORDS)
    source: str | None = Field(
        default=None, max_length=200, description="name of the pushing system"
    )


class Problem(BaseModel):
    position: str
    rule: str
    message: str


class PushResult(BaseModel):
    """What happened to a pushed batch; every accepted record is durable when this is sent."""

    dataset: str
    received: int
    accepted: int
    duplicates: int
    rejected: int
    problems: list[Problem]


def make_router(
    verifier: ApiKeyVerifier | None = None, store: Callable[..., Store] = _default_store
) -> APIRouter:
    """The push router, with its own key verifier and store provider if given."""
    r = APIRouter(prefix="/ingest", tags=["ingest"])
    key_dep = api_key_dependency(verifier)

    @r.post(
        "/{dataset}/records",
        response_model=PushResult,
        summary="Push a batch of records; answers after they are stored",
    )
    def push(
        dataset: str,
        body: PushBatch,
        city: Annotated[Store, Depends(store)],
        key: Annotated[str, Depends(key_dep)],
    ) -> PushResult:
        from cityos.ingest._push import push_records

        try:
            res = push_records(
                city, dataset, body.records, source=f"http:{body.source}" if body.source else None
            )
        except DatasetNotFound as e:
            raise HTTPException(status.HTTP_404_NOT_FOUND, str(e)) from e
        return PushResult(
            dataset=dataset,
            received=res.received,
            accepted=res.accepted,
            duplicates=res.duplicates,
            rejected=res.rejected,
            problems=[Problem(**p) for p in res.problems],
        )

    return r


#: The router the server layer mounts (``app.include_router(router)``).
router = make_router()

"""Login, the current user, and self-service API keys."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Path, status
from fastapi.security import OAuth2PasswordRequestForm

from cityos import access
from cityos.server._errors import ERRORS
from cityos.server.deps import CityDep, CurrentUser
from cityos.server.schemas import (
    ApiKeyCreate,
    ApiKeyCreated,
    ApiKeyPublic,
    LoginJSON,
    Token,
    UserPublic,
)

router = APIRouter(prefix="/auth", tags=["auth"], responses=ERRORS)


def _token(city: CityDep, username: str, password: str) -> Token:
    principal = access.authenticate(city.db, username, password)
    return Token(
        access_token=access.issue_token(principal, city.secret),
        expires_in=int(access.TOKEN_TTL.total_seconds()),
    )


@router.post("/token", response_model=Token)
def login_form(city: CityDep, form: Annotated[OAuth2PasswordRequestForm, Depends()]) -> Token:
    """OAuth2 password flow (form fields ``username``, ``password``): a short-lived token."""
    return _token(city, form.username, form.password)


@router.post("/login", response_model=Token)
def login_json(city: CityDep, body: LoginJSON) -> Token:
    """The same as ``/auth/token`` with a JSON body."""
    return _token(city, body.username, body.password)


@router.get("/me", response_model=UserPublic)
def me(city: CityDep, user: CurrentUser) -> UserPublic:
    """Who the token or key belongs to, with department and roles."""
    u = access.get_user(city.db, user.username)
    return UserPublic(
        id=u.id,
        username=u.username,
        full_name=u.full_name,
        department=u.department,
        roles=list(u.roles),
        is_active=u.is_active,
    )


@router.post("/api-keys", response_model=ApiKeyCreated, status_code=status.HTTP_201_CREATED)
def create_key(city: CityDep, user: CurrentUser, body: ApiKeyCreate) -> ApiKeyCreated:
    """Create an API key for yourself (admins: for any user). The key is shown once."""
    owner = body.username or user.username
    if owner != user.username and not user.is_admin:
        raise access.PermissionDenied("only administrators may create keys for other users")
    key_id, key = access.create_api_key(city.db, owner, name=body.name, actor=user.username)
    return ApiKeyCreated(key_id=key_id, key=key)


@router.get("/api-keys", response_model=list[ApiKeyPublic])
def list_keys(city: CityDep, user: CurrentUser) -> list[ApiKeyPublic]:
    """Your API keys (admins: everyone's), never their secrets."""
    keys = access.list_api_keys(city.db, None if user.is_admin else user.username)
    return [
        ApiKeyPublic(
            key_id=k.key_id,
            username=k.username,
            name=k.name,
            created_at=k.created_at,
            revoked=k.revoked,
        )
        for k in keys
    ]


@router.delete("/api-keys/{key_id}", status_code=status.HTTP_204_NO_CONTENT)
def revoke_key(
    city: CityDep, user: CurrentUser, key_id: Annotated[str, Path(pattern=r"^[0-9a-f]{16}$")]
) -> None:
    """Revoke one of your keys (admins: any key) for good."""
    access.revoke_api_key(
        city.db, key_id, actor=user.username, owner=None if user.is_admin else user.username
    )

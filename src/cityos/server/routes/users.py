"""Administration of users, roles and departments (role ``admin`` only)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, status

from cityos import access
from cityos.server._errors import ERRORS
from cityos.server.deps import AdminUser, CityDep
from cityos.server.schemas import (
    NAME,
    DepartmentCreate,
    NamePublic,
    RoleCreate,
    UserCreate,
    UserPublic,
    UserUpdate,
)

router = APIRouter(tags=["users"], responses=ERRORS)
UserName = Annotated[str, Path(pattern=NAME)]


def _public(u: access.UserInfo) -> UserPublic:
    return UserPublic(
        id=u.id,
        username=u.username,
        full_name=u.full_name,
        department=u.department,
        roles=list(u.roles),
        is_active=u.is_active,
    )


@router.get("/users", response_model=list[UserPublic])
def list_users(city: CityDep, _admin: AdminUser) -> list[UserPublic]:
    """Every user with department and roles."""
    return [_public(u) for u in access.list_users(city.db)]


@router.post("/users", response_model=UserPublic, status_code=status.HTTP_201_CREATED)
def create_user(city: CityDep, admin: AdminUser, body: UserCreate) -> UserPublic:
    """Create a user (no password: a machine user that authenticates with API keys)."""
    return _public(
        access.create_user(
            city.db,
            body.username,
            body.password,
            full_name=body.full_name,
            department=body.department,
            roles=body.roles,
            actor=admin.username,
        )
    )


@router.get("/users/{username}", response_model=UserPublic)
def get_user(city: CityDep, _admin: AdminUser, username: UserName) -> UserPublic:
    """One user."""
    return _public(access.get_user(city.db, username))


@router.patch("/users/{username}", response_model=UserPublic)
def update_user(
    city: CityDep, admin: AdminUser, username: UserName, body: UserUpdate
) -> UserPublic:
    """Change a user's password, enable/disable it, add or remove roles."""
    return _public(
        access.update_user(
            city.db,
            username,
            password=body.password,
            is_active=body.is_active,
            add_roles=body.add_roles,
            remove_roles=body.remove_roles,
            actor=admin.username,
        )
    )


@router.get("/roles", response_model=list[NamePublic])
def list_roles(city: CityDep, _admin: AdminUser) -> list[NamePublic]:
    """Every role."""
    return [NamePublic(name=n) for n in access.list_roles(city.db)]


@router.post("/roles", response_model=NamePublic, status_code=status.HTTP_201_CREATED)
def create_role(city: CityDep, admin: AdminUser, body: RoleCreate) -> NamePublic:
    """Create a role."""
    access.create_role(city.db, body.name, description=body.description, actor=admin.username)
    return NamePublic(name=body.name)


@router.get("/departments", response_model=list[NamePublic])
def list_departments(city: CityDep, _admin: AdminUser) -> list[NamePublic]:
    """Every department."""
    return [NamePublic(name=n) for n in access.list_departments(city.db)]


@router.post("/departments", response_model=NamePublic, status_code=status.HTTP_201_CREATED)
def create_department(city: CityDep, admin: AdminUser, body: DepartmentCreate) -> NamePublic:
    """Create a department."""
    access.create_department(city.db, body.name, description=body.description, actor=admin.username)
    return NamePublic(name=body.name)

"""Data rights administration: classification, grants, row filters, unmasking and masking
rules (role ``admin`` only; every change is audited by the access layer)."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Path, status

from cityos import access
from cityos.server._errors import ERRORS
from cityos.server.deps import AdminUser, CityDep
from cityos.server.schemas import (
    DATASET_NAME,
    NAME,
    GrantCreate,
    MaskingRuleSet,
    PolicyPublic,
    PolicySet,
    RowFilterCreate,
    UnmaskCreate,
)

router = APIRouter(prefix="/policies", tags=["policies"], responses=ERRORS)
Dataset = Annotated[str, Path(pattern=DATASET_NAME)]
GrantDataset = Annotated[str, Path(pattern=r"^(\*|[a-z][a-z0-9_]{0,62})$")]
Role = Annotated[str, Path(pattern=NAME)]
Personal = Literal["id_number", "phone", "name", "plate", "address", "email"]


@router.get("/datasets/{dataset}", response_model=PolicyPublic)
def get_policy(city: CityDep, _admin: AdminUser, dataset: Dataset) -> PolicyPublic:
    """A dataset's classification and owner (``internal`` and no owner if never set)."""
    p = access.load_policy(city.db).policy(dataset)
    return PolicyPublic(
        dataset=dataset, classification=p.classification.value, owner_department=p.owner_department
    )


@router.put("/datasets/{dataset}", response_model=PolicyPublic)
def set_policy(city: CityDep, admin: AdminUser, dataset: Dataset, body: PolicySet) -> PolicyPublic:
    """Classify a dataset and name its owner department."""
    access.set_dataset_policy(
        city.db,
        dataset,
        body.classification,
        owner_department=body.owner_department,
        actor=admin.username,
    )
    return PolicyPublic(
        dataset=dataset, classification=body.classification, owner_department=body.owner_department
    )


@router.post("/grants", status_code=status.HTTP_204_NO_CONTENT)
def add_grant(city: CityDep, admin: AdminUser, body: GrantCreate) -> None:
    """Give a role read or write on a dataset (``*``: every non-secret dataset)."""
    access.grant(city.db, body.role, body.dataset, body.permission, actor=admin.username)


@router.delete("/grants/{role}/{dataset}/{permission}", status_code=status.HTTP_204_NO_CONTENT)
def remove_grant(
    city: CityDep,
    admin: AdminUser,
    role: Role,
    dataset: GrantDataset,
    permission: Literal["read", "write"],
) -> None:
    """Remove a grant."""
    access.revoke(city.db, role, dataset, permission, actor=admin.username)


@router.post("/datasets/{dataset}/row-filters", status_code=status.HTTP_204_NO_CONTENT)
def add_row_filter(
    city: CityDep, admin: AdminUser, dataset: Dataset, body: RowFilterCreate
) -> None:
    """Restrict a role to part of a dataset (bbox, polygon or column values)."""
    access.add_row_filter(
        city.db, body.role, dataset, access.RowFilter(body.kind, body.spec()), actor=admin.username
    )


@router.delete("/datasets/{dataset}/row-filters/{role}", status_code=status.HTTP_204_NO_CONTENT)
def clear_row_filters(city: CityDep, admin: AdminUser, dataset: Dataset, role: Role) -> None:
    """Remove every row filter of a role on a dataset."""
    access.clear_row_filters(city.db, role, dataset, actor=admin.username)


@router.post("/unmask", status_code=status.HTTP_204_NO_CONTENT)
def add_unmask(city: CityDep, admin: AdminUser, body: UnmaskCreate) -> None:
    """Let a role see a kind of personal field in clear."""
    access.allow_unmask(city.db, body.role, body.dataset, body.personal, actor=admin.username)


@router.put("/masking-rules/{personal}", status_code=status.HTTP_204_NO_CONTENT)
def set_masking_rule(
    city: CityDep, admin: AdminUser, personal: Personal, body: MaskingRuleSet
) -> None:
    """Configure how a kind of personal field is masked."""
    access.set_masking_rule(
        city.db,
        personal,
        access.MaskingRule(body.strategy, body.keep_start, body.keep_end, body.mask_char),
        actor=admin.username,
    )

"""Reading and verifying the audit log (role ``admin`` only)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from cityos import access
from cityos.server._errors import ERRORS
from cityos.server.deps import AdminUser, CityDep
from cityos.server.schemas import AuditEntryPublic, AuditVerifyPublic

router = APIRouter(prefix="/audit", tags=["audit"], responses=ERRORS)


@router.get("", response_model=list[AuditEntryPublic])
def list_entries(
    city: CityDep,
    _admin: AdminUser,
    after: Annotated[int, Query(ge=0, le=2**31 - 1)] = 0,  # seq is a 32-bit column
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    actor: Annotated[str | None, Query(max_length=100)] = None,
    dataset: Annotated[str | None, Query(max_length=200)] = None,
) -> list[AuditEntryPublic]:
    """Entries after ``after`` (a ``seq``), oldest first."""
    return [
        AuditEntryPublic(
            seq=e.seq,
            ts=e.ts,
            actor=e.actor,
            action=e.action,
            dataset=e.dataset,
            detail=e.detail,
            hash=e.hash,
        )
        for e in access.read_audit(city.db, after=after, limit=limit, actor=actor, dataset=dataset)
    ]


@router.get("/verify", response_model=AuditVerifyPublic)
def verify(city: CityDep, _admin: AdminUser) -> AuditVerifyPublic:
    """Recompute the hash chain; ``first_broken`` names the first tampered entry."""
    r = access.verify_audit(city.db)
    return AuditVerifyPublic(
        ok=r.ok,
        entries=r.entries,
        first_broken=r.first_broken,
        reason=r.reason,
        head_seq=r.head_seq,
        head_hash=r.head_hash,
    )

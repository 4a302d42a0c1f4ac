"""Data rights: dataset classification and ownership, grants, row filters, unmasking.

Policies are small, so every decision reads one cached :class:`PolicySnapshot`; each
change bumps the access generation in the database (see ``_generation``), which
invalidates the caches of every process at their next decision.
"""

from __future__ import annotations

import json
import math
import threading
import weakref
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, cast

from sqlalchemy import CursorResult, Delete, delete, select
from sqlalchemy.orm import Session

from cityos.access._audit import append_audit, audit_transaction, canonical_json
from cityos.access._generation import bump_generation, read_generation
from cityos.access._identity import Principal
from cityos.access._masking import DEFAULT_RULES, PERSONAL_KINDS, MaskingRule
from cityos.access._tables import (
    DatasetPolicyRow,
    DepartmentRow,
    GrantRow,
    MaskingRuleRow,
    RoleRow,
    RowFilterRow,
    UnmaskRow,
)
from cityos.access.errors import AccessNotFound, PolicyError
from cityos.db import Database

__all__ = [
    "ALL",
    "Classification",
    "DatasetPolicy",
    "Permission",
    "PolicySnapshot",
    "ReadDecision",
    "RowFilter",
    "add_row_filter",
    "allow_unmask",
    "clear_row_filters",
    "decide_read",
    "decide_write",
    "disallow_unmask",
    "grant",
    "load_policy",
    "revoke",
    "set_dataset_policy",
    "set_masking_rule",
]

#: Wildcard dataset (in grants and unmask rules) or personal kind (in unmask rules).
ALL = "*"


class Classification(StrEnum):
    """How protected a dataset is.

    ``public``: every authenticated user reads it. ``internal``: members of the owner
    department and roles granted it. ``sensitive``: only roles granted it (a ``*`` grant
    counts); reads are audited. ``secret``: only roles granted it by name; reads audited.
    """

    PUBLIC = "public"
    INTERNAL = "internal"
    SENSITIVE = "sensitive"
    SECRET = "secret"

    @property
    def audited(self) -> bool:
        return self in (Classification.SENSITIVE, Classification.SECRET)


class Permission(StrEnum):
    READ = "read"
    WRITE = "write"  # implies read


#: Classification of a dataset no policy was set for.
DEFAULT_CLASSIFICATION = Classification.INTERNAL


@dataclass(frozen=True)
class DatasetPolicy:
    dataset: str
    classification: Classification = DEFAULT_CLASSIFICATION
    owner_department: str | None = None


@dataclass(frozen=True)
class RowFilter:
    """A restriction of a role to part of a dataset.

    ``kind`` is ``"bbox"`` (``spec={"bbox": [minx, miny, maxx, maxy]}``), ``"polygon"``
    (``spec={"wkt": "POLYGON (...)"}``) or ``"column"`` (``spec={"column": "district",
    "values": ["朝阳"]}``). Coordinates are in the dataset's CRS.
    """

    kind: str
    spec: dict[str, Any]

    def __post_init__(self) -> None:
        _validate_filter(self.kind, self.spec)

    def describe(self) -> str:
        return f"{self.kind} {canonical_json(self.spec)}"


def _validate_filter(kind: str, spec: dict[str, Any]) -> None:
    if kind == "bbox":
        b = spec.get("bbox")
        if (
            not isinstance(b, list | tuple)
            or len(b) != 4
            or not all(isinstance(v, int | float) and math.isfinite(v) for v in b)
            or b[0] > b[2]
            or b[1] > b[3]
        ):
            raise PolicyError(
                "a bbox row filter needs spec {'bbox': [minx, miny, maxx, maxy]} "
                "with finite numbers, minx <= maxx and miny <= maxy"
            )
    elif kind == "polygon":
        from shapely import wkt as shp_wkt
        from shapely.errors import ShapelyError

        try:
            geom = shp_wkt.loads(str(spec.get("wkt", "")))
        except (ShapelyError, ValueError) as exc:
            raise PolicyError(f"a polygon row filter needs valid WKT: {exc}") from exc
        if geom.geom_type not in ("Polygon", "MultiPolygon") or not geom.is_valid:
            raise PolicyError("a polygon row filter needs a valid Polygon or MultiPolygon")
    elif kind == "column":
        col, values = spec.get("column"), spec.get("values")
        if not isinstance(col, str) or not col or not isinstance(values, list) or not values:
            raise PolicyError("a column row filter needs spec {'column': name, 'values': [...]}")
        if not all(isinstance(v, str | int | float | bool) for v in values):
            raise PolicyError("column row filter values must be strings or numbers")
    else:
        raise PolicyError(f"unknown row filter kind {kind!r}; use bbox, polygon or column")


@dataclass
class PolicySnapshot:
    """Every policy of a city at one generation (loaded by :func:`load_policy`)."""

    generation: int
    datasets: dict[str, DatasetPolicy] = field(default_factory=dict)
    grants: dict[str, set[tuple[str, Permission]]] = field(default_factory=dict)  # role→
    filters: dict[tuple[str, str], list[RowFilter]] = field(default_factory=dict)
    unmask: dict[str, set[tuple[str, str]]] = field(default_factory=dict)  # role→(ds, kind)
    rules: dict[str, MaskingRule] = field(default_factory=lambda: dict(DEFAULT_RULES))

    def policy(self, dataset: str) -> DatasetPolicy:
        return self.datasets.get(dataset) or DatasetPolicy(dataset)


_cache: weakref.WeakKeyDictionary[Database, PolicySnapshot] = weakref.WeakKeyDictionary()
_cache_lock = threading.Lock()


def _delete(s: Session, stmt: Delete) -> int:
    return int(cast(CursorResult[Any], s.execute(stmt)).rowcount)


def load_policy(db: Database, *, generation: int | None = None) -> PolicySnapshot:
    """The current policies, from cache unless the generation counter moved.

    ``generation`` is a value the caller has just read with
    :func:`~cityos.access._generation.read_generation` (saves that round trip).
    """
    gen = read_generation(db) if generation is None else generation
    cached = _cache.get(db)
    if cached is not None and cached.generation == gen:
        return cached
    # The tables are read after the counter, so they are at least as new as the label:
    # a change racing with this load only makes the next request reload once more.
    snap = PolicySnapshot(generation=gen)
    with db.session() as s:
        depts = {d.id: d.name for d in s.scalars(select(DepartmentRow))}
        roles = {r.id: r.name for r in s.scalars(select(RoleRow))}
        for p in s.scalars(select(DatasetPolicyRow)):
            snap.datasets[p.dataset] = DatasetPolicy(
                p.dataset,
                Classification(p.classification),
                depts.get(p.owner_department_id) if p.owner_department_id else None,
            )
        for g in s.scalars(select(GrantRow)):
            snap.grants.setdefault(roles[g.role_id], set()).add(
                (g.dataset, Permission(g.permission))
            )
        for f in s.scalars(select(RowFilterRow).order_by(RowFilterRow.id)):
            snap.filters.setdefault((roles[f.role_id], f.dataset), []).append(
                RowFilter(f.kind, json.loads(f.spec))
            )
        for u in s.scalars(select(UnmaskRow)):
            snap.unmask.setdefault(roles[u.role_id], set()).add((u.dataset, u.personal))
        for m in s.scalars(select(MaskingRuleRow)):
            snap.rules[m.personal] = MaskingRule(m.strategy, m.keep_start, m.keep_end, m.mask_char)
    with _cache_lock:
        current = _cache.get(db)
        # never replace a newer snapshot with an older one loaded by a slower thread
        if current is None or current.generation <= gen:
            _cache[db] = snap
    return snap


# -- decisions -----------------------------------------------------------------------------
@dataclass(frozen=True)
class ReadDecision:
    """What a principal may see of a dataset.

    ``filters`` is ``None`` when the principal sees every row; otherwise the rows it sees
    are those matching *all* filters of *any one* tuple. ``unmasked`` lists the personal
    kinds shown in clear (``"*"`` for all).
    """

    allowed: bool
    reason: str
    classification: Classification
    filters: tuple[tuple[RowFilter, ...], ...] | None = None
    unmasked: frozenset[str] = frozenset()

    def shows(self, personal: str) -> bool:
        return ALL in self.unmasked or personal in self.unmasked


def _granted(
    snap: PolicySnapshot, role: str, dataset: str, perms: set[Permission], exact: bool
) -> bool:
    names = {dataset} if exact else {dataset, ALL}
    return any(d in names and p in perms for d, p in snap.grants.get(role, ()))


def decide_read(snap: PolicySnapshot, principal: Principal, dataset: str) -> ReadDecision:
    """Whether ``principal`` may read ``dataset``, and under which filters and masks.

    Examples
    --------
    >>> snap = PolicySnapshot(generation=0)
    >>> p = Principal(user_id=1, username="li", roles=frozenset({"viewer"}))
    >>> decide_read(snap, p, "taxis").allowed  # internal by default, no grant
    False
    """
    pol = snap.policy(dataset)
    cls = pol.classification
    if principal.is_admin:
        return ReadDecision(True, "admin", cls, None, frozenset({ALL}))
    exact = cls is Classification.SECRET
    perms = {Permission.READ, Permission.WRITE}
    roles = [r for r in sorted(principal.roles) if _granted(snap, r, dataset, perms, exact)]
    baseline = cls is Classification.PUBLIC or (
        cls is Classification.INTERNAL
        and pol.owner_department is not None
        and principal.department == pol.owner_department
    )
    if not roles and not baseline:
        return ReadDecision(
            False,
            f"dataset {dataset!r} is {cls}; no role of user "
            f"{principal.username!r} is granted read on it",
            cls,
        )
    paths = [tuple(snap.filters.get((r, dataset), ())) for r in roles]
    unfiltered = baseline or any(not p for p in paths)
    unmasked = {
        k
        for r in principal.roles
        for d, k in snap.unmask.get(r, ())
        if d == dataset or (d == ALL and not exact)
    }
    return ReadDecision(
        True, "granted", cls, None if unfiltered else tuple(paths), frozenset(unmasked)
    )


def decide_write(snap: PolicySnapshot, principal: Principal, dataset: str) -> tuple[bool, str]:
    """Whether ``principal`` may write ``dataset`` (admin, or a write grant)."""
    if principal.is_admin:
        return True, "admin"
    cls = snap.policy(dataset).classification
    exact = cls is Classification.SECRET
    if any(_granted(snap, r, dataset, {Permission.WRITE}, exact) for r in principal.roles):
        return True, "granted"
    return False, (
        f"no role of user {principal.username!r} is granted write on {cls} dataset {dataset!r}"
    )


# -- changes (each audited and bumping the generation) ----------------------------------------
def _role_row(s: Session, name: str) -> RoleRow:
    row = s.scalar(select(RoleRow).where(RoleRow.name == name))
    if row is None:
        raise AccessNotFound(f"no role {name!r}; create it first")
    return row


def set_dataset_policy(
    db: Database,
    dataset: str,
    classification: Classification | str,
    *,
    owner_department: str | None = None,
    actor: str = "system",
) -> None:
    """Classify ``dataset`` and name its owner department.

    Examples
    --------
    >>> from cityos.db import Database
    >>> db = Database("sqlite://"); db.migrate()
    >>> set_dataset_policy(db, "taxis", "sensitive")
    >>> load_policy(db).policy("taxis").classification
    <Classification.SENSITIVE: 'sensitive'>
    """
    try:
        cls = Classification(classification)
    except ValueError as exc:
        raise PolicyError(
            f"classification must be one of {[c.value for c in Classification]}, "
            f"not {classification!r}"
        ) from exc
    with audit_transaction(db) as s:
        dept_id = None
        if owner_department is not None:
            dept = s.scalar(select(DepartmentRow).where(DepartmentRow.name == owner_department))
            if dept is None:
                raise AccessNotFound(f"no department {owner_department!r}; create it first")
            dept_id = dept.id
        row = s.get(DatasetPolicyRow, dataset)
        if row is None:
            s.add(
                DatasetPolicyRow(
                    dataset=dataset, classification=cls.value, owner_department_id=dept_id
                )
            )
        else:
            row.classification, row.owner_department_id = cls.value, dept_id
        bump_generation(s)
        append_audit(
            s,
            actor=actor,
            action="policy.set",
            dataset=dataset,
            detail={"classification": cls.value, "owner": owner_department},
        )


def grant(
    db: Database,
    role: str,
    dataset: str,
    permission: Permission | str = "read",
    *,
    actor: str = "system",
) -> None:
    """Give ``role`` read or write on ``dataset`` (or ``"*"``: every non-secret dataset)."""
    perm = Permission(permission)
    with audit_transaction(db) as s:
        r = _role_row(s, role)
        exists = s.scalar(
            select(GrantRow).where(
                GrantRow.role_id == r.id,
                GrantRow.dataset == dataset,
                GrantRow.permission == perm.value,
            )
        )
        if exists is None:
            s.add(GrantRow(role_id=r.id, dataset=dataset, permission=perm.value))
            bump_generation(s)
            append_audit(
                s,
                actor=actor,
                action="grant.add",
                dataset=dataset,
                detail={"role": role, "permission": perm.value},
            )


def revoke(
    db: Database,
    role: str,
    dataset: str,
    permission: Permission | str = "read",
    *,
    actor: str = "system",
) -> None:
    """Remove a grant; raises :class:`AccessNotFound` if there was none."""
    perm = Permission(permission)
    with audit_transaction(db) as s:
        r = _role_row(s, role)
        n = _delete(
            s,
            delete(GrantRow).where(
                GrantRow.role_id == r.id,
                GrantRow.dataset == dataset,
                GrantRow.permission == perm.value,
            ),
        )
        if not n:
            raise AccessNotFound(f"role {role!r} has no {perm} grant on {dataset!r}")
        bump_generation(s)
        append_audit(
            s,
            actor=actor,
            action="grant.revoke",
            dataset=dataset,
            detail={"role": role, "permission": perm.value},
        )


def add_row_filter(
    db: Database, role: str, dataset: str, row_filter: RowFilter, *, actor: str = "system"
) -> None:
    """Restrict ``role`` to rows of ``dataset`` matching ``row_filter`` (ANDed per role)."""
    with audit_transaction(db) as s:
        r = _role_row(s, role)
        s.add(
            RowFilterRow(
                role_id=r.id,
                dataset=dataset,
                kind=row_filter.kind,
                spec=canonical_json(row_filter.spec),
            )
        )
        bump_generation(s)
        append_audit(
            s,
            actor=actor,
            action="filter.add",
            dataset=dataset,
            detail={"role": role, "kind": row_filter.kind, "spec": row_filter.spec},
        )


def clear_row_filters(db: Database, role: str, dataset: str, *, actor: str = "system") -> int:
    """Remove every row filter of ``role`` on ``dataset``; returns how many."""
    with audit_transaction(db) as s:
        r = _role_row(s, role)
        n = _delete(
            s,
            delete(RowFilterRow).where(
                RowFilterRow.role_id == r.id, RowFilterRow.dataset == dataset
            ),
        )
        bump_generation(s)
        append_audit(
            s,
            actor=actor,
            action="filter.clear",
            dataset=dataset,
            detail={"role": role, "removed": n},
        )
    return n


def _check_personal(personal: str, wildcard: bool) -> None:
    if personal not in PERSONAL_KINDS and not (wildcard and personal == ALL):
        raise PolicyError(
            f"unknown personal kind {personal!r}; use one of "
            f"{sorted(PERSONAL_KINDS)}" + (" or '*'" if wildcard else "")
        )


def allow_unmask(
    db: Database, role: str, dataset: str = ALL, personal: str = ALL, *, actor: str = "system"
) -> None:
    """Let ``role`` see ``personal`` fields (e.g. ``"phone"``) of ``dataset`` in clear."""
    _check_personal(personal, wildcard=True)
    with audit_transaction(db) as s:
        r = _role_row(s, role)
        exists = s.scalar(
            select(UnmaskRow).where(
                UnmaskRow.role_id == r.id,
                UnmaskRow.dataset == dataset,
                UnmaskRow.personal == personal,
            )
        )
        if exists is None:
            s.add(UnmaskRow(role_id=r.id, dataset=dataset, personal=personal))
            bump_generation(s)
            append_audit(
                s,
                actor=actor,
                action="unmask.add",
                dataset=dataset,
                detail={"role": role, "personal": personal},
            )


def disallow_unmask(
    db: Database, role: str, dataset: str = ALL, personal: str = ALL, *, actor: str = "system"
) -> None:
    """Withdraw an :func:`allow_unmask`; raises :class:`AccessNotFound` if absent."""
    with audit_transaction(db) as s:
        r = _role_row(s, role)
        n = _delete(
            s,
            delete(UnmaskRow).where(
                UnmaskRow.role_id == r.id,
                UnmaskRow.dataset == dataset,
                UnmaskRow.personal == personal,
            ),
        )
        if not n:
            raise AccessNotFound(
                f"role {role!r} has no unmask rule for {personal!r} on {dataset!r}"
            )
        bump_generation(s)
        append_audit(
            s,
            actor=actor,
            action="unmask.revoke",
            dataset=dataset,
            detail={"role": role, "personal": personal},
        )


def set_masking_rule(
    db: Database, personal: str, rule: MaskingRule, *, actor: str = "system"
) -> None:
    """Configure how ``personal`` fields are masked (e.g. keep the last 4 digits)."""
    _check_personal(personal, wildcard=False)
    with audit_transaction(db) as s:
        row = s.get(MaskingRuleRow, personal)
        if row is None:
            s.add(
                MaskingRuleRow(
                    personal=personal,
                    strategy=rule.strategy,
                    keep_start=rule.keep_start,
                    keep_end=rule.keep_end,
                    mask_char=rule.mask_char,
                )
            )
        else:
            row.strategy, row.keep_start, row.keep_end, row.mask_char = (
                rule.strategy,
                rule.keep_start,
                rule.keep_end,
                rule.mask_char,
            )
        bump_generation(s)
        append_audit(
            s,
            actor=actor,
            action="masking.set",
            detail={
                "personal": personal,
                "strategy": rule.strategy,
                "keep_start": rule.keep_start,
                "keep_end": rule.keep_end,
            },
        )

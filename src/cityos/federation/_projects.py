"""A party's own record of its federation projects (steps 1-3 and 5 of the seven): projects
and members, the dataset it bound, the field metadata every party chose to publish, and the
models it published. Every change is written with an entry of the party's audit chain in
the same transaction.

Examples
--------
>>> from cityos.db import Database
>>> db = Database("sqlite://"); db.migrate()
>>> book = ProjectBook(db, "env", "beijing")
>>> p = book.create("pm25", hosts={"weather": "https://127.0.0.1:8702"}, actor="operator:env")
>>> p["guest"], p["status"], [m["status"] for m in p["members"]]
('env', 'proposed', ['accepted', 'invited'])
>>> from cityos.access import read_audit
>>> [e.action for e in read_audit(db)]
['federation.project.create']
"""

from __future__ import annotations

import json
import math
import uuid
from collections.abc import Mapping, Sequence
from datetime import UTC
from typing import Any

import numpy as np
import pyarrow as pa
from sqlalchemy import select
from sqlalchemy.orm import Session

from cityos.access._audit import append_audit, audit_transaction
from cityos.db import Database, utcnow
from cityos.errors import ValidationError
from cityos.federation._tables import (
    BindingRow,
    FieldMetaRow,
    JobRow,
    MemberRow,
    ModelRow,
    ProjectRow,
)
from cityos.federation.gateway_errors import (
    NotPublished,
    ProjectConflict,
    ProjectNotFound,
    UnboundDataset,
)

__all__ = ["JOB_STATES", "ProjectBook", "coarse_stats"]

#: States of a job (terminal: failed, succeeded, cancelled).
JOB_STATES = ("waiting", "running", "failed", "succeeded", "cancelled")
TERMINAL = frozenset({"failed", "succeeded", "cancelled"})
_NUMERIC = ("int", "uint", "float", "double", "decimal", "bool")


def _iso(d: Any) -> str | None:
    if d is None:
        return None
    if d.tzinfo is None:
        d = d.replace(tzinfo=UTC)
    return str(d.isoformat(timespec="seconds"))


def _round_sig(v: float, digits: int = 2) -> float:
    if v == 0 or not math.isfinite(v):
        return float(v)
    return float(round(v, -math.floor(math.log10(abs(v))) + digits - 1))


def coarse_stats(col: pa.ChunkedArray | pa.Array) -> dict[str, Any]:
    """Coarse statistics of one column: rows (to the nearest hundred), share missing
    (two decimals) and, for numbers, min, max and mean to two significant digits.

    >>> coarse_stats(pa.array([1.0, 2.0, None, 40.0]))
    {'rows': 0, 'missing': 0.25, 'min': 1.0, 'max': 40.0, 'mean': 14.0}
    """
    n = len(col)
    missing = col.null_count / n if n else 0.0
    out: dict[str, Any] = {"rows": int(round(n, -2)), "missing": round(missing, 2)}
    if str(col.type).startswith(_NUMERIC):
        vals = np.asarray(col.to_numpy(zero_copy_only=False), dtype="float64")
        vals = vals[np.isfinite(vals)]
        if len(vals):
            out.update(
                min=_round_sig(float(vals.min())),
                max=_round_sig(float(vals.max())),
                mean=_round_sig(float(vals.mean())),
            )
    return out


#: Kinds of project: vertical (columns split between parties) or horizontal (rows).
KINDS = ("vertical", "horizontal")


def _check_kind(kind: str) -> None:
    if kind not in KINDS:
        raise ValidationError(f"unknown project kind {kind!r}; kinds: {list(KINDS)}", field="kind")


class ProjectBook:
    """The projects of party ``me`` in federation ``federation``, in database ``db``."""

    def __init__(self, db: Database, me: str, federation: str) -> None:
        self.db, self.me, self.federation = db, me, federation

    # -- reading -------------------------------------------------------------------------------
    def _project(self, s: Session, project_id: str) -> ProjectRow:
        row = s.get(ProjectRow, project_id)
        if row is None:
            raise ProjectNotFound(f"no federation project {project_id!r} at party {self.me!r}")
        return row

    def _members(self, s: Session, project_id: str) -> list[MemberRow]:
        return list(
            s.scalars(
                select(MemberRow).where(MemberRow.project_id == project_id).order_by(MemberRow.id)
            )
        )

    def _as_dict(self, s: Session, p: ProjectRow) -> dict[str, Any]:
        members = self._members(s, p.id)
        me = next((m for m in members if m.party == self.me), None)
        return {
            "id": p.id,
            "name": p.name,
            "federation": p.federation,
            "guest": p.guest,
            "status": p.status,
            "kind": p.kind,
            "description": p.description,
            "my_role": me.role if me else None,
            "created_at": _iso(p.created_at),
            "members": [
                {"party": m.party, "role": m.role, "status": m.status, "url": m.url}
                for m in members
            ],
        }

    def get(self, project_id: str) -> dict[str, Any]:
        with self.db.session() as s:
            return self._as_dict(s, self._project(s, project_id))

    def all(self) -> list[dict[str, Any]]:
        with self.db.session() as s:
            rows = s.scalars(select(ProjectRow).order_by(ProjectRow.created_at))
            return [self._as_dict(s, p) for p in rows]

    def members(self, project_id: str) -> list[dict[str, Any]]:
        return list(self.get(project_id)["members"])

    def peers_of(self, project_id: str) -> dict[str, str]:
        """The other accepted members and their gateway addresses."""
        return {
            m["party"]: m["url"]
            for m in self.members(project_id)
            if m["party"] != self.me and m["status"] == "accepted"
        }

    # -- step 1: project, invitations, answers -------------------------------------------------
    def create(
        self,
        name: str,
        *,
        hosts: Mapping[str, str],
        actor: str,
        description: str = "",
        my_url: str = "",
        kind: str = "vertical",
    ) -> dict[str, Any]:
        """Create a project with this party as the guest (it holds the label) and invite
        ``hosts`` (party name -> gateway address); ``kind`` is ``vertical`` or
        ``horizontal``."""
        _check_kind(kind)
        if not name or len(name) > 200:
            raise ValidationError("a project needs a name of 1-200 characters", field="name")
        if not hosts:
            raise ValidationError("a project needs at least one host party", field="hosts")
        if self.me in hosts:
            raise ValidationError(
                f"party {self.me!r} is the guest; it cannot also be a host", field="hosts"
            )
        pid = f"p-{uuid.uuid4().hex[:12]}"
        with audit_transaction(self.db) as s:
            s.add(
                ProjectRow(
                    id=pid,
                    name=name,
                    federation=self.federation,
                    guest=self.me,
                    status="proposed",
                    kind=kind,
                    description=description,
                )
            )
            s.add(
                MemberRow(
                    project_id=pid, party=self.me, role="guest", status="accepted", url=my_url
                )
            )
            for h, url in hosts.items():
                s.add(MemberRow(project_id=pid, party=h, role="host", status="invited", url=url))
            s.flush()
            append_audit(
                s,
                actor=actor,
                action="federation.project.create",
                detail={"project": pid, "name": name, "hosts": sorted(hosts), "kind": kind},
            )
            return self._as_dict(s, self._project(s, pid))

    def abandon(self, project_id: str, *, actor: str, reason: str) -> None:
        """Remove a project whose invitations could not be delivered (nothing else refers
        to it yet); audited."""
        with audit_transaction(self.db) as s:
            p = self._project(s, project_id)
            for m in self._members(s, project_id):
                s.delete(m)
            s.delete(p)
            s.flush()
            append_audit(
                s,
                actor=actor,
                action="federation.project.abandon",
                detail={"project": project_id, "reason": reason[:500]},
            )

    def receive_invitation(self, invitation: Mapping[str, Any], *, frm: str) -> dict[str, Any]:
        """Record a project another party (its guest) invited this party to."""
        pid = str(invitation["id"])
        if invitation.get("federation") != self.federation:
            raise ValidationError(
                f"invitation {pid!r} is for federation {invitation.get('federation')!r}, "
                f"this gateway is in {self.federation!r}",
                field="federation",
            )
        if invitation.get("guest") != frm:
            raise ValidationError(
                f"invitation {pid!r} names guest {invitation.get('guest')!r} but came from {frm!r}",
                field="guest",
            )
        kind = str(invitation.get("kind", "vertical"))
        _check_kind(kind)
        with audit_transaction(self.db) as s:
            if s.get(ProjectRow, pid) is not None:
                return self._as_dict(s, self._project(s, pid))
            s.add(
                ProjectRow(
                    id=pid,
                    name=str(invitation["name"]),
                    federation=self.federation,
                    guest=frm,
                    status="proposed",
                    kind=kind,
                    description=str(invitation.get("description", "")),
                )
            )
            for m in invitation["members"]:
                s.add(
                    MemberRow(
                        project_id=pid,
                        party=str(m["party"]),
                        role=str(m["role"]),
                        status=str(m["status"]),
                        url=str(m.get("url", "")),
                    )
                )
            s.flush()
            append_audit(
                s,
                actor=f"gateway:{frm}",
                action="federation.project.invited",
                detail={"project": pid, "name": invitation["name"], "guest": frm},
            )
            return self._as_dict(s, self._project(s, pid))

    def answer(self, project_id: str, *, accept: bool, actor: str) -> dict[str, Any]:
        """This party accepts or declines an invitation."""
        with audit_transaction(self.db) as s:
            p = self._project(s, project_id)
            me = next((m for m in self._members(s, project_id) if m.party == self.me), None)
            if me is None or me.role == "guest":
                raise ProjectConflict(f"party {self.me!r} is not an invited host of {project_id!r}")
            if me.status != "invited":
                raise ProjectConflict(
                    f"party {self.me!r} already {me.status} project {project_id!r}"
                )
            me.status = "accepted" if accept else "declined"
            self._refresh_status(s, p)
            append_audit(
                s,
                actor=actor,
                action="federation.project." + ("accept" if accept else "decline"),
                detail={"project": project_id},
            )
            return self._as_dict(s, p)

    def member_answered(self, project_id: str, party: str, status: str) -> dict[str, Any]:
        """Another member told this party it accepted or declined."""
        if status not in ("accepted", "declined"):
            raise ValidationError(f"unknown member status {status!r}", field="status")
        with audit_transaction(self.db) as s:
            p = self._project(s, project_id)
            m = next((m for m in self._members(s, project_id) if m.party == party), None)
            if m is None:
                raise ProjectNotFound(f"party {party!r} is not a member of {project_id!r}")
            if m.status != status:
                m.status = status
                self._refresh_status(s, p)
                append_audit(
                    s,
                    actor=f"gateway:{party}",
                    action=f"federation.member.{status}",
                    detail={"project": project_id, "party": party},
                )
            return self._as_dict(s, p)

    def _refresh_status(self, s: Session, p: ProjectRow) -> None:
        states = {m.status for m in self._members(s, p.id)}
        if "declined" in states:
            p.status = "declined"
        elif states == {"accepted"}:
            p.status = "active"
        s.flush()

    def require_active(self, project_id: str) -> dict[str, Any]:
        p = self.get(project_id)
        if p["status"] != "active":
            pending = [m["party"] for m in p["members"] if m["status"] != "accepted"]
            raise ProjectConflict(
                f"project {project_id!r} is {p['status']}: waiting for "
                f"{', '.join(pending) or 'nobody'} to accept"
            )
        return p

    # -- step 2: data configuration --------------------------------------------------------------
    def bind(
        self,
        project_id: str,
        *,
        dataset: str,
        id_field: str,
        fields: Sequence[str],
        label: str | None,
        schema_fields: Mapping[str, str],
        version: int,
        actor: str,
        bound_by: str,
    ) -> dict[str, Any]:
        """Bind a local dataset (already checked to exist and be readable by user
        ``bound_by``, as whom jobs read it) to a project."""
        p = self.get(project_id)
        role = p["my_role"]
        if p["kind"] == "horizontal" and not label:
            raise ValidationError(
                f"project {project_id!r} is horizontal: every party binds its label field too",
                field="label",
            )
        if role == "guest" and not label:
            raise ValidationError(
                f"party {self.me!r} is the guest of {project_id!r}: bind the label field too",
                field="label",
            )
        if role == "host" and label and p["kind"] == "vertical":
            raise ValidationError(
                f"party {self.me!r} is a host of {project_id!r}: hosts hold features, not the "
                "label",
                field="label",
            )
        if not fields:
            raise ValidationError("bind at least one feature field", field="fields")
        known = dict(schema_fields)
        for f in [id_field, *fields, *([label] if label else [])]:
            if f not in known:
                raise ValidationError(
                    f"dataset {dataset!r} of party {self.me!r} has no field {f!r} "
                    f"(it has {', '.join(sorted(known))})",
                    field="fields",
                    dataset=dataset,
                )
        for f in [*fields, *([label] if label else [])]:
            if not known[f].startswith(_NUMERIC):
                raise ValidationError(
                    f"field {f!r} of dataset {dataset!r} is {known[f]}, not a number",
                    field="fields",
                    dataset=dataset,
                )
        with audit_transaction(self.db) as s:
            self._project(s, project_id)
            row = s.get(BindingRow, project_id)
            if row is None:
                row = BindingRow(project_id=project_id)
                s.add(row)
            row.dataset, row.id_field, row.fields = dataset, id_field, json.dumps(list(fields))
            row.label, row.dataset_version, row.created_at = label, version, utcnow()
            row.bound_by = bound_by
            s.flush()
            append_audit(
                s,
                actor=actor,
                action="federation.bind",
                dataset=dataset,
                detail={
                    "project": project_id,
                    "fields": list(fields),
                    "label": label,
                    "id_field": id_field,
                    "version": version,
                    "read_as": bound_by,
                },
            )
        return self.binding(project_id)

    def binding(self, project_id: str) -> dict[str, Any]:
        with self.db.session() as s:
            self._project(s, project_id)
            row = s.get(BindingRow, project_id)
            if row is None:
                raise UnboundDataset(
                    f"party {self.me!r} has no dataset bound to project {project_id!r}: "
                    f"bind one with `cityos gateway bind {project_id} DATASET ...`",
                    field="dataset",
                )
            return {
                "dataset": row.dataset,
                "id_field": row.id_field,
                "fields": json.loads(row.fields),
                "label": row.label,
                "version": row.dataset_version,
                "bound_by": row.bound_by,
            }

    # -- step 3: field metadata ----------------------------------------------------------------
    def store_metadata(
        self, project_id: str, party: str, fields: list[dict[str, Any]], *, actor: str
    ) -> None:
        with audit_transaction(self.db) as s:
            self._project(s, project_id)
            row = s.scalars(
                select(FieldMetaRow).where(
                    FieldMetaRow.project_id == project_id, FieldMetaRow.party == party
                )
            ).first()
            if row is None:
                row = FieldMetaRow(project_id=project_id, party=party)
                s.add(row)
            row.fields, row.published_at = json.dumps(fields), utcnow()
            s.flush()
            append_audit(
                s,
                actor=actor,
                action="federation.metadata",
                detail={
                    "project": project_id,
                    "party": party,
                    "fields": [f["name"] for f in fields],
                },
            )

    def metadata(self, project_id: str) -> dict[str, list[dict[str, Any]]]:
        with self.db.session() as s:
            self._project(s, project_id)
            rows = s.scalars(select(FieldMetaRow).where(FieldMetaRow.project_id == project_id))
            return {r.party: json.loads(r.fields) for r in rows}

    # -- jobs ----------------------------------------------------------------------------------
    def job_create(
        self,
        project_id: str,
        *,
        job_id: str,
        kind: str,
        algorithm: str,
        params: Mapping[str, Any],
        max_retries: int,
        actor: str,
    ) -> dict[str, Any]:
        with audit_transaction(self.db) as s:
            self._project(s, project_id)
            if s.get(JobRow, job_id) is None:
                s.add(
                    JobRow(
                        id=job_id,
                        project_id=project_id,
                        kind=kind,
                        algorithm=algorithm,
                        params=json.dumps(dict(params)),
                        state="waiting",
                        attempt=0,
                        max_retries=max_retries,
                    )
                )
                s.flush()
                append_audit(
                    s,
                    actor=actor,
                    action=f"federation.job.{kind}",
                    detail={"project": project_id, "job": job_id, "algorithm": algorithm},
                )
        return self.job(job_id)

    def job(self, job_id: str) -> dict[str, Any]:
        with self.db.session() as s:
            j = s.get(JobRow, job_id)
            if j is None:
                raise ProjectNotFound(f"no federation job {job_id!r} at party {self.me!r}")
            return self._job_dict(j)

    @staticmethod
    def _job_dict(j: JobRow) -> dict[str, Any]:
        return {
            "id": j.id,
            "project": j.project_id,
            "kind": j.kind,
            "algorithm": j.algorithm,
            "params": json.loads(j.params),
            "state": j.state,
            "attempt": j.attempt,
            "max_retries": j.max_retries,
            "error": j.error,
            "result": json.loads(j.result),
            "created_at": _iso(j.created_at),
            "updated_at": _iso(j.updated_at),
        }

    def jobs(self, project_id: str | None = None) -> list[dict[str, Any]]:
        with self.db.session() as s:
            q = select(JobRow).order_by(JobRow.created_at)
            if project_id is not None:
                q = q.where(JobRow.project_id == project_id)
            return [self._job_dict(j) for j in s.scalars(q)]

    def job_update(
        self,
        job_id: str,
        *,
        state: str,
        actor: str,
        attempt: int | None = None,
        error: str | None = None,
        result: Mapping[str, Any] | None = None,
    ) -> None:
        if state not in JOB_STATES:
            raise ValueError(f"unknown job state {state!r}")
        with audit_transaction(self.db) as s:
            j = s.get(JobRow, job_id)
            if j is None:
                raise ProjectNotFound(f"no federation job {job_id!r} at party {self.me!r}")
            before = j.state
            j.state, j.updated_at = state, utcnow()
            if attempt is not None:
                j.attempt = attempt
            if error is not None:
                j.error = error[:4000]
            if result is not None:
                j.result = json.dumps(dict(result))
            s.flush()
            append_audit(
                s,
                actor=actor,
                action=f"federation.job.{state}",
                detail={
                    "project": j.project_id,
                    "job": job_id,
                    "from": before,
                    "attempt": j.attempt,
                    **({"error": error[:500]} if error else {}),
                },
            )

    def interrupted(self) -> tuple[list[str], list[str]]:
        """At start: jobs a stopped gateway left waiting or running. Jobs this party leads
        (it is the project's guest) with a retry left go back to ``waiting`` to resume as a
        new attempt; the others are marked failed. Returns ``(resumed, failed)``."""
        with self.db.session() as s:
            rows = [
                (j.id, j.attempt, j.max_retries, self._project(s, j.project_id).guest)
                for j in s.scalars(select(JobRow).where(JobRow.state.in_(("waiting", "running"))))
            ]
        resumed, failed = [], []
        why = f"interrupted: the gateway of {self.me!r} restarted during the job"
        for jid, attempt, retries, guest in rows:
            if guest == self.me and attempt <= retries:
                self.job_update(
                    jid,
                    state="waiting",
                    actor=f"gateway:{self.me}",
                    error=f"{why}; resuming as attempt {attempt + 1}",
                )
                resumed.append(jid)
            else:
                self.job_update(jid, state="failed", actor=f"gateway:{self.me}", error=why)
                failed.append(jid)
        return resumed, failed

    # -- step 5: published models --------------------------------------------------------------
    def publish(
        self,
        *,
        model_id: str,
        project_id: str,
        job_id: str,
        algorithm: str,
        part_path: str,
        sha256: str,
        data_versions: Mapping[str, Any],
        registry_name: str,
        registry_version: int,
        actor: str,
    ) -> dict[str, Any]:
        """Record a model this party registered (``registry_name`` v``registry_version``
        of its AI registry, the source of truth) as published."""
        with audit_transaction(self.db) as s:
            self._project(s, project_id)
            if s.get(ModelRow, model_id) is not None:
                raise ProjectConflict(f"model {model_id!r} is already published")
            s.add(
                ModelRow(
                    id=model_id,
                    project_id=project_id,
                    job_id=job_id,
                    algorithm=algorithm,
                    part_path=part_path,
                    sha256=sha256,
                    data_versions=json.dumps(dict(data_versions)),
                    registry_name=registry_name,
                    registry_version=registry_version,
                )
            )
            s.flush()
            append_audit(
                s,
                actor=actor,
                action="federation.model.publish",
                detail={
                    "project": project_id,
                    "model": model_id,
                    "job": job_id,
                    "sha256": sha256,
                    "data_versions": dict(data_versions),
                    "registry": f"{registry_name} v{registry_version}",
                },
            )
        return self.model(model_id)

    def model(self, model_id: str) -> dict[str, Any]:
        with self.db.session() as s:
            m = s.get(ModelRow, model_id)
            if m is None:
                raise NotPublished(
                    f"model {model_id!r} is not published at party {self.me!r}: publish the "
                    "succeeded training job first (`cityos gateway publish JOB`)"
                )
            return {
                "id": m.id,
                "project": m.project_id,
                "job": m.job_id,
                "algorithm": m.algorithm,
                "part_path": m.part_path,
                "sha256": m.sha256,
                "data_versions": json.loads(m.data_versions),
                "registry_name": m.registry_name,
                "registry_version": m.registry_version,
                "published_at": _iso(m.published_at),
            }

    def models(self, project_id: str | None = None) -> list[dict[str, Any]]:
        with self.db.session() as s:
            q = select(ModelRow.id).order_by(ModelRow.published_at)
            if project_id is not None:
                q = q.where(ModelRow.project_id == project_id)
            ids = list(s.scalars(q))
        return [self.model(i) for i in ids]

    def audit(self, actor: str, action: str, **detail: Any) -> None:
        """An audit entry for an action that changes no table (e.g. a batch inference read)."""
        with audit_transaction(self.db) as s:
            append_audit(s, actor=actor, action=action, detail=detail)

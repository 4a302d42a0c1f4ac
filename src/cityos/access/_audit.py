"""The tamper-evident audit log: append-only entries chained by SHA-256.

Each entry's hash is ``sha256(prev_hash + canonical_json(entry))``; :func:`verify_audit`
recomputes the chain and names the first entry that was edited, deleted or reordered.
Importing this module installs :data:`AUDIT_HOOK`, which writes an entry for every
dataset change in the catalog transaction that commits it (see
:meth:`cityos.db.Database.change_session`), whatever the entry point.
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError, OperationalError
from sqlalchemy.orm import Session

from cityos.access._tables import AuditHeadRow, AuditRow
from cityos.access.errors import AuditBroken
from cityos.db import Database, DatasetChange, add_change_hook, utcnow

__all__ = [
    "AUDIT_HOOK",
    "GENESIS_HASH",
    "AuditAnchor",
    "AuditEntry",
    "AuditReport",
    "anchor_audit",
    "append_audit",
    "append_audits",
    "audit_transaction",
    "canonical_json",
    "entry_hash",
    "read_anchor",
    "read_audit",
    "record",
    "verify_audit",
    "write_anchor",
]

#: ``prev_hash`` of the first entry.
GENESIS_HASH = "0" * 64

_HEAD_ID = 1
_RETRIES = 8
# SQLite serialises writers per file but a deferred transaction that read the head can
# lose the race at commit; one lock per database URL keeps in-process appenders in line.
_locks: dict[str, threading.RLock] = {}
_locks_guard = threading.Lock()


def canonical_json(value: Any) -> str:
    """JSON with sorted keys, no whitespace and UTF-8 text: one byte string per value.

    Examples
    --------
    >>> canonical_json({"b": 1, "a": [1, "区"]})
    '{"a":[1,"区"],"b":1}'
    """
    return json.dumps(
        value,
        sort_keys=True,
        separators=(",", ":"),
        ensure_ascii=False,
        allow_nan=False,
        default=str,
    )


@dataclass(frozen=True)
class AuditEntry:
    """One audit entry as stored."""

    seq: int
    ts: str
    actor: str
    action: str
    dataset: str | None
    detail: dict[str, Any]
    prev_hash: str
    hash: str

    def payload(self) -> dict[str, Any]:
        """The hashed part of the entry (everything but the hashes)."""
        return {
            "seq": self.seq,
            "ts": self.ts,
            "actor": self.actor,
            "action": self.action,
            "dataset": self.dataset,
            "detail": self.detail,
        }


def entry_hash(prev_hash: str, payload: Mapping[str, Any]) -> str:
    """SHA-256 (hex) over the previous hash followed by the entry's canonical JSON."""
    return hashlib.sha256((prev_hash + canonical_json(dict(payload))).encode("utf-8")).hexdigest()


def _lock_for(db: Database) -> threading.RLock:
    with _locks_guard:
        return _locks.setdefault(db.url, threading.RLock())


@contextmanager
def audit_transaction(db: Database) -> Iterator[Session]:
    """A session for a change and its audit entries, committed together.

    Holding the per-database lock for the whole transaction keeps the chain linear for
    threads of one process; across processes the head row is locked (PostgreSQL) and the
    unique ``prev_hash`` constraint rejects a fork, which the caller may retry.
    """
    with _lock_for(db), db.session() as s:
        yield s


def append_audit(
    session: Session,
    *,
    actor: str,
    action: str,
    dataset: str | None = None,
    detail: Mapping[str, Any] | None = None,
) -> AuditEntry:
    """Append one entry inside ``session``'s transaction (see :func:`audit_transaction`).

    Parameters
    ----------
    session:
        Open session; the entry commits or rolls back with whatever else it holds.
    actor:
        User name (or ``"system"``) responsible for the action.
    action:
        Dotted verb such as ``"login"``, ``"read"``, ``"write"``, ``"grant.add"``.
    dataset:
        Dataset concerned, if any.
    detail:
        JSON-serialisable context (query kind, row count, role, ...).
    """
    return append_audits(
        session, [{"actor": actor, "action": action, "dataset": dataset, "detail": detail}]
    )[0]


def append_audits(session: Session, entries: Sequence[Mapping[str, Any]]) -> list[AuditEntry]:
    """Append several entries, in order, inside ``session``'s transaction with one lock
    of the chain's head and one insert: each entry is chained and hashed individually
    exactly as :func:`append_audit` would (a group commit of many changes).

    Parameters
    ----------
    session:
        Open session (see :func:`audit_transaction`).
    entries:
        Mappings with ``actor``, ``action`` and optionally ``dataset`` and ``detail``.

    Examples
    --------
    >>> from cityos.db import Database
    >>> db = Database("sqlite://"); db.migrate()
    >>> with audit_transaction(db) as s:
    ...     out = append_audits(s, [{"actor": "a", "action": "x"}, {"actor": "b", "action": "y"}])
    >>> [e.seq for e in out], out[1].prev_hash == out[0].hash, verify_audit(db).ok
    ([1, 2], True, True)
    """
    if not entries:
        return []
    head = session.execute(
        select(AuditHeadRow).where(AuditHeadRow.id == _HEAD_ID).with_for_update()
    ).scalar_one_or_none()
    seq, prev_hash = (head.seq, head.hash) if head else (0, GENESIS_HASH)
    out: list[AuditEntry] = []
    rows: list[AuditRow] = []
    for e in entries:
        detail_json = canonical_json(dict(e.get("detail") or {}))
        entry = AuditEntry(
            seq=seq + 1,
            ts=utcnow().isoformat(timespec="microseconds"),
            actor=str(e["actor"]),
            action=str(e["action"]),
            dataset=e.get("dataset"),
            detail=json.loads(detail_json),
            prev_hash=prev_hash,
            hash="",
        )
        digest = entry_hash(prev_hash, entry.payload())
        rows.append(
            AuditRow(
                seq=entry.seq,
                ts=entry.ts,
                actor=entry.actor,
                action=entry.action,
                dataset=entry.dataset,
                detail=detail_json,
                prev_hash=prev_hash,
                hash=digest,
            )
        )
        out.append(AuditEntry(**{**entry.__dict__, "hash": digest}))
        seq, prev_hash = entry.seq, digest
    session.add_all(rows)
    if head is None:
        session.add(AuditHeadRow(id=_HEAD_ID, seq=seq, hash=prev_hash))
    else:
        head.seq, head.hash = seq, prev_hash
    session.flush()
    return out


def record(
    db: Database,
    *,
    actor: str,
    action: str,
    dataset: str | None = None,
    detail: Mapping[str, Any] | None = None,
) -> AuditEntry:
    """Append one entry in its own transaction, retrying if another appender won the race."""
    last: Exception | None = None
    for _ in range(_RETRIES):
        try:
            with audit_transaction(db) as s:
                return append_audit(s, actor=actor, action=action, dataset=dataset, detail=detail)
        except (IntegrityError, OperationalError) as exc:
            last = exc
    raise RuntimeError(f"could not append to the audit log after {_RETRIES} tries") from last


class _AuditHook:
    """Writes one ``write`` entry per dataset change, inside the change's transaction."""

    def guard(self, db: Database) -> threading.RLock:
        # the same lock as audit_transaction: one chain, appended to in one order
        return _lock_for(db)

    def __call__(self, session: Session, change: DatasetChange, actor: str) -> None:
        detail: dict[str, Any] = {
            "operation": change.operation,
            "version": change.version,
            "rows_written": change.rows_added,
            "rows_removed": change.rows_removed,
            "files_added": change.files_added,
            "files_removed": change.files_removed,
        }
        if change.source:
            detail["source"] = change.source[:500]
        append_audit(session, actor=actor, action="write", dataset=change.dataset, detail=detail)


#: The hook that audits every dataset change (installed when this module is imported).
AUDIT_HOOK = _AuditHook()
add_change_hook(AUDIT_HOOK)


def _to_entry(row: AuditRow) -> AuditEntry:
    return AuditEntry(
        seq=row.seq,
        ts=row.ts,
        actor=row.actor,
        action=row.action,
        dataset=row.dataset,
        detail=json.loads(row.detail),
        prev_hash=row.prev_hash,
        hash=row.hash,
    )


def read_audit(
    db: Database,
    *,
    after: int = 0,
    limit: int = 100,
    actor: str | None = None,
    action: str | None = None,
    dataset: str | None = None,
) -> list[AuditEntry]:
    """Entries with ``seq > after`` in order, optionally filtered, at most ``limit``."""
    q = select(AuditRow).where(AuditRow.seq > after)
    if actor is not None:
        q = q.where(AuditRow.actor == actor)
    if action is not None:
        q = q.where(AuditRow.action == action)
    if dataset is not None:
        q = q.where(AuditRow.dataset == dataset)
    with db.session() as s:
        return [_to_entry(r) for r in s.scalars(q.order_by(AuditRow.seq).limit(limit))]


@dataclass(frozen=True)
class AuditReport:
    """Outcome of :func:`verify_audit`.

    Attributes
    ----------
    ok:
        The whole chain verifies.
    entries:
        Number of entries checked.
    first_broken:
        ``seq`` of the first entry that does not verify (``None`` when ok). For a
        truncated tail it is the first missing ``seq``.
    reason:
        What is wrong with that entry.
    head_seq, head_hash:
        Last verified entry; keep a copy outside the database to detect a rewrite of
        the whole chain.
    """

    ok: bool
    entries: int
    first_broken: int | None
    reason: str
    head_seq: int
    head_hash: str


def verify_audit(
    db: Database, *, expect_head: tuple[int, str] | None = None, batch: int = 5000
) -> AuditReport:
    """Recompute the hash chain and report the first entry that was tampered with.

    Parameters
    ----------
    db:
        The city's database.
    expect_head:
        ``(seq, hash)`` of a head recorded earlier outside the database; the chain must
        still contain exactly that entry.
    batch:
        Entries read per round trip.

    Examples
    --------
    >>> from cityos.db import Database
    >>> db = Database("sqlite://"); db.migrate()
    >>> _ = record(db, actor="alice", action="login")
    >>> verify_audit(db).ok
    True
    """
    prev_hash, expected_seq, count = GENESIS_HASH, 1, 0
    hashes: dict[int, str] = {}

    def broken(seq: int, reason: str) -> AuditReport:
        return AuditReport(False, count, seq, reason, expected_seq - 1, prev_hash)

    with db.session() as s:
        last_seq = 0
        while True:
            rows = list(
                s.scalars(
                    select(AuditRow)
                    .where(AuditRow.seq > last_seq)
                    .order_by(AuditRow.seq)
                    .limit(batch)
                )
            )
            if not rows:
                break
            for row in rows:
                last_seq = row.seq
                if row.seq != expected_seq:
                    return broken(
                        expected_seq,
                        f"entry {expected_seq} is missing (deleted or "
                        f"renumbered; next stored entry is {row.seq})",
                    )
                if row.prev_hash != prev_hash:
                    return broken(
                        row.seq,
                        f"entry {row.seq} does not follow entry "
                        f"{row.seq - 1} (entries deleted or reordered)",
                    )
                try:
                    entry = _to_entry(row)
                except ValueError:
                    return broken(row.seq, f"entry {row.seq} has unreadable detail (edited)")
                if entry_hash(prev_hash, entry.payload()) != row.hash:
                    return broken(row.seq, f"entry {row.seq} was edited (hash mismatch)")
                prev_hash, expected_seq, count = row.hash, row.seq + 1, count + 1
                if expect_head is not None and row.seq == expect_head[0]:
                    hashes[row.seq] = row.hash
        head = s.get(AuditHeadRow, _HEAD_ID)
    head_seq = expected_seq - 1
    if head is not None and (head.seq, head.hash) != (head_seq, prev_hash):
        if head.seq > head_seq:
            return broken(
                head_seq + 1, f"entries {head_seq + 1}..{head.seq} are missing (log truncated)"
            )
        return broken(head.seq, "the audit head does not match the last entry (head edited)")
    if head is None and count:
        return broken(1, "the audit head is missing (head deleted)")
    if expect_head is not None:
        seq, digest = expect_head
        if seq > head_seq:
            return broken(
                head_seq + 1,
                f"entries {head_seq + 1}..{seq} are missing (log "
                "truncated below the recorded head)",
            )
        if hashes.get(seq) != digest:
            return broken(seq, f"entry {seq} differs from the recorded head")
    return AuditReport(True, count, None, "ok", head_seq, prev_hash)


# -- anchors ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class AuditAnchor:
    """The head of a verified chain (sequence and hash), kept outside the database.

    A chain that was deleted, truncated or consistently rewritten still verifies on its
    own; compared with an anchor taken earlier, it does not (see :func:`verify_audit`'s
    ``expect_head``).
    """

    seq: int
    hash: str
    ts: str

    def to_json(self) -> str:
        return canonical_json({"seq": self.seq, "hash": self.hash, "ts": self.ts})

    @classmethod
    def from_json(cls, text: str) -> AuditAnchor:
        d = json.loads(text)
        if (
            not isinstance(d, dict)
            or not isinstance(d.get("seq"), int)
            or not isinstance(d.get("hash"), str)
        ):
            raise ValueError("an audit anchor is a JSON object with 'seq' and 'hash'")
        return cls(int(d["seq"]), str(d["hash"]), str(d.get("ts", "")))


def anchor_audit(db: Database) -> AuditAnchor:
    """The head of the audit log after verifying the whole chain, to keep elsewhere.

    Raises
    ------
    AuditBroken
        The chain does not verify: an anchor must never bless a tampered log.

    Examples
    --------
    >>> from cityos.db import Database
    >>> db = Database("sqlite://"); db.migrate()
    >>> _ = record(db, actor="alice", action="login")
    >>> anchor_audit(db).seq
    1
    """
    report = verify_audit(db)
    if not report.ok:
        raise AuditBroken(
            f"the audit log is broken at entry {report.first_broken}: {report.reason}; "
            "investigate before anchoring it"
        )
    return AuditAnchor(report.head_seq, report.head_hash, utcnow().isoformat(timespec="seconds"))


def write_anchor(path: str | Path, anchor: AuditAnchor) -> None:
    """Append ``anchor`` as one JSON line to ``path`` (created with mode 0600).

    Keep the file where the database's administrators cannot rewrite it (another host,
    write-once storage); ``cityos audit anchor --command`` pipes it to any external sink.
    """
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(p, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    with os.fdopen(fd, "a", encoding="utf-8") as fh:
        fh.write(anchor.to_json() + "\n")
        fh.flush()
        os.fsync(fh.fileno())


def read_anchor(path: str | Path) -> AuditAnchor | None:
    """The latest anchor in ``path`` (one JSON object per line), or ``None`` if there is
    no such file. Comparing with the latest anchor suffices: its hash covers every entry
    before it.

    Raises
    ------
    ValueError
        The file exists but holds no readable anchor.
    """
    p = Path(path)
    if not p.exists():
        return None
    lines = [ln for ln in p.read_text(encoding="utf-8").splitlines() if ln.strip()]
    if not lines:
        raise ValueError(f"the audit anchor file {p} is empty")
    try:
        return AuditAnchor.from_json(lines[-1])
    except (ValueError, TypeError) as exc:
        raise ValueError(
            f"the last line of the audit anchor file {p} is unreadable: {exc}"
        ) from exc

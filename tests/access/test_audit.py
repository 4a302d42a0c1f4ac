"""The hash-chained audit log detects edited, deleted and reordered entries."""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest
from sqlalchemy import text
from typer import Typer
from typer.testing import CliRunner

from cityos import access
from cityos.access.cli import register
from cityos.db import Database


def _fill(db: Database, n: int = 6) -> None:
    for i in range(n):
        access.record(
            db, actor=f"user{i}", action="read", dataset="taxis", detail={"rows": i, "note": "区"}
        )


def test_chain_links_entries_by_sha256(db: Database) -> None:
    _fill(db, 3)
    entries = access.read_audit(db)
    assert [e.seq for e in entries] == [1, 2, 3]
    assert entries[0].prev_hash == access.GENESIS_HASH
    for prev, cur in itertools.pairwise(entries):
        assert cur.prev_hash == prev.hash
    import hashlib

    first = entries[0]
    assert (
        first.hash
        == hashlib.sha256(
            (access.GENESIS_HASH + access.canonical_json(first.payload())).encode()
        ).hexdigest()
    )
    report = access.verify_audit(db)
    assert report.ok and report.entries == 3 and report.head_hash == entries[-1].hash


def _sql(db: Database, stmt: str) -> None:
    with db.engine.begin() as conn:
        conn.execute(text(stmt))


@pytest.mark.parametrize(
    ("tamper", "first_broken", "words"),
    [
        ("UPDATE access_audit SET detail = '{\"rows\": 999}' WHERE seq = 3", 3, "edited"),
        ("UPDATE access_audit SET actor = 'mallory' WHERE seq = 2", 2, "edited"),
        ("DELETE FROM access_audit WHERE seq = 4", 4, "missing"),
        ("DELETE FROM access_audit WHERE seq >= 5", 5, "truncated"),
        ("UPDATE access_audit_head SET hash = 'ff' WHERE id = 1", 6, "head"),
    ],
)
def test_tampering_is_detected_and_first_broken_entry_named(
    db: Database, tamper: str, first_broken: int, words: str
) -> None:
    _fill(db)
    assert access.verify_audit(db).ok
    _sql(db, tamper)
    report = access.verify_audit(db)
    assert not report.ok
    assert report.first_broken == first_broken
    assert words in report.reason


def test_reordered_entries_are_detected(db: Database) -> None:
    _fill(db)
    # swap the contents of entries 2 and 3 (including their hashes), keeping seq order
    cols = "ts, actor, action, dataset, detail, prev_hash, hash"
    with db.engine.begin() as conn:
        rows = {
            r[0]: r[1:]
            for r in conn.execute(text(f"SELECT seq, {cols} FROM access_audit WHERE seq IN (2, 3)"))
        }
        conn.execute(text("UPDATE access_audit SET prev_hash = 'a', hash = 'b' WHERE seq = 2"))
        conn.execute(text("UPDATE access_audit SET prev_hash = 'c', hash = 'd' WHERE seq = 3"))
        for seq, other in ((2, 3), (3, 2)):
            v = rows[other]
            conn.execute(
                text(
                    "UPDATE access_audit SET ts=:ts, actor=:a, action=:ac, "
                    "dataset=:d, detail=:de, prev_hash=:p, hash=:h WHERE seq=:s"
                ),
                {
                    "ts": v[0],
                    "a": v[1],
                    "ac": v[2],
                    "d": v[3],
                    "de": v[4],
                    "p": v[5],
                    "h": v[6],
                    "s": seq,
                },
            )
    report = access.verify_audit(db)
    assert not report.ok and report.first_broken == 2
    assert "does not follow" in report.reason or "edited" in report.reason


def test_expected_head_catches_a_rewritten_tail(db: Database) -> None:
    _fill(db, 4)
    head = access.verify_audit(db)
    # rewrite: delete the last two entries and append new, internally consistent ones
    _sql(db, "DELETE FROM access_audit WHERE seq >= 3")
    entries = access.read_audit(db)
    _sql(db, f"UPDATE access_audit_head SET seq = 2, hash = '{entries[-1].hash}' WHERE id = 1")
    access.record(db, actor="mallory", action="read")
    access.record(db, actor="mallory", action="read")
    assert access.verify_audit(db).ok  # the chain alone cannot tell
    report = access.verify_audit(db, expect_head=(head.head_seq, head.head_hash))
    assert not report.ok and report.first_broken == 4


def test_every_change_is_audited(db: Database) -> None:
    access.create_department(db, "police")
    access.create_role(db, "officer")
    access.create_user(db, "zhao", "long-password", roles=["officer"])
    access.set_dataset_policy(db, "plates", "secret", owner_department="police")
    access.grant(db, "officer", "plates", "read")
    access.add_row_filter(db, "officer", "plates", access.RowFilter("bbox", {"bbox": [0, 0, 1, 1]}))
    access.allow_unmask(db, "officer", "plates", "plate")
    access.revoke(db, "officer", "plates", "read")
    actions = [e.action for e in access.read_audit(db)]
    assert actions == [
        "department.create",
        "role.create",
        "user.create",
        "policy.set",
        "grant.add",
        "filter.add",
        "unmask.add",
        "grant.revoke",
    ]
    assert access.verify_audit(db).ok


def test_cli_audit_verify_reports_tampering(
    db: Database, db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CITYOS_DATABASE_URL", db_url)
    app = Typer()
    register(app)
    _fill(db, 3)
    runner = CliRunner()
    ok = runner.invoke(app, ["audit", "verify", "--home", str(tmp_path)])
    assert ok.exit_code == 0, ok.output
    assert "OK: 3 entries" in ok.output
    _sql(db, "UPDATE access_audit SET dataset = 'other' WHERE seq = 2")
    bad = runner.invoke(app, ["audit", "verify", "--home", str(tmp_path)])
    assert bad.exit_code == 1
    assert "BROKEN at entry 2" in bad.output


def test_concurrent_appends_keep_one_linear_chain(db: Database) -> None:
    import threading

    def work(i: int) -> None:
        for j in range(5):
            access.record(db, actor=f"t{i}", action="read", detail={"j": j})

    threads = [threading.Thread(target=work, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    report = access.verify_audit(db)
    assert report.ok and report.entries == 20


def _rewrite_consistently(db: Database) -> None:
    """An attacker with database access rewrites entry 2 and recomputes every hash after it."""
    from cityos.access._audit import entry_hash

    entries = access.read_audit(db, limit=1000)
    _sql(db, "DELETE FROM access_audit")
    prev = access.GENESIS_HASH
    with db.session() as s:
        for e in entries:
            detail = {"rows": 0, "note": "nothing to see"} if e.seq == 2 else e.detail
            payload = {**e.payload(), "detail": detail}
            digest = entry_hash(prev, payload)
            s.execute(
                text(
                    "INSERT INTO access_audit (seq, ts, actor, action, dataset, detail, "
                    "prev_hash, hash) VALUES (:seq, :ts, :actor, :action, :dataset, :detail, "
                    ":prev, :hash)"
                ),
                {**payload, "detail": access.canonical_json(detail), "prev": prev, "hash": digest},
            )
            prev = digest
        s.execute(text("UPDATE access_audit_head SET hash = :h"), {"h": prev})


@pytest.mark.parametrize("attack", ["delete_all", "rewrite"])
def test_anchor_catches_a_deleted_or_consistently_rewritten_log(
    db: Database, db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, attack: str
) -> None:
    monkeypatch.setenv("CITYOS_DATABASE_URL", db_url)
    monkeypatch.delenv("CITYOS_AUDIT_ANCHOR", raising=False)
    app = Typer()
    register(app)
    _fill(db, 3)
    runner = CliRunner()
    home = ["--home", str(tmp_path)]
    unanchored = runner.invoke(app, ["audit", "verify", *home])
    assert unanchored.exit_code == 0 and "(unanchored)" in unanchored.stdout
    assert "WARNING: no audit anchor" in unanchored.stderr
    assert runner.invoke(app, ["audit", "verify", *home, "--require-anchor"]).exit_code == 1

    sink = tmp_path / "sink.jsonl"
    made = runner.invoke(app, ["audit", "anchor", *home, "--command", f"sh -c 'cat > {sink}'"])
    assert made.exit_code == 0, made.output
    anchor_file = tmp_path / "audit.anchor"
    assert (anchor_file.stat().st_mode & 0o777) == 0o600
    anchor = access.read_anchor(anchor_file)
    assert anchor is not None and anchor.seq == 3
    assert access.read_anchor(sink) == anchor  # the external sink got the same head
    ok = runner.invoke(app, ["audit", "verify", *home])
    assert ok.exit_code == 0 and "matches anchor" in ok.stdout and not ok.stderr

    if attack == "delete_all":
        _sql(db, "DELETE FROM access_audit")
        _sql(db, "DELETE FROM access_audit_head")
    else:
        _rewrite_consistently(db)
    # on its own, the tampered chain still verifies: that is the hole the anchor closes
    assert access.verify_audit(db).ok
    bad = runner.invoke(app, ["audit", "verify", *home])
    assert bad.exit_code == 1 and "BROKEN" in bad.stderr, bad.output
    elsewhere = runner.invoke(app, ["audit", "verify", *home, "--anchor", str(sink)])
    assert elsewhere.exit_code == 1
    if attack == "rewrite":  # an anchor is never taken of a chain that does not verify
        _sql(db, "UPDATE access_audit SET actor = 'mallory' WHERE seq = 1")
        assert runner.invoke(app, ["audit", "anchor", *home]).exit_code == 1


def test_anchor_api_refuses_a_broken_chain(db: Database) -> None:
    _fill(db, 2)
    _sql(db, "UPDATE access_audit SET actor = 'mallory' WHERE seq = 1")
    with pytest.raises(access.AuditBroken, match="entry 1"):
        access.anchor_audit(db)

"""Users, passwords, tokens and API keys."""

from __future__ import annotations

import hashlib
import hmac
from datetime import UTC, datetime, timedelta

import jwt
import pytest
from sqlalchemy import select

from cityos import access
from cityos.access._tables import ApiKeyRow, UserRow
from cityos.db import Database

SECRET = "test-secret-" + "x" * 40


@pytest.fixture
def people(db: Database) -> Database:
    access.create_department(db, "traffic")
    access.create_role(db, "analyst")
    access.create_user(db, "li", "correct-horse", department="traffic", roles=["analyst"])
    return db


def test_passwords_are_hashed_with_argon2_and_verify(people: Database) -> None:
    with people.session() as s:
        stored = s.scalar(select(UserRow.password_hash).where(UserRow.username == "li"))
    assert stored is not None and stored.startswith("$argon2id$")
    assert "correct-horse" not in stored
    assert access.verify_password(stored, "correct-horse")
    assert not access.verify_password(stored, "wrong-horse")


def test_login_returns_principal_with_roles_and_department(people: Database) -> None:
    p = access.authenticate(people, "li", "correct-horse")
    assert (p.username, p.roles, p.department) == ("li", frozenset({"analyst"}), "traffic")
    entries = access.read_audit(people, action="login")
    assert [e.actor for e in entries] == ["li"]


@pytest.mark.parametrize(("user", "password"), [("li", "wrong-horse"), ("nobody", "x" * 10)])
def test_bad_login_is_refused_and_audited(people: Database, user: str, password: str) -> None:
    with pytest.raises(access.InvalidCredentials, match="wrong user name or password"):
        access.authenticate(people, user, password)
    assert [e.actor for e in access.read_audit(people, action="login.failed")] == [user]


def test_disabled_user_cannot_log_in_and_token_stops_working(people: Database) -> None:
    token = access.issue_token(access.authenticate(people, "li", "correct-horse"), SECRET)
    access.set_user_active(people, "li", False)
    with pytest.raises(access.InvalidCredentials):
        access.authenticate(people, "li", "correct-horse")
    with pytest.raises(access.InvalidToken, match="disabled"):
        access.principal_from_token(people, token, SECRET)


def test_token_round_trip_and_role_changes_revoke_tokens(people: Database) -> None:
    token = access.issue_token(access.principal_for(people, "li"), SECRET)
    p = access.principal_from_token(people, token, SECRET)
    assert p.roles == frozenset({"analyst"}) and p.via == "token"
    access.create_role(people, "officer")
    access.assign_role(people, "li", "officer")
    with pytest.raises(access.InvalidToken, match="log in again"):
        access.principal_from_token(people, token, SECRET)
    with pytest.raises(access.InvalidToken, match="log in again"):  # the SecureStore path
        access.current_principal(people, access.verify_token(token, SECRET))
    fresh = access.issue_token(access.principal_for(people, "li"), SECRET)
    p = access.principal_from_token(people, fresh, SECRET)
    assert p.roles == frozenset({"analyst", "officer"})
    access.set_password(people, "li", "new-correct-horse")
    with pytest.raises(access.InvalidToken, match="log in again"):
        access.principal_from_token(people, fresh, SECRET)


def test_tokens_without_a_generation_are_refused(people: Database) -> None:
    p = access.principal_for(people, "li")
    now = datetime.now(UTC)
    claims = {"sub": "li", "uid": p.user_id, "iat": now, "exp": now + timedelta(minutes=5)}
    claims |= {"iss": "cityos", "typ": "access"}
    key = hmac.new(SECRET.encode(), b"cityos access token v1", hashlib.sha256).digest()
    token = jwt.encode(claims, key, algorithm="HS256")
    with pytest.raises(access.InvalidToken):
        access.principal_from_token(people, token, SECRET)
    token = jwt.encode({**claims, "gen": True}, key, algorithm="HS256")
    with pytest.raises(access.InvalidToken, match="generation"):
        access.principal_from_token(people, token, SECRET)


def test_expired_token_is_refused(people: Database) -> None:
    token = access.issue_token(
        access.principal_for(people, "li"), SECRET, ttl=timedelta(seconds=-1)
    )
    with pytest.raises(access.TokenExpired):
        access.principal_from_token(people, token, SECRET)


def test_forged_tokens_are_refused(people: Database) -> None:
    p = access.principal_for(people, "li")
    other = access.issue_token(p, "another-secret-" + "y" * 40)
    with pytest.raises(access.InvalidToken, match="not valid"):
        access.principal_from_token(people, other, SECRET)
    now = datetime.now(UTC)
    claims = {
        "sub": "li",
        "uid": p.user_id,
        "iat": now,
        "exp": now + timedelta(minutes=5),
        "iss": "cityos",
        "typ": "access",
    }
    unsigned = jwt.encode(claims, None, algorithm="none")
    with pytest.raises(access.InvalidToken):
        access.principal_from_token(people, unsigned, SECRET)
    # a token signed with the raw secret (not the derived key) is also a forgery
    raw = jwt.encode(claims, SECRET, algorithm="HS256")
    with pytest.raises(access.InvalidToken):
        access.principal_from_token(people, raw, SECRET)
    # tampering with the payload breaks the signature
    good = access.issue_token(p, SECRET)
    head, body, sig = good.split(".")
    with pytest.raises(access.InvalidToken):
        access.principal_from_token(people, f"{head}.{body[:-2]}AA.{sig}", SECRET)


def test_api_key_is_stored_only_as_hash_and_revocable(people: Database) -> None:
    key_id, key = access.create_api_key(people, "li", name="sensor gateway")
    with people.session() as s:
        row = s.scalar(select(ApiKeyRow).where(ApiKeyRow.key_id == key_id))
        assert row is not None
        assert key not in (row.key_hash, row.name) and len(row.key_hash) == 64
        assert hmac.compare_digest(row.key_hash, hashlib.sha256(key.encode()).hexdigest())
    assert access.principal_from_api_key(people, key).username == "li"
    access.revoke_api_key(people, key_id)
    with pytest.raises(access.ApiKeyRevoked, match=key_id):
        access.principal_from_api_key(people, key)
    assert [k.revoked for k in access.list_api_keys(people, "li")] == [True]


@pytest.mark.parametrize(
    "bad", ["", "cos_", "cos_0123456789abcdef_x", "Bearer abc", "cos_0123456789abcdef"]
)
def test_unknown_or_malformed_api_keys_are_refused(people: Database, bad: str) -> None:
    with pytest.raises(access.InvalidCredentials):
        access.principal_from_api_key(people, bad)


def test_duplicate_names_conflict_and_bad_names_are_refused(people: Database) -> None:
    with pytest.raises(access.AccessConflict):
        access.create_user(people, "li", "another-pass")
    with pytest.raises(access.AccessConflict):
        access.create_role(people, "analyst")
    with pytest.raises(access.PolicyError):
        access.create_user(people, "../etc/passwd", "long-enough")
    with pytest.raises(access.PolicyError, match="8 characters"):
        access.create_user(people, "short", "abc")
    with pytest.raises(access.AccessNotFound):
        access.create_user(people, "wu", "long-enough", roles=["ghost"])
    assert [u.username for u in access.list_users(people)] == ["li"]


def test_update_user_changes_roles_and_password_in_one_audited_step(people: Database) -> None:
    access.create_role(people, "officer")
    u = access.update_user(
        people, "li", password="new-password", add_roles=["officer"], remove_roles=["analyst"]
    )
    assert u.roles == ("officer",)
    assert access.authenticate(people, "li", "new-password").roles == frozenset({"officer"})
    last = access.read_audit(people, action="user.update")[-1]
    assert last.detail["roles_added"] == ["officer"] and "new-password" not in str(last.detail)

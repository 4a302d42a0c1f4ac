"""Over HTTP, a revocation made by another process applies to the next request, even
though the server caches principals and policies between requests."""

from __future__ import annotations

from cityos import access
from cityos.db import Database

from .conftest import SECRET, ServedCity

ST = "/datasets/pts_internal/query/st_range"
BODY = {
    "region": {"bbox": [116, 39, 117, 41]},
    "start": "2026-03-02T00:00:00Z",
    "end": "2026-03-03T00:00:00Z",
}


def _token(db: Database, user: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {access.issue_token(access.principal_for(db, user), SECRET)}"}


def test_revocations_apply_to_the_next_request(served: ServedCity) -> None:
    db = served.store.db
    assert isinstance(db, Database)
    access.create_role(db, "temp")
    access.grant(db, "temp", "pts_internal", "read")
    access.create_user(db, "temp_user", "temp-password-1", roles=["temp"])
    token = {
        "Authorization": f"Bearer "
        f"{access.issue_token(access.principal_for(db, 'temp_user'), SECRET)}"
    }
    other = Database(db.url)  # another process, e.g. ``cityos access revoke``
    try:
        for _ in range(2):  # the second request is answered from warm caches
            r = served.client.post(ST, json=BODY, headers=token)
            assert r.status_code == 200 and r.json()["total"] == 40
            assert r.json()["masked"] == ["phone", "owner"]

        access.allow_unmask(other, "temp", "pts_internal", "phone")
        assert served.client.post(ST, json=BODY, headers=token).json()["masked"] == ["owner"]

        access.revoke(other, "temp", "pts_internal", "read")
        r = served.client.post(ST, json=BODY, headers=token)
        assert r.status_code == 403, r.json()

        access.grant(other, "temp", "pts_internal", "read")
        assert served.client.post(ST, json=BODY, headers=token).status_code == 200
        access.revoke_role(other, "temp_user", "temp")
        # a role change revokes the user's tokens; a fresh one sees the new roles
        r = served.client.post(ST, json=BODY, headers=token)
        assert r.status_code == 401 and "log in again" in r.json()["detail"]
        token = _token(db, "temp_user")
        assert served.client.post(ST, json=BODY, headers=token).status_code == 403

        access.assign_role(other, "temp_user", "temp")
        assert served.client.post(ST, json=BODY, headers=token).status_code == 401
        token = _token(db, "temp_user")
        assert served.client.post(ST, json=BODY, headers=token).status_code == 200
        access.set_user_active(other, "temp_user", False)
        r = served.client.post(ST, json=BODY, headers=token)
        assert r.status_code == 401 and "disabled" in r.json()["detail"]
    finally:
        other.dispose()


def test_password_role_and_status_changes_revoke_existing_tokens(served: ServedCity) -> None:
    """Tokens carry the user's generation; each of these changes bumps it, on every route
    (identity routes and SecureStore routes alike)."""
    db = served.store.db
    assert isinstance(db, Database)
    access.create_role(db, "gen_role")
    access.grant(db, "gen_role", "pts_internal", "read")
    access.create_user(db, "gen_user", "gen-password-1", roles=["gen_role"])
    other = Database(db.url)
    changes = [
        lambda: access.set_password(other, "gen_user", "gen-password-2"),
        lambda: access.update_user(other, "gen_user", password="gen-password-3"),
        lambda: access.revoke_role(other, "gen_user", "gen_role"),
        lambda: access.assign_role(other, "gen_user", "gen_role"),
        lambda: access.update_user(other, "gen_user", remove_roles=["gen_role"]),
        lambda: access.update_user(other, "gen_user", add_roles=["gen_role"]),
        # disabled and enabled again: tokens from before stay revoked
        lambda: (
            access.set_user_active(other, "gen_user", False),
            access.set_user_active(other, "gen_user", True),
        ),
    ]
    try:
        for i, change in enumerate(changes):
            token = _token(db, "gen_user")
            assert served.client.get("/auth/me", headers=token).status_code == 200, i
            change()
            for method, path, body in [("GET", "/auth/me", None), ("POST", ST, BODY)]:
                r = served.client.request(method, path, json=body, headers=token)
                assert r.status_code == 401, (i, path, r.text)
        # an unchanged user keeps working tokens
        token = _token(db, "gen_user")
        assert served.client.post(ST, json=BODY, headers=token).status_code == 200
    finally:
        other.dispose()

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
        assert served.client.post(ST, json=BODY, headers=token).status_code == 403

        access.assign_role(other, "temp_user", "temp")
        assert served.client.post(ST, json=BODY, headers=token).status_code == 200
        access.set_user_active(other, "temp_user", False)
        r = served.client.post(ST, json=BODY, headers=token)
        assert r.status_code == 401 and "disabled" in r.json()["detail"]
    finally:
        other.dispose()

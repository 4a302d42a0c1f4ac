"""Bad input and attacks get the right 4xx with a clear message and change nothing."""

from __future__ import annotations

from datetime import timedelta

import pytest

from cityos import access

from .conftest import PASSWORD, SECRET, ServedCity

ST = "/datasets/pts_sensitive/query/st_range"
WINDOW = {"start": "2026-03-02T00:00:00Z", "end": "2026-03-03T00:00:00Z"}


def _state(served: ServedCity) -> tuple[int, int]:
    rows = served.store.describe("pts_sensitive").rows
    return rows, len(access.read_audit(served.store.db, limit=100000))


def test_oversized_body_is_413_and_writes_nothing(served: ServedCity) -> None:
    before = _state(served)
    big = b'{"records": [' + b'{"id": "x"},' * 800_000 + b'{"id": "y"}]}'
    r = served.client.post(
        "/datasets/pts_sensitive/records",
        content=big,
        headers={**served.auth("admin"), "Content-Type": "application/json"},
    )
    assert r.status_code == 413 and "exceeds the limit" in r.json()["detail"]

    def chunks():  # no Content-Length: the limit is enforced while streaming
        for _ in range(100):
            yield b"x" * 100_000

    r = served.client.post(
        "/datasets/pts_sensitive/records",
        content=chunks(),
        headers={**served.auth("admin"), "Content-Type": "application/json"},
    )
    assert r.status_code == 413
    assert _state(served) == before


def test_malformed_json_is_400(served: ServedCity) -> None:
    r = served.client.post(
        ST,
        content=b'{"region": {"bbox": [1, 2,',
        headers={**served.auth("admin"), "Content-Type": "application/json"},
    )
    assert r.status_code == 400 and r.json()["detail"] == "malformed JSON body"


@pytest.mark.parametrize(
    "region",
    [
        {"wkt": "POLYGON((0 0, 1 1, 1 0, 0 1, 0 0))"},  # self-intersecting
        {"wkt": "POLYGON((0 0, 1 1"},
        {"geojson": {"type": "Polygon", "coordinates": "nope"}},
        {"bbox": [117, 40, 116, 39]},
        {"bbox": [1, 2, 3]},
        {"bbox": [1, 2, 3, 4], "wkt": "POINT (1 1)"},
    ],
)
def test_bad_geometry_is_422(served: ServedCity, region: dict[str, object]) -> None:
    r = served.client.post(ST, json={"region": region, **WINDOW}, headers=served.auth("admin"))
    assert r.status_code == 422, r.text
    assert r.json()["detail"]


def test_sql_fragments_are_plain_values(served: ServedCity) -> None:
    before = _state(served)
    evil = [
        "c1' OR '1'='1",
        "c1; DROP TABLE access_users; --",
        "' UNION SELECT * FROM access_users --",
    ]
    r = served.client.post(
        "/datasets/pts_sensitive/query/id_temporal",
        json={"ids": evil},
        headers=served.auth("admin"),
    )
    assert r.status_code == 200 and r.json()["total"] == 0
    # a row filter value that looks like SQL matches only that literal value
    db = served.store.db
    access.create_role(db, "sqlrole")
    access.grant(db, "sqlrole", "pts_secret")
    access.add_row_filter(
        db,
        "sqlrole",
        "pts_secret",
        access.RowFilter("column", {"column": "district", "values": ["west' OR '1'='1"]}),
    )
    access.create_user(db, "sqluser", PASSWORD, roles=["sqlrole"])
    tok = access.issue_token(access.principal_for(db, "sqluser"), SECRET)
    r = served.client.post(
        "/datasets/pts_secret/query/range",
        json={"region": {"bbox": [116, 39, 117, 41]}},
        headers={"Authorization": f"Bearer {tok}"},
    )
    assert r.status_code == 200 and r.json()["total"] == 0
    assert [u.username for u in access.list_users(db)].count("admin") == 1
    assert _state(served)[0] == before[0]


@pytest.mark.parametrize(
    "path",
    [
        "/datasets/..%2F..%2Fetc%2Fpasswd",
        "/datasets/../../etc",
        "/datasets/%2e%2e",
        "/datasets/pts_public%00",
        "/datasets/PTS_PUBLIC",
    ],
)
def test_path_traversal_in_names_is_refused(served: ServedCity, path: str) -> None:
    r = served.client.get(path, headers=served.auth("admin"))
    assert r.status_code in (404, 422), (path, r.status_code)


def test_expired_forged_and_revoked_credentials_are_401(served: ServedCity) -> None:
    db = served.store.db
    p = access.principal_for(db, "reader")
    expired = access.issue_token(p, SECRET, ttl=timedelta(seconds=-5))
    forged = access.issue_token(p, "not-the-secret-" + "q" * 40)
    key_id, key = access.create_api_key(db, "reader")
    body = {"region": {"bbox": [116, 39, 117, 41]}, **WINDOW}
    assert served.client.post(ST, json=body, headers={"X-API-Key": key}).status_code == 200
    access.revoke_api_key(db, key_id)
    cases = {
        "expired": ({"Authorization": f"Bearer {expired}"}, "expired"),
        "forged": ({"Authorization": f"Bearer {forged}"}, "not valid"),
        "garbage": ({"Authorization": "Bearer abc.def.ghi"}, "not valid"),
        "revoked": ({"X-API-Key": key}, "revoked"),
        "unknown key": ({"X-API-Key": key[:-4] + "AAAA"}, "unknown"),
        "none": ({}, "authentication required"),
    }
    for name, (headers, words) in cases.items():
        r = served.client.post(ST, json=body, headers=headers)
        assert r.status_code == 401, name
        assert words in r.json()["detail"], (name, r.json())
        assert r.headers["www-authenticate"] == "Bearer"


def test_login_endpoints(served: ServedCity) -> None:
    r = served.client.post("/auth/token", data={"username": "reader", "password": PASSWORD})
    assert r.status_code == 200
    me = served.client.get(
        "/auth/me", headers={"Authorization": "Bearer " + r.json()["access_token"]}
    )
    assert me.json()["roles"] == ["reader"]
    bad = served.client.post("/auth/login", json={"username": "reader", "password": "nope"})
    assert bad.status_code == 401
    assert access.read_audit(served.store.db, action="login.failed")[-1].actor == "reader"


def test_unknown_fields_are_refused(served: ServedCity) -> None:
    r = served.client.post(
        ST,
        json={"region": {"bbox": [116, 39, 117, 41]}, **WINDOW, "drop": "table"},
        headers=served.auth("admin"),
    )
    assert r.status_code == 422


@pytest.mark.parametrize(
    "query",
    [{"actor": "a\x00b"}, {"dataset": "\x00"}, {"after": str(2**31)}, {"after": str(2**40)}],
)
def test_values_the_database_refuses_are_4xx(served: ServedCity, query: dict[str, str]) -> None:
    # found by schemathesis on PostgreSQL: NUL bytes in text and integers beyond a 32-bit
    # column were 500s with a traceback
    r = served.client.get("/audit", params=query, headers=served.auth("admin"))
    assert r.status_code == 422, r.text
    assert "\x00" not in r.text

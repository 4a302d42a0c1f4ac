"""Authorisation matrix: every role × every dataset endpoint × every classification."""

from __future__ import annotations

from typing import Any

import pytest

from cityos import access

from .conftest import CLASSES, ROLES, ServedCity, point_rows

WINDOW = {"start": "2026-03-02T00:00:00Z", "end": "2026-03-03T00:00:00Z"}
BBOX = {"bbox": [116.0, 39.0, 117.0, 41.0]}
#: endpoint → (method, path suffix, body)
ENDPOINTS: dict[str, tuple[str, str, dict[str, Any] | None]] = {
    "describe": ("GET", "", None),
    "range": ("POST", "/query/range", {"region": BBOX}),
    "st_range": ("POST", "/query/st_range", {"region": BBOX, **WINDOW}),
    "id_temporal": ("POST", "/query/id_temporal", {"ids": ["c1", "c2"]}),
    "knn": ("POST", "/query/knn", {"x": 116.3, "y": 39.9, "k": 5}),
    "knn_trajectories": ("POST", "/query/knn_trajectories", {"x": 116.3, "y": 39.9, "k": 2}),
    "similar": ("POST", "/query/similar", {"coords": [[116.3, 39.9], [116.35, 39.92]], "k": 2}),
    "join_regions": ("POST", "/query/join_regions", {"regions": "districts"}),
    "join_nearest": ("POST", "/query/join_nearest", {"edges": "roads", "max_distance_m": 5000}),
    "aggregate": (
        "POST",
        "/query/aggregate",
        {"grid": {"bbox": [116.2, 39.8, 116.7, 40.1], "cell_m": 5000}},
    ),
    "records": ("POST", "/records", {"records": point_rows(1)}),
}
#: Of the 40 points of every ``pts_*`` dataset, those inside the district role's WEST box.
VISIBLE_WEST = 21


def may_read(role: str, cls: str) -> bool:
    grants, dept = ROLES[role]
    if role == "admin" or any(ds == f"pts_{cls}" for ds, _ in grants):
        return True
    if role == "wildcard":
        return cls != "secret"
    if cls == "internal":
        return dept == "traffic"
    return cls == "public"


def expected(role: str, cls: str, endpoint: str) -> int:
    if endpoint == "records":
        return 200 if role in ("admin", "writer") else 403
    if not may_read(role, cls):
        return 403
    # row filters restrict what every query reads, so answers without coordinates
    # (nearest objects, similar trajectories, aggregates) are computed over visible rows
    return 200


@pytest.mark.parametrize("endpoint", sorted(ENDPOINTS))
def test_authorisation_matrix(served: ServedCity, endpoint: str) -> None:
    method, suffix, body = ENDPOINTS[endpoint]
    failures = []
    for cls in CLASSES:
        path = f"/datasets/pts_{cls}{suffix}"
        anon = served.client.request(method, path, json=body)
        if anon.status_code != 401:
            failures.append(("anonymous", cls, anon.status_code, 401))
        for ri, role in enumerate(ROLES):
            before = len(access.read_audit(served.store.db, after=0, limit=100000))
            if endpoint == "records":  # a new record per call, so every write changes data
                row = {**point_rows(1)[0], "t": f"2026-03-05T{ri:02d}:{CLASSES.index(cls):02d}Z"}
                body = {"records": [row]}
            r = served.client.request(method, path, json=body, headers=served.auth(role))
            want = expected(role, cls, endpoint)
            if r.status_code != want:
                failures.append((role, cls, r.status_code, want, r.text[:200]))
                continue
            after = access.read_audit(served.store.db, after=before, limit=100000)
            if r.status_code == 200 and suffix.startswith("/query"):
                page = r.json()
                # personal fields are masked for everyone but the admin
                if "phone" in page["columns"] and page["rows"]:
                    masked = all("*" in row["phone"] for row in page["rows"])
                    if masked != (role != "admin"):
                        failures.append((role, cls, "masking", page["rows"][0]["phone"]))
                # public data is everyone's: a row filter narrows only what a grant adds
                filtered = role == "district" and cls != "public"
                if endpoint == "aggregate":
                    n = sum(row["n"] for row in page["rows"])
                    if n != (VISIBLE_WEST if filtered else 40):
                        failures.append((role, cls, "aggregate counted hidden rows", n))
                else:
                    leaked = any(row.get("x", 0) > 116.40 for row in page["rows"])
                    if filtered and leaked:
                        failures.append((role, cls, "row filter leaked"))
                audited = any(e.action == "read" and e.dataset == f"pts_{cls}" for e in after)
                if audited != (cls in ("sensitive", "secret")):
                    failures.append((role, cls, "audit", audited))
            written = [e for e in after if e.action == "write" and e.dataset == f"pts_{cls}"]
            if endpoint == "records" and r.status_code == 200:
                if r.json()["rows_written"] != 1:
                    failures.append((role, cls, "not written", r.text))
                # audited once, as the caller, in the catalog commit of the write
                if [(e.actor, e.detail["rows_written"]) for e in written] != [(role, 1)]:
                    failures.append((role, cls, "write not audited", written))
            denied = [e for e in after if e.action == "write.denied"]
            if endpoint == "records" and r.status_code == 403 and not denied:
                failures.append((role, cls, "refused write not audited"))
    assert not failures, failures


def test_listing_shows_only_readable_datasets(served: ServedCity) -> None:
    for role in ROLES:
        names = {
            d["name"] for d in served.client.get("/datasets", headers=served.auth(role)).json()
        }
        want = {f"pts_{c}" for c in CLASSES if may_read(role, c)} | {"districts", "roads"}
        assert names == want, role


@pytest.mark.parametrize(
    "path",
    [
        "/users",
        "/roles",
        "/departments",
        "/audit",
        "/audit/verify",
        "/policies/datasets/pts_public",
    ],
)
def test_admin_endpoints_refuse_everyone_else(served: ServedCity, path: str) -> None:
    assert served.client.get(path).status_code == 401
    for role in ROLES:
        want = 200 if role == "admin" else 403
        assert served.client.get(path, headers=served.auth(role)).status_code == want, role


UNKNOWN = [
    ("GET", "/datasets/nosuch", None),
    ("POST", "/datasets/nosuch/query/range", {"region": BBOX}),
    ("POST", "/datasets/nosuch/records", {"records": point_rows(1)}),
    ("POST", "/datasets/pts_public/query/join_regions", {"regions": "nosuch"}),
    ("POST", "/datasets/pts_public/query/join_nearest", {"edges": "nosuch"}),
    (
        "POST",
        "/datasets/pts_public/query/aggregate",
        {"regions": "nosuch", "time_bin": None},
    ),
]


@pytest.mark.parametrize(("method", "path", "body"), UNKNOWN, ids=[u[1] for u in UNKNOWN])
def test_unknown_dataset_errors_name_no_other_dataset(
    served: ServedCity, method: str, path: str, body: dict[str, Any] | None
) -> None:
    """A 404 names only what the caller asked for, whoever asks (the error mapping does
    it, so every route inherits it)."""
    existing = [d.name for d in served.store.list_datasets()]
    for role in ROLES:
        r = served.client.request(method, path, json=body, headers=served.auth(role))
        assert r.status_code in (403, 404), (role, r.status_code, r.text)
        if r.status_code == 404:
            assert "nosuch" in r.json()["detail"], r.text
        leaked = [n for n in existing if n in r.text]
        assert not leaked, (role, path, r.text)


def test_secure_store_errors_name_no_other_dataset(served: ServedCity) -> None:
    from cityos.errors import DatasetNotFound

    ss = access.SecureStore(served.store, access.principal_for(served.store.db, "outsider"))
    with pytest.raises(DatasetNotFound) as info:
        ss.describe("nosuch")
    assert "pts_" not in str(info.value) and "districts" not in str(info.value)


def test_describe_is_audited(served: ServedCity) -> None:
    # (queries under a row filter are computed over the visible rows, never refused, so the
    # refusal half of this test went with the seam; masked-column refusals are audited in
    # tests/server/test_query_security.py)
    db = served.store.db
    before = len(access.read_audit(db, limit=100_000))
    r = served.client.get("/datasets/pts_sensitive", headers=served.auth("reader"))
    assert r.status_code == 200
    got = [
        (e.action, e.actor, e.dataset, e.detail.get("reason") or e.detail.get("query"))
        for e in access.read_audit(db, after=before, limit=100_000)
    ]
    assert ("describe", "reader", "pts_sensitive", None) in got, got

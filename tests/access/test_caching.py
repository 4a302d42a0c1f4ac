"""Cached policies, principals, API keys and schemas never outlive a change.

Each test warms the caches of one :class:`Database` (the "server"), then changes rights
through a second :class:`Database` on the same URL (another process, e.g. the CLI) and
checks that the very next call through the first one sees the change.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from cityos import access
from cityos.access._generation import read_generation
from cityos.config import Settings
from cityos.db import Database
from cityos.model import DatasetSchema, Field, ModelKind
from cityos.store import Store

SECRET = "cache-test-secret-" + "y" * 40
BOX = (116.0, 39.0, 117.0, 41.0)
START, END = "2026-03-02T00:00Z", "2026-03-03T00:00Z"


def _rows(n: int = 6) -> list[dict[str, object]]:
    return [
        {
            "id": f"v{i}",
            "t": f"2026-03-02T0{i}:00Z",
            "x": 116.30 + 0.1 * i,
            "y": 39.90 + 0.01 * i,
            "phone": f"1381234{i:04d}",
            "note": f"n{i}",
        }
        for i in range(n)
    ]


SCHEMA = DatasetSchema(ModelKind.POINT_ST, fields=(Field("phone", personal="phone"), Field("note")))


@pytest.fixture
def city(db_url: str, tmp_path: Path) -> Iterator[tuple[Store, Database]]:
    """A store with one dataset and user ``li`` (role ``analyst``, read on ``taxis``),
    and a second connection to the same database standing for another process."""
    store = Store(settings=Settings(home=tmp_path, database_url=db_url, secret_key=SECRET))
    store.create_dataset("taxis", SCHEMA)
    store.append("taxis", _rows())
    db = store.db
    access.create_role(db, "analyst")
    access.create_role(db, "auditor")
    access.grant(db, "analyst", "taxis", "read")
    access.create_user(db, "li", "correct-horse", roles=["analyst"])
    other = Database(db_url)
    yield store, other
    other.dispose()
    store.close()


def _query(ss: access.SecureStore) -> access.SecureResult:
    return ss.st_range("taxis", BOX, START, END)


def test_revoked_grant_denies_the_next_read(city: tuple[Store, Database]) -> None:
    store, other = city
    ss = access.SecureStore(store, access.principal_for(store.db, "li"))
    assert len(_query(ss)) == 6
    assert len(_query(ss)) == 6  # served from warm caches
    access.revoke(other, "analyst", "taxis", "read")
    with pytest.raises(access.PermissionDenied):
        _query(ss)
    access.grant(other, "analyst", "taxis", "read")
    assert len(_query(ss)) == 6


def test_row_filters_and_unmasking_apply_at_once(city: tuple[Store, Database]) -> None:
    store, other = city
    ss = access.SecureStore(store, access.principal_for(store.db, "li"))
    first = _query(ss)
    assert first.masked == ["phone"]
    assert all("*" in p for p in first.table.column("phone").to_pylist())
    access.add_row_filter(
        other, "analyst", "taxis", access.RowFilter("bbox", {"bbox": [116.0, 39.0, 116.45, 41.0]})
    )
    filtered = _query(ss)
    assert filtered.table.column("id").to_pylist() == ["v0", "v1"]
    assert filtered.rows_hidden == 4
    access.allow_unmask(other, "analyst", "taxis", "phone")
    clear = _query(ss)
    assert clear.masked == []
    assert clear.table.column("phone").to_pylist() == ["13812340000", "13812340001"]


def test_role_taken_from_user_denies_a_long_lived_secure_store(
    city: tuple[Store, Database],
) -> None:
    store, other = city
    # the principal was resolved before the change and is never re-created by the caller
    ss = access.SecureStore(store, access.principal_for(store.db, "li"))
    assert len(_query(ss)) == 6
    access.revoke_role(other, "li", "analyst")
    with pytest.raises(access.PermissionDenied):
        _query(ss)
    assert [d.name for d in ss.list_datasets()] == []
    access.assign_role(other, "li", "analyst")
    assert len(_query(ss)) == 6
    access.set_user_active(other, "li", False)
    with pytest.raises(access.InvalidCredentials, match="disabled"):
        _query(ss)


def test_token_and_api_key_follow_role_and_key_changes(city: tuple[Store, Database]) -> None:
    store, other = city
    db = store.db
    token = access.issue_token(access.principal_for(db, "li"), SECRET)
    _, key = access.create_api_key(db, "li")
    for _ in range(2):  # the second round is served from the caches
        assert access.principal_from_token(db, token, SECRET).roles == {"analyst"}
        assert access.principal_from_api_key(db, key).roles == {"analyst"}
    access.assign_role(other, "li", "auditor")
    # a role change revokes tokens (another process made it: the cache must not hide it)
    with pytest.raises(access.InvalidToken, match="log in again"):
        access.principal_from_token(db, token, SECRET)
    assert access.principal_from_api_key(db, key).roles == {"analyst", "auditor"}
    token = access.issue_token(access.principal_for(db, "li"), SECRET)
    assert access.principal_from_token(db, token, SECRET).roles == {"analyst", "auditor"}
    access.update_user(other, "li", remove_roles=["analyst", "auditor"])
    token = access.issue_token(access.principal_for(db, "li"), SECRET)
    assert access.principal_from_token(db, token, SECRET).roles == frozenset()
    assert access.principal_from_api_key(db, key).roles == frozenset()
    key_id = access.list_api_keys(other, "li")[0].key_id
    access.revoke_api_key(other, key_id)
    with pytest.raises(access.ApiKeyRevoked):
        access.principal_from_api_key(db, key)
    with pytest.raises(access.InvalidCredentials):  # cached hash still checked
        access.principal_from_api_key(db, key[:-2] + ("AA" if key[-2:] != "AA" else "BB"))
    access.set_user_active(other, "li", False)
    with pytest.raises(access.InvalidToken, match="disabled"):
        access.principal_from_token(db, token, SECRET)


def test_a_recreated_dataset_is_masked_by_its_new_schema(city: tuple[Store, Database]) -> None:
    store, _ = city
    ss = access.SecureStore(store, access.principal_for(store.db, "li"))
    assert _query(ss).table.column("note").to_pylist()[0] == "n0"
    store.drop_dataset("taxis")
    store.create_dataset(
        "taxis",
        DatasetSchema(
            ModelKind.POINT_ST,
            fields=(Field("phone", personal="phone"), Field("note", personal="name")),
        ),
    )
    store.append("taxis", _rows())
    res = _query(ss)
    assert sorted(res.masked) == ["note", "phone"]
    assert res.table.column("note").to_pylist()[0] == "n*"


@pytest.mark.parametrize(
    "change",
    [
        lambda db: access.grant(db, "auditor", "taxis", "read"),
        lambda db: access.revoke(db, "analyst", "taxis", "read"),
        lambda db: access.set_dataset_policy(db, "taxis", "sensitive"),
        lambda db: access.add_row_filter(
            db, "analyst", "taxis", access.RowFilter("column", {"column": "note", "values": ["n1"]})
        ),
        lambda db: access.allow_unmask(db, "analyst"),
        lambda db: access.set_masking_rule(db, "phone", access.MaskingRule("redact")),
        lambda db: access.assign_role(db, "li", "auditor"),
        lambda db: access.revoke_role(db, "li", "analyst"),
        lambda db: access.set_user_active(db, "li", False),
        lambda db: access.update_user(db, "li", add_roles=["auditor"]),
        lambda db: access.revoke_api_key(db, access.create_api_key(db, "li")[0]),
    ],
    ids=[
        "grant",
        "revoke",
        "classify",
        "row_filter",
        "unmask",
        "masking_rule",
        "assign_role",
        "revoke_role",
        "disable",
        "update_user",
        "revoke_key",
    ],
)
def test_every_change_of_rights_or_identity_bumps_the_generation(
    city: tuple[Store, Database], change: Callable[[Database], None]
) -> None:
    store, other = city
    before = read_generation(store.db)
    change(other)
    assert read_generation(store.db) > before

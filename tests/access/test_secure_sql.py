"""SQL through SecureStore: only named, readable datasets, their row filters and masking
applied before the SQL sees them, no way out to the city's files, and Spark refused."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from cityos import access
from cityos.config import Settings
from cityos.errors import QueryError
from cityos.model import DatasetSchema, Field, ModelKind
from cityos.store import Store

SECRET = "secure-sql-secret-" + "z" * 40
SCHEMA = DatasetSchema(ModelKind.POINT_ST, fields=(Field("phone", personal="phone"), Field("note")))


@pytest.fixture
def city(tmp_path: Path) -> Iterator[Store]:
    store = Store(
        settings=Settings(
            home=tmp_path, database_url=f"sqlite:///{tmp_path}/c.db", secret_key=SECRET
        )
    )
    store.create_dataset("taxis", SCHEMA)
    store.append(
        "taxis",
        [
            {"id": f"v{i}", "t": f"2026-03-02T0{i}:00Z", "x": 116.30 + 0.1 * i, "y": 39.9,
             "phone": f"1381234{i:04d}", "note": f"n{i}"}
            for i in range(6)
        ],
    )  # fmt: skip
    store.create_dataset("secret", DatasetSchema(ModelKind.POINT_STATIC))
    store.append("secret", [{"id": "s1", "x": 1.0, "y": 2.0}])
    db = store.db
    access.create_role(db, "analyst")
    access.grant(db, "analyst", "taxis", "read")
    access.create_user(db, "li", "correct-horse", roles=["analyst"])
    yield store
    store.close()


def _ss(store: Store) -> access.SecureStore:
    return access.SecureStore(store, access.principal_for(store.db, "li"))


def test_row_filters_and_masking_apply_to_sql(city: Store) -> None:
    ss = _ss(city)
    q = "SELECT count(*) AS n, min(phone) AS p, max(x) AS xmax FROM taxis"
    res = ss.sql(q)
    row = res.table.to_pylist()[0]
    assert row["n"] == 6 and "*" in row["p"] and res.masked == ["phone"]
    access.add_row_filter(
        city.db, "analyst", "taxis", access.RowFilter("bbox", {"bbox": [116.0, 39.0, 116.45, 41.0]})
    )
    res = ss.sql(q)
    row = res.table.to_pylist()[0]
    assert row["n"] == 2 and row["xmax"] == pytest.approx(116.4) and res.rows_hidden == 4
    assert city.sql(q).to_pylist()[0]["n"] == 6  # the raw store is unrestricted
    # a filter on the rows cannot be escaped with SQL that asks for everything
    ids = ss.sql("SELECT id FROM taxis WHERE x > 0 OR true ORDER BY id").table["id"]
    assert ids.to_pylist() == ["v0", "v1"]


def test_sql_cannot_reach_unreadable_datasets_or_files(city: Store) -> None:
    ss = _ss(city)
    with pytest.raises(access.PermissionDenied):
        ss.sql("SELECT * FROM secret")
    # the raw files of a readable but filtered dataset would bypass its filter and masks
    access.add_row_filter(
        city.db, "analyst", "taxis", access.RowFilter("bbox", {"bbox": [116.0, 39.0, 116.45, 41.0]})
    )
    files = [str(city.data_dir / f.path) for f in city.catalog.files("taxis")]
    assert files
    with pytest.raises(QueryError):
        ss.sql(f"SELECT * FROM read_parquet('{files[0]}')")
    with pytest.raises(QueryError):
        ss.sql(f"SELECT count(*) FROM taxis, read_parquet('{files[0]}')")
    secret = [str(city.data_dir / f.path) for f in city.catalog.files("secret")]
    with pytest.raises((QueryError, access.PermissionDenied)):
        ss.sql(f"SELECT * FROM read_parquet('{secret[0]}')")
    with pytest.raises(QueryError):
        ss.sql("SET enable_external_access = true")
    with pytest.raises(QueryError):
        ss.sql(f"ATTACH '{city.settings.home}/c.db' AS c (TYPE sqlite)")


def test_spark_sql_is_refused_under_access_control(city: Store) -> None:
    with pytest.raises(access.PermissionDenied, match="duckdb engine only"):
        _ss(city).sql("SELECT count(*) FROM taxis", engine="spark")

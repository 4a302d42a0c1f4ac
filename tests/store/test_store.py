"""The store: datasets of every model round-trip, writes are atomic and idempotent, and
files are readable without CityOS."""

from __future__ import annotations

from pathlib import Path

import duckdb
import geopandas as gpd
import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
import shapely

from builders import T0, make_lines, make_points, make_regions
from cityos.errors import DatasetExists, DatasetNotFound, QueryError, ValidationError
from cityos.model import DatasetSchema, Field, GeometryType, ModelKind
from cityos.store import Store

Q = 2.0**-23  # the coordinate grid of geographic datasets


def _points_schema(**kw: object) -> DatasetSchema:
    return DatasetSchema(ModelKind.POINT_ST, fields=(Field("speed", "float64"),), **kw)  # type: ignore[arg-type]


def _sorted(df: pd.DataFrame, by: list[str]) -> pd.DataFrame:
    return df.sort_values(by).reset_index(drop=True)


def test_dataset_lifecycle(any_city: Store) -> None:
    s = any_city
    s.create_dataset("cars", _points_schema(), description="test")
    assert [d.name for d in s.list_datasets()] == ["cars"]
    with pytest.raises(DatasetExists):
        s.create_dataset("cars", _points_schema())
    s.create_dataset("cars", _points_schema(), exist_ok=True)
    with pytest.raises(DatasetExists, match="different schema"):
        s.create_dataset("cars", DatasetSchema(ModelKind.TABLE), exist_ok=True)
    info = s.describe("cars")
    assert info.rows == 0 and info.model == "point_st"
    s.drop_dataset("cars")
    with pytest.raises(DatasetNotFound, match="unknown dataset 'cars'"):
        s.describe("cars")
    with pytest.raises(DatasetNotFound):
        s.append("cars", [])
    with pytest.raises(ValidationError, match="invalid dataset name"):
        s.create_dataset("../etc", _points_schema())


def test_points_round_trip_and_stats(any_city: Store) -> None:
    s = any_city
    df = make_points(10, 300)
    s.create_dataset("cars", _points_schema(row_group_rows=256))
    r = s.append("cars", df)
    assert (r.rows_in, r.rows_written, r.duplicates) == (3000, 3000, 0)
    info = s.describe("cars")
    assert info.rows == 3000 and info.files >= 1
    assert info.t_min == df.t.min().value // 10**6
    back = _sorted(s.read("cars").to_pandas(), ["id", "t"])
    exp = _sorted(df, ["id", "t"])
    assert list(back.id) == list(exp.id)
    assert (back.t.to_numpy() == exp.t.to_numpy()).all()
    assert np.abs(back.x - exp.x).max() <= Q / 2 + 1e-12
    assert np.abs(back.y - exp.y).max() <= Q / 2 + 1e-12
    assert (back.speed == exp.speed).all()


def test_append_is_idempotent_by_record_key(city: Store) -> None:
    df = make_points(5, 100)
    city.create_dataset("cars", _points_schema())
    city.append("cars", df)
    again = city.append("cars", pd.concat([df.iloc[:50], df.iloc[:50]]))
    assert (again.rows_written, again.duplicates) == (0, 100)
    more = make_points(5, 100, seed=9)
    more["id"] = more["id"] + "-new"
    mixed = pd.concat([df.iloc[:10], more])
    r = city.append("cars", mixed)
    assert (r.rows_written, r.duplicates) == (500, 10)
    assert city.describe("cars").rows == 1000


def test_failed_append_writes_nothing(city: Store) -> None:
    city.create_dataset("cars", _points_schema())
    city.append("cars", make_points(3, 50))
    before = sorted(p.relative_to(city.data_dir) for p in city.data_dir.rglob("*.parquet"))
    version = city.describe("cars").version
    bad = make_points(3, 50, seed=2)
    bad.loc[17, "y"] = 123.0
    with pytest.raises(ValidationError) as ei:
        city.append("cars", bad)
    assert ei.value.row == 17 and ei.value.field == "y"
    assert sorted(p.relative_to(city.data_dir) for p in city.data_dir.rglob("*.parquet")) == before
    assert city.describe("cars").version == version
    assert city.describe("cars").rows == 150


def test_crash_between_files_and_catalog_leaves_nothing_visible(
    city: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    city.create_dataset("cars", _points_schema())
    city.append("cars", make_points(2, 20))

    def boom(*a: object, **k: object) -> int:
        raise RuntimeError("power cut")

    monkeypatch.setattr(city.catalog, "commit_files", boom)
    with pytest.raises(RuntimeError):
        city.append("cars", make_points(2, 20, seed=5).assign(id=lambda d: d.id + "x"))
    monkeypatch.undo()
    assert city.describe("cars").rows == 40
    assert len(city.read("cars")) == 40
    # files written before the "crash" were cleaned up; vacuum finds nothing left to remove
    assert int(city.vacuum(older_than_s=0)) == 0


def test_orphan_files_are_vacuumed(city: Store) -> None:
    city.create_dataset("cars", _points_schema())
    city.append("cars", make_points(2, 20))
    orphan = city.data_dir / "cars" / "20260302T0000" / "part-orphan.parquet"
    orphan.write_bytes(b"half a file")
    assert int(city.vacuum(older_than_s=3600)) == 0  # too young: could be a write in progress
    assert int(city.vacuum(older_than_s=0)) == 1
    assert not orphan.exists()
    assert len(city.read("cars")) == 40


def test_delete_by_predicate_and_compact(city: Store) -> None:
    df = make_points(8, 200)
    city.create_dataset("cars", _points_schema(row_group_rows=256))
    for i in range(4):
        city.append("cars", df.iloc[i * 400 : (i + 1) * 400])
    assert city.describe("cars").files >= 4
    box = (116.34, 39.85, 116.46, 39.97)
    start, end = T0 + pd.Timedelta("10min"), T0 + pd.Timedelta("50min")
    df = city.read("cars").to_pandas()  # stored coordinates are on the fixed-point grid
    inside = (
        (df.x >= box[0])
        & (df.x <= box[2])
        & (df.y >= box[1])
        & (df.y <= box[3])
        & (df.t >= start)
        & (df.t < end)
    )
    n = city.delete("cars", geometry=box, start=start, end=end)
    assert n == int(inside.sum()) > 0
    assert len(city.read("cars")) == len(df) - n
    assert city.delete("cars", ids=["obj-000"]) == 200 - int((inside & (df.id == "obj-000")).sum())
    rows = len(city.read("cars"))
    res = city.compact("cars")
    assert res.files_after < res.files_before
    assert len(city.read("cars")) == rows
    assert int(city.vacuum(older_than_s=0)) >= 1
    assert len(city.read("cars")) == rows
    with pytest.raises(QueryError, match="needs a condition"):
        city.delete("cars")


def _regions_schema() -> DatasetSchema:
    return DatasetSchema(
        ModelKind.POINT_STATIC,
        geometry_type=GeometryType.REGION,
        id_type="int64",
        fields=(Field("name"),),
    )


@pytest.mark.parametrize(
    "kind", ["regions", "network", "series", "network_series", "trajectories", "table"]
)
def test_every_model_round_trips(any_city: Store, kind: str) -> None:
    s = any_city
    if kind == "regions":
        df = make_regions()
        s.create_dataset("d", _regions_schema())
        key = ["id"]
    elif kind == "network":
        df = make_lines()
        s.create_dataset(
            "d",
            DatasetSchema(
                ModelKind.NETWORK_STATIC, id_type="int64", fields=(Field("lanes", "int64"),)
            ),
        )
        key = ["id"]
    elif kind == "series":
        df = make_points(4, 100).assign(
            x=lambda d: d.groupby("id").x.transform("first"),
            y=lambda d: d.groupby("id").y.transform("first"),
        )
        s.create_dataset(
            "d", DatasetSchema(ModelKind.POINT_SERIES, fields=(Field("speed", "float64"),))
        )
        key = ["id", "t"]
    elif kind == "network_series":
        df = make_points(4, 100)[["id", "t", "speed"]]
        s.create_dataset(
            "d", DatasetSchema(ModelKind.NETWORK_SERIES, fields=(Field("speed", "float64"),))
        )
        key = ["id", "t"]
    elif kind == "trajectories":
        pts = make_points(3, 50)
        rows = []
        for oid, g in pts.groupby("id"):
            for k, part in enumerate((g.iloc[:25], g.iloc[25:])):
                rows.append(
                    {
                        "id": oid,
                        "traj_id": f"{oid}-{k}",
                        "geometry": shapely.to_wkb(shapely.LineString(part[["x", "y"]].to_numpy())),
                        "times": part.t.tolist(),
                        "edges": list(range(len(part))),
                    }
                )
        df = pd.DataFrame(rows)
        s.create_dataset("d", DatasetSchema(ModelKind.NETWORK_ST))
        key = ["id", "traj_id"]
    else:
        df = pd.DataFrame(
            {
                "id": [f"p{i}" for i in range(50)],
                "amount": np.arange(50) * 1.5,
                "paid": np.arange(50) % 2 == 0,
            }
        )
        s.create_dataset(
            "d",
            DatasetSchema(
                ModelKind.TABLE, fields=(Field("amount", "float64"), Field("paid", "bool"))
            ),
        )
        key = ["id"]
    assert s.append("d", df).rows_written == len(df)
    assert s.append("d", df).rows_written == 0
    back = _sorted(s.read("d").to_pandas(), key)
    exp = _sorted(df, key)
    assert list(back[key[0]]) == list(exp[key[0]])
    if "geometry" in df.columns:
        g1 = shapely.from_wkb(back.geometry.to_numpy())
        g0 = shapely.from_wkb(exp.geometry.to_numpy())
        assert shapely.equals_exact(g1, g0, tolerance=Q).all()
    if kind == "trajectories":
        assert [len(v) for v in back.times] == [len(v) for v in exp.times]
        assert all(list(a) == list(b) for a, b in zip(back.edges, exp.edges, strict=True))
        assert list(back.t) == [pd.Timestamp(v[0]) for v in exp.times]
        assert list(back.t_end) == [pd.Timestamp(v[-1]) for v in exp.times]
    for c in ("speed", "amount", "paid", "lanes", "name"):
        if c in df.columns:
            assert list(back[c]) == list(exp[c])


def test_files_are_geoparquet_readable_without_cityos(city: Store) -> None:
    city.create_dataset("cars", _points_schema())
    city.append("cars", make_points(3, 30))
    city.create_dataset("d", _regions_schema())
    city.append("d", make_regions())
    for name, gtype in (("cars", "Point"), ("d", "Polygon")):
        f = next((city.data_dir / name).rglob("*.parquet"))
        gdf = gpd.read_parquet(f)
        assert gdf.crs.to_epsg() == 4326
        assert set(gdf.geometry.geom_type) == {gtype}
        assert len(gdf) == (90 if name == "cars" else 9)
    f = next((city.data_dir / "cars").rglob("*.parquet"))
    n = (
        duckdb.connect()
        .execute(f"SELECT count(*) FROM read_parquet('{f}') WHERE geometry.x > 0")
        .fetchone()
    )
    assert n is not None and n[0] == 90
    meta = pq.read_metadata(f)
    assert meta.num_row_groups >= 1


def test_sql_views(city: Store) -> None:
    city.create_dataset("cars", _points_schema())
    city.append("cars", make_points(4, 25))
    t = city.sql("SELECT id, count(*) AS n, min(x) > 116 AS east FROM cars GROUP BY id ORDER BY id")
    assert t["n"].to_pylist() == [25] * 4 and all(t["east"].to_pylist())
    with pytest.raises(QueryError, match="SQL failed"):
        city.sql("SELECT * FROM nope")


def test_query_geometry_in_another_crs(city: Store) -> None:
    city.create_dataset("cars", _points_schema())
    city.append("cars", make_points(10, 100))
    from pyproj import Transformer

    tr = Transformer.from_crs(4326, 3857, always_xy=True)
    x0, y0 = tr.transform(116.38, 39.89)
    x1, y1 = tr.transform(116.42, 39.93)
    a = city.range("cars", (116.38, 39.89, 116.42, 39.93))
    b = city.range("cars", shapely.box(x0, y0, x1, y1), crs=3857)
    # the box is not exactly the same shape after projection; compare with an exact check
    pts = city.read("cars").to_pandas()
    poly = shapely.transform(
        shapely.box(x0, y0, x1, y1).segmentize(100),
        lambda c: np.column_stack(
            Transformer.from_crs(3857, 4326, always_xy=True).transform(c[:, 0], c[:, 1])
        ),
    )
    exp = shapely.intersects_xy(poly, pts.x, pts.y).sum()
    assert len(b) == exp
    assert abs(len(a) - len(b)) <= max(2, len(a) // 50)


def test_projected_dataset(city: Store) -> None:
    df = make_points(5, 50)
    from pyproj import Transformer

    x, y = Transformer.from_crs(4326, 32650, always_xy=True).transform(
        df.x.to_numpy(), df.y.to_numpy()
    )
    df = df.assign(x=x, y=y)
    city.create_dataset("utm", _points_schema(crs="EPSG:32650"))
    city.append("utm", df)
    res = city.knn("utm", float(df.x.iloc[0]), float(df.y.iloc[0]), 3)
    assert res.table["distance_m"][0].as_py() < 0.01
    d = np.hypot(df.x - df.x.iloc[0], df.y - df.y.iloc[0]).sort_values().to_numpy()[:3]
    assert np.allclose(res.table["distance_m"].to_numpy(), d, atol=0.01)


def test_query_errors(city: Store) -> None:
    city.create_dataset("cars", _points_schema())
    city.append("cars", make_points(2, 10))
    with pytest.raises(QueryError, match="bounding box"):
        city.range("cars", (1, 2, 0, 3))
    with pytest.raises(QueryError, match="WKT"):
        city.range("cars", "POLYGON((garbage")
    with pytest.raises(QueryError, match="k must be"):
        city.knn("cars", 116.4, 39.9, 0)
    with pytest.raises(QueryError, match="cannot read"):
        city.st_range("cars", (116, 39, 117, 40), "yesterday-ish", None)
    with pytest.raises(QueryError, match="ends before"):
        city.st_range("cars", (116, 39, 117, 40), "2026-03-03", "2026-03-02")
    with pytest.raises(QueryError, match="metric"):
        city.similar("cars", [[116.4, 39.9]], 1, metric="cosine")
    with pytest.raises(QueryError, match="exactly one"):
        city.aggregate("cars")


def test_empty_dataset_queries(city: Store) -> None:
    city.create_dataset("cars", _points_schema())
    assert len(city.range("cars", (116, 39, 117, 40))) == 0
    assert len(city.knn("cars", 116.4, 39.9, 3)) == 0
    assert len(city.knn_trajectories("cars", 116.4, 39.9, 3)) == 0


def test_store_reopens_with_data(tmp_path: Path) -> None:
    s = Store(tmp_path / "c")
    s.create_dataset("cars", _points_schema())
    s.append("cars", make_points(2, 10))
    s.close()
    s2 = Store(tmp_path / "c")
    assert s2.describe("cars").rows == 20
    s2.close()


def test_scan_with_a_column_subset_keeps_key_order(city: Store) -> None:
    city.create_dataset("cars", _points_schema())
    df = make_points(6, 50)
    city.append("cars", df)
    for cols in (["id"], ["t"], ["speed"], ["id", "t"], ["x", "y"]):
        got = city.scan("cars", columns=cols, start=T0, end=T0 + pd.Timedelta("1h")).to_pandas()
        full = city.scan("cars", start=T0, end=T0 + pd.Timedelta("1h")).to_pandas()
        assert list(got.columns) == cols
        pd.testing.assert_frame_equal(got, full[cols])


def test_sql_spatial_functions(city: Store) -> None:
    city.create_dataset("cars", _points_schema())
    city.append("cars", make_points(4, 25))
    t = city.sql(
        "SELECT id, x, y, haversine_m(x, y, 116.4, 39.91) AS d, z2_cell(x, y, 10) AS c FROM cars"
    )
    from cityos.geo import haversine

    d = haversine(t["x"].to_numpy(), t["y"].to_numpy(), 116.4, 39.91)
    assert np.allclose(t["d"].to_numpy(), d)
    # points in one level-10 cell share its id; neighbours far apart do not
    assert len(set(t["c"].to_pylist())) < t.num_rows
    near = city.sql("SELECT count(*) AS n FROM cars WHERE haversine_m(x, y, 116.4, 39.91) < 5000")
    assert near["n"][0].as_py() == int((d < 5000).sum())


def test_id_temporal_skips_row_groups_where_the_object_is_only_outside_the_window(
    city: Store,
) -> None:
    # "a" reports for 10 minutes, "b" for three hours, at the same place: one row group
    ta = pd.date_range(T0, periods=60, freq="10s")
    tb = pd.date_range(T0, periods=1080, freq="10s")
    df = pd.concat([pd.DataFrame({"id": "a", "t": ta}), pd.DataFrame({"id": "b", "t": tb})])
    df = df.assign(x=116.4, y=39.9, speed=1.0)
    city.create_dataset("cars", _points_schema())
    city.append("cars", df)
    assert city.describe("cars").files == 1
    late = city.id_temporal("cars", "a", T0 + pd.Timedelta("1h"), T0 + pd.Timedelta("2h"))
    assert len(late) == 0 and late.stats["row_groups_read"] == 0
    early = city.id_temporal("cars", "a", T0 + pd.Timedelta("5min"), T0 + pd.Timedelta("2h"))
    assert len(early) == 30 and early.stats["row_groups_read"] == 1
    both = city.id_temporal("cars", ["a", "b"], T0 + pd.Timedelta("1h"), T0 + pd.Timedelta("2h"))
    assert set(both.table["id"].to_pylist()) == {"b"} and len(both) == 360

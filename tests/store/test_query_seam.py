"""The query seam: one ``Store.query(spec)`` entry point, one aggregation spec (Python, CLI
and the documented examples), engines registered by name, bad input as ``CityOSError``,
and a time budget that cancels."""

from __future__ import annotations

import datetime as dt
import doctest
import inspect
import json
import re
import shlex
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

import cityos.store as cs
from builders import make_points, make_regions
from cityos.cli import app
from cityos.errors import CityOSError, EngineError, QueryError, QueryTimeout
from cityos.model import DatasetSchema, Field, GeometryType, ModelKind
from cityos.store import Grid, QueryEngine, Store
from cityos.store._duckdb import DuckDBEngine

DOC = Path(__file__).resolve().parents[2] / "docs" / "store-api.md"
BOX = (116.30, 39.80, 116.50, 40.00)


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Store]:
    s = Store(tmp_path_factory.mktemp("seam"))
    s.create_dataset(
        "cars",
        DatasetSchema(
            ModelKind.POINT_ST, fields=(Field("speed", "float64"), Field("plate", personal="plate"))
        ),
    )
    pts = make_points(6, 120)
    pts["plate"] = "京A" + pts["id"].str[-3:]
    s.append("cars", pts)
    s.create_dataset(
        "districts", DatasetSchema(ModelKind.POINT_STATIC, geometry_type=GeometryType.REGION)
    )
    s.append("districts", make_regions())
    s.create_dataset("stops", DatasetSchema(ModelKind.POINT_STATIC))
    s.append("stops", [{"id": "s1", "x": 116.4, "y": 39.9}])
    yield s
    s.close()


# -- one entry point -------------------------------------------------------------------------
def test_every_convenience_method_is_its_spec_builder_plus_engine() -> None:
    """The store's methods take exactly the builders' parameters (and ``engine``), so the
    secured store, which delegates through the same builders, cannot drift from them."""
    for name, build in cs.QUERIES.items():
        method = getattr(Store, name)
        want = [p for p in inspect.signature(build).parameters]
        got = [p for p in inspect.signature(method).parameters if p not in ("self", "engine")]
        assert got == want, name


def test_convenience_methods_answer_through_query(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen: list[str] = []
    real = Store.query

    def spy(self: Store, spec: cs.QuerySpec, **kw: Any) -> cs.QueryResult:
        seen.append(spec.kind)
        return real(self, spec, **kw)

    monkeypatch.setattr(Store, "query", spy)
    store.scan("cars", ids=["obj-001"])
    store.st_range("cars", BOX, "2026-03-02", "2026-03-03")
    store.knn("cars", 116.4, 39.9, 3)
    store.aggregate("cars", regions="districts")
    assert seen == ["scan", "st_range", "knn", "aggregate"]


def test_specs_declare_every_dataset_they_touch() -> None:
    assert cs.JoinRegions("cars", "districts").datasets() == ("cars", "districts")
    assert cs.JoinNearest("cars", "roads").datasets() == ("cars", "roads")
    agg = cs.Aggregate("cars", regions="districts", aggs={"v": ("speed", "sum")})
    assert agg.datasets() == ("cars", "districts")
    assert agg.reads() == {"cars": ("speed",)}


# -- the registry ----------------------------------------------------------------------------
class _CopyEngine(DuckDBEngine):
    """A third engine: one class and one registration, nothing else."""

    name = "copy_of_duckdb"


def test_a_registered_engine_answers_like_the_others(store: Store) -> None:
    cs.register_engine("copy_of_duckdb", _CopyEngine)
    try:
        assert "copy_of_duckdb" in cs.engine_names()
        a = store.st_range("cars", BOX, "2026-03-02", "2026-03-03")
        b = store.st_range("cars", BOX, "2026-03-02", "2026-03-03", engine="copy_of_duckdb")
        assert b.stats["engine"] == "copy_of_duckdb"
        assert a.table.equals(b.table)
    finally:
        cs._engine._ENGINES.pop("copy_of_duckdb", None)
        store._engines.pop("copy_of_duckdb", None)
    with pytest.raises(EngineError, match="registered engines: duckdb, spark"):
        store.scan("cars", engine="nosuch")


def test_engines_never_see_the_store() -> None:
    for name in cs.engine_names():
        init = inspect.signature(cs.engine_class(name).__init__)
        assert "store" not in init.parameters, name
    src = Path(cs.__file__).parent
    for mod in ("_duckdb.py", "_spark.py", "_engine.py"):
        text = (src / mod).read_text()
        assert "self.store" not in text and "_store import" not in text, mod
    assert "from cityos.store._duckdb" not in (src / "_spark.py").read_text()
    assert issubclass(_CopyEngine, QueryEngine)


# -- one aggregation spec ----------------------------------------------------------------------
def test_every_aggregation_form_gives_the_same_numbers(store: Store) -> None:
    grid = Grid.from_metres(BOX, 2000)
    a = store.aggregate("cars", grid=grid, aggs={"n": "count", "speed": "mean"}).to_pandas()
    b = store.aggregate(
        "cars", grid=grid, aggs={"n": "count", "speed": ("speed", "mean")}
    ).to_pandas()
    c = store.aggregate(
        "cars", grid=grid, aggs={"n": "count", "speed": {"column": "speed", "fn": "mean"}}
    ).to_pandas()
    pd.testing.assert_frame_equal(a, b)
    pd.testing.assert_frame_equal(a, c)
    pts = store.read("cars").to_pandas()
    assert a["n"].sum() == len(pts)
    assert np.isclose((a["n"] * a["speed"]).sum(), pts["speed"].sum())


@pytest.mark.parametrize(
    ("aggs", "match"),
    [
        ({"x": "count"}, "reserved"),
        ({"id": ("speed", "max")}, "reserved"),
        ({"cell_x": "count"}, "reserved"),
        ({"n\" FROM read_csv('/etc/hostname') --": "count"}, "not a valid name"),
        ({"n": ("speed\") FROM read_csv('/etc/hostname') --", "max")}, "not a valid name"),
        ({"n": "median"}, "unknown function"),
        ({"n": ("speed", "avg")}, "unknown function"),
        ({"n": ("nosuch", "max")}, "no column"),
        ({"n": ("plate", "sum")}, "numeric"),
        ({}, "non-empty"),
    ],
)
def test_bad_aggregations_are_refused_by_the_store(
    store: Store, aggs: dict[str, Any], match: str
) -> None:
    with pytest.raises(QueryError, match=match) as err:
        store.aggregate("cars", grid=Grid.from_metres(BOX, 2000), aggs=aggs)
    assert "京A" not in str(err.value)  # never a row value in a message


def test_the_documented_examples_run() -> None:
    """The ``>>>`` examples of docs/store-api.md (Python), run as written."""
    text = DOC.read_text()
    test = doctest.DocTestParser().get_doctest(text, {}, DOC.name, str(DOC), 0)
    assert len(test.examples) >= 5
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS)
    runner.run(test)
    assert runner.failures == 0


def _doc_block(lang: str) -> str:
    m = re.search(rf"```{lang}\n(.*?)```", DOC.read_text(), re.S)
    assert m, lang
    return m.group(1).strip()


def test_the_documented_cli_aggregation_matches_python(tmp_path: Path) -> None:
    home = tmp_path / "c"
    s = Store(home)
    s.create_dataset(
        "taxis", DatasetSchema(ModelKind.POINT_ST, fields=(Field("speed", "float64"),))
    )
    s.append("taxis", make_points(4, 50).assign(x=lambda d: d.x.clip(116.31, 116.49)))
    args = shlex.split(_doc_block("console"))[2:]
    out = CliRunner().invoke(
        app, ["query", *args, "--format", "json", "--home", str(home)], catch_exceptions=False
    )
    assert out.exit_code == 0, out.output
    rows = json.loads(out.output)
    want = s.aggregate(
        "taxis",
        grid=Grid.from_metres(BOX, 1000),
        aggs={"n": "count", "speed": "mean", "top": ("speed", "max")},
    ).to_pandas()
    assert [r["n"] for r in rows] == want["n"].tolist()
    assert np.allclose([r["top"] for r in rows], want["top"])
    s.close()


# -- bad input is a CityOSError, never a raw Arrow / NumPy / pyproj error ------------------------
BAD: dict[str, Any] = {
    "time as an object": lambda s: s.st_range("cars", BOX, {"at": 1}, "2026-03-03"),
    "time as a list": lambda s: s.st_range("cars", BOX, ["2026-03-02"], "2026-03-03"),
    "time as a float": lambda s: s.scan("cars", start=1.5),
    "geometry as a number": lambda s: s.range("cars", 5),
    "geometry as bad GeoJSON": lambda s: s.range("cars", {"type": "Polygon", "coordinates": 7}),
    "unknown EPSG": lambda s: s.range("cars", BOX, crs="EPSG:999999"),
    "non-Earth CRS": lambda s: s.range("cars", BOX, crs="IAU_2015:49900"),
    "CRS as a list": lambda s: s.knn("cars", 116.4, 39.9, 1, crs=[4326]),
    "grid in a non-Earth CRS": lambda s: s.aggregate(
        "cars", grid=Grid.from_metres(BOX, 1000, crs="IAU_2015:49900")
    ),
    "point dataset as regions": lambda s: s.join_regions("cars", "stops"),
    "point dataset as aggregation regions": lambda s: s.aggregate("cars", regions="stops"),
    "moving points as lines": lambda s: s.join_nearest("cars", "cars"),
    "st_range on a static dataset": lambda s: s.st_range("stops", BOX, "2026-03-02", "2026-03-03"),
    "knn k as text": lambda s: s.knn("cars", 116.4, 39.9, "3"),
    "knn point as text": lambda s: s.knn("cars", "116.4", 39.9, 3),
    "trajectory too long": lambda s: s.similar("cars", np.full((5000, 2), 116.4), 1),
    "trajectory of text": lambda s: s.similar("cars", [["a", "b"]], 1),
    "nested ids": lambda s: s.id_temporal("cars", [["obj-001"]]),
    "bad time bin": lambda s: s.aggregate("cars", regions="districts", time_bin="soon"),
    "unknown column": lambda s: s.scan("cars", columns=["nosuch"]),
    "dataset as a number": lambda s: s.scan(7),
}


@pytest.mark.parametrize("case", list(BAD))
def test_bad_input_raises_a_cityos_error(store: Store, case: str) -> None:
    with pytest.raises(CityOSError) as err:
        BAD[case](store)
    assert len(str(err.value)) < 400


def test_a_window_from_year_1_to_9999_is_answered(store: Store) -> None:
    res = store.st_range("cars", BOX, dt.datetime(1, 1, 1), dt.datetime(9999, 12, 31, 23, 59))
    assert len(res) == len(store.range("cars", BOX))
    res = store.st_range("cars", BOX, "0001-01-01", "9999-12-31")  # outside pandas' years
    assert len(res) == len(store.range("cars", BOX))


# -- a time budget ---------------------------------------------------------------------------
def test_a_query_past_its_budget_is_cancelled(store: Store) -> None:
    with pytest.raises(QueryTimeout, match="time budget"):
        store.query(cs.Similar("cars", np.full((50, 2), 116.4), 3), timeout_s=0.0)
    # a generous budget answers normally
    assert (
        len(store.query(cs.Similar("cars", [[116.4, 39.9], [116.41, 39.91]], 3), timeout_s=60)) == 3
    )


def test_duckdb_work_is_interrupted_at_the_deadline() -> None:
    import duckdb

    con = duckdb.connect()
    d = cs.Deadline(0.2)
    with pytest.raises(QueryTimeout), d.watch(con.interrupt):
        con.execute("SELECT count(*) FROM range(10000000000) a").fetchall()
    con.close()

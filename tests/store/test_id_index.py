"""The id index (an (id, t)-ordered copy of every point data file) and the per-version plan
cache: exact under every write path.

Property tests run random write histories — appends (with redelivered and repeated keys),
deletes by id, by time and by area (the store's update is delete + append), compactions,
vacuums, and copies gone missing — and after every step compare ID-temporal queries,
answered through the copies, with a brute-force filter of every stored row and with a model
of the keys the history should have left.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from builders import make_points
from cityos.model import DatasetSchema, Field, ModelKind
from cityos.store import IDTemporal, Restriction, Store
from cityos.store import _idindex as idindex
from cityos.store._layout import decode
from cityos.store._plan import Predicate, plan_scan, to_ms
from strategies import T0, boxes, point_records, windows

_n = itertools.count()
IDS = [f"v{i}" for i in range(8)]


@contextmanager
def small_copies(rows: int = 16) -> Iterator[None]:
    """Copies cut into tiny row groups, so the index's row-group choice is exercised."""
    old = idindex.ROW_GROUP_ROWS
    idindex.ROW_GROUP_ROWS = rows
    try:
        yield
    finally:
        idindex.ROW_GROUP_ROWS = old


def _store(tmp: Path, **schema: Any) -> Store:
    s = Store(tmp / f"c{next(_n)}")
    s.create_dataset(
        "v",
        DatasetSchema(
            ModelKind.POINT_ST,
            row_group_rows=schema.pop("row_group_rows", 256),
            time_partition="1D",
            time_bin="1h",
            **schema,
        ),
    )
    return s


def _brute(all_rows: pd.DataFrame, ids: list[str], win: tuple[Any, Any]) -> pd.DataFrame:
    # the store's times are epoch milliseconds: a window bound is taken to the millisecond
    win = tuple(None if w is None else pd.Timestamp(to_ms(w), unit="ms", tz="UTC") for w in win)
    m = all_rows.id.isin(ids).to_numpy().copy()
    if win[0] is not None:
        m &= (all_rows.t >= win[0]).to_numpy()
    if win[1] is not None:
        m &= (all_rows.t < win[1]).to_numpy()
    return all_rows[m].sort_values(["id", "t"]).reset_index(drop=True)


def _ranges_match_footers(s: Store) -> None:
    """Every live data file with a copy was registered with the copy's key ranges, and they
    are exactly the copy's own footer statistics (row group by row group)."""
    stats = s.catalog.stats("v", s.catalog.schema("v")[2])
    for f in s.catalog.files("v"):
        copy = str(s.data_dir / idindex.index_path(f.path))
        if not Path(copy).exists():
            continue
        blob = stats.id_ranges.get(f.path)
        assert blob is not None, f"{f.path} registered without its copy's key ranges"
        got, want = idindex._from_ranges(copy, blob), idindex._load(copy)
        assert got is not None and want is not None
        assert len(got.id_min) == want.metadata.num_row_groups
        for a in ("id_min", "id_max", "t_min", "t_max"):
            assert getattr(got, a).tolist() == getattr(want, a).tolist(), a
        assert got.quantum == want.quantum


def _check(
    s: Store, keys: set[tuple[str, pd.Timestamp]], probes: list[Any], *, lost: bool = False
) -> None:
    """Stored keys are the model's, and ID-temporal answers equal brute force, exactly.
    Unless a copy was deleted (then a file may be read directly), the copies answer."""
    _ranges_match_footers(s)
    everything = s.read("v").to_pandas()
    assert set(zip(everything.id, everything.t, strict=True)) == keys
    for ids, win in probes:
        res = s.id_temporal("v", ids, *win)
        exp = _brute(everything, ids, win)
        pd.testing.assert_frame_equal(res.to_pandas(), exp)  # coordinates bit for bit
        if not lost and s.describe("v").files and res.stats.get("files_read"):
            assert res.stats.get("id_index_files", 0) >= 1  # answered through the copies


ops = st.one_of(
    st.tuples(st.just("append"), point_records(max_rows=120)),
    st.tuples(st.just("delete_ids"), st.lists(st.sampled_from(IDS), min_size=1, max_size=3)),
    st.tuples(st.just("delete_window"), windows(hours=72)),
    st.tuples(st.just("delete_box"), boxes()),
    st.tuples(st.just("compact"), st.none()),
    st.tuples(st.just("vacuum"), st.none()),
    st.tuples(st.just("lose_copy"), st.integers(0, 10**6)),
)
probes = st.lists(
    st.tuples(st.lists(st.sampled_from(IDS), min_size=1, max_size=3), windows(hours=72)),
    min_size=1,
    max_size=4,
)


@settings(
    max_examples=20,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(history=st.lists(ops, min_size=1, max_size=7), checks=probes)
def test_id_temporal_through_copies_equals_brute_force_over_write_histories(
    tmp_path: Path, history: list[tuple[str, Any]], checks: list[Any]
) -> None:
    with small_copies():
        s = _store(tmp_path)
        keys: set[tuple[str, pd.Timestamp]] = set()
        lost = False
        try:
            for kind, arg in history:
                if kind == "append":
                    s.append("v", arg)
                    keys |= set(zip(arg.id, arg.t, strict=True))
                elif kind == "delete_ids":
                    s.delete("v", ids=arg)
                    keys = {k for k in keys if k[0] not in arg}
                elif kind == "delete_window":
                    start, end = arg
                    if start is None and end is None:
                        continue
                    s.delete("v", start=start, end=end)
                    keys = {
                        k
                        for k in keys
                        if not ((start is None or k[1] >= start) and (end is None or k[1] < end))
                    }
                elif kind == "delete_box":
                    stored = s.read("v").to_pandas()
                    inside = (
                        (stored.x >= arg[0])
                        & (stored.x <= arg[2])
                        & (stored.y >= arg[1])
                        & (stored.y <= arg[3])
                    )
                    s.delete("v", geometry=arg)
                    keys -= set(zip(stored.id[inside], stored.t[inside], strict=True))
                elif kind == "compact":
                    s.compact("v", min_files=1)
                elif kind == "vacuum":
                    s.vacuum(older_than_s=0)
                else:  # a data file whose copy is gone: read from the file itself
                    copies = sorted(s.data_dir.rglob("*.parquet.ids"))
                    if copies:
                        copies[arg % len(copies)].unlink()
                        idindex._cache.clear()
                        lost = True
                _check(s, keys, checks, lost=lost)
        finally:
            s.close()


def test_every_point_file_has_an_exact_copy_and_vacuum_keeps_it_with_its_file(
    tmp_path: Path,
) -> None:
    s = _store(tmp_path)
    df = make_points(6, 300, step_s=60)
    s.append("v", df.iloc[:900])
    s.append("v", df.iloc[900:])
    before = {f.path for f in s.catalog.files("v")}
    for rel in before:
        copy = idindex.id_index(str(s.data_dir / rel))
        assert copy is not None
        got = copy.read(list(range(copy.metadata.num_row_groups))).sort_by(
            [("id", "ascending"), ("t", "ascending")]
        )
        want = decode(s.schema("v"), pq.read_table(s.data_dir / rel, schema=None)).sort_by(
            [("id", "ascending"), ("t", "ascending")]
        )
        assert got.num_rows > 0 and got.equals(want)
    s.compact("v", min_files=1)
    after = {f.path for f in s.catalog.files("v")}
    assert before.isdisjoint(after)
    res = s.vacuum(older_than_s=0)
    # the replaced files go with their copies; the live files keep theirs
    assert {idindex.index_path(p) for p in before} <= set(res.removed)
    assert before <= set(res.removed)
    for rel in after:
        assert (s.data_dir / idindex.index_path(rel)).exists()
    # and the copies' bytes count in the dataset's size
    on_disk = sum(p.stat().st_size for p in s.data_dir.rglob("*.parquet*"))
    assert s.describe("v").bytes == on_disk
    s.close()


def test_copies_hold_the_files_rows_exactly_with_fields_and_integer_ids(tmp_path: Path) -> None:
    s = Store(tmp_path / "c")
    s.create_dataset(
        "v",
        DatasetSchema(ModelKind.POINT_ST, id_type="int64", fields=(Field("speed", "float64"),)),
    )
    df = make_points(5, 200, step_s=45).assign(id=lambda d: d.id.str[-3:].astype(int))
    s.append("v", df)
    everything = s.read("v").to_pandas()
    with small_copies(8):
        s.compact("v", min_files=1)  # rewritten with tiny copy row groups
    for ids in ([0], [1, 3], [4, 99]):
        res = s.id_temporal("v", ids, T0, T0 + pd.Timedelta(hours=1))
        assert res.stats["id_index_files"] >= 1
        exp = _brute(everything, ids, (T0, T0 + pd.Timedelta(hours=1)))
        pd.testing.assert_frame_equal(res.to_pandas(), exp)
    s.close()


def test_restrictions_apply_to_rows_read_through_copies(tmp_path: Path) -> None:
    s = _store(tmp_path)
    df = make_points(4, 400, step_s=30)
    s.append("v", df)
    everything = s.read("v").to_pandas()
    mid = float(everything.x.median())
    r = Restriction(mask=lambda t: t["x"].to_numpy() > mid, spatial=True)
    ids = sorted(set(df.id))[:2]
    res = s.query(IDTemporal("v", tuple(ids), None, None), restrictions={"v": r})
    exp = _brute(everything[everything.x > mid], ids, (None, None))
    assert res.stats["id_index_files"] >= 1
    pd.testing.assert_frame_equal(res.to_pandas(), exp)
    s.close()


# -- the per-version plan and metadata cache --------------------------------------------------


def _box_query(s: Store) -> pd.DataFrame:
    return s.scan(
        "v", geometry=(116.0, 39.0, 117.0, 41.0), start=T0, end=T0 + pd.Timedelta(hours=3)
    ).to_pandas()


def test_a_repeated_query_shape_is_planned_once_per_version(tmp_path: Path) -> None:
    s = _store(tmp_path)
    s.append("v", make_points(3, 100))
    ctx = s.context("v")
    pred = Predicate(None, 0, 10**13, ("obj-001",))
    assert plan_scan(ctx.stats, pred) is plan_scan(s.context("v").stats, pred)
    s.append("v", make_points(3, 100, seed=1).assign(id=lambda d: d.id + "x"))
    assert plan_scan(s.context("v").stats, pred) is not plan_scan(ctx.stats, pred)
    s.close()


@pytest.mark.parametrize("write", ["append", "delete", "compact", "recreate", "other_process"])
def test_cached_plans_never_outlive_a_write(tmp_path: Path, write: str) -> None:
    """Every write path changes what the cached query shape answers (or where it reads),
    and the next query sees it — also when another Store (another process) wrote."""
    s = _store(tmp_path)
    home = s.settings.home
    df = make_points(4, 200, step_s=30)
    s.append("v", df.iloc[:400])
    s.append("v", df.iloc[400:])
    first = _box_query(s)
    assert _box_query(s).equals(first)  # served from the cache
    other = Store(home)
    if write == "append":
        s.append("v", make_points(2, 50, seed=5).assign(id=lambda d: d.id + "n"))
        assert len(_box_query(s)) > len(first)
    elif write == "delete":
        s.delete("v", ids=["obj-000"])
        got = _box_query(s)
        assert len(got) < len(first) and "obj-000" not in set(got.id)
    elif write == "compact":
        s.compact("v", min_files=1)
        s.vacuum(older_than_s=0)  # the files the cached plan named are gone
        pd.testing.assert_frame_equal(_box_query(s), first)
    elif write == "recreate":
        # dropped and created again elsewhere, up to the same version number
        other.drop_dataset("v")
        other.create_dataset(
            "v", DatasetSchema(ModelKind.POINT_ST, row_group_rows=256, time_partition="1D")
        )
        new = make_points(2, 100, seed=7).assign(id=lambda d: d.id + "r")
        other.append("v", new.iloc[:100])
        other.append("v", new.iloc[100:])
        assert s.describe("v").version == 2  # the same version as before the drop
        got = _box_query(s)
        assert set(got.id) == set(new.id)
    else:
        other.append("v", make_points(1, 50, seed=9).assign(id="late"))
        assert "late" in set(_box_query(s).id)
    other.close()
    s.close()


def test_a_dataset_can_do_without_the_id_index(tmp_path: Path) -> None:
    s = Store(tmp_path / "c")
    s.create_dataset("v", DatasetSchema(ModelKind.POINT_ST, extra={"id_index": False}))
    assert s.schema("v").extra == {"id_index": False}  # kept in the catalog
    df = make_points(4, 300, step_s=30)
    s.append("v", df)
    assert not list(s.data_dir.rglob("*.ids"))
    everything = s.read("v").to_pandas()
    res = s.id_temporal("v", ["obj-001"], T0, T0 + pd.Timedelta(hours=1))
    assert "id_index_files" not in res.stats
    pd.testing.assert_frame_equal(
        res.to_pandas(), _brute(everything, ["obj-001"], (T0, T0 + pd.Timedelta(hours=1)))
    )
    s.close()


def test_concurrent_queries_through_copies_agree(tmp_path: Path) -> None:
    from concurrent.futures import ThreadPoolExecutor

    s = _store(tmp_path)
    df = make_points(6, 400, step_s=30)
    with small_copies(64):
        s.append("v", df)
    everything = s.read("v").to_pandas()
    ids = sorted(set(df.id))
    wins = [
        (T0 + pd.Timedelta(minutes=10 * i), T0 + pd.Timedelta(minutes=10 * i + 45))
        for i in range(12)
    ]

    def one(i: int) -> bool:
        q = [ids[i % len(ids)]]
        got = s.id_temporal("v", q, *wins[i % len(wins)]).to_pandas()
        return bool(got.equals(_brute(everything, q, wins[i % len(wins)])))

    with ThreadPoolExecutor(4) as pool:
        assert all(pool.map(one, range(48)))
    s.close()


def _footer_statistics_unused(monkeypatch: pytest.MonkeyPatch) -> None:
    def no_footer_statistics(path: str) -> None:
        raise AssertionError(f"read {path}'s footer statistics, not the catalog's key ranges")

    monkeypatch.setattr(idindex, "_load", no_footer_statistics)
    idindex._cache.clear()


def test_id_temporal_takes_key_ranges_from_the_catalog_not_the_copies_footers(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with small_copies(32):
        s = _store(tmp_path)
        df = make_points(6, 400, step_s=30)
        s.append("v", df.iloc[:1200])
        s.append("v", df.iloc[1200:])
        s.delete("v", ids=["obj-001"])  # the rewritten files get their ranges too
        s.compact("v", min_files=1)
        s.append("v", df.iloc[:50].assign(id="obj-new"))
    _footer_statistics_unused(monkeypatch)
    everything = s.read("v").to_pandas()
    t = everything.t.sort_values()
    answered = 0
    for ids in (["obj-000"], ["obj-001"], ["obj-003", "obj-new"], ["nobody"]):
        for win in ((None, None), (t.iloc[100], t.iloc[700]), (t.iloc[-5], None)):
            res = s.id_temporal("v", ids, *win)
            pd.testing.assert_frame_equal(res.to_pandas(), _brute(everything, ids, win))
            if len(res.table):
                answered += 1
                assert res.stats["id_index_files"] >= 1
    assert answered >= 4
    # from the catalog's ranges a copy's footer is parsed only when rows are read from it
    rel = s.catalog.files("v")[0].path
    stats = s.catalog.stats("v", s.catalog.schema("v")[2])
    idx = idindex._from_ranges(str(s.data_dir / idindex.index_path(rel)), stats.id_ranges[rel])
    assert idx is not None and idx._metadata is None
    assert idx.read([0]).num_rows == 32 and idx._metadata is not None
    s.close()


def test_files_registered_without_key_ranges_use_the_copies_footers(tmp_path: Path) -> None:
    """Files committed before the catalog held key ranges (or with none) are still answered
    through their copies, exactly."""
    home = tmp_path / "old"
    s = Store(home)
    s.create_dataset("v", DatasetSchema(ModelKind.POINT_ST, row_group_rows=256))
    df = make_points(5, 300, step_s=60)
    s.append("v", df)
    with s.db.engine.begin() as conn:
        conn.exec_driver_sql("UPDATE st_files SET id_ranges = NULL")
    s.close()
    idindex._cache.clear()
    s = Store(home)
    assert s.catalog.stats("v", s.catalog.schema("v")[2]).id_ranges == {}
    everything = s.read("v").to_pandas()
    t = everything.t.sort_values()
    win = (t.iloc[200], t.iloc[900])
    res = s.id_temporal("v", ["obj-002"], *win)
    pd.testing.assert_frame_equal(res.to_pandas(), _brute(everything, ["obj-002"], win))
    assert len(res.table) > 0 and res.stats["id_index_files"] >= 1
    s.close()


def test_key_ranges_are_withheld_where_a_group_has_no_id() -> None:
    import pyarrow as pa

    tbl = pa.table({"id": pa.array(["a", None, None, "b"]), "x": [1, 2, 3, 4]})
    assert idindex.key_ranges(tbl, 2) is not None
    assert idindex.key_ranges(tbl.take([1, 2, 0, 3]), 2) is None


@settings(max_examples=200, deadline=None)
@given(
    bounds=st.lists(st.tuples(st.integers(0, 40), st.integers(0, 6)), min_size=1, max_size=30),
    ids=st.lists(st.one_of(st.integers(-2, 50), st.just("7")), max_size=4),
    shuffle=st.booleans(),
)
def test_row_groups_found_by_binary_search_equal_those_of_every_range(
    bounds: list[tuple[int, int]], ids: list[Any], shuffle: bool
) -> None:
    # groups of an id-sorted copy: first ids ascend and each group's last id is >= its
    # first and <= the next group's first; shuffled, the lookup must not assume that
    lo = np.cumsum([b[0] for b in bounds])
    hi = lo + [b[1] for b in bounds]
    hi = np.minimum(hi, np.append(lo[1:], hi[-1]))
    if shuffle:
        perm = np.random.default_rng(len(bounds)).permutation(len(bounds))
        lo, hi = lo[perm], hi[perm]
    ix = idindex.IdIndex(
        "unused",
        np.array(lo.tolist(), dtype=object),
        np.array(hi.tolist(), dtype=object),
        np.zeros(len(lo), dtype=np.int64),
        np.full(len(lo), 10, dtype=np.int64),
        None,
    )
    want = [
        g for g in range(len(lo)) if any(isinstance(v, int) and lo[g] <= v <= hi[g] for v in ids)
    ]
    assert ix.row_groups(tuple(ids), None, None) == want
    assert ix.ordered == (
        not shuffle or bool(np.all(np.diff(lo) >= 0) and np.all(np.diff(hi) >= 0))
    )

"""Property tests: every query through the index returns exactly what a brute-force scan of
the stored rows returns, and the store keeps every row it accepts exactly once."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import shapely
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from builders import make_points
from cityos.geo import haversine
from cityos.model import DatasetSchema, Field, ModelKind
from cityos.store import Grid, Store
from strategies import boxes, point_records, windows

SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@pytest.fixture(scope="module")
def loaded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Store, pd.DataFrame]]:
    s = Store(tmp_path_factory.mktemp("idx") / "city")
    s.create_dataset(
        "cars",
        DatasetSchema(
            ModelKind.POINT_ST,
            fields=(Field("speed", "float64"),),
            row_group_rows=256,
            time_partition="1D",
            time_bin="1h",
        ),
    )
    df = make_points(40, 400, step_s=300, center=(116.4, 39.9), spread=0.15)  # ~33 h, 16k points
    for i in range(0, len(df), 5000):  # several appends: several files per partition
        s.append("cars", df.iloc[i : i + 5000])
    stored = s.read("cars").to_pandas()
    assert len(stored) == len(df)
    assert s.describe("cars").files > 2
    yield s, stored
    s.close()


def _brute(
    stored: pd.DataFrame,
    box: tuple[float, float, float, float] | None,
    start: pd.Timestamp | None,
    end: pd.Timestamp | None,
) -> pd.DataFrame:
    m = np.ones(len(stored), dtype=bool)
    if box is not None:
        m &= (
            (stored.x >= box[0])
            & (stored.x <= box[2])
            & (stored.y >= box[1])
            & (stored.y <= box[3])
        )
    if start is not None:
        m &= stored.t >= start
    if end is not None:
        m &= stored.t < end
    return stored[m].sort_values(["id", "t"]).reset_index(drop=True)


@SETTINGS
@given(box=boxes(), win=windows())
def test_st_range_equals_brute_force(
    loaded: tuple[Store, pd.DataFrame],
    box: tuple[float, float, float, float],
    win: tuple[pd.Timestamp | None, pd.Timestamp | None],
) -> None:
    s, stored = loaded
    got = s.scan("cars", geometry=box, start=win[0], end=win[1]).to_pandas()
    exp = _brute(stored, box, *win)
    pd.testing.assert_frame_equal(got, exp, check_like=False)


@SETTINGS
@given(box=boxes(), n=st.integers(3, 12), seed=st.integers(0, 1000))
def test_polygon_range_equals_brute_force(
    loaded: tuple[Store, pd.DataFrame], box: tuple[float, float, float, float], n: int, seed: int
) -> None:
    s, stored = loaded
    rng = np.random.default_rng(seed)
    pts = np.column_stack([rng.uniform(box[0], box[2], n), rng.uniform(box[1], box[3], n)])
    poly = shapely.convex_hull(shapely.MultiPoint(pts))
    if poly.geom_type != "Polygon":
        return
    got = s.range("cars", poly).to_pandas()
    exp = (
        stored[shapely.intersects_xy(poly, stored.x, stored.y)]
        .sort_values(["id", "t"])
        .reset_index(drop=True)
    )
    pd.testing.assert_frame_equal(got, exp)


@SETTINGS
@given(
    ids=st.lists(st.sampled_from([f"obj-{i:03d}" for i in range(45)]), min_size=1, max_size=4),
    win=windows(),
)
def test_id_temporal_equals_brute_force(
    loaded: tuple[Store, pd.DataFrame],
    ids: list[str],
    win: tuple[pd.Timestamp | None, pd.Timestamp | None],
) -> None:
    s, stored = loaded
    got = s.id_temporal("cars", ids, *win).to_pandas()
    b = _brute(stored, None, *win)
    exp = b[b.id.isin(ids)].reset_index(drop=True)
    pd.testing.assert_frame_equal(got, exp)


@SETTINGS
@given(x=st.floats(116.1, 116.7), y=st.floats(39.6, 40.2), k=st.integers(1, 40), win=windows())
def test_knn_equals_brute_force(
    loaded: tuple[Store, pd.DataFrame],
    x: float,
    y: float,
    k: int,
    win: tuple[pd.Timestamp | None, pd.Timestamp | None],
) -> None:
    s, stored = loaded
    got = s.knn("cars", x, y, k, start=win[0], end=win[1]).to_pandas()
    b = _brute(stored, None, *win)
    b = b.assign(distance_m=haversine(x, y, b.x.to_numpy(), b.y.to_numpy()))
    exp = b.sort_values(["distance_m", "id", "t"]).head(k).reset_index(drop=True)
    pd.testing.assert_frame_equal(got, exp)


@SETTINGS
@given(x=st.floats(116.1, 116.7), y=st.floats(39.6, 40.2), k=st.integers(1, 10), win=windows())
def test_knn_trajectories_equals_brute_force(
    loaded: tuple[Store, pd.DataFrame],
    x: float,
    y: float,
    k: int,
    win: tuple[pd.Timestamp | None, pd.Timestamp | None],
) -> None:
    s, stored = loaded
    got = s.knn_trajectories("cars", x, y, k, start=win[0], end=win[1]).to_pandas()
    b = _brute(stored, None, *win)
    d = (
        pd.Series(haversine(x, y, b.x.to_numpy(), b.y.to_numpy()), index=b.id)
        .groupby(level=0)
        .min()
    )
    exp = pd.DataFrame({"id": d.index.to_numpy(), "distance_m": d.to_numpy()})
    exp = exp.sort_values(["distance_m", "id"], kind="stable").head(k).reset_index(drop=True)
    exp["id"] = exp["id"].astype(got["id"].dtype)
    pd.testing.assert_frame_equal(got, exp)


@settings(max_examples=15, deadline=None)
@given(
    obj=st.integers(0, 39),
    k=st.integers(1, 4),
    metric=st.sampled_from(["dtw", "frechet"]),
    hours=st.floats(0.5, 3),
)
def test_similarity_equals_exhaustive_search(
    loaded: tuple[Store, pd.DataFrame], obj: int, k: int, metric: str, hours: float
) -> None:
    from cityos.geo import discrete_frechet, dtw

    s, stored = loaded
    start = pd.Timestamp("2026-03-02T02:00Z")
    end = start + pd.Timedelta(hours=hours)
    b = _brute(stored, None, start, end)
    q = b[b.id == f"obj-{obj:03d}"][["x", "y"]].to_numpy()
    if len(q) == 0:
        return
    q = q + 0.0003  # a nearby, not identical, query
    got = s.similar("cars", q, k, start=start, end=end, metric=metric).to_pandas()
    fn = dtw if metric == "dtw" else discrete_frechet
    d = {oid: fn(q, g[["x", "y"]].to_numpy()) for oid, g in b.groupby("id")}
    exp = sorted((v, i) for i, v in d.items())[:k]
    assert list(got.id) == [i for _, i in exp]
    assert np.allclose(got.distance_m, [v for v, _ in exp], rtol=1e-12)


@SETTINGS
@given(
    cell=st.sampled_from([300.0, 1000.0, 5000.0]),
    bin_=st.sampled_from(["15min", "1h", "6h"]),
    win=windows(),
)
def test_grid_counts_sum_to_points_in_window(
    loaded: tuple[Store, pd.DataFrame],
    cell: float,
    bin_: str,
    win: tuple[pd.Timestamp | None, pd.Timestamp | None],
) -> None:
    s, stored = loaded
    grid = Grid.from_metres((116.0, 39.5, 116.8, 40.3), cell)
    got = s.aggregate(
        "cars",
        grid=grid,
        time_bin=bin_,
        aggs={"n": "count", "v": ("speed", "sum")},
        start=win[0],
        end=win[1],
    ).to_pandas()
    b = _brute(stored, None, *win)
    assert got.n.sum() == len(b)
    assert np.isclose(got.v.sum(), b.speed.sum())
    ix, iy = grid.resolve(s.schema("cars").crs).cells(b.x.to_numpy(), b.y.to_numpy())
    tb = b.t.dt.floor(bin_)
    exp = pd.DataFrame({"cell_x": ix, "cell_y": iy, "t": tb}).value_counts().sort_index()
    assert list(got.n) == list(exp.to_numpy())


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(batches=st.lists(point_records(), min_size=1, max_size=4))
def test_appends_keep_every_key_once(tmp_path: Path, batches: list[pd.DataFrame]) -> None:
    s = Store(tmp_path / f"c{np.random.default_rng().integers(1 << 62)}")
    s.create_dataset("v", DatasetSchema(ModelKind.POINT_ST, row_group_rows=256))
    for b in batches:
        s.append("v", b)
        s.append("v", b)  # redelivery
    got = s.read("v").to_pandas()
    allrows = pd.concat(batches).drop_duplicates(["id", "t"], keep="first")
    assert len(got) == len(allrows)
    assert not got.duplicated(["id", "t"]).any()
    merged = got.merge(allrows, on=["id", "t"], suffixes=("", "_in"))
    assert len(merged) == len(allrows)
    assert (np.abs(merged.x - merged.x_in) <= 2.0**-24 + 1e-12).all()
    s.close()

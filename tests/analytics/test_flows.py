"""Grids, flows, road speeds and OD: invariants under Hypothesis and exact small cases."""

from __future__ import annotations

import geopandas as gpd
import numpy as np
import pandas as pd
import shapely
from hypothesis import given, settings
from hypothesis import strategies as st

from cityos.analytics import (
    CellGrid,
    flow_tensor,
    grid_flows,
    od_matrix,
    region_flows,
    split_by_gap,
)
from cityos.model import PointSeries

from .builders import make_traj
from .strategies import point_streams


@settings(max_examples=60, deadline=None)
@given(point_streams(), st.floats(50, 2000), st.sampled_from(["10min", "1h", 90]))
def test_grid_counts_sum_to_points_inside_extent(df: pd.DataFrame, cell: float, tb: object) -> None:
    g = CellGrid.from_metres((-1000.0, -1000.0, 1000.0, 1000.0), cell, geographic=False)
    out = grid_flows(df, g, tb, geographic=False)
    assert isinstance(out, PointSeries)
    r = out.to_pandas()
    inside = (df.x >= g.xmin) & (df.x <= g.xmax) & (df.y >= g.ymin) & (df.y <= g.ymax)
    assert r["n"].sum() == inside.sum()
    assert (r["objects"] <= r["n"]).all()
    # every move between two cells inside the grid is one outflow and one inflow
    assert r["inflow"].sum() <= inside.sum() and r["outflow"].sum() <= inside.sum()


def test_flows_count_moves_between_cells() -> None:
    g = CellGrid(0, 0, 300, 100, 3, 1)
    df = pd.concat(
        [
            make_traj([(50, 50), (150, 50), (250, 50), (250, 50)], oid="a"),
            make_traj([(250, 50), (150, 50)], oid="b"),
        ]
    )
    r = grid_flows(df, g, "1h", geographic=False).to_pandas().set_index("id")
    assert r.loc[0, ["n", "inflow", "outflow"]].tolist() == [1, 0, 1]
    assert r.loc[1, ["n", "objects", "inflow", "outflow"]].tolist() == [2, 2, 2, 1]
    assert r.loc[2, ["n", "objects", "inflow", "outflow"]].tolist() == [3, 2, 1, 1]
    x, _times = flow_tensor(grid_flows(df, g, "1h", geographic=False))
    assert x.shape == (1, 2, 1, 3) and x[0, 0, 0].tolist() == [0, 2, 1]


def test_time_bins_split_counts() -> None:
    df = make_traj([(5, 5)] * 12, step_s=600)  # two hours of points, one cell
    r = grid_flows(df, CellGrid(0, 0, 10, 10, 1, 1), "1h", geographic=False).to_pandas()
    assert r["n"].tolist() == [6, 6]


def test_grid_agrees_with_geopandas_spatial_join() -> None:
    rng = np.random.default_rng(0)
    df = pd.DataFrame(
        {
            "id": rng.integers(0, 20, 2000).astype(str),
            "t": rng.integers(0, 7200, 2000),
            "x": rng.uniform(116.30, 116.40, 2000),
            "y": rng.uniform(39.90, 39.98, 2000),
        }
    )
    g = CellGrid.from_metres((116.30, 39.90, 116.40, 39.98), 1000)
    ours = grid_flows(df, g, "1h").to_pandas().groupby("id")["n"].sum()
    cells = gpd.GeoDataFrame(
        {"cell": np.arange(g.nx * g.ny)},
        geometry=[
            shapely.box(
                g.xmin + c % g.nx * g.dx,
                g.ymin + c // g.nx * g.dy,
                g.xmin + (c % g.nx + 1) * g.dx,
                g.ymin + (c // g.nx + 1) * g.dy,
            )
            for c in range(g.nx * g.ny)
        ],
    )
    pts = gpd.GeoDataFrame(df, geometry=gpd.points_from_xy(df.x, df.y))
    j = gpd.sjoin(pts, cells, predicate="within").groupby("cell").size()
    common = ours.index.intersection(j.index)
    assert len(common) == len(j) and (ours[common] == j[common]).all()


def test_region_flows_and_od_matrix() -> None:
    regions = gpd.GeoDataFrame(
        {"id": [1, 2]}, geometry=[shapely.box(0, 0, 100, 100), shapely.box(100, 0, 200, 100)]
    )
    df = pd.concat(
        [
            make_traj([(10, 10), (20, 10), (150, 10)], oid="a"),
            make_traj([(150, 50), (50, 50)], oid="b", step_s=30),
        ]
    )
    r = region_flows(df, regions, "1h", geographic=False).to_pandas().set_index("id")
    assert r.loc[1, ["n", "objects", "inflow", "outflow"]].tolist() == [3, 2, 1, 1]
    assert r.loc[2, ["n", "objects", "inflow", "outflow"]].tolist() == [2, 2, 1, 1]
    trips = split_by_gap(df, 60, geographic=False)
    od = od_matrix(trips, regions, geographic=False)
    assert sorted(zip(od.origin, od.destination, od.trips, strict=True)) == [(1, 2, 1), (2, 1, 1)]

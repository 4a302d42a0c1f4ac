"""HMM map matching: exact answers on a small grid network and accuracy against the
synthetic city's ground truth."""

from __future__ import annotations

import itertools

import numpy as np
import pandas as pd
import pytest
import shapely

from cityos.analytics import MapMatcher, MapMatchError, map_match, segment_speeds
from cityos.geo import haversine

from .builders import grid_network, make_traj


def _drive(
    roads: pd.DataFrame,
    edge_path: list[int],
    step_m: float,
    noise_m: float,
    rng: np.random.Generator,
) -> tuple[pd.DataFrame, np.ndarray]:
    """Fixes every ``step_m`` along a path of edges (in lon/lat), with Gaussian noise, and
    the true edge of each fix."""
    line_pts, truth = [], []
    rest = 0.0
    for e in edge_path:
        g = roads.geometry.iloc[e]
        (x1, y1), (x2, y2) = g.coords
        length = float(haversine(x1, y1, x2, y2))
        s = rest
        while s < length:
            f = s / length
            line_pts.append((x1 + f * (x2 - x1), y1 + f * (y2 - y1)))
            truth.append(roads.edge_id.iloc[e])
            s += step_m
        rest = s - length
    xy = np.array(line_pts)
    xy[:, 0] += rng.normal(0, noise_m, len(xy)) / (111_320 * np.cos(np.radians(xy[:, 1])))
    xy[:, 1] += rng.normal(0, noise_m, len(xy)) / 111_320
    return make_traj(xy, step_s=10), np.array(truth)


def _edge(roads: pd.DataFrame, a: int, b: int) -> int:
    hit = roads[
        ((roads.from_node == a) & (roads.to_node == b))
        | ((roads.from_node == b) & (roads.to_node == a))
    ]
    return int(hit.index[0])


def test_matches_a_turning_route_and_returns_it_as_edge_ids() -> None:
    roads = grid_network(6)
    # east along row 0 from node 0 to 3, then north along column 3 to node 3 + 6*3
    nodes = [0, 1, 2, 3, 9, 15, 21]
    path = [_edge(roads, a, b) for a, b in itertools.pairwise(nodes)]
    pts, truth = _drive(roads, path, 60.0, 4.0, np.random.default_rng(0))
    res = map_match(pts, roads)
    acc = float((res.points["edge_id"].to_numpy() == truth).mean())
    assert acc >= 0.9
    route = res.routes.to_arrow()["edges"].to_pylist()[0]
    assert route == [int(roads.edge_id.iloc[e]) for e in path]
    # projections lie on the matched road
    for r in res.points.itertuples():
        g = roads.geometry.iloc[int(np.flatnonzero(roads.edge_id == r.edge_id)[0])]
        assert shapely.distance(g, shapely.Point(r.match_x, r.match_y)) < 1e-9


def test_route_fills_edges_between_sparse_fixes() -> None:
    roads = grid_network(6)
    nodes = [0, 1, 2, 3, 4]
    path = [_edge(roads, a, b) for a, b in itertools.pairwise(nodes)]
    pts, truth = _drive(roads, path, 700.0, 2.0, np.random.default_rng(1))  # fixes skip blocks
    res = map_match(pts, roads)
    ids = [int(roads.edge_id.iloc[e]) for e in path]
    expected = ids[: ids.index(int(truth[-1])) + 1]  # the route ends at the last fix
    assert len(pts) < len(expected)  # some edges hold no fix at all
    assert res.routes.to_arrow()["edges"].to_pylist()[0] == expected


def test_points_far_from_any_road_are_unmatched() -> None:
    roads = grid_network(3)
    pts = make_traj([(116.30, 39.90), (116.5, 40.5)])
    res = map_match(pts, roads)
    assert res.points["edge_id"].tolist()[1] == -1


def test_bad_network_is_reported() -> None:
    with pytest.raises(MapMatchError, match="edge_id, from_node"):
        MapMatcher(pd.DataFrame({"edge_id": [1]}))


def test_segment_speeds_from_matched_points() -> None:
    roads = grid_network(4)
    path = [_edge(roads, 0, 1), _edge(roads, 1, 2)]
    pts, _ = _drive(roads, path, 100.0, 0.0, np.random.default_rng(2))  # 100 m per 10 s
    sp = segment_speeds(map_match(pts, roads).points, "1h").to_pandas()
    assert set(sp["id"]) == {int(roads.edge_id.iloc[e]) for e in path}
    assert np.allclose(sp["speed_kmh"], 36.0, atol=0.5)


def test_accuracy_on_the_synthetic_city() -> None:
    from cityos.synth import make_city, simulate_vehicles

    city = make_city(0)
    v = simulate_vehicles(city, 12, days=1, seed=3)
    res = map_match(v[["id", "t", "x", "y"]], city.edges)
    got = res.points.merge(v[["id", "t", "true_edge"]], on=["id", "t"])
    assert len(got) == len(v)
    assert (got["edge_id"] == got["true_edge"]).mean() >= 0.95

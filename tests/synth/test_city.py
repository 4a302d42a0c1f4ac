from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import shapely
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.sparse.csgraph import dijkstra

from cityos.errors import CityOSError
from cityos.geo import haversine
from cityos.synth import POI_CATEGORIES, SynthError, SyntheticCity, make_city


def test_every_node_reaches_every_other(city: SyntheticCity) -> None:
    g = city.graph
    assert g.is_strongly_connected()
    m = g.matrix("length")
    assert np.isfinite(dijkstra(m, indices=0)).all()
    assert np.isfinite(dijkstra(m.T.tocsr(), indices=0)).all()  # every node reaches node 0


def test_edges_schema_and_geometry(city: SyntheticCity) -> None:
    e = city.edges
    assert str(e.crs) == "EPSG:4326"
    assert list(e["edge_id"]) == list(range(len(e)))
    assert e["edge_id"].dtype == np.int64
    assert set(e["road_class"].astype(str)) == {"arterial", "primary", "residential"}
    assert e["oneway"].any() and not e["oneway"].all()
    coords = shapely.get_coordinates(e.geometry.values).reshape(-1, 2, 2)
    fx, fy = city.node_x[e["from_node"]], city.node_y[e["from_node"]]
    np.testing.assert_allclose(coords[:, 0, 0], fx)
    np.testing.assert_allclose(coords[:, 0, 1], fy)
    np.testing.assert_allclose(coords[:, 1, 0], city.node_x[e["to_node"]])
    length = haversine(fx, fy, city.node_x[e["to_node"]], city.node_y[e["to_node"]])
    np.testing.assert_allclose(e["length_m"], length)
    assert (e["length_m"] > 0).all()
    # No two roads join the same pair of nodes.
    pairs = np.sort(e[["from_node", "to_node"]].to_numpy(), axis=1)
    assert len(np.unique(pairs, axis=0)) == len(e)


def test_oneway_edges_have_one_arc_and_others_two(city: SyntheticCity) -> None:
    g, e = city.graph, city.edges
    counts = np.bincount(g.arc_edge, minlength=len(e))
    np.testing.assert_array_equal(counts, np.where(e["oneway"], 1, 2))
    oneway = e[e["oneway"]]
    assert (g.arc_index(oneway["to_node"], oneway["from_node"]) == -1).all()
    assert (g.arc_index(oneway["from_node"], oneway["to_node"]) >= 0).all()


@pytest.mark.parametrize("weight", ["length", "time"])
def test_shortest_paths_match_scipy(city: SyntheticCity, weight: str) -> None:
    g = city.graph
    rng = np.random.default_rng(0)
    for s, t in rng.integers(0, g.n_nodes, size=(8, 2)):
        p = g.shortest_path(int(s), int(t), weight=weight)  # type: ignore[arg-type]
        ref = dijkstra(g.matrix(weight), indices=int(s))[int(t)]  # type: ignore[arg-type]
        assert p.cost == pytest.approx(ref, rel=1e-12)
        w = g.arc_length if weight == "length" else g.arc_time
        assert w[p.arcs].sum() == pytest.approx(ref, rel=1e-12)
        assert p.nodes[0] == s and p.nodes[-1] == t
        np.testing.assert_array_equal(g.arc_from[p.arcs], p.nodes[:-1])
        np.testing.assert_array_equal(g.arc_to[p.arcs], p.nodes[1:])


@settings(max_examples=40, deadline=None)
@given(st.integers(0, 10**6), st.integers(0, 10**6), st.integers(0, 10**6))
def test_shortest_path_obeys_triangle_inequality(a: int, b: int, c: int) -> None:
    g = _SMALL.graph
    a, b, c = a % g.n_nodes, b % g.n_nodes, c % g.n_nodes
    direct = g.shortest_path(a, c, "length").cost
    via = g.shortest_path(a, b, "length").cost + g.shortest_path(b, c, "length").cost
    assert direct <= via + 1e-6


_SMALL = make_city(seed=3, size_km=3.0)


def test_districts_tile_the_extent(city: SyntheticCity) -> None:
    d = city.districts
    assert 8 <= len(d) <= 16
    assert d["name"].is_unique and d["district_id"].is_unique
    union = shapely.union_all(d.geometry.values)
    x0, y0, x1, y1 = union.bounds
    assert union.area == pytest.approx((x1 - x0) * (y1 - y0), rel=1e-9)
    assert float(shapely.area(d.geometry.values).sum()) == pytest.approx(
        union.area, rel=1e-9
    )  # no overlaps
    assert (city.nodes["district_id"] >= 0).all()


def test_pois_cover_every_category_and_sit_in_their_district(city: SyntheticCity) -> None:
    p = city.pois
    assert set(p["category"].astype(str)) == set(POI_CATEGORIES)
    assert p["poi_id"].is_unique
    geoms = city.districts.set_index("district_id").geometry
    inside = shapely.intersects(geoms.loc[p["district_id"]].values, p.geometry.values)
    assert inside.all()
    # Beside the road: 20-60 m from their node.
    d = haversine(p.geometry.x, p.geometry.y, city.node_x[p["node_id"]], city.node_y[p["node_id"]])
    assert ((d > 19) & (d < 61)).all()


def test_bus_lines_are_connected_rounds(city: SyntheticCity) -> None:
    e = city.edges.set_index("edge_id")
    assert len(city.bus_lines) >= 1
    for _, line in city.bus_lines.iterrows():
        nodes = line["node_ids"]
        assert nodes[0] == nodes[-1]
        assert len(line["edge_ids"]) == len(nodes) - 1
        for eid, u, v in zip(line["edge_ids"], nodes[:-1], nodes[1:], strict=True):
            assert {u, v} == {e.at[eid, "from_node"], e.at[eid, "to_node"]}
            if e.at[eid, "oneway"]:
                assert (u, v) == (e.at[eid, "from_node"], e.at[eid, "to_node"])
        assert set(line["stop_nodes"]) <= set(nodes)


def test_same_seed_same_city_and_other_seed_differs() -> None:
    a, b, c = (
        make_city(seed=5, size_km=3.0),
        make_city(seed=5, size_km=3.0),
        make_city(seed=6, size_km=3.0),
    )
    pd.testing.assert_frame_equal(a.nodes, b.nodes)
    pd.testing.assert_frame_equal(a.edges, b.edges)
    pd.testing.assert_frame_equal(a.pois, b.pois)
    assert not np.allclose(a.node_x, c.node_x)


def test_bad_arguments_raise_cityos_errors() -> None:
    with pytest.raises(SynthError, match="size_km") as info:
        make_city(size_km=0.0)
    assert isinstance(info.value, CityOSError)
    with pytest.raises(SynthError, match="n_districts"):
        make_city(size_km=3.0, n_districts=40)
    with pytest.raises(SynthError, match="not in the graph"):
        _SMALL.graph.shortest_path(0, 10**6)

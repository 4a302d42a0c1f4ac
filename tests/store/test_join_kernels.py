"""The vectorised join kernels give exactly what GEOS gives: nearest line through the
segment grid against ``STRtree.query_nearest``, and few-region containment through
``intersects_xy`` against the STRtree's ``intersects`` query."""

from __future__ import annotations

import pickle

import numpy as np
import pyarrow as pa
import shapely
from hypothesis import given, settings
from hypothesis import strategies as st

from cityos.store._kernels import (
    LineIndex,
    lines_index,
    nearest_lines,
    regions_containing,
    regions_index,
)

coord = st.floats(0.0, 400.0, allow_nan=False)


@st.composite
def line_sets(draw: st.DrawFn) -> list[shapely.Geometry]:
    out = []
    for _ in range(draw(st.integers(1, 12))):
        n = draw(st.integers(2, 5))
        pts = [(draw(coord), draw(coord)) for _ in range(n)]
        if draw(st.integers(0, 6)) == 0:  # a repeated vertex: a zero-length segment
            pts.insert(1, pts[0])
        line = shapely.LineString(pts)
        if draw(st.integers(0, 4)) == 0:
            line = shapely.MultiLineString([line, shapely.LineString([(0, 0), (draw(coord), 5)])])
        out.append(line)
    return out


@settings(max_examples=80, deadline=None)
@given(
    lines=line_sets(),
    pts=st.lists(st.tuples(coord, coord), min_size=1, max_size=60),
    max_d=st.floats(0.5, 120.0),
    on_vertex=st.booleans(),
)
def test_grid_nearest_equals_geos(
    lines: list[shapely.Geometry], pts: list[tuple[float, float]], max_d: float, on_vertex: bool
) -> None:
    px = np.array([p[0] for p in pts])
    py = np.array([p[1] for p in pts])
    if on_vertex:  # points exactly on vertices and at equal distance from two lines
        c = shapely.get_coordinates(lines[0])
        px[: len(c)], py[: len(c)] = c[: len(px), 0], c[: len(px), 1]
    tbl = pa.table(
        {"id": [f"e{i:02d}" for i in range(len(lines))], "geometry": shapely.to_wkb(lines)}
    )
    idx, ids = lines_index(tbl, "EPSG:32650", False, (0.0, 0.0))
    assert isinstance(idx, LineIndex) and idx.grid(max_d) is not None
    got = nearest_lines(px, py, idx, ids, max_d, "EPSG:32650", False, (0.0, 0.0))
    exp = nearest_lines(px, py, idx.tree, ids, max_d, "EPSG:32650", False, (0.0, 0.0))
    assert np.array_equal(got[0], exp[0])
    assert np.array_equal(got[1], exp[1])
    assert np.allclose(got[2], exp[2], rtol=1e-12, atol=1e-9)
    again = pickle.loads(pickle.dumps(idx))  # shipped to a worker
    assert np.array_equal(
        nearest_lines(px, py, again, ids, max_d, "EPSG:32650", False, (0.0, 0.0))[0], got[0]
    )


def test_tie_ranks_follow_the_ids_passed_not_a_cached_earlier_set() -> None:
    # two parallel lines 2 m either side of the points: every point is a tie, which goes to
    # the smaller id; the index caches the ids' ranks, and other ids must not reuse them
    lines = [shapely.LineString([(0, 2), (100, 2)]), shapely.LineString([(0, -2), (100, -2)])]
    tbl = pa.table({"id": ["a", "b"], "geometry": shapely.to_wkb(lines)})
    idx, ids = lines_index(tbl, "EPSG:32650", False, (0.0, 0.0))
    px, py = np.array([10.0, 50.0]), np.zeros(2)
    first = nearest_lines(px, py, idx, ids, 5.0, "EPSG:32650", False, (0.0, 0.0))
    assert list(first[1]) == ["a", "a"]
    renamed = np.array(["z", "c"], dtype=object)  # now the second line has the smaller id
    again = nearest_lines(px, py, idx, renamed, 5.0, "EPSG:32650", False, (0.0, 0.0))
    assert list(again[1]) == ["c", "c"]
    assert list(nearest_lines(px, py, idx, ids, 5.0, "EPSG:32650", False, (0.0, 0.0))[1]) == [
        "a",
        "a",
    ]


@st.composite
def region_sets(draw: st.DrawFn) -> list[shapely.Geometry]:
    out = []
    for _ in range(draw(st.integers(1, 8))):
        x, y = draw(coord), draw(coord)
        w, h = draw(st.floats(1, 200)), draw(st.floats(1, 200))
        g = shapely.box(x, y, x + w, y + h)
        if draw(st.booleans()):
            g = g.difference(shapely.box(x + w / 4, y + h / 4, x + w / 2, y + h / 2))  # a hole
        out.append(g)
    return out


@settings(max_examples=60, deadline=None)
@given(regions=region_sets(), pts=st.lists(st.tuples(coord, coord), min_size=1, max_size=80))
def test_few_region_containment_equals_the_tree_query(
    regions: list[shapely.Geometry], pts: list[tuple[float, float]]
) -> None:
    px = np.array([p[0] for p in pts])
    py = np.array([p[1] for p in pts])
    # points on region corners and edges: intersects includes the boundary
    c = shapely.get_coordinates(regions[0])
    px[: min(len(c), len(px))] = c[: len(px), 0]
    py[: min(len(c), len(py))] = c[: len(py), 1]
    tbl = pa.table({"id": list(range(len(regions))), "geometry": shapely.to_wkb(regions)})
    pi, rid = regions_containing(px, py, None, regions_index(tbl))
    tree = shapely.STRtree(shapely.from_wkb(tbl["geometry"].to_numpy(zero_copy_only=False)))
    ep, er = tree.query(shapely.points(px, py), predicate="intersects")
    o = np.lexsort((er, ep))
    assert np.array_equal(pi, ep[o])
    assert np.array_equal(rid, np.arange(len(regions))[er[o]])

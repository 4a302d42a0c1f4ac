"""The synthetic city's water: a river across the city and lakes and ponds, deterministic,
drawn from a stream of its own (the rest of the city is pinned in test_streams_pinned)."""

from __future__ import annotations

import numpy as np
import shapely

from cityos.synth import WATER_KINDS, SyntheticCity, make_city


def test_a_river_crosses_the_city_and_lakes_and_ponds_lie_apart(city: SyntheticCity) -> None:
    w = city.water
    assert str(w.crs) == "EPSG:4326"
    assert list(w["water_id"]) == list(range(len(w)))
    assert list(w["kind"]) == ["river", "lake", "lake", "pond", "pond", "pond"]
    assert set(w["kind"]) <= set(WATER_KINDS)
    assert w.geometry.is_valid.all() and (w.geometry.geom_type == "Polygon").all()
    river, rest = w.geometry.iloc[0], list(w.geometry.iloc[1:])
    x0, _, x1, _ = city.bounds
    # from the west edge to the east edge, as wide as it says (area / length of its axis)
    rb = river.bounds
    assert rb[0] <= x0 + 1e-3 and rb[2] >= x1 - 1e-3
    width = w["width_m"].iloc[0]
    assert 120 <= width <= 220
    span_m = (x1 - x0) * city.metres_per_degree()[0]
    assert 0.8 * width < w["area_m2"].iloc[0] / span_m < 1.6 * width
    for i, a in enumerate(rest):
        assert not a.intersects(river)
        assert all(not a.intersects(b) for b in rest[i + 1 :])
        # no lake or pond drowns a POI
        assert not shapely.intersects_xy(a, city.pois.geometry.x, city.pois.geometry.y).any()
    # roads cross the river on bridges
    assert shapely.intersects(city.edges.geometry.values, river).any()


def test_water_is_deterministic_and_differs_by_seed() -> None:
    a, b, c = (
        make_city(seed=2, size_km=4.0),
        make_city(seed=2, size_km=4.0),
        make_city(seed=5, size_km=4.0),
    )
    assert a.water.geometry.equals(b.water.geometry)
    assert not np.allclose(a.water["area_m2"], c.water["area_m2"])

from __future__ import annotations

import itertools

import numpy as np
import pandas as pd
import pytest
import shapely
from hypothesis import given, settings
from hypothesis import strategies as st

from cityos.geo import haversine
from cityos.synth import (
    SynthError,
    SyntheticCity,
    iter_vehicle_points,
    make_city,
    simulate_vehicles,
)

NOISE_M = 5.0  # the noise_m the session fleet in conftest.py is simulated with

COLUMNS = [
    "id", "kind", "t", "x", "y", "speed_kmh", "heading",
    "true_edge", "true_x", "true_y", "trip_id",
]  # fmt: skip


def test_columns_and_dtypes(fleet: pd.DataFrame) -> None:
    assert list(fleet.columns) == COLUMNS
    assert str(fleet["t"].dtype) == "datetime64[ms, UTC]"
    for c in ("x", "y", "true_x", "true_y", "speed_kmh", "heading"):
        assert fleet[c].dtype == np.float64
    assert fleet["true_edge"].dtype == np.int64 and fleet["trip_id"].dtype == np.int64
    assert fleet["id"].str.fullmatch(r"(taxi|bus|truck|hazmat|car)-\d{5}").all()
    assert (fleet["id"].str.split("-").str[0] == fleet["kind"].astype(str)).all()
    assert set(fleet["kind"].astype(str)) == {"taxi", "bus", "truck", "hazmat", "car"}


def test_gps_stays_near_truth_and_truth_lies_on_true_edge(
    city: SyntheticCity, fleet: pd.DataFrame
) -> None:
    err = haversine(fleet["x"], fleet["y"], fleet["true_x"], fleet["true_y"])
    assert err.max() <= 4 * NOISE_M
    assert 0.8 * NOISE_M < err.mean() < 1.6 * NOISE_M  # Rayleigh mean is 1.25 sigma
    geoms = city.edges.geometry.values[fleet["true_edge"].to_numpy()]
    pts = shapely.points(fleet["true_x"].to_numpy(), fleet["true_y"].to_numpy())
    assert shapely.distance(geoms, pts).max() < 1e-9


def test_feed_is_time_ordered_and_each_vehicle_strictly_increasing(fleet: pd.DataFrame) -> None:
    assert fleet["t"].is_monotonic_increasing
    dt = fleet.groupby("id", observed=True)["t"].diff().dropna()
    assert (dt > pd.Timedelta(0)).all()
    assert (dt % pd.Timedelta(seconds=10) == pd.Timedelta(0)).all()  # on each vehicle's grid


def test_vehicles_move_no_faster_than_their_speed(city: SyntheticCity, fleet: pd.DataFrame) -> None:
    limit = city.edges["speed_limit_kmh"].to_numpy()[fleet["true_edge"].to_numpy()]
    assert (fleet["speed_kmh"] <= limit * 1.1 * 1.05 + 1e-9).all()
    f = fleet.sort_values(["id", "t"], kind="stable")
    same = f["id"].eq(f["id"].shift())
    step = haversine(f["true_x"].shift(), f["true_y"].shift(), f["true_x"], f["true_y"])[same]
    secs = f["t"].diff().dt.total_seconds()[same]
    fastest_ms = 80.0 * 1.1 * 1.05 / 3.6  # arterial limit, x1.1 random, x1.05 at night
    assert (step[secs == 10] <= fastest_ms * 10 + 1.0).all()


def test_taxis_make_stays_with_only_noise_moving(fleet: pd.DataFrame) -> None:
    taxis = fleet[fleet["kind"] == "taxi"]
    for vid, v in taxis.groupby("id", observed=True):
        stay = v[(v["trip_id"] == -1) & (v["speed_kmh"] == 0)]
        assert len(stay) > 0, vid
        # Consecutive stay fixes share one true position; runs of >= 3 minutes exist.
        run = (stay["true_x"].diff().ne(0) | stay["true_y"].diff().ne(0)).cumsum()
        spans = stay.groupby(run)["t"].agg(lambda s: s.max() - s.min())
        assert spans.max() >= pd.Timedelta(minutes=3), vid
        longest = stay.groupby(run).get_group(spans.idxmax())
        spread = haversine(longest["x"], longest["y"], longest["x"].mean(), longest["y"].mean())
        assert spread.max() < 4 * NOISE_M


def test_parking_leaves_gaps(fleet: pd.DataFrame) -> None:
    gaps = fleet.groupby("id", observed=True)["t"].diff()
    long = fleet.loc[gaps > pd.Timedelta(minutes=20), "id"]
    # Every taxi pauses for lunch or the night; every vehicle is parked overnight.
    taxis = set(fleet.loc[fleet["kind"] == "taxi", "id"])
    assert taxis <= set(long)
    assert (gaps.max() > pd.Timedelta(hours=4)) and len(set(long)) == fleet["id"].nunique()


def test_buses_stay_on_their_line(city: SyntheticCity, fleet: pd.DataFrame) -> None:
    buses = fleet[fleet["kind"] == "bus"]
    assert len(buses) > 0
    lines = [set(e) for e in city.bus_lines["edge_ids"]]
    for _, v in buses.groupby("id", observed=True):
        used = set(v["true_edge"])
        assert any(used <= line for line in lines)
        assert (v["speed_kmh"] == 0).any()  # dwells at stops


def test_hazmat_trucks_visit_chemical_plants(city: SyntheticCity, fleet: pd.DataFrame) -> None:
    plants = city.pois[city.pois["category"] == "chemical_plant"]["node_id"].to_numpy()
    px, py = city.node_x[plants], city.node_y[plants]
    hz = fleet[(fleet["kind"] == "hazmat") & (fleet["speed_kmh"] == 0)]
    assert len(hz) > 0
    d = haversine(hz["true_x"].to_numpy()[:, None], hz["true_y"].to_numpy()[:, None], px, py)
    assert (d.min(axis=1) < 1.0).any()


def test_trip_ids_belong_to_one_vehicle(fleet: pd.DataFrame) -> None:
    trips = fleet[fleet["trip_id"] >= 0]
    assert (trips.groupby("trip_id")["id"].nunique() == 1).all()
    assert trips["trip_id"].nunique() > fleet["id"].nunique()


def test_morning_peak_is_slower_than_midday(fleet: pd.DataFrame) -> None:
    moving = fleet[fleet["speed_kmh"] > 0]
    hour = moving["t"].dt.tz_convert("Asia/Shanghai").dt.hour
    cls_speed = moving.groupby(hour)["speed_kmh"].mean()
    assert cls_speed.loc[8] < 0.85 * cls_speed.loc[[11, 12, 13]].mean()


def test_same_seed_same_feed_other_seed_differs(city: SyntheticCity) -> None:
    a = simulate_vehicles(city, 6, days=1, interval_s=30, seed=4)
    b = simulate_vehicles(city, 6, days=1, interval_s=30, seed=4)
    c = simulate_vehicles(city, 6, days=1, interval_s=30, seed=5)
    pd.testing.assert_frame_equal(a, b)
    assert len(a) != len(c) or not np.allclose(a["x"], c["x"])


def test_stream_equals_simulation_in_chunks(city: SyntheticCity, fleet: pd.DataFrame) -> None:
    total = len(fleet) - 17
    chunks = list(
        iter_vehicle_points(
            city, total, chunk_points=9_000, seed=11, n_vehicles=24, interval_s=10,
            mix={"taxi": 0.4, "bus": 0.15, "truck": 0.2, "hazmat": 0.1, "car": 0.15},
        )
    )  # fmt: skip
    assert [len(c) for c in chunks[:-1]] == [9_000] * (len(chunks) - 1)
    assert sum(len(c) for c in chunks) == total
    for prev, nxt in itertools.pairwise(chunks):
        assert prev["t"].iloc[-1] <= nxt["t"].iloc[0]
    pd.testing.assert_frame_equal(
        pd.concat(chunks, ignore_index=True), fleet.iloc[:total].reset_index(drop=True)
    )


_TINY = make_city(seed=2, size_km=3.0)


@settings(max_examples=12, deadline=None)
@given(total=st.integers(0, 6_000), chunk=st.integers(1, 4_000), seed=st.integers(0, 3))
def test_stream_yields_exactly_the_requested_points(total: int, chunk: int, seed: int) -> None:
    chunks = list(iter_vehicle_points(_TINY, total, chunk_points=chunk, seed=seed, interval_s=30))
    assert sum(len(c) for c in chunks) == total
    assert all(len(c) == chunk for c in chunks[:-1])
    if chunks:
        t = pd.concat([c["t"] for c in chunks], ignore_index=True)
        assert t.is_monotonic_increasing


def test_bad_arguments_raise() -> None:
    with pytest.raises(SynthError, match="mix"):
        simulate_vehicles(_TINY, 3, mix={"spaceship": 1.0})
    with pytest.raises(SynthError, match="interval_s"):
        simulate_vehicles(_TINY, 3, interval_s=0)
    with pytest.raises(SynthError, match="chunk_points"):
        next(iter_vehicle_points(_TINY, 10, chunk_points=0))
    no_lines = make_city(seed=2, size_km=3.0, n_bus_lines=0)
    with pytest.raises(SynthError, match="bus lines"):
        simulate_vehicles(no_lines, 3, mix={"bus": 1.0})

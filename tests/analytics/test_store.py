"""Analytics on store datasets: the wrappers return what the in-memory functions return
on the same rows, and the demo tour runs end to end."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from cityos.analytics import (
    aggregate_dataset,
    map_match_dataset,
    similar_in_dataset,
    split_by_gap,
    split_dataset,
    stay_points,
    stay_points_dataset,
    top_k_similar,
)
from cityos.model import MovingPoints, RoadNetwork


@pytest.fixture(scope="module")
def city(tmp_path_factory: pytest.TempPathFactory) -> tuple[object, pd.DataFrame]:
    from cityos.store import open_city
    from cityos.synth import make_city, simulate_vehicles

    c = make_city(0)
    v = simulate_vehicles(c, 6, days=1, seed=2)[["id", "t", "x", "y", "true_edge"]]
    store = open_city(Path(tmp_path_factory.mktemp("city")))
    store.create_dataset("vehicles", MovingPoints.schema("true_edge"))
    store.append("vehicles", v)
    edges = c.edges.rename(columns={"edge_id": "id"}).assign(edge_id=c.edges["edge_id"])
    store.create_dataset("roads", RoadNetwork.schema("edge_id", "length_m"))
    store.append("roads", edges[["id", "from_node", "to_node", "geometry", "edge_id", "length_m"]])
    return store, v


def test_wrappers_equal_in_memory_results(city: tuple[object, pd.DataFrame]) -> None:
    store, v = city
    vid = v["id"].iloc[0]
    one = v[v["id"] == vid]
    got = stay_points_dataset(store, "vehicles", 100, "3min", ids=[vid])
    ref = stay_points(one, 100, "3min")
    assert got[["t", "t_end", "n_points"]].equals(ref[["t", "t_end", "n_points"]])
    assert len(split_dataset(store, "vehicles", "10min")) == len(split_by_gap(v, "10min")) == len(v)


def test_aggregate_in_engine_counts_every_point(city: tuple[object, pd.DataFrame]) -> None:
    store, v = city
    r = aggregate_dataset(store, "vehicles", 1000.0, "1h")
    assert int(pd.DataFrame(r)["n"].sum()) == len(v)
    flows = aggregate_dataset(store, "vehicles", 1000.0, "1h", flows=True)
    assert int(flows.to_pandas()["n"].sum()) == len(v)  # type: ignore[union-attr]


def test_map_match_dataset_reads_roads_from_the_store(city: tuple[object, pd.DataFrame]) -> None:
    store, v = city
    vid = v["id"].iloc[0]
    res = map_match_dataset(store, "vehicles", "roads", ids=[vid])
    got = res.points.merge(v[["id", "t", "true_edge"]], on=["id", "t"])
    assert len(got) == (v["id"] == vid).sum()
    assert (got["edge_id"] == got["true_edge_y"]).mean() >= 0.9


def test_similar_in_dataset_agrees_with_full_scan(city: tuple[object, pd.DataFrame]) -> None:
    store, v = city
    q = v[v["id"] == v["id"].iloc[0]][["x", "y"]].to_numpy()[:40]
    got = similar_in_dataset(store, "vehicles", q, 2, "hausdorff")
    ref = top_k_similar(q, v, 2, "hausdorff")
    assert got["id"].tolist() == ref["id"].tolist()
    assert np.allclose(got["distance"], ref["distance"])


def test_demo_tour_lines(city: tuple[object, pd.DataFrame]) -> None:
    store, _ = city
    from cityos.demo._analytics import analytics_tour

    lines = analytics_tour(store, "vehicles", "roads")
    assert lines[0].startswith("Analytics tour of vehicle")
    text = "\n".join(lines)
    for word in ("clean", "simplify", "stay points", "map matching", "aggregate"):
        assert word in text

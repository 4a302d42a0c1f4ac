"""Network series: readings per road segment as a panel whose nodes are the segments, with
the road-network adjacency of the store's road graph; road-segment speeds of a generated
fleet forecast by LightGBM (road neighbours as features) and Graph WaveNet (diffusion over
the road graph), trained, registered and served fresh from the store."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from tests.ai.builders import road_city

from cityos.ai import (
    FeatureSpec,
    FeatureSpecError,
    TabularSpec,
    build_panel,
    road_adjacency,
    tabular_features,
)
from cityos.ai._features import adjacency_neighbours, road_distances
from cityos.ai._lifecycle import predict_fresh, train
from cityos.ai._metrics import evaluate
from cityos.ai._registry import ModelRegistry
from cityos.store import Store

SPEC = FeatureSpec("road_speeds", "speed_kmh", kind="network", timezone="Asia/Shanghai")


def test_road_distances_follow_the_shortest_road() -> None:
    # a square 0-1-2-3-0 with one long side (3-0, 1000 m) and a spur 4-5 nowhere near it
    ef, et = np.array([0, 1, 2, 3, 4]), np.array([1, 2, 3, 0, 5])
    ln = np.array([100.0, 100.0, 100.0, 1000.0, 50.0])
    d = road_distances(ef, et, ln)
    assert d[0, 1] == 100.0  # touching: half of each
    assert d[0, 2] == 50.0 + 100.0 + 50.0  # through segment 1, not round the long side
    assert d[3, 1] == 500.0 + 100.0 + 50.0  # the long side's middle, via node 0 then 1
    assert np.isinf(d[4, :4]).all() and np.isinf(d[:4, 4]).all()  # not connected
    np.testing.assert_array_equal(d, d.T)
    a = road_adjacency(ef, et, ln, sigma=300.0)
    assert np.allclose(np.diag(a), 1.0) and (a[4, :4] == 0).all()
    assert a[0, 1] == pytest.approx(np.exp(-((100 / 300) ** 2)))
    assert a[0, 1] > a[0, 2] > a[3, 1]
    # a subset of segments keeps the distances of the whole network
    np.testing.assert_array_equal(
        road_distances(ef, et, ln, np.array([3, 1])), d[[3, 1]][:, [3, 1]]
    )
    assert adjacency_neighbours(a, 1)[:4, 0].tolist() == [1, 0, 1, 0]


def test_network_series_panel_and_speed_forecasts(city: Store) -> None:
    gen, speeds = road_city(city)
    p = build_panel(city, SPEC)
    t, n, c = p.shape
    assert c == 1 and sorted(int(v) for v in p.nodes) == sorted(speeds["id"].unique())
    assert set(p.datasets) == {"road_speeds", "roads"}
    # nodes sit at their segment's midpoint (straight generated roads)
    e = gen.edges.set_index("edge_id")  # type: ignore[attr-defined]
    seg = int(p.nodes[0])
    ax, ay = gen.node_x[e.loc[seg, "from_node"]], gen.node_y[e.loc[seg, "from_node"]]  # type: ignore[attr-defined]
    bx, by = gen.node_x[e.loc[seg, "to_node"]], gen.node_y[e.loc[seg, "to_node"]]  # type: ignore[attr-defined]
    assert p.x[0] == pytest.approx((ax + bx) / 2) and p.y[0] == pytest.approx((ay + by) / 2)
    # the panel's values are the readings of the store
    row = speeds.iloc[len(speeds) // 2]
    i, j = p.index_of(row["t"]), [str(v) for v in p.nodes].index(str(row["id"]))
    assert p.series[i, j] == pytest.approx(row["speed_kmh"])
    # the adjacency is the road graph's: two segments sharing a crossing are neighbours
    a = p.adjacency
    assert a is not None and a.shape == (n, n) and np.allclose(a, a.T)
    ids = [int(v) for v in p.nodes]
    d = road_distances(
        e["from_node"].to_numpy(), e["to_node"].to_numpy(), e["length_m"].to_numpy(), np.array(ids)
    )
    np.testing.assert_allclose(
        a > 0, np.exp(-((d / d[np.isfinite(d) & (d > 0)].std()) ** 2)) >= 0.1
    )
    # the k-nearest feature of a segment is the mean of its road-network neighbours
    tab = TabularSpec(
        lags=(0,),
        rolling=(),
        periods=0,
        trends=0,
        calendar=False,
        covariate_lags=(),
        k_nearest=3,
        node_feature=False,
    )
    o = np.array([t - 1])
    X, names = tabular_features(p, o, tab)
    nb = adjacency_neighbours(a, 3)
    with np.errstate(invalid="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN neighbourhoods are NaN
        want = np.nanmean(p.series[t - 1][nb], axis=1)
    np.testing.assert_allclose(X[:, names.index("speed_kmh_knn3")], want, equal_nan=True)

    # models: LightGBM over road-neighbour features, Graph WaveNet diffusing over the roads
    split = {"train_end": p.times[int(t * 0.6)], "val_end": p.times[int(t * 0.75)]}
    lgb = train(
        city, SPEC, "lightgbm", horizon=6, params={"n_estimators": 60}, name="speed", **split
    )
    ha = train(city, SPEC, "historical_average", horizon=6, name="speed_ha", **split)
    test = (int(t * 0.75) + 1, t)
    mae_lgb = evaluate(lgb.model, p, test, (1, 6)).mae
    mae_ha = evaluate(ha.model, p, test, (1, 6)).mae
    assert mae_lgb[1] < mae_ha[1] and mae_lgb[6] < mae_ha[6]
    gwn = train(
        city,
        SPEC,
        "graph_wavenet",
        horizon=6,
        name="speed_gwn",
        params={"epochs": 1, "hidden": 8, "dilations": (1, 2), "max_batches_per_epoch": 5},
        **split,
    )
    np.testing.assert_allclose(gwn.model.adj, a.astype("float32"))  # type: ignore[attr-defined]
    # served fresh from the store: the registered model carries the graph it was fitted on
    reg = ModelRegistry.of(city)
    reg.deploy("speed_gwn")
    loaded, _v = reg.load("speed_gwn")
    np.testing.assert_allclose(loaded.adj, a.astype("float32"))  # type: ignore[attr-defined]
    for name in ("speed", "speed_gwn"):
        reg.deploy(name)
        df = predict_fresh(city, name)
        assert len(df) == 6 * n and np.isfinite(df["yhat"]).all()


def test_network_spec_errors(city: Store) -> None:
    from cityos.model import DatasetSchema, Field, ModelKind

    road_city(city, vehicles=5, days=1)
    city.create_dataset(
        "loose",
        DatasetSchema(ModelKind.NETWORK_SERIES, id_type="int64", fields=(Field("v", "float64"),)),
    )
    import pandas as pd

    city.append(
        "loose",
        pd.DataFrame({"id": [10_000], "t": [pd.Timestamp("2026-03-02", tz="UTC")], "v": [1.0]}),
    )
    with pytest.raises(FeatureSpecError, match="names no road network"):
        build_panel(city, FeatureSpec("loose", "v", kind="network"))
    with pytest.raises(FeatureSpecError, match="road network 'nope'"):
        build_panel(city, FeatureSpec("loose", "v", kind="network", network="nope"))
    with pytest.raises(FeatureSpecError, match="does not have"):
        build_panel(city, FeatureSpec("loose", "v", kind="network", network="roads"))

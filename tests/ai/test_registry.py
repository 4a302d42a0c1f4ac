"""Registry and lifecycle: train registers params, metrics per horizon, dataset and code
versions and the artefact; stage / deploy / rollback; fresh and input-based prediction;
batch scoring into a predictions dataset; bad input changes nothing. SQLite and PostgreSQL."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from tests.ai.builders import air_city

from cityos.ai import FeatureSpec, HorizonError, RegistryError, ShapeError, VersionNotFound
from cityos.ai._lifecycle import predict_fresh, predict_inputs, score_to_dataset, train
from cityos.ai._registry import ModelRegistry
from cityos.store import Store

SPEC = FeatureSpec(
    "air", "pm25", covariates=("temperature",), timezone="Asia/Shanghai", country="CN"
)
LGB = {"n_estimators": 20, "num_leaves": 15, "min_child_samples": 10}


def test_train_register_deploy_rollback(any_city: Store) -> None:
    p = air_city(any_city, 300)
    r1 = train(
        any_city,
        SPEC,
        "historical_average",
        horizon=6,
        train_end=p.times[200],
        val_end=p.times[250],
        name="pm",
    )
    r2 = train(
        any_city,
        SPEC,
        "lightgbm",
        horizon=6,
        params=LGB,
        train_end=p.times[200],
        val_end=p.times[250],
        name="pm",
    )
    reg = ModelRegistry.of(any_city)
    v1, v2 = r1.version, r2.version
    assert v1 is not None and v2 is not None and (v1.version, v2.version) == (1, 2)
    assert v2.datasets == {"air": any_city.describe("air").version}
    assert v2.code_version.startswith("cityos ")
    assert set(v2.metrics["test"]["mae"]) == {"1", "6"} and v2.params["n_estimators"] == 20
    assert v2.metrics["test"]["mae"]["6"] < v2.metrics["test_persistence"]["mae"]["6"] * 1.5
    assert len(v2.reference["band"]) == 6
    reg.deploy("pm", 1)
    reg.deploy("pm", 2)
    assert reg.get("pm").version == 2 and reg.get("pm", 1).stage == "archived"
    assert reg.rollback("pm").version == 1 and reg.get("pm").version == 1
    assert [e["to"] for e in reg.stage_history("pm")][-2:] == ["archived", "production"]
    # a loaded version predicts exactly what the trained model did
    m, _ = reg.load("pm", 2)
    np.testing.assert_array_equal(
        m.predict(r2.panel, np.arange(250, 280)), r2.model.predict(r2.panel, np.arange(250, 280))
    )


def test_missing_versions_and_bad_input_change_nothing(city: Store) -> None:
    p = air_city(city, 200)
    reg = ModelRegistry.of(city)
    with pytest.raises(VersionNotFound, match="no registered model 'pm'"):
        reg.get("pm")
    train(city, SPEC, "persistence", horizon=6, train_end=p.times[150], name="pm")
    with pytest.raises(VersionNotFound, match="versions are \\[1\\]"):
        reg.deploy("pm", 7)
    with pytest.raises(RegistryError, match="stage"):
        reg.transition("pm", 1, "golden")
    with pytest.raises(RegistryError, match="no earlier"):
        reg.deploy("pm", 1) and reg.rollback("pm")
    assert [v.version for v in reg.versions("pm")] == [1]
    with pytest.raises(RegistryError, match="invalid model name"):
        train(city, SPEC, "persistence", horizon=6, name="Bad Name!")
    assert reg.names() == ["pm"]


def test_fresh_inputs_and_batch_scoring(city: Store) -> None:
    p = air_city(city, 300)
    train(
        city,
        SPEC,
        "lightgbm",
        horizon=6,
        params=LGB,
        train_end=p.times[200],
        val_end=p.times[260],
        name="pm",
    )
    reg = ModelRegistry.of(city)
    reg.deploy("pm")
    fresh = predict_fresh(city, "pm")
    assert len(fresh) == 6 * 12 and fresh["issued_at"].iloc[0] == p.times[-1]
    assert (fresh["lower"] <= fresh["yhat"]).all() and (fresh["yhat"] <= fresh["upper"]).all()
    m, _ = reg.load("pm")
    # the same forecast from the model's real inputs (the recent window, nodes in order)
    L = m.lookback() + 1
    order = [list(map(str, p.nodes)).index(n) for n in m.meta["nodes"]]
    window = p.values[-L:][:, order]
    again = predict_inputs(reg, "pm", window.tolist(), p.times[-L])
    np.testing.assert_allclose(again["yhat"].to_numpy(), fresh["yhat"].to_numpy())
    with pytest.raises(ShapeError, match="shape"):
        predict_inputs(reg, "pm", window[:, :3].tolist(), p.times[-L])
    with pytest.raises(HorizonError):
        predict_fresh(city, "pm", horizon=7)
    one = predict_fresh(city, "pm", ids=["s3"], at=p.times[250])
    assert set(one["id"]) == {"s3"} and one["issued_at"].iloc[0] == p.times[250]
    n = score_to_dataset(city, "pm", "pm25_forecast", p.times[270], p.times[276])
    assert n == 6 * 6 * 12
    got = city.read("pm25_forecast").to_pandas()
    assert set(got.columns) >= {
        "id",
        "t",
        "horizon",
        "yhat",
        "issued_at",
        "model",
        "model_version",
        "lower",
        "upper",
    }
    assert (
        score_to_dataset(city, "pm", "pm25_forecast", p.times[270], p.times[276]) == 0
    )  # idempotent
    assert pd.api.types.is_integer_dtype(got["horizon"])


def test_fresh_window_cache_follows_the_data(city: Store) -> None:
    """A cached recent window is reused only while the dataset is unchanged: a reading
    that arrives late inside the window (a new dataset version) shows in the next forecast."""
    from tests.ai.builders import make_panel, panel_rows

    from cityos.model import DatasetSchema, Field, ModelKind

    p = make_panel(300)
    rows = panel_rows(p)
    late = (rows["t"] == p.times[250]) & (rows["id"] == "s0")
    city.create_dataset(
        "air",
        DatasetSchema(
            ModelKind.POINT_SERIES,
            fields=(Field("pm25", "float64"), Field("temperature", "float64")),
            time_partition="30D",
        ),
    )
    city.append("air", rows[~late])
    train(city, SPEC, "lightgbm", horizon=6, params=LGB, name="pm")
    ModelRegistry.of(city).deploy("pm")
    at = p.times[250]
    first = predict_fresh(city, "pm", at=at, ids=["s0"])
    np.testing.assert_array_equal(
        predict_fresh(city, "pm", at=at, ids=["s0"])["yhat"], first["yhat"]
    )
    city.append("air", rows[late].assign(pm25=500.0))
    after = predict_fresh(city, "pm", at=at, ids=["s0"])
    assert not np.allclose(after["yhat"].to_numpy(), first["yhat"].to_numpy())


def test_external_versions_keep_their_files_lineage_and_lifecycle(any_city: Store) -> None:
    """A model that is not a zoo model (a party's part of a federated model) is registered
    as its files, checked by SHA-256, with its lineage; stages apply; it is not loaded as a
    zoo model; a wrong family or a tampered artefact is refused."""
    reg = ModelRegistry.of(any_city)
    with pytest.raises(RegistryError, match="not external"):
        reg.register_files("joint", {"part": b"x"}, family="lightgbm")
    assert reg.names() == []
    lineage = {"federation": "beijing", "project": "p-1", "job": "j-1"}
    v = reg.register_files(
        "joint",
        {"env.part": b"\x00\x01", "federated.json": b"{}"},
        family="federated-secureboost",
        datasets={"air_daily": 3},
        lineage=lineage,
        actor="user:zhang",
    )
    assert (v.version, v.stage, v.external, v.lineage, v.datasets) == (
        1,
        "none",
        True,
        lineage,
        {"air_daily": 3},
    )
    assert reg.get("joint", 1).to_dict()["lineage"] == lineage
    assert (reg.artefact("joint", 1) / "env.part").read_bytes() == b"\x00\x01"
    assert reg.deploy("joint").stage == "production"
    assert reg.transition("joint", 1, "archived").stage == "archived"
    with pytest.raises(RegistryError, match="gateway"):
        reg.load("joint", 1)
    (reg.artefact("joint", 1) / "env.part").write_bytes(b"changed")
    with pytest.raises(RegistryError, match="SHA-256"):
        reg.artefact("joint", 1)
    assert reg.register_files("joint", {"p": b"y"}, family="federated-vlr").version == 2

"""Horizontal training through Flower: districts with their own sensors, one schema."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

pytest.importorskip("flwr")

from cityos.federation import horizontal as hfl
from cityos.testing.federation import LocalFederation

COLUMNS = ["temp", "humidity", "wind", "traffic"]
SCHEMA = hfl.schema_of(COLUMNS, ["float64"] * 4)
TRUE_W = np.array([1.5, -2.0, 0.5, 3.0])


def _district(n: int, seed: int, shift: float) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    X = rng.normal(loc=shift, size=(n, 4))
    return X, X @ TRUE_W + 1.0 + rng.normal(scale=1.0, size=n)


DISTRICTS = {
    "dongcheng": _district(12, 1, -1.0),
    "haidian": _district(10, 2, 0.0),
    "chaoyang": _district(14, 3, 1.0),
}


def _federate(
    strategy: str, data: dict[str, Any], schemas: dict[str, Any] | None = None, **kw: Any
) -> hfl.HorizontalResult:
    parties = ["city", *data]
    fed = LocalFederation(parties)
    roles: dict[str, Any] = {
        "city": lambda ch: hfl.run_server(
            ch, list(data), [np.zeros(4), np.zeros(1)], strategy=strategy, rounds=15, epochs=5, **kw
        )
    }
    for name, (X, y) in data.items():
        schema = (schemas or {}).get(name, SCHEMA)
        roles[name] = _client_role(hfl.LinearClient(X, y, lr=0.1), schema)
    out = fed.run(roles)
    res: hfl.HorizontalResult = out["city"]
    for name in data:  # every district received the final global model
        assert all(
            np.array_equal(a, b)
            for a, b in zip(out[name]["parameters"], res.parameters, strict=True)
        )
    return res


def _client_role(client: Any, schema: list[list[str]]) -> Any:
    return lambda ch: hfl.run_client(ch, "city", client, schema)


def _test_mse(params: list[np.ndarray]) -> float:
    X, y = _district(2000, 99, 0.0)
    return float(np.mean((hfl.predict_linear(params, X) - y) ** 2))


@pytest.mark.parametrize("strategy", ["fedavg", "fedmedian", "fedtrimmedavg", "krum"])
def test_federated_is_close_to_pooled_and_beats_local_only(strategy: str) -> None:
    res = _federate(strategy, DISTRICTS)
    assert res.schema == SCHEMA
    assert len(res.losses) == 15
    pooled = hfl.train_linear(
        np.vstack([d[0] for d in DISTRICTS.values()]),
        np.concatenate([d[1] for d in DISTRICTS.values()]),
        15,
        5,
    )
    local = [hfl.train_linear(X, y, 15, 5) for X, y in DISTRICTS.values()]
    fed_mse, pooled_mse = _test_mse(res.parameters), _test_mse(pooled)
    local_mse = [_test_mse(p) for p in local]
    assert fed_mse < 1.5 * pooled_mse
    assert fed_mse < np.mean(local_mse)
    if strategy == "fedavg":
        # FedAvg of one local step per round is gradient descent on the pooled data
        assert fed_mse == pytest.approx(pooled_mse, rel=0.2)


def test_a_robust_strategy_resists_a_poisoned_district() -> None:
    X, y = _district(12, 7, 0.0)
    poisoned = {**DISTRICTS, "rogue": (X, -50 * y)}
    avg = _test_mse(_federate("fedavg", poisoned).parameters)
    med = _test_mse(_federate("fedmedian", poisoned).parameters)
    krum = _test_mse(_federate("krum", poisoned, num_malicious=1).parameters)
    assert med < avg / 5 and krum < avg / 5


def test_mismatched_schemas_are_a_clear_error() -> None:
    bad = hfl.schema_of(["temp", "humidity", "wind", "pm25"], ["float64"] * 4)
    with pytest.raises(
        hfl.SchemaMismatch,
        match=r"'haidian'.*only at dongcheng.*traffic.*only at haidian.*pm25|haidian.*pm25",
    ):
        _federate("fedavg", DISTRICTS, schemas={"haidian": bad})

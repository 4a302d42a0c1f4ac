"""Vertical logistic regression against pooled logistic regression."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression

from cityos.federation import vlr
from cityos.testing.federation import LocalFederation


def _data(n: int = 120) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(3)
    xg = rng.normal(size=(n, 2)) * [1.0, 5.0] + [0.0, 10.0]
    xh = rng.normal(size=(n, 3))
    z = 1.5 * xg[:, 0] - 0.2 * xg[:, 1] + 2.0 * xh[:, 0] - xh[:, 2] + 1.0
    y = (rng.random(n) < 1 / (1 + np.exp(-z))).astype(float)
    return xg, xh, y


def test_federated_equals_pooled_and_matches_logistic_regression() -> None:
    xg, xh, y = _data()
    p = vlr.VLRParams(iterations=12, learning_rate=1.0, key_bits=1024)
    wire: list[bytes] = []
    fed = LocalFederation(["env", "weather"], on_message=lambda f, t, tag, raw: wire.append(raw))
    m = fed.run(
        {
            "env": lambda ch: vlr.train_guest(ch, xg, y, p),
            "weather": lambda ch: vlr.train_host(ch, xh, "env"),
        }
    )
    ref = vlr.train_pooled(np.hstack([xg, xh]), y, p)
    fed_w = np.concatenate([m["env"].weights, m["weather"].weights])
    np.testing.assert_allclose(fed_w, ref.weights, atol=1e-4)
    assert m["env"].intercept == pytest.approx(ref.intercept, abs=1e-4)
    fed2 = LocalFederation(["env", "weather"])
    prob = fed2.run(
        {
            "env": lambda ch: vlr.predict_guest(ch, m["env"], xg),
            "weather": lambda ch: vlr.predict_host(ch, m["weather"], xh),
        }
    )["env"]
    np.testing.assert_allclose(prob, vlr.predict_pooled(ref, np.hstack([xg, xh])), atol=1e-4)
    # against exact-loss pooled logistic regression (sklearn, no penalty worth speaking of)
    sk = LogisticRegression(C=1e6, max_iter=1000).fit(np.hstack([xg, xh]), y)
    agree = np.mean((prob > 0.5) == (sk.predict_proba(np.hstack([xg, xh]))[:, 1] > 0.5))
    assert agree > 0.95
    assert np.mean((prob > 0.5) == y) > 0.75
    # nothing in the clear: no label vector, no feature value
    blob = b"".join(wire)
    assert y.astype(np.float64).tobytes()[:64] not in blob
    for v in np.concatenate([xg[:20].ravel(), xh[:20].ravel()]):
        assert np.float64(v).tobytes() not in blob


def test_more_than_one_host_is_a_clear_error() -> None:
    xg, _, y = _data(20)
    fed = LocalFederation(["env", "weather", "traffic"])
    with pytest.raises(vlr.VLRError, match="one host"):
        vlr.train_guest(fed.channel("env"), xg, y)

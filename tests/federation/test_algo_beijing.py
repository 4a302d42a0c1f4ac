"""The city story at the algorithm level: the environment bureau (pollutants and the label)
and the weather bureau (meteorology) forecast tomorrow's PM2.5 with SecureBoost over a
LocalFederation; the federated model equals pooled training and beats the bureau alone."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from cityos.demo._share import ENV_FIELDS, LABEL, WEATHER_FIELDS, beijing_bureaus
from cityos.federation import psi
from cityos.federation import secureboost as sb
from cityos.federation._channel import Channel
from cityos.testing.federation import LocalFederation

DATA = Path("/work/shared/data")


@pytest.mark.slow
def test_beijing_federated_equals_pooled_and_beats_the_bureau_alone() -> None:
    env, weather, truth, source = beijing_bureaus(DATA if DATA.is_dir() else None)
    weather = weather.sample(frac=1.0, random_state=0)  # each bureau has its own row order
    p = sb.BoostParams(n_trees=12, max_depth=3, min_child_samples=20, key_bits=1024, workers=1)

    def guest(ch: Channel) -> np.ndarray:
        ids = psi.run_guest(ch, env["id"], "weather")
        e = env.set_index("id").loc[ids]
        train = e[LABEL].notna().to_numpy()
        ch.send("weather", "story/train_rows", {"mask": train})  # which aligned rows train
        m = sb.train_guest(
            ch, e.loc[train, list(ENV_FIELDS)].to_numpy(), e.loc[train, LABEL].to_numpy(), p
        )
        return sb.predict_guest(ch, m, e.loc[~train, list(ENV_FIELDS)].to_numpy())

    def host(ch: Channel) -> list[str]:
        ids = psi.run_host(ch, weather["id"], "env")
        w = weather.set_index("id").loc[ids]
        train = ch.recv("env", "story/train_rows")["mask"]
        m = sb.train_host(ch, w.loc[train, list(WEATHER_FIELDS)].to_numpy(), "env")
        sb.predict_host(ch, m, w.loc[~train, list(WEATHER_FIELDS)].to_numpy())
        return ids

    out = LocalFederation(["env", "weather"]).run({"env": guest, "weather": host})
    e = env.set_index("id").loc[out["weather"]]
    w = weather.set_index("id").loc[out["weather"]]
    train = e[LABEL].notna().to_numpy()
    pooled_x = np.hstack([e[list(ENV_FIELDS)].to_numpy(), w[list(WEATHER_FIELDS)].to_numpy()])
    pooled = sb.train_pooled(pooled_x[train], e.loc[train, LABEL].to_numpy(), p)
    alone = sb.train_pooled(
        e.loc[train, list(ENV_FIELDS)].to_numpy(), e.loc[train, LABEL].to_numpy(), p
    )
    y = truth.loc[e.index[~train]].to_numpy()

    def rmse(v: np.ndarray) -> float:
        return float(np.sqrt(np.mean((v - y) ** 2)))

    fed_pred = out["env"]
    pooled_pred = sb.predict_pooled(pooled, pooled_x[~train])
    alone_pred = sb.predict_pooled(alone, e.loc[~train, list(ENV_FIELDS)].to_numpy())
    print(
        f"{source}: federated RMSE {rmse(fed_pred):.2f}, pooled {rmse(pooled_pred):.2f}, env bureau alone {rmse(alone_pred):.2f}"
    )
    assert np.array_equal(fed_pred, pooled_pred)
    assert rmse(fed_pred) < rmse(alone_pred)

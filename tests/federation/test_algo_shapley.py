"""Contribution accounting: exact Shapley up to four parties, leave-one-out beyond, audited."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from cityos.access import read_audit, verify_audit
from cityos.db import Database
from cityos.federation import secureboost as sb
from cityos.federation.shapley import ShapleyError, contributions, record_contributions


@pytest.fixture
def db(tmp_path: Path) -> Iterator[Database]:
    database = Database(f"sqlite:///{tmp_path / 'city.db'}")
    database.migrate()
    yield database
    database.dispose()


def test_shapley_axioms_on_a_known_game() -> None:
    # a glove game with a synergy: efficiency, symmetry and the null player hold exactly
    def v(s: frozenset[str]) -> float:
        return float(min(len(s & {"a", "b"}), len(s & {"c"})) * 6 + ("d" in s) * 0)

    c = contributions(["a", "b", "c", "d"], v)
    assert c.method == "shapley"
    assert sum(c.values.values()) == pytest.approx(v(frozenset("abcd")) - v(frozenset()))
    assert c.values["a"] == pytest.approx(c.values["b"])
    assert c.values["d"] == 0.0
    assert c.values["c"] == pytest.approx(4.0) and c.values["a"] == pytest.approx(1.0)
    assert len(c.coalitions) == 16


def test_leave_one_out_beyond_four_parties() -> None:
    weights = {p: i + 1.0 for i, p in enumerate("abcde")}
    calls: list[frozenset[str]] = []

    def v(s: frozenset[str]) -> float:
        calls.append(s)
        return sum(weights[p] for p in s if p in weights) + 10 * ("g" in s)

    c = contributions(list("abcde"), v, always=["g"])
    assert c.method == "leave_one_out"
    assert c.values == pytest.approx(weights)
    assert len(set(calls)) == 6 and all("g" in s for s in calls)


def test_contributions_of_real_parties_are_audited(db: Database) -> None:
    rng = np.random.default_rng(5)
    n = 400
    cols = {
        "env": rng.normal(size=(n, 2)),
        "weather": rng.normal(size=(n, 2)),
        "traffic": rng.normal(size=(n, 2)),
    }
    y = 3 * cols["env"][:, 0] + 2 * cols["weather"][:, 1] + rng.normal(scale=0.5, size=n)
    p = sb.BoostParams(n_trees=5, max_depth=2, min_child_samples=10)

    def score(coalition: frozenset[str]) -> float:
        # the pooled booster equals the federated one (test_algo_secureboost), so coalition
        # values are measured in plaintext on the parties' columns, guest's first
        X = np.hstack([cols[q] for q in ["env", "weather", "traffic"] if q in coalition])
        m = sb.train_pooled(X, y, p)
        return -float(np.sqrt(np.mean((sb.predict_pooled(m, X) - y) ** 2)))

    c = contributions(["weather", "traffic"], score, always=["env"])
    assert c.values["weather"] > 0.5 and abs(c.values["traffic"]) < 0.2 * c.values["weather"]
    entry = record_contributions(
        db, c, project="pm25", model="secureboost-v1", actor="env", metric="-rmse"
    )
    [got] = read_audit(db, action="federation.contribution")
    assert got.seq == entry.seq and got.detail["contributions"] == pytest.approx(c.values)
    assert got.detail["method"] == "shapley" and set(got.detail["coalitions"]) == {
        "env",
        "env+weather",
        "env+traffic",
        "env+traffic+weather",
    }
    assert verify_audit(db).ok


def test_bad_input() -> None:
    with pytest.raises(ShapleyError, match="distinct"):
        contributions(["a", "a"], lambda s: 0.0)
    with pytest.raises(ShapleyError, match="nan"):
        contributions(["a"], lambda s: float("nan"))

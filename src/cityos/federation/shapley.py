"""Contribution accounting: each party's share of a joint model's quality.

``value(coalition)`` is the quality (higher is better, e.g. ``-RMSE`` or AUC) of a model
trained by a coalition of parties; :func:`contributions` gives every party its exact Shapley
value for up to four parties (all ``2^n`` coalitions are trained) and its leave-one-out value
``v(N) − v(N∖{i})`` beyond. Parties that must be in every coalition (the guest holding the
label) are ``always``: the value of a coalition is then that of the coalition plus them, and
their own share is what they achieve alone over the empty ``baseline``.
:func:`record_contributions` writes the result to the city's hash-chained audit log, the
basis of profit sharing.

>>> v = {frozenset(): 0.0, frozenset("a"): 1.0, frozenset("b"): 2.0, frozenset("ab"): 4.0}
>>> c = contributions(["a", "b"], lambda s: v[frozenset(s)])
>>> c.method, c.values
('shapley', {'a': 1.5, 'b': 2.5})
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from cityos.errors import CityOSError

if TYPE_CHECKING:
    from cityos.db import Database

__all__ = ["Contributions", "ShapleyError", "contributions", "record_contributions"]

EXACT_UP_TO = 4


class ShapleyError(CityOSError, ValueError):
    """Contributions cannot be computed."""


@dataclass(frozen=True)
class Contributions:
    """Each party's contribution, the method used and every coalition value measured."""

    values: dict[str, float]
    method: str  # "shapley" | "leave_one_out"
    grand: float
    coalitions: dict[str, float] = field(default_factory=dict)

    def shares(self) -> dict[str, float]:
        """Contributions as fractions of their sum (negative ones count as zero)."""
        pos = {p: max(v, 0.0) for p, v in self.values.items()}
        total = sum(pos.values())
        return {p: (v / total if total > 0 else 1.0 / len(pos)) for p, v in pos.items()}


def _key(s: Iterable[str]) -> str:
    return "+".join(sorted(s)) or "∅"


def contributions(
    parties: Sequence[str],
    value: Callable[[frozenset[str]], float],
    *,
    always: Sequence[str] = (),
    exact_up_to: int = EXACT_UP_TO,
) -> Contributions:
    """Shapley values of ``parties`` (exact up to ``exact_up_to``), else leave-one-out.

    ``value`` is called once per coalition (including ``always``) and must be deterministic.
    """
    players = list(dict.fromkeys(parties))
    if len(players) != len(parties) or not players:
        raise ShapleyError(f"parties must be distinct and non-empty, got {list(parties)}")
    fixed = frozenset(always)
    if fixed & set(players):
        raise ShapleyError(
            f"{sorted(fixed & set(players))} cannot be both always-present and a player"
        )
    cache: dict[frozenset[str], float] = {}

    def v(s: frozenset[str]) -> float:
        if s not in cache:
            x = float(value(s | fixed))
            if not math.isfinite(x):
                raise ShapleyError(f"the value of coalition {_key(s | fixed)} is {x}")
            cache[s] = x
        return cache[s]

    n = len(players)
    out: dict[str, float] = {}
    if n <= exact_up_to:
        method = "shapley"
        for p in players:
            others = [q for q in players if q != p]
            total = 0.0
            for k in range(n):
                w = math.factorial(k) * math.factorial(n - k - 1) / math.factorial(n)
                for s in itertools.combinations(others, k):
                    fs = frozenset(s)
                    total += w * (v(fs | {p}) - v(fs))
            out[p] = total
    else:
        method = "leave_one_out"
        full = frozenset(players)
        for p in players:
            out[p] = v(full) - v(full - {p})
    grand = v(frozenset(players))
    return Contributions(out, method, grand, {_key(s | fixed): x for s, x in cache.items()})


def record_contributions(
    db: Database,
    result: Contributions,
    *,
    project: str,
    model: str,
    actor: str = "system",
    metric: str = "score",
) -> Any:
    """Write ``result`` to ``db``'s audit chain as one ``federation.contribution`` entry."""
    from cityos import access

    return access.record(
        db,
        actor=actor,
        action="federation.contribution",
        dataset=None,
        detail={
            "project": project,
            "model": model,
            "metric": metric,
            "method": result.method,
            "grand": result.grand,
            "contributions": result.values,
            "shares": result.shares(),
            "coalitions": result.coalitions,
        },
    )

"""Helpers of the gateway tests: two parties' homes with data, and a small test algorithm."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from cityos.federation._channel import Channel
from cityos.model import PlainTable
from cityos.store import Store


def make_party_data(home: Path, dataset: str, ids: Sequence[str], cols: Mapping[str, Any]) -> None:
    store = Store(home)
    try:
        store.create_dataset(dataset, PlainTable.schema(*cols))
        store.append(
            dataset, pd.DataFrame({"id": list(ids), **{k: list(v) for k, v in cols.items()}})
        )
    finally:
        store.close()


class SumAlgorithm:
    """A test algorithm over the gateway's plumbing (NOT private: hosts send row sums).

    Training: each host tells the guest how many aligned rows it has; the guest's part
    records the mean label. Prediction: hosts send their rows' feature sums, the guest adds
    its own: score = sum of every party's features of the row.
    """

    def train(
        self,
        ch: Channel,
        role: str,
        X: np.ndarray,
        y: np.ndarray | None,
        params: Mapping[str, Any],
        *,
        guest: str,
        hosts: Sequence[str],
        feature_names: Sequence[str],
    ) -> tuple[dict[str, Any], dict[str, Any]]:
        if role == "guest":
            assert y is not None
            n = {h: int(ch.recv(h, "n")["n"]) for h in hosts}
            assert set(n.values()) == {len(X)}
            return {"mean": float(y.mean()), "features": list(feature_names)}, {
                "mean": float(y.mean())
            }
        ch.send(guest, "n", {"n": len(X)})
        return {"features": list(feature_names)}, {}

    def predict(
        self,
        ch: Channel,
        role: str,
        X: np.ndarray,
        part: Mapping[str, Any],
        *,
        guest: str,
        hosts: Sequence[str],
    ) -> np.ndarray | None:
        if role == "guest":
            total = np.nansum(X, axis=1)
            for h in hosts:
                total = total + np.asarray(ch.recv(h, "partial")["sums"], dtype="float64")
            return total
        ch.send(guest, "partial", {"sums": np.nansum(X, axis=1)})
        return None


def make_user(
    home: Path,
    username: str = "op",
    roles: Sequence[str] = ("federation_operator",),
    *,
    read: Sequence[str] = ("*",),
    write: Sequence[str] = (),
) -> str:
    """A user of the city in ``home`` with ``roles`` and a role of its own granted read on
    ``read`` and write on ``write`` (dataset names, ``*`` for all); returns an API key."""
    from cityos.federation.gateway import make_operator

    store = Store(home)
    try:
        return make_operator(store.db, username, roles=roles, read=read, write=write)
    finally:
        store.close()


def op(gw: Any, username: str = "op") -> Any:
    """The principal of ``username`` in gateway ``gw``'s city (the Python API's caller)."""
    from cityos.access import principal_for

    return principal_for(gw.store.db, username)

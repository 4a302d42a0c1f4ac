"""What runs inside a gateway job: the party's bound rows, entity alignment, and the
algorithm's party role over the job's :class:`~cityos.federation._channel.Channel`.

Algorithms are adapters (:class:`Algorithm`) over the party roles of
:mod:`cityos.federation` (fed-algo's SecureBoost and vertical logistic regression; Flower
horizontal training, whose adapters say ``horizontal = True``), looked up by name in
:data:`ALGORITHMS`; a model part is a codec payload (a dict), stored by its party only.
"""

from __future__ import annotations

import hashlib
import importlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import pyarrow as pa

from cityos.federation._channel import Channel
from cityos.federation.gateway_errors import FederationError

__all__ = [
    "ALGORITHMS",
    "Algorithm",
    "PartyData",
    "align",
    "load_algorithm",
    "read_part",
    "write_part",
]

#: Algorithm name -> "module:attribute" of an :class:`Algorithm` (imported when used).
ALGORITHMS: dict[str, str] = {
    "secureboost": "cityos.federation._jobs:SecureBoostAlgorithm",
    "vlr": "cityos.federation._jobs:VerticalLRAlgorithm",
    "flower-linear": "cityos.federation._jobs:FlowerLinearAlgorithm",
}


class Algorithm(Protocol):
    """A vertical algorithm's party roles as the gateway calls them.

    ``X`` holds this party's feature rows in the aligned order; ``y`` the label (guest
    only). ``train`` returns this party's model part (a codec payload) and, at the guest,
    training metrics; ``predict`` returns the scores at the guest and ``None`` at a host.
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
    ) -> tuple[dict[str, Any], dict[str, Any]]: ...

    def predict(
        self,
        ch: Channel,
        role: str,
        X: np.ndarray,
        part: Mapping[str, Any],
        *,
        guest: str,
        hosts: Sequence[str],
    ) -> np.ndarray | None: ...


def load_algorithm(name: str, extra: Mapping[str, Any] | None = None) -> Algorithm:
    """The algorithm called ``name`` (``extra`` maps further names to instances)."""
    if extra and name in extra:
        found: Algorithm = extra[name]
        return found
    target = ALGORITHMS.get(name)
    if target is None:
        known = sorted({*ALGORITHMS, *(extra or {})})
        raise FederationError(f"unknown algorithm {name!r}; known: {', '.join(known)}")
    mod, _, attr = target.partition(":")
    algo: Algorithm = getattr(importlib.import_module(mod), attr)()
    return algo


# -- the party's rows ----------------------------------------------------------------------------
@dataclass
class PartyData:
    """A party's bound rows: ids, features (float64, NaN where missing) and the label."""

    ids: np.ndarray  # of str
    X: np.ndarray
    y: np.ndarray | None
    feature_names: tuple[str, ...]
    _pos: dict[str, int] | None = None

    @classmethod
    def from_table(
        cls, table: pa.Table, *, id_field: str, fields: Sequence[str], label: str | None
    ) -> PartyData:
        ids = np.asarray([str(v) for v in table.column(id_field).to_pylist()], dtype=object)
        cols = [
            np.asarray(table.column(f).to_numpy(zero_copy_only=False), dtype="float64")
            for f in fields
        ]
        X = np.column_stack(cols) if cols else np.empty((len(ids), 0))
        y = None
        if label is not None:
            y = np.asarray(table.column(label).to_numpy(zero_copy_only=False), dtype="float64")
        return cls(ids, X, y, tuple(fields))

    def labelled_ids(self) -> list[str]:
        """Ids that can train: all of them at a host, those with a label at the guest."""
        if self.y is None:
            return [str(v) for v in self.ids.tolist()]
        return [str(v) for v in self.ids[np.isfinite(self.y)].tolist()]

    def rows(self, ids: Sequence[str]) -> tuple[np.ndarray, np.ndarray | None]:
        """Features (and labels) of ``ids`` in that order; every id must be present."""
        if self._pos is None:
            self._pos = {v: i for i, v in enumerate(self.ids.tolist())}
        pos = self._pos
        missing = [i for i in ids if i not in pos]
        if missing:
            raise FederationError(
                f"{len(missing)} ids are not in the bound dataset (first: {missing[:3]})"
            )
        idx = np.fromiter((pos[i] for i in ids), dtype=np.int64, count=len(ids))
        return self.X[idx], (self.y[idx] if self.y is not None else None)


def align(
    ch: Channel, role: str, ids: Sequence[str], *, guest: str, hosts: Sequence[str]
) -> list[str]:
    """Entity alignment by private set intersection with every host (fed-algo's PSI); the
    guest then sends the ids common to all hosts (already known to each host, being in
    its intersection) so every party trains on the same rows in the same order."""
    from cityos.federation import psi

    if role == "guest":
        common: set[str] | None = None
        for h in hosts:
            got = set(psi.run_guest(ch, ids, h))
            common = got if common is None else common & got
        final = sorted(common or ())
        for h in hosts:
            ch.send(h, "align", {"ids": final})
        return final
    mine = set(psi.run_host(ch, ids, guest))
    final = [str(v) for v in ch.recv(guest, "align")["ids"]]
    if not set(final) <= mine:
        raise FederationError(f"the guest {guest!r} sent ids outside the intersection")
    return final


# -- model parts on disk -------------------------------------------------------------------------
def write_part(path: Path, part: Mapping[str, Any]) -> str:
    """Write a model part (codec-serialised) and return its SHA-256."""
    from cityos.federation import _codec

    raw = _codec.encode(part)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_bytes(raw)
    tmp.replace(path)
    return hashlib.sha256(raw).hexdigest()


def read_part(path: Path, sha256: str | None = None) -> dict[str, Any]:
    from cityos.federation import _codec

    raw = path.read_bytes()
    if sha256 is not None and hashlib.sha256(raw).hexdigest() != sha256:
        raise FederationError(f"model part {path} does not match its published SHA-256")
    out: dict[str, Any] = _codec.decode(raw)
    return out


# -- adapters over fed-algo's party roles ----------------------------------------------------------
def _edges_payload(binner: Any) -> dict[str, Any]:
    return {
        "max_bins": int(binner.max_bins),
        "edges": [np.asarray(e, dtype="float64") for e in binner.edges],
    }


def _binner(payload: Mapping[str, Any]) -> Any:
    Binner = importlib.import_module("cityos.federation._binning").Binner
    edges = tuple(np.asarray(e, dtype="float64") for e in payload["edges"])
    return Binner(edges, int(payload["max_bins"]))


def _trees_payload(trees: Sequence[Any]) -> list[dict[str, Any]]:
    out = []
    for t in trees:
        splits = []
        for k, (party, key) in sorted(t.splits.items()):
            splits.append(
                [
                    int(k),
                    str(party),
                    [int(v) for v in key] if isinstance(key, tuple | list) else int(key),
                ]
            )
        out.append(
            {"splits": splits, "leaves": [[int(k), float(v)] for k, v in sorted(t.leaves.items())]}
        )
    return out


def _trees(payload: Sequence[Mapping[str, Any]]) -> list[Any]:
    Tree = _sb().Tree
    out = []
    for t in payload:
        splits: dict[int, tuple[str, Any]] = {}
        for k, party, key in t["splits"]:
            splits[int(k)] = (
                str(party),
                tuple(int(v) for v in key) if isinstance(key, list | tuple) else int(key),
            )
        out.append(Tree(splits=splits, leaves={int(k): float(v) for k, v in t["leaves"]}))
    return out


def _sb() -> Any:
    return importlib.import_module("cityos.federation.secureboost")


class SecureBoostAlgorithm:
    """SecureBoost (fed-algo's :mod:`cityos.federation.secureboost`) as a gateway algorithm.

    ``params`` are :class:`~cityos.federation.secureboost.BoostParams` fields; a part is
    stored as plain numbers (bin edges, trees, the host's split records), never pickled.
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
        from dataclasses import asdict

        sb = _sb()
        p = sb.BoostParams(**dict(params))
        if role == "guest":
            assert y is not None
            g = sb.train_guest(ch, X, y, p, hosts=list(hosts))
            part = {
                "role": "guest",
                "params": asdict(g.params),
                "binner": _edges_payload(g.binner),
                "base": float(g.base),
                "trees": _trees_payload(g.trees),
                "hosts": list(g.hosts),
            }
            return part, {"trees": len(g.trees)}
        h = sb.train_host(ch, X, guest)
        part = {
            "role": "host",
            "binner": _edges_payload(h.binner),
            "guest": h.guest,
            "records": [[int(f), int(b), float(t)] for f, b, t in h.records],
        }
        return part, {}

    def train_local(
        self, X: np.ndarray, y: np.ndarray, params: Mapping[str, Any]
    ) -> Callable[[np.ndarray], np.ndarray]:
        """The same booster on this party's own columns only (contribution accounting)."""
        sb = _sb()
        model = sb.train_pooled(X, y, sb.BoostParams(**dict(params)))
        return lambda Z: np.asarray(sb.predict_pooled(model, Z), dtype="float64")

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
        sb = _sb()
        if role == "guest":
            g = sb.GuestModel(
                sb.BoostParams(**dict(part["params"])),
                _binner(part["binner"]),
                float(part["base"]),
                _trees(part["trees"]),
                tuple(part["hosts"]),
            )
            raw = np.asarray(sb.predict_guest(ch, g, X), dtype="float64")
            if g.params.objective == "logistic":
                return np.asarray(1.0 / (1.0 + np.exp(-raw)))
            return raw
        h = sb.HostModel(
            _binner(part["binner"]),
            [(int(f), int(b), float(t)) for f, b, t in part["records"]],
            str(part["guest"]),
        )
        sb.predict_host(ch, h, X)
        return None


def _vlr() -> Any:
    return importlib.import_module("cityos.federation.vlr")


def _scaler_payload(sc: Any) -> dict[str, Any]:
    return {
        "mean": np.asarray(sc.mean, dtype="float64"),
        "std": np.asarray(sc.std, dtype="float64"),
    }


class VerticalLRAlgorithm:
    """Vertical logistic regression (fed-algo's :mod:`cityos.federation.vlr`; one host,
    labels 0/1); ``params`` are :class:`~cityos.federation.vlr.VLRParams` fields."""

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
        v = _vlr()
        if len(hosts) != 1:
            raise FederationError(f"vertical logistic regression needs one host, not {list(hosts)}")
        if role == "guest":
            assert y is not None
            g = v.train_guest(ch, X, y, v.VLRParams(**dict(params)), host=hosts[0])
            part = {
                "role": "guest",
                "weights": np.asarray(g.weights, dtype="float64"),
                "intercept": float(g.intercept),
                "scaler": _scaler_payload(g.scaler),
                "host": g.host,
            }
            return part, {}
        h = v.train_host(ch, X, guest)
        return {
            "role": "host",
            "weights": np.asarray(h.weights, dtype="float64"),
            "scaler": _scaler_payload(h.scaler),
            "guest": h.guest,
        }, {}

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
        v = _vlr()
        sc = v._Scaler(np.asarray(part["scaler"]["mean"]), np.asarray(part["scaler"]["std"]))
        if role == "guest":
            g = v.VLRGuestModel(
                np.asarray(part["weights"]), float(part["intercept"]), sc, str(part["host"])
            )
            return np.asarray(v.predict_guest(ch, g, X), dtype="float64")
        v.predict_host(ch, v.VLRHostModel(np.asarray(part["weights"]), sc, str(part["guest"])), X)
        return None


# -- horizontal: Flower ------------------------------------------------------------------------
_FLOWER_PARAMS = {"strategy", "rounds", "epochs", "lr", "beta", "num_malicious"}


class FlowerLinearAlgorithm:
    """Horizontal linear regression through Flower (:mod:`cityos.federation.horizontal`):
    the guest runs Flower's server round loop with a Flower strategy (``strategy``:
    ``fedavg``, or a robust one: ``fedmedian``, ``fedtrimmedavg``, ``krum``) and takes part
    with its own rows; every host runs a Flower ``NumPyClient`` on its own rows. Only
    parameters and aggregate metrics cross. ``params``: ``strategy``, ``rounds`` (20),
    ``epochs`` (5 local gradient steps per round), ``lr`` (0.1), and the strategy's
    ``beta`` / ``num_malicious``. Every party's part is the global model.
    """

    horizontal = True

    @staticmethod
    def _params(params: Mapping[str, Any]) -> dict[str, Any]:
        unknown = sorted(set(params) - _FLOWER_PARAMS)
        if unknown:
            raise FederationError(
                f"unknown flower-linear parameters {unknown}; known: {sorted(_FLOWER_PARAMS)}"
            )
        return {"strategy": "fedavg", "rounds": 20, "epochs": 5, "lr": 0.1, **params}

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
        schema: list[list[str]],
    ) -> tuple[dict[str, Any], dict[str, Any]]:
        hfl = importlib.import_module("cityos.federation.horizontal")
        p = self._params(params)
        assert y is not None
        client = hfl.LinearClient(X, y, epochs=int(p["epochs"]), lr=float(p["lr"]))
        metrics: dict[str, Any] = {}
        if role == "guest":
            extra = {k: p[k] for k in ("beta", "num_malicious") if k in p}
            res = hfl.run_server(
                ch,
                list(hosts),
                [np.zeros(X.shape[1]), np.zeros(1)],
                strategy=str(p["strategy"]),
                rounds=int(p["rounds"]),
                epochs=int(p["epochs"]),
                local=(guest, client, schema),
                **extra,
            )
            final = res.parameters
            metrics = {
                "strategy": str(p["strategy"]),
                "rounds": int(p["rounds"]),
                "last_round_loss": float(res.losses[-1][1]) if res.losses else float("nan"),
            }
        else:
            final = hfl.run_client(ch, guest, client, schema)["parameters"]
            if not final:
                raise FederationError(f"the aggregator {guest!r} ended the rounds without a model")
        part = {
            "role": role,
            "model": "linear",
            "strategy": str(p["strategy"]),
            "weights": np.asarray(final[0], dtype="float64"),
            "bias": float(np.asarray(final[1], dtype="float64")[0]),
            "schema": [list(c) for c in schema],
        }
        return part, metrics

    def train_local(
        self, X: np.ndarray, y: np.ndarray, params: Mapping[str, Any]
    ) -> Callable[[np.ndarray], np.ndarray]:
        """The same model trained on this party's rows alone (the local-only baseline):
        as many local gradient steps as the federation ran."""
        hfl = importlib.import_module("cityos.federation.horizontal")
        p = self._params(params)
        w = hfl.train_linear(X, y, int(p["rounds"]), int(p["epochs"]), lr=float(p["lr"]))
        return lambda Z: np.asarray(hfl.predict_linear(w, Z), dtype="float64")

    def predict_local(self, X: np.ndarray, part: Mapping[str, Any]) -> np.ndarray:
        """Scores of this party's rows with the global model (no messages)."""
        w = np.asarray(part["weights"], dtype="float64")
        return np.asarray(np.asarray(X, dtype="float64") @ w + float(part["bias"]))

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
        """A horizontal model scores locally at every party."""
        return self.predict_local(X, part)

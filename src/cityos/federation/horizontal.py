"""Horizontal federated training through Flower, for parties that share a schema.

Districts each holding their own sensors train one model together: every party runs a
Flower ``NumPyClient`` and one party (the aggregator) runs Flower's own ``Server`` round loop
with a Flower strategy (``fedavg``, ``fedmedian``, ``fedtrimmedavg``, ``krum``). Flower's
transport is replaced by the federation's :class:`~cityos.federation._channel.Channel`: a
:class:`ChannelClientProxy` is Flower's ``ClientProxy`` whose calls travel as codec
messages, so the gateway's mutual-TLS channel carries Flower rounds unchanged. Only model
parameters and aggregate metrics cross; rows stay with their district.

Before the first round the aggregator asks every client for its schema (column names and
types, never values) and refuses a federation whose schemas differ, naming the party and
the columns (:class:`SchemaMismatch`).

Flower 1.42 is installed without its dependency pins (``pip install --no-deps flwr==1.42.0``
with ``grpcio``, ``pycryptodome`` and ``iterators``): its pins would downgrade FastAPI,
Typer, Rich and protobuf; the parts used here (strategies, server loop, NumPyClient) work
with the installed versions (``tests/federation/test_algo_horizontal.py``).
"""

from __future__ import annotations

import contextlib
import json
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from cityos.errors import CityOSError
from cityos.federation._channel import Channel

__all__ = [
    "STRATEGIES",
    "ChannelClientProxy",
    "HorizontalError",
    "LinearClient",
    "LocalClientProxy",
    "SchemaMismatch",
    "predict_linear",
    "run_client",
    "run_server",
    "schema_of",
    "train_linear",
]

F64 = npt.NDArray[np.float64]
STRATEGIES = ("fedavg", "fedmedian", "fedtrimmedavg", "krum")


class HorizontalError(CityOSError):
    """Horizontal training failed."""


class SchemaMismatch(HorizontalError, ValueError):
    """Parties of a horizontal federation do not share one schema."""


def schema_of(columns: Sequence[str], dtypes: Sequence[str]) -> list[list[str]]:
    """The schema a party publishes: ``[[name, type], ...]`` (no values)."""
    return [[str(c), str(t)] for c, t in zip(columns, dtypes, strict=True)]


def _check_schemas(schemas: Mapping[str, list[list[str]]]) -> list[list[str]]:
    parties = sorted(schemas)
    ref_party = parties[0]
    ref = schemas[ref_party]
    for p in parties[1:]:
        s = schemas[p]
        if s != ref:
            a, b = {tuple(x) for x in ref}, {tuple(x) for x in s}
            only_ref = sorted(f"{n}:{t}" for n, t in a - b)
            only_p = sorted(f"{n}:{t}" for n, t in b - a)
            detail = (
                f"columns only at {ref_party}: {only_ref}; only at {p}: {only_p}"
                if only_ref or only_p
                else "same columns in a different order"
            )
            raise SchemaMismatch(f"party {p!r} does not share {ref_party!r}'s schema: {detail}")
    return ref


def _flwr() -> Any:
    try:
        import flwr
    except ImportError as e:  # pragma: no cover - depends on the environment
        raise HorizontalError(
            "horizontal training needs Flower: pip install --no-deps flwr==1.42.0 grpcio pycryptodome iterators"
        ) from e
    import flwr.common
    import flwr.server
    import flwr.server.strategy

    return flwr


# ---------------------------------------------------------------- client side


class LinearClient:
    """A linear regression trained by local full-batch gradient descent (a Flower NumPyClient).

    Built lazily on Flower's ``NumPyClient`` so importing this module does not import Flower.
    """

    def __new__(cls, X: npt.ArrayLike, y: npt.ArrayLike, epochs: int = 20, lr: float = 0.1) -> Any:
        flwr = _flwr()

        class _Linear(flwr.client.NumPyClient):  # type: ignore[misc,name-defined]
            def __init__(self) -> None:
                self.X = np.asarray(X, dtype=np.float64)
                self.y = np.asarray(y, dtype=np.float64).ravel()
                self.w = np.zeros(self.X.shape[1])
                self.b = np.zeros(1)

            def get_parameters(self, config: dict[str, Any]) -> list[F64]:
                return [self.w, self.b]

            def fit(
                self, parameters: list[F64], config: dict[str, Any]
            ) -> tuple[list[F64], int, dict[str, Any]]:
                self.w, self.b = (
                    np.array(parameters[0], dtype=np.float64),
                    np.array(parameters[1], dtype=np.float64),
                )
                for _ in range(int(config.get("epochs", epochs))):
                    r = self.X @ self.w + self.b[0] - self.y
                    self.w = self.w - lr * (self.X.T @ r) / self.y.size
                    self.b = self.b - lr * np.array([r.mean()])
                return (
                    [self.w, self.b],
                    int(self.y.size),
                    {"mse": float(np.mean((self.X @ self.w + self.b[0] - self.y) ** 2))},
                )

            def evaluate(
                self, parameters: list[F64], config: dict[str, Any]
            ) -> tuple[float, int, dict[str, Any]]:
                w, b = parameters
                mse = float(np.mean((self.X @ w + b[0] - self.y) ** 2))
                return mse, int(self.y.size), {"mse": mse}

        return _Linear()


def run_client(ch: Channel, server: str, client: Any, schema: list[list[str]]) -> dict[str, Any]:
    """A district's role: answer the aggregator's Flower calls until it says done.

    Returns the final global parameters the aggregator sent.
    """
    while True:
        msg = ch.recv(server, "hfl/call")
        kind = msg["kind"]
        if kind == "properties":
            ch.send(
                server,
                "hfl/reply",
                {"schema": json.dumps(schema), "n": int(getattr(client, "y", np.empty(0)).size)},
            )
        elif kind == "get_parameters":
            ch.send(server, "hfl/reply", {"parameters": list(client.get_parameters({}))})
        elif kind == "fit":
            params, n, metrics = client.fit(list(msg["parameters"]), dict(msg["config"]))
            ch.send(
                server,
                "hfl/reply",
                {"parameters": [np.asarray(p) for p in params], "n": int(n), "metrics": metrics},
            )
        elif kind == "evaluate":
            loss, n, metrics = client.evaluate(list(msg["parameters"]), dict(msg["config"]))
            ch.send(server, "hfl/reply", {"loss": float(loss), "n": int(n), "metrics": metrics})
        elif kind == "done":
            return {"parameters": list(msg["parameters"])}
        else:
            raise HorizontalError(f"{server} sent an unknown call {kind!r}")


# ---------------------------------------------------------------- server side


def ChannelClientProxy(ch: Channel, party: str, lock: threading.Lock) -> Any:
    """Flower's ``ClientProxy`` for one party, over ``ch`` (calls to one party are serialised)."""
    flwr = _flwr()
    c = flwr.common

    class _Proxy(flwr.server.client_proxy.ClientProxy):  # type: ignore[misc,name-defined]
        def _call(self, payload: dict[str, Any]) -> dict[str, Any]:
            with lock:
                ch.send(party, "hfl/call", payload)
                return ch.recv(party, "hfl/reply")

        def get_properties(self, ins: Any, timeout: float | None, group_id: int | None) -> Any:
            r = self._call({"kind": "properties"})
            return c.GetPropertiesRes(
                status=c.Status(code=c.Code.OK, message=""),
                properties={"schema": r["schema"], "n": r["n"]},
            )

        def get_parameters(self, ins: Any, timeout: float | None, group_id: int | None) -> Any:
            r = self._call({"kind": "get_parameters"})
            return c.GetParametersRes(
                status=c.Status(code=c.Code.OK, message=""),
                parameters=c.ndarrays_to_parameters(r["parameters"]),
            )

        def fit(self, ins: Any, timeout: float | None, group_id: int | None) -> Any:
            r = self._call(
                {
                    "kind": "fit",
                    "parameters": c.parameters_to_ndarrays(ins.parameters),
                    "config": dict(ins.config),
                }
            )
            return c.FitRes(
                status=c.Status(code=c.Code.OK, message=""),
                parameters=c.ndarrays_to_parameters(r["parameters"]),
                num_examples=int(r["n"]),
                metrics=dict(r["metrics"]),
            )

        def evaluate(self, ins: Any, timeout: float | None, group_id: int | None) -> Any:
            r = self._call(
                {
                    "kind": "evaluate",
                    "parameters": c.parameters_to_ndarrays(ins.parameters),
                    "config": dict(ins.config),
                }
            )
            return c.EvaluateRes(
                status=c.Status(code=c.Code.OK, message=""),
                loss=float(r["loss"]),
                num_examples=int(r["n"]),
                metrics=dict(r["metrics"]),
            )

        def reconnect(self, ins: Any, timeout: float | None, group_id: int | None) -> Any:
            return c.DisconnectRes(reason="")

    return _Proxy(party)


def LocalClientProxy(party: str, client: Any, schema: list[list[str]]) -> Any:
    """Flower's ``ClientProxy`` for the aggregator's own client (a party that aggregates
    and also trains on its own rows): the calls are made in process, nothing is sent."""
    flwr = _flwr()
    c = flwr.common
    ok = c.Status(code=c.Code.OK, message="")

    class _Local(flwr.server.client_proxy.ClientProxy):  # type: ignore[misc,name-defined]
        def get_properties(self, ins: Any, timeout: float | None, group_id: int | None) -> Any:
            n = int(getattr(client, "y", np.empty(0)).size)
            return c.GetPropertiesRes(status=ok, properties={"schema": json.dumps(schema), "n": n})

        def get_parameters(self, ins: Any, timeout: float | None, group_id: int | None) -> Any:
            return c.GetParametersRes(
                status=ok, parameters=c.ndarrays_to_parameters(client.get_parameters({}))
            )

        def fit(self, ins: Any, timeout: float | None, group_id: int | None) -> Any:
            params, n, metrics = client.fit(
                c.parameters_to_ndarrays(ins.parameters), dict(ins.config)
            )
            return c.FitRes(
                status=ok,
                parameters=c.ndarrays_to_parameters([np.asarray(p) for p in params]),
                num_examples=int(n),
                metrics=dict(metrics),
            )

        def evaluate(self, ins: Any, timeout: float | None, group_id: int | None) -> Any:
            loss, n, metrics = client.evaluate(
                c.parameters_to_ndarrays(ins.parameters), dict(ins.config)
            )
            return c.EvaluateRes(
                status=ok, loss=float(loss), num_examples=int(n), metrics=dict(metrics)
            )

        def reconnect(self, ins: Any, timeout: float | None, group_id: int | None) -> Any:
            return c.DisconnectRes(reason="")

    return _Local(party)


def _fail_on_failures(strategy: Any) -> Any:
    """Make a strategy raise the first failure of a round (e.g. the :class:`PeerLost` of a
    party that dropped out) instead of skipping the round as Flower does: a horizontal job
    whose party is gone fails, naming it."""
    fit, evaluate = strategy.aggregate_fit, strategy.aggregate_evaluate

    def _raise(failures: Sequence[Any]) -> None:
        for f in failures:
            if isinstance(f, BaseException):
                raise f
            raise HorizontalError(f"party {f[0].cid!r} failed a round: {f[1].status.message}")

    def aggregate_fit(rnd: int, results: Any, failures: Any) -> Any:
        _raise(failures)
        return fit(rnd, results, failures)

    def aggregate_evaluate(rnd: int, results: Any, failures: Any) -> Any:
        _raise(failures)
        return evaluate(rnd, results, failures)

    strategy.aggregate_fit, strategy.aggregate_evaluate = aggregate_fit, aggregate_evaluate
    return strategy


def _strategy(name: str, n_clients: int, initial: list[F64], epochs: int, **kw: Any) -> Any:
    flwr = _flwr()
    s = flwr.server.strategy
    common: dict[str, Any] = {
        "min_fit_clients": n_clients,
        "min_available_clients": n_clients,
        "min_evaluate_clients": n_clients,
        "initial_parameters": flwr.common.ndarrays_to_parameters(initial),
        "on_fit_config_fn": lambda rnd: {"epochs": epochs, "round": rnd},
        "accept_failures": False,
    }
    if name == "fedavg":
        return s.FedAvg(**common)
    if name == "fedmedian":
        return s.FedMedian(**common)
    if name == "fedtrimmedavg":
        return s.FedTrimmedAvg(beta=float(kw.get("beta", 0.2)), **common)
    if name == "krum":
        return s.Krum(num_malicious_clients=int(kw.get("num_malicious", 1)), **common)
    raise HorizontalError(f"unknown strategy {name!r}; choose one of {STRATEGIES}")


@dataclass
class HorizontalResult:
    parameters: list[F64]
    schema: list[list[str]]
    losses: list[tuple[int, float]]


def run_server(
    ch: Channel,
    clients: Sequence[str],
    initial: list[F64],
    *,
    strategy: str = "fedavg",
    rounds: int = 10,
    epochs: int = 5,
    local: tuple[str, Any, list[list[str]]] | None = None,
    **strategy_args: Any,
) -> HorizontalResult:
    """The aggregator's role: check schemas, then run Flower's server loop for ``rounds``.

    ``local`` is ``(party, client, schema)`` of the aggregator's own client when it also
    trains on its own rows. A party that fails a round (e.g. drops out) fails the run."""
    flwr = _flwr()
    c = flwr.common
    locks = {p: threading.Lock() for p in clients}
    proxies = [ChannelClientProxy(ch, p, locks[p]) for p in clients]
    if local is not None:
        proxies.append(LocalClientProxy(*local))
    try:
        schemas = {
            p.cid: json.loads(
                p.get_properties(c.GetPropertiesIns(config={}), None, None).properties["schema"]
            )
            for p in proxies
        }
        schema = _check_schemas(schemas)
        manager = flwr.server.SimpleClientManager()
        for p in proxies:
            manager.register(p)
        server = flwr.server.Server(
            client_manager=manager,
            strategy=_fail_on_failures(
                _strategy(strategy, len(proxies), initial, epochs, **strategy_args)
            ),
        )
        history, _ = server.fit(num_rounds=rounds, timeout=None)
        final = c.parameters_to_ndarrays(server.parameters)
    except BaseException:
        for p in clients:
            # tell those still there; a party that is gone is the error raised
            with contextlib.suppress(Exception):
                ch.send(p, "hfl/call", {"kind": "done", "parameters": []})
        raise
    for p in clients:
        ch.send(p, "hfl/call", {"kind": "done", "parameters": final})
    return HorizontalResult(
        [np.asarray(a, dtype=np.float64) for a in final], schema, list(history.losses_distributed)
    )


def train_linear(
    X: npt.ArrayLike, y: npt.ArrayLike, rounds: int, epochs: int, lr: float = 0.1
) -> list[F64]:
    """The same linear model trained alone on ``X, y`` (pooled or local-only baselines)."""
    client = LinearClient(X, y, epochs=epochs, lr=lr)
    params = client.get_parameters({})
    for _ in range(rounds):
        params, _, _ = client.fit(params, {"epochs": epochs})
    return [np.asarray(p, dtype=np.float64) for p in params]


def predict_linear(params: Sequence[F64], X: npt.ArrayLike) -> F64:
    w, b = params
    return np.asarray(np.asarray(X, dtype=np.float64) @ w + b[0], dtype=np.float64)

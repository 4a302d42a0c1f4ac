"""The deep models of the zoo, in PyTorch (the only module of :mod:`cityos.ai` that imports
torch): :class:`TorchForecaster` owns normalisation, windowing, the masked-loss training
loop with early stopping, determinism, state and ONNX export; STID, Graph WaveNet and
ST-ResNet fill in their network and inputs."""

from __future__ import annotations

import io
import time
from abc import abstractmethod
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from cityos._compat import import_optional
from cityos.ai._features import calendar_features, distance_adjacency
from cityos.ai._panel import Panel
from cityos.ai._zoo import Forecaster

torch = import_optional("torch", "the deep models of cityos.ai (pip install torch==2.13.0)")
nn = torch.nn

__all__ = ["STID", "GraphWaveNet", "STResNet", "TorchForecaster", "fit_distributed"]


class TorchForecaster(Forecaster):
    """Base of the deep models: the training loop and everything but the network.

    Subclasses implement :meth:`_network` (an ``nn.Module`` mapping the arrays of
    :meth:`_inputs` to ``(B, H, N)`` normalised forecasts) and may override
    :meth:`_inputs` and :meth:`lookback`.
    """

    deep = True
    base_defaults: ClassVar[dict[str, Any]] = {
        "epochs": 20,
        "batch_size": 64,
        "lr": 2e-3,
        "weight_decay": 1e-4,
        "patience": 4,
        "max_batches_per_epoch": 400,
        "time_budget_s": 480.0,
        "threads": 1,
    }

    def __init__(self, horizon: int = 24, *, seed: int = 0, **params: Any) -> None:
        super().__init__(horizon, seed=seed, **params)
        self.net: Any = None
        self.runtime = "torch"
        self._ort: Any = None

    # -- hooks -------------------------------------------------------------------------------
    @abstractmethod
    def _network(self, panel: Panel) -> Any:
        """The ``nn.Module`` for this panel's shape."""

    def lookback(self) -> int:
        return int(self.params["window"])

    def _norm(self, panel: Panel) -> np.ndarray:
        mu, sd = self.mu, self.sd
        z: np.ndarray = (panel.values - mu) / sd
        return z

    def _inputs(self, panel: Panel, origins: np.ndarray) -> tuple[np.ndarray, ...]:
        """History window ``(B, L, N, C+1)`` (normalised channels and the target's
        known-mask, missing as 0) and the origin's slot of day, weekday and holiday flag."""
        L = self.lookback()
        z = self._zcache(panel)
        t, n, c = z.shape
        idx = origins[:, None] + np.arange(-L + 1, 1)[None, :]
        win = np.zeros((len(origins), L, n, c + 1), dtype="float32")
        ok = idx >= 0
        vals = z[np.clip(idx, 0, t - 1)]  # (B, L, N, C)
        vals[~ok] = np.nan
        mask = np.isfinite(vals[..., self.ti])
        win[..., :c] = np.nan_to_num(vals, nan=0.0)
        win[..., c] = mask
        cal = self._cal(panel)[origins]
        return (
            win,
            cal[:, 0].astype("int64"),
            cal[:, 1].astype("int64"),
            cal[:, 2:].astype("float32"),
        )

    def _cal(self, panel: Panel) -> np.ndarray:
        key = (id(panel.values), len(panel.times))
        if getattr(self, "_cal_key", None) != key:
            cal = calendar_features(panel.times, panel.timezone, panel.country)
            spd = self.steps_per_day
            slot = np.floor((cal[:, 0] * 3600 + panel.times.minute.to_numpy() * 60) / (86400 / spd))
            self._cal_arr = np.column_stack([slot % spd, cal[:, 1], cal[:, 3]])
            self._cal_key = key
        return np.asarray(self._cal_arr)

    def _zcache(self, panel: Panel) -> np.ndarray:
        key = (id(panel.values), panel.values.shape)
        if getattr(self, "_z_key", None) != key:
            self._z = self._norm(panel).astype("float32")
            self._z_key = key
        return np.asarray(self._z)

    # -- the loop ----------------------------------------------------------------------------
    def _fit(self, panel: Panel, train: np.ndarray, val: np.ndarray | None) -> None:
        torch.manual_seed(self.seed)
        torch.set_num_threads(int(self.params["threads"]))
        rank, world = _rank_world()
        rng = np.random.default_rng(self.seed)
        lo, hi = int(train[0]), int(train[-1]) + self.horizon + 1
        span = panel.values[lo:hi]
        with np.errstate(invalid="ignore"):
            mu = np.nanmean(span.reshape(-1, span.shape[2]), axis=0)
            sd = np.nanstd(span.reshape(-1, span.shape[2]), axis=0)
        self.mu = np.nan_to_num(mu, nan=0.0)
        self.sd = np.where(np.isfinite(sd) & (sd > 1e-9), sd, 1.0)
        self.ti = panel.target_index
        self.steps_per_day = max(round(86400 / panel.freq.total_seconds()), 1)
        self._prepare(panel)
        self.net = self._network(panel)
        from cityos.ai._metrics import targets

        ytr = (targets(panel, train, self.horizon) - self.mu[self.ti]) / self.sd[self.ti]
        # data-parallel: every rank draws the same global batches, takes its share of each,
        # and DistributedDataParallel sums the gradients (the loss is scaled so the sum is
        # exactly the gradient of the global batch's masked mean)
        fwd = self.net
        if world > 1:
            fwd = nn.parallel.DistributedDataParallel(self.net)
        opt = torch.optim.AdamW(
            self.net.parameters(),
            lr=float(self.params["lr"]),
            weight_decay=float(self.params["weight_decay"]),
        )
        bs = int(self.params["batch_size"])
        best, best_state, bad = np.inf, None, 0
        t0 = time.perf_counter()
        for epoch in range(int(self.params["epochs"])):
            self.net.train()
            order = rng.permutation(len(train))[: bs * int(self.params["max_batches_per_epoch"])]
            losses = []
            for i in range(0, len(order), bs):
                b = order[i : i + bs]
                if len(b) < world:
                    continue  # every rank needs a share (the same decision on every rank)
                mine = b[rank::world]
                xs = [torch.from_numpy(a) for a in self._inputs(panel, train[mine])]
                y = torch.from_numpy(ytr[mine].astype("float32"))
                m = torch.isfinite(y)
                total = float(np.isfinite(ytr[b]).sum())  # the global batch's known targets
                if total == 0:
                    continue
                out = fwd(*xs)
                loss = (out - torch.nan_to_num(y)).abs()[m].sum() * (world / total)
                opt.zero_grad()
                loss.backward()
                nn.utils.clip_grad_norm_(self.net.parameters(), 5.0)
                opt.step()
                losses.append(float(loss.detach()))
            train_loss = float(np.mean(losses)) if losses else np.inf
            if world > 1:
                train_loss = _all_mean(train_loss)
            score = train_loss
            if val is not None and len(val):
                score = self._val_loss(panel, val)
            self.history.append(
                {
                    "epoch": epoch,
                    "loss": train_loss,
                    "val": score,
                    "world_size": world,
                }
            )
            if score < best - 1e-5:
                best, bad = score, 0
                best_state = {k: v.detach().clone() for k, v in self.net.state_dict().items()}
            else:
                bad += 1
            stop = bad >= int(self.params["patience"]) or (
                time.perf_counter() - t0 > float(self.params["time_budget_s"])
            )
            if world > 1:
                stop = _rank0_says(stop)  # the ranks stop together
            if stop:
                break
        if best_state is not None:
            self.net.load_state_dict(best_state)
        self.net.eval()

    def _prepare(self, panel: Panel) -> None:
        """Hook: derive fixed structures (adjacency) from the training panel."""

    def _val_loss(self, panel: Panel, val: np.ndarray) -> float:
        from cityos.ai._metrics import targets

        v = val[:: max(len(val) // 1500, 1)]
        yhat = self._predict(panel, v)
        y = targets(panel, v, self.horizon)
        m = np.isfinite(y)
        return float(np.abs(yhat - y)[m].mean() / self.sd[self.ti]) if m.any() else np.inf

    def _predict(self, panel: Panel, origins: np.ndarray) -> np.ndarray:
        outs = []
        for i in range(0, len(origins), 512):
            xs = self._inputs(panel, origins[i : i + 512])
            if self.runtime == "onnx" and self._ort is not None:
                names = [x.name for x in self._ort.get_inputs()]
                out = self._ort.run(None, {n: xs[int(n[2:])] for n in names})[
                    0
                ]  # unused inputs are pruned
            else:
                self.net.eval()
                with torch.no_grad():
                    out = self.net(*[torch.from_numpy(a) for a in xs]).numpy()
            outs.append(out)
        z = np.concatenate(outs) if outs else np.zeros((0, self.horizon, panel.shape[1]))
        return np.asarray(z * self.sd[self.ti] + self.mu[self.ti], dtype="float64")

    # -- state -------------------------------------------------------------------------------
    def _state(self) -> dict[str, Any]:
        buf = io.BytesIO()
        torch.save(self.net.state_dict(), buf)
        return {
            "weights": buf.getvalue(),
            "mu": self.mu,
            "sd": self.sd,
            "ti": int(self.ti),
            "steps_per_day": int(self.steps_per_day),
            **self._extra_state(),
        }

    def _extra_state(self) -> dict[str, Any]:
        return {}

    def _set_state(self, state: dict[str, Any]) -> None:
        from cityos.ai._features import panel_from_meta

        assert self.meta is not None
        self.mu, self.sd = np.asarray(state["mu"]), np.asarray(state["sd"])
        self.ti, self.steps_per_day = int(state["ti"]), int(state["steps_per_day"])
        self._restore_extra(state)
        n, c = len(self.meta["nodes"]), len(self.meta["channels"])
        import pandas as pd

        shell = panel_from_meta(
            np.zeros((1, n, c)), pd.DatetimeIndex(["2000-01-01"], tz="UTC"), self.meta
        )
        self.net = self._network(shell)
        sd = torch.load(io.BytesIO(state["weights"]), weights_only=True)
        self.net.load_state_dict(sd)
        self.net.eval()

    def _restore_extra(self, state: dict[str, Any]) -> None:
        pass

    # -- ONNX --------------------------------------------------------------------------------
    def export_onnx(self, path: str | Path, panel: Panel) -> Path:
        """Export the network to ONNX (inputs as :meth:`_inputs` builds them; batch dynamic)."""
        p = Path(path)
        xs = tuple(torch.from_numpy(a) for a in self._inputs(panel, np.array([panel.shape[0] - 1])))
        names = [f"in{i}" for i in range(len(xs))]
        import warnings

        # the torch.export-based exporter needs onnxscript, which the project does not ship;
        # the TorchScript exporter handles these static networks
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            torch.onnx.export(
                self.net,
                xs,
                str(p),
                input_names=names,
                output_names=["yhat"],
                dynamic_axes={**{n: {0: "batch"} for n in names}, "yhat": {0: "batch"}},
                dynamo=False,
                opset_version=17,
            )
        return p

    def use_onnx(self, path: str | Path) -> None:
        """Serve predictions with onnxruntime from an exported file."""
        import onnxruntime as ort

        so = ort.SessionOptions()
        so.intra_op_num_threads = int(self.params["threads"])
        self._ort = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
        self.runtime = "onnx"


# -- data-parallel training --------------------------------------------------------------------
def _rank_world() -> tuple[int, int]:
    dist = torch.distributed
    if dist.is_available() and dist.is_initialized():
        return int(dist.get_rank()), int(dist.get_world_size())
    return 0, 1


def _all_mean(v: float) -> float:
    t = torch.tensor([v], dtype=torch.float64)
    torch.distributed.all_reduce(t)
    return float(t.item()) / int(torch.distributed.get_world_size())


def _rank0_says(flag: bool) -> bool:
    t = torch.tensor([1 if flag else 0], dtype=torch.int64)
    torch.distributed.broadcast(t, 0)
    return bool(t.item())


def _free_port() -> int:
    import socket

    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _dist_worker(
    rank: int,
    world: int,
    port: int,
    model: TorchForecaster,
    panel: Panel,
    train: tuple[int, int] | None,
    val: tuple[int, int] | None,
    out: str,
) -> None:
    dist = torch.distributed
    dist.init_process_group(
        "gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world
    )
    try:
        model.fit(panel, train=train, val=val)
        if rank == 0:
            model.save(out)
        dist.barrier()
    finally:
        dist.destroy_process_group()


def fit_distributed(
    model: TorchForecaster,
    panel: Panel,
    *,
    train: tuple[int, int] | None = None,
    val: tuple[int, int] | None = None,
    world_size: int = 2,
) -> TorchForecaster:
    """Fit ``model`` data-parallel across ``world_size`` processes (``torch.distributed``
    with the gloo backend on loopback): each process takes its share of every batch and
    the gradients are summed, so the result is the model one process would train (up to
    float rounding) when the network has no dropout or batch statistics. Returns the
    fitted model (rank 0's, loaded back into this process)."""
    import tempfile

    from cityos.ai._zoo import load_model

    if world_size < 1:
        raise ValueError(f"world_size must be at least 1, not {world_size}")
    if world_size == 1:
        return model.fit(panel, train=train, val=val)  # type: ignore[return-value]
    with tempfile.TemporaryDirectory() as d:
        out = str(Path(d) / "model")
        torch.multiprocessing.spawn(
            _dist_worker,
            args=(world_size, _free_port(), model, panel, train, val, out),
            nprocs=world_size,
            join=True,
        )
        fitted = load_model(out)
    assert isinstance(fitted, TorchForecaster)
    return fitted


# -- STID ------------------------------------------------------------------------------------
class _STIDNet(nn.Module):  # type: ignore[misc,name-defined]
    def __init__(
        self,
        n: int,
        c: int,
        window: int,
        horizon: int,
        d: int,
        layers: int,
        spd: int,
        dropout: float = 0.1,
    ) -> None:
        super().__init__()
        self.series = nn.Linear(window * 2, d)  # target history and its mask
        self.cov = nn.Linear(max(c - 1, 1), d)
        self.node = nn.Parameter(torch.empty(n, d))
        self.tod = nn.Embedding(spd, d)
        self.dow = nn.Embedding(7, d)
        self.hol = nn.Linear(1, d)
        nn.init.xavier_uniform_(self.node)
        width = 5 * d
        self.mlp = nn.ModuleList(
            nn.Sequential(
                nn.Linear(width, width), nn.ReLU(), nn.Dropout(dropout), nn.Linear(width, width)
            )
            for _ in range(layers)
        )
        self.out = nn.Linear(width, horizon)
        self.c = c

    def forward(self, win: Any, tod: Any, dow: Any, hol: Any) -> Any:
        # win (B, L, N, C+1): target channel 0..C-1 at ti (moved to 0 by the model), mask last
        b, _L, n, _ = win.shape
        hist = torch.cat([win[..., 0], win[..., -1]], dim=1).permute(0, 2, 1)  # (B, N, 2L)
        h = [self.series(hist)]
        cov = win[:, -1, :, 1 : self.c] if self.c > 1 else torch.zeros(b, n, 1)
        h.append(self.cov(cov))
        h.append(self.node.unsqueeze(0).expand(b, -1, -1))
        h.append((self.tod(tod) + self.dow(dow) + self.hol(hol)).unsqueeze(1).expand(-1, n, -1))
        h.append(torch.zeros_like(h[0]) + self.hol(hol).unsqueeze(1))
        x = torch.cat(h, dim=-1)
        for layer in self.mlp:
            x = x + layer(x)
        return self.out(x).permute(0, 2, 1)  # (B, H, N)


class STID(TorchForecaster):
    """STID (Shao et al., CIKM 2022): spatial (node) and temporal (time of day, day of week,
    holiday) identity embeddings with the recent window, through a residual MLP; the
    covariates at the origin enter through their own embedding."""

    family = "stid"
    defaults: ClassVar[dict[str, Any]] = {
        **TorchForecaster.base_defaults,
        "window": 24,
        "hidden": 32,
        "layers": 3,
        "dropout": 0.1,
    }

    def _inputs(self, panel: Panel, origins: np.ndarray) -> tuple[np.ndarray, ...]:
        win, tod, dow, hol = super()._inputs(panel, origins)
        order = [self.ti, *[i for i in range(panel.shape[2]) if i != self.ti], panel.shape[2]]
        return np.ascontiguousarray(win[..., order]), tod, dow, hol

    def _network(self, panel: Panel) -> Any:
        _, n, c = panel.shape
        return _STIDNet(
            n,
            c,
            self.lookback(),
            self.horizon,
            int(self.params["hidden"]),
            int(self.params["layers"]),
            self.steps_per_day,
            float(self.params["dropout"]),
        )


# -- Graph WaveNet ---------------------------------------------------------------------------
class _GWNet(nn.Module):  # type: ignore[misc,name-defined]
    def __init__(
        self,
        n: int,
        c_in: int,
        horizon: int,
        supports: list[Any],
        d: int,
        dilations: tuple[int, ...],
        spd: int,
        emb: int = 10,
    ) -> None:
        super().__init__()
        self.supports = nn.ParameterList(nn.Parameter(s, requires_grad=False) for s in supports)
        self.e1 = nn.Parameter(torch.randn(n, emb) * 0.1)
        self.e2 = nn.Parameter(torch.randn(emb, n) * 0.1)
        self.start = nn.Conv2d(c_in, d, (1, 1))
        self.dil = dilations
        self.filt = nn.ModuleList(nn.Conv2d(d, d, (1, 2), dilation=(1, k)) for k in dilations)
        self.gate = nn.ModuleList(nn.Conv2d(d, d, (1, 2), dilation=(1, k)) for k in dilations)
        n_sup = len(supports) + 1
        self.gconv = nn.ModuleList(nn.Conv2d(d * (1 + 2 * n_sup), d, (1, 1)) for _ in dilations)
        self.skip = nn.ModuleList(nn.Conv2d(d, 4 * d, (1, 1)) for _ in dilations)
        self.bn = nn.ModuleList(nn.BatchNorm2d(d) for _ in dilations)
        self.tod = nn.Embedding(spd, 4 * d)
        self.dow = nn.Embedding(7, 4 * d)
        self.end1 = nn.Conv2d(4 * d, 8 * d, (1, 1))
        self.end2 = nn.Conv2d(8 * d, horizon, (1, 1))

    def _diffuse(self, x: Any, supports: list[Any]) -> Any:
        out = [x]
        for a in supports:
            x1 = torch.einsum("bcnl,nm->bcml", x, a)
            x2 = torch.einsum("bcnl,nm->bcml", x1, a)
            out += [x1, x2]
        return torch.cat(out, dim=1)

    def forward(self, win: Any, tod: Any, dow: Any, hol: Any) -> Any:
        x = self.start(win.permute(0, 3, 2, 1))  # (B, d, N, L)
        adp = torch.softmax(torch.relu(self.e1 @ self.e2), dim=1)
        sup = [*self.supports, adp]
        skip = 0
        for i in range(len(self.dil)):
            res = x
            h = torch.tanh(self.filt[i](x)) * torch.sigmoid(self.gate[i](x))
            s = self.skip[i](h[..., -1:])
            skip = s + (skip[..., -1:] if isinstance(skip, torch.Tensor) else 0)
            h = self.gconv[i](self._diffuse(h, sup))
            x = self.bn[i](h + res[..., -h.shape[-1] :])
        t = (self.tod(tod) + self.dow(dow))[:, :, None, None]
        y = torch.relu(skip + t)
        y = self.end2(torch.relu(self.end1(y)))  # (B, H, N, 1)
        return y[..., 0]


class GraphWaveNet(TorchForecaster):
    """Graph WaveNet (Wu et al., IJCAI 2019): gated dilated temporal convolutions with
    diffusion graph convolutions over the panel's road-network adjacency (network series)
    or the distance adjacency (stations), in both directions, and a learned adaptive
    adjacency."""

    family = "graph_wavenet"
    defaults: ClassVar[dict[str, Any]] = {
        **TorchForecaster.base_defaults,
        "window": 24,
        "hidden": 32,
        "dilations": (1, 2, 4, 8, 1, 2),
    }

    def lookback(self) -> int:
        return max(int(self.params["window"]), int(sum(self.params["dilations"])) + 1)

    def _prepare(self, panel: Panel) -> None:
        if panel.adjacency is not None:  # a road network's own graph
            a = np.asarray(panel.adjacency)
        else:
            a = distance_adjacency(panel.x, panel.y) if panel.shape[1] > 1 else np.ones((1, 1))
        self.adj = a.astype("float32")

    def _supports(self) -> list[Any]:
        a = torch.from_numpy(self.adj)
        fwd = a / a.sum(1, keepdim=True).clamp(min=1e-9)
        bwd = a.T / a.T.sum(1, keepdim=True).clamp(min=1e-9)
        return [fwd, bwd]

    def _network(self, panel: Panel) -> Any:
        _, n, c = panel.shape
        return _GWNet(
            n,
            c + 1,
            self.horizon,
            self._supports(),
            int(self.params["hidden"]),
            tuple(int(v) for v in self.params["dilations"]),
            self.steps_per_day,
        )

    def _extra_state(self) -> dict[str, Any]:
        return {"adj": self.adj}

    def _restore_extra(self, state: dict[str, Any]) -> None:
        self.adj = np.asarray(state["adj"], dtype="float32")


# -- ST-ResNet -------------------------------------------------------------------------------
class _ResUnit(nn.Module):  # type: ignore[misc,name-defined]
    def __init__(self, d: int) -> None:
        super().__init__()
        self.c1 = nn.Conv2d(d, d, 3, padding=1)
        self.c2 = nn.Conv2d(d, d, 3, padding=1)

    def forward(self, x: Any) -> Any:
        return x + self.c2(torch.relu(self.c1(torch.relu(x))))


class _STResNet(nn.Module):  # type: ignore[misc,name-defined]
    def __init__(
        self,
        views: tuple[int, int, int],
        c: int,
        ny: int,
        nx: int,
        horizon: int,
        d: int,
        units: int,
        spd: int,
    ) -> None:
        super().__init__()
        self.views = views
        self.branches = nn.ModuleList()
        self.weights = nn.ParameterList()
        for k in views:
            if k:
                self.branches.append(
                    nn.Sequential(
                        nn.Conv2d(k * (c + 1), d, 3, padding=1),
                        *[_ResUnit(d) for _ in range(units)],
                        nn.ReLU(),
                        nn.Conv2d(d, horizon, 3, padding=1),
                    )
                )
                self.weights.append(nn.Parameter(torch.ones(1, horizon, ny, nx)))
        self.tod = nn.Embedding(spd, 10)
        self.dow = nn.Embedding(7, 10)
        self.ext = nn.Sequential(nn.Linear(21, 10), nn.ReLU(), nn.Linear(10, horizon * ny * nx))
        self.shape_ = (horizon, ny, nx)

    def forward(self, close: Any, period: Any, trend: Any, tod: Any, dow: Any, hol: Any) -> Any:
        out = 0
        j = 0
        for k, x in zip(self.views, (close, period, trend), strict=True):
            if k:
                out = out + self.branches[j](x) * self.weights[j]
                j += 1
        e = torch.cat([self.tod(tod), self.dow(dow), hol], dim=1)
        out = out + self.ext(e).view(-1, *self.shape_)
        return out.flatten(2)  # (B, H, N)


class STResNet(TorchForecaster):
    """ST-ResNet (Zhang et al., AAAI 2017) for grid flows: closeness, period and trend
    views through residual CNNs, fused with learned per-cell weights and external factors
    (time of day, weekday, holiday)."""

    family = "st_resnet"
    grid_only = True
    defaults: ClassVar[dict[str, Any]] = {
        **TorchForecaster.base_defaults,
        "closeness": 3,
        "periods": 1,
        "period_len": 24,
        "trends": 1,
        "trend_len": 168,
        "hidden": 32,
        "units": 2,
    }

    def lookback(self) -> int:
        p = self.params
        return int(
            max(p["closeness"], p["periods"] * p["period_len"], p["trends"] * p["trend_len"])
        )

    def _inputs(self, panel: Panel, origins: np.ndarray) -> tuple[np.ndarray, ...]:
        p = self.params
        z = self._zcache(panel)
        t, n, c = z.shape
        ny, nx = panel.grid or (1, n)

        def view(offsets: list[int]) -> np.ndarray:
            idx = origins[:, None] - np.asarray(offsets, dtype=np.int64)[None, :]
            v = z[np.clip(idx, 0, t - 1)]  # (B, K, N, C)
            v[idx < 0] = np.nan
            m = np.isfinite(v[..., self.ti])[..., None]
            v = np.concatenate([np.nan_to_num(v, nan=0.0), m], axis=-1)  # (B, K, N, C+1)
            b, k = v.shape[:2]
            return np.ascontiguousarray(
                v.transpose(0, 1, 3, 2).reshape(b, k * (c + 1), ny, nx), dtype="float32"
            )

        close = view(list(range(int(p["closeness"]))) or [0])
        period = view(
            [q * int(p["period_len"]) - 1 for q in range(1, int(p["periods"]) + 1)] or [0]
        )
        trend = view([q * int(p["trend_len"]) - 1 for q in range(1, int(p["trends"]) + 1)] or [0])
        cal = self._cal(panel)[origins]
        return (
            close,
            period,
            trend,
            cal[:, 0].astype("int64"),
            cal[:, 1].astype("int64"),
            cal[:, 2:].astype("float32"),
        )

    def _network(self, panel: Panel) -> Any:
        _, n, c = panel.shape
        ny, nx = panel.grid or (1, n)
        p = self.params
        views = (
            max(int(p["closeness"]), 1),
            int(p["periods"]) and int(p["periods"]),
            int(p["trends"]) and int(p["trends"]),
        )
        return _STResNet(
            views, c, ny, nx, self.horizon, int(p["hidden"]), int(p["units"]), self.steps_per_day
        )

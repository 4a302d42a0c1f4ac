"""SecureBoost: lossless vertical gradient boosting across parties (Cheng et al., 2019).

The guest holds the label and some feature columns; each host holds other columns of the
same (aligned) rows. Per tree the guest encrypts every row's gradient and hessian with
Paillier, packed into one ciphertext; hosts sum ciphertexts per feature bin (building only the
smaller child of each split and deriving its sibling by histogram subtraction), turn them into
the left sums of every candidate split that leaves ``min_child_samples`` rows on both sides
(hosts count their own rows in the clear), shuffle the candidates under anonymous ids and pack
several per ciphertext. The guest decrypts only these gradient and hessian sums (no row
counts), computes the gains, and learns which party owns the best split; the owning host alone knows
its feature and threshold and returns the rows going left. Each party keeps its own part of
the model; prediction routes each row through the parties' decisions.

Lossless: gradients are quantised to fixed point once, every histogram holds exact integer
sums, and gains are computed by one function from those integers; :func:`train_pooled` is the
same booster on the pooled columns (a LightGBM-style, histogram-based, level-wise booster with
LightGBM's gain and leaf formulas), so the federated trees and predictions are identical to
it, bit for bit (``tests/federation/test_algo_secureboost.py``). Ties are broken by party
order (guest first, then hosts as listed), then feature, then bin, in both.
"""

from __future__ import annotations

import itertools
import math
import secrets
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from cityos.errors import CityOSError
from cityos.federation import _work
from cityos.federation._binning import Binner
from cityos.federation._channel import Channel
from cityos.federation.paillier import SlotLayout, best_window, generate_keypair

__all__ = [
    "BoostParams",
    "GuestModel",
    "HostModel",
    "PooledModel",
    "SecureBoostError",
    "joint_trees",
    "predict_guest",
    "predict_host",
    "predict_pooled",
    "train_guest",
    "train_host",
    "train_pooled",
]

F64 = npt.NDArray[np.float64]
I64 = npt.NDArray[np.int64]
U8 = npt.NDArray[np.uint8]


@contextmanager
def _timer(acc: dict[str, float], name: str) -> Iterator[None]:
    t0 = time.perf_counter()
    try:
        yield
    finally:
        acc[name] = acc.get(name, 0.0) + time.perf_counter() - t0


class SecureBoostError(CityOSError):
    """Training or prediction of a vertical boosting model failed."""


@dataclass(frozen=True)
class BoostParams:
    """Booster parameters (LightGBM's names where they exist)."""

    n_trees: int = 10
    max_depth: int = 3
    learning_rate: float = 0.3
    reg_lambda: float = 1.0
    min_child_samples: int = 20
    min_child_weight: float = 1e-3
    min_split_gain: float = 0.0
    max_bins: int = 32
    objective: str = "squared"  # "squared" | "logistic"
    #: fixed-point fraction bits of gradients and hessians
    frac_bits: int = 16
    #: |gradient| · 2^frac_bits must stay below 2^grad_bits (else a clear error); the
    #: default is frac_bits + 1 for ``logistic`` (|g| <= 1) and 36 for ``squared``
    grad_bits: int = 0
    key_bits: int = 2048
    #: local worker processes per party for the Paillier work
    workers: int = 1

    def __post_init__(self) -> None:
        if self.objective not in ("squared", "logistic"):
            raise SecureBoostError(
                f"objective must be 'squared' or 'logistic', got {self.objective!r}"
            )
        if self.n_trees < 1 or self.max_depth < 1:
            raise SecureBoostError("n_trees and max_depth must be >= 1")
        if self.min_child_samples < 1:
            raise SecureBoostError("min_child_samples must be >= 1")
        if self.grad_bits == 0:
            bits = self.frac_bits + 1 if self.objective == "logistic" else 36
            object.__setattr__(self, "grad_bits", bits)


# ---------------------------------------------------------------- shared booster core


@dataclass
class Tree:
    """One tree: ``splits[node] = (party, key)`` and ``leaves[node] = value``; children of
    node ``k`` are ``2k+1`` (``bin <= t``, left) and ``2k+2``."""

    splits: dict[int, tuple[str, Any]] = field(default_factory=dict)
    leaves: dict[int, float] = field(default_factory=dict)


@dataclass(frozen=True)
class Totals:
    g: int
    h: int
    c: int


def _quantise(v: F64, p: BoostParams, what: str) -> I64:
    q = np.rint(v * float(1 << p.frac_bits)).astype(np.int64)
    if q.size and int(np.abs(q).max()) >= 1 << p.grad_bits:
        raise SecureBoostError(
            f"a {what} of {float(np.abs(v).max()):.4g} exceeds the fixed-point range "
            f"2^{p.grad_bits - p.frac_bits}: scale the label or raise grad_bits"
        )
    return q


def _gradients(pred: F64, y: F64, p: BoostParams) -> tuple[I64, I64]:
    if p.objective == "squared":
        g, h = pred - y, np.ones_like(pred)
    else:
        s = 1.0 / (1.0 + np.exp(-pred))
        g, h = s - y, s * (1.0 - s)
    return _quantise(g, p, "gradient"), _quantise(h, p, "hessian")


def _base_score(y: F64, p: BoostParams) -> float:
    m = float(np.mean(y))
    if p.objective == "squared":
        return m
    m = min(max(m, 1e-12), 1 - 1e-12)
    return math.log(m / (1 - m))


def _int_hist(bins: U8, w: I64, n_bins: int) -> I64:
    """Exact integer sums of ``w`` per feature and bin (features × bins)."""
    lo = (w & 0xFFFFFF).astype(np.float64)  # two exact float64 passes: < 2^53 each
    hi = (w >> 24).astype(np.float64)
    out = np.empty((bins.shape[1], n_bins), dtype=np.int64)
    for f in range(bins.shape[1]):
        col = bins[:, f]
        s_lo = np.bincount(col, weights=lo, minlength=n_bins).astype(np.int64)
        s_hi = np.bincount(col, weights=hi, minlength=n_bins).astype(np.int64)
        out[f] = (s_hi << 24) + s_lo
    return out


def _local_hists(
    bins: U8, rows: npt.NDArray[np.intp], gq: I64, hq: I64, n_bins: int
) -> tuple[I64, I64, I64]:
    b = bins[rows]
    return (
        _int_hist(b, gq[rows], n_bins),
        _int_hist(b, hq[rows], n_bins),
        _int_hist(b, np.ones(rows.size, dtype=np.int64), n_bins),
    )


def _candidates(cnt: I64, total_c: int) -> npt.NDArray[np.bool_]:
    """Candidate thresholds ``bin <= t``: bin ``t`` non-empty and something left right."""
    cl = np.cumsum(cnt, axis=1)
    return (cnt > 0) & (cl < total_c)


def _gains(gl: I64, hl: I64, cl: I64 | None, tot: Totals, p: BoostParams) -> F64:
    """LightGBM's split gain for left sums (any shape); ``-inf`` where not allowed.

    ``cl=None``: the left counts are not known here, and the party holding the feature has
    already kept only candidates with ``min_child_samples`` rows on each side.
    """
    s = float(1 << p.frac_bits)
    lam = p.reg_lambda
    gr, hr = tot.g - gl, tot.h - hl
    glf, hlf, grf, hrf = gl / s, hl / s, gr / s, hr / s
    parent = (tot.g / s) ** 2 / (tot.h / s + lam)
    with np.errstate(divide="ignore", invalid="ignore"):
        gain = glf * glf / (hlf + lam) + grf * grf / (hrf + lam) - parent
    ok = (hlf >= p.min_child_weight) & (hrf >= p.min_child_weight) & (gain > p.min_split_gain)
    if cl is not None:
        ok &= _enough_rows(cl, tot.c, p.min_child_samples)
    return np.where(ok, gain, -np.inf)


def _enough_rows(cl: I64, total_c: int, min_rows: int) -> npt.NDArray[np.bool_]:
    return (cl >= min_rows) & (total_c - cl >= min_rows)


def _leaf(tot: Totals, p: BoostParams) -> float:
    s = float(1 << p.frac_bits)
    return float(-(tot.g / s) / (tot.h / s + p.reg_lambda) * p.learning_rate)


@dataclass(frozen=True)
class Choice:
    party: str
    key: Any  # (feature, bin) for local parties; the tied candidate ids for a host
    gain: float


def _best_local(
    bins: U8, gh: tuple[I64, I64, I64], tot: Totals, p: BoostParams
) -> tuple[float, int, int]:
    """The best (gain, feature, bin) of one party's histograms, first in natural order."""
    g, h, c = gh
    cand = _candidates(c, tot.c)
    gains = _gains(np.cumsum(g, axis=1), np.cumsum(h, axis=1), np.cumsum(c, axis=1), tot, p)
    gains = np.where(cand, gains, -np.inf)
    if gains.size == 0:
        return -math.inf, -1, -1
    k = int(np.argmax(gains))
    f, t = divmod(k, gains.shape[1])
    return float(gains.flat[k]), f, t


class _Finder:
    """Finds the best split of every node of a level, and the rows going left."""

    gq: I64
    hq: I64

    def start_tree(self, gq: I64, hq: I64) -> None:
        self.gq, self.hq = gq, hq

    def level(
        self,
        depth: int,
        assign: npt.NDArray[np.int32],
        plan: dict[int, tuple[str, int, int]],
        totals: dict[int, Totals],
    ) -> dict[int, Choice | None]:
        raise NotImplementedError

    def partition(
        self, choices: dict[int, Choice], rows: dict[int, npt.NDArray[np.intp]]
    ) -> dict[int, npt.NDArray[np.bool_]]:
        raise NotImplementedError

    def end_tree(self) -> None:
        """Called after every tree."""


def _grow(gq: I64, hq: I64, p: BoostParams, finder: _Finder) -> tuple[Tree, npt.NDArray[np.int32]]:
    """Grow one tree level by level; returns it and each row's leaf."""
    n = gq.size
    tree = Tree()
    assign = np.zeros(n, dtype=np.int32)
    rows: dict[int, npt.NDArray[np.intp]] = {0: np.arange(n)}
    totals = {0: Totals(int(gq.sum()), int(hq.sum()), n)}
    level = [0]
    for depth in range(p.max_depth):
        active = [k for k in level if totals[k].c >= 2 * p.min_child_samples]
        plan: dict[int, tuple[str, int, int]] = {}
        for k in active:
            sib = k + 1 if k % 2 == 1 else k - 1
            if k == 0 or sib not in active:
                plan[k] = ("compute", -1, -1)
            else:
                left = k if k % 2 == 1 else sib
                right = left + 1
                small = left if totals[left].c <= totals[right].c else right
                plan[k] = ("compute", -1, -1) if k == small else ("subtract", (k - 1) // 2, small)
        for k in level:
            if k not in plan:
                tree.leaves[k] = _leaf(totals[k], p)
        if not plan:
            level = []
            break
        choices = finder.level(depth, assign, plan, totals)
        chosen = {k: c for k, c in choices.items() if c is not None}
        masks = finder.partition(chosen, {k: rows[k] for k in chosen})  # may rename host keys
        nxt: list[int] = []
        for k in sorted(plan):
            c = chosen.get(k)
            if c is None:
                tree.leaves[k] = _leaf(totals[k], p)
                continue
            tree.splits[k] = (c.party, c.key)
            m = masks[k]
            r = rows.pop(k)
            for child, sel in ((2 * k + 1, r[m]), (2 * k + 2, r[~m])):
                rows[child] = sel
                assign[sel] = child
                totals[child] = Totals(int(gq[sel].sum()), int(hq[sel].sum()), int(sel.size))
                nxt.append(child)
        for k in level:
            if k not in plan or choices.get(k) is None:
                assign[rows[k]] = -1
        level = nxt
    for k in level:
        tree.leaves[k] = _leaf(totals[k], p)
    leaf_of = np.full(n, -1, dtype=np.int32)
    for k in tree.leaves:
        if k in rows:
            leaf_of[rows[k]] = k
    finder.end_tree()
    return tree, leaf_of


def _route(
    tree: Tree,
    decide: Callable[[int, str, Any, npt.NDArray[np.intp]], npt.NDArray[np.bool_]],
    n: int,
) -> F64:
    """Leaf values of ``n`` rows; ``decide(node, party, key, rows)`` says which go left."""
    out = np.zeros(n)
    stack = [(0, np.arange(n))]
    while stack:
        k, r = stack.pop()
        if k in tree.leaves:
            out[r] = tree.leaves[k]
            continue
        party, key = tree.splits[k]
        m = decide(k, party, key, r)
        stack.append((2 * k + 1, r[m]))
        stack.append((2 * k + 2, r[~m]))
    return out


# ---------------------------------------------------------------- pooled reference


@dataclass
class PooledModel:
    """The plaintext booster on pooled columns (the losslessness reference)."""

    params: BoostParams
    binner: Binner
    base: float
    trees: list[Tree]


class _PooledFinder(_Finder):
    def __init__(self, bins: U8, p: BoostParams) -> None:
        self.bins, self.p = bins, p
        self._hists: dict[int, tuple[I64, I64, I64]] = {}

    def level(
        self,
        depth: int,
        assign: npt.NDArray[np.int32],
        plan: dict[int, tuple[str, int, int]],
        totals: dict[int, Totals],
    ) -> dict[int, Choice | None]:
        hists: dict[int, tuple[I64, I64, I64]] = {}
        for k, (mode, _, _) in sorted(plan.items()):
            if mode == "compute":
                hists[k] = _local_hists(
                    self.bins, np.flatnonzero(assign == k), self.gq, self.hq, self.p.max_bins
                )
        for k, (mode, parent, sib) in plan.items():
            if mode == "subtract":
                hists[k] = tuple(
                    a - b for a, b in zip(self._hists[parent], hists[sib], strict=True)
                )  # type: ignore[assignment]
        self._hists = hists
        out: dict[int, Choice | None] = {}
        for k in plan:
            gain, f, t = _best_local(self.bins, hists[k], totals[k], self.p)
            out[k] = None if gain == -math.inf else Choice("pooled", (f, t), gain)
        return out

    def partition(
        self, choices: dict[int, Choice], rows: dict[int, npt.NDArray[np.intp]]
    ) -> dict[int, npt.NDArray[np.bool_]]:
        return {k: self.bins[rows[k], c.key[0]] <= c.key[1] for k, c in choices.items()}


def train_pooled(
    X: npt.ArrayLike, y: npt.ArrayLike, params: BoostParams | None = None
) -> PooledModel:
    """Train the reference booster on pooled columns ``X`` (guest's first, then each host's)."""
    p = params or BoostParams()
    Xa = np.asarray(X, dtype=np.float64)
    ya = _labels(y, Xa.shape[0], p)
    binner = Binner.fit(Xa, p.max_bins)
    finder = _PooledFinder(binner.transform(Xa), p)
    base, trees, _ = _boost_with(ya, p, finder)
    return PooledModel(p, binner, base, trees)


def _boost_with(y: F64, p: BoostParams, finder: _Finder) -> tuple[float, list[Tree], F64]:
    base = _base_score(y, p)
    pred = np.full(y.size, base)
    trees = []
    for _ in range(p.n_trees):
        gq, hq = _gradients(pred, y, p)
        finder.start_tree(gq, hq)
        tree, leaf_of = _grow(gq, hq, p, finder)
        values = np.zeros(max(tree.leaves) + 1)
        for k, v in tree.leaves.items():
            values[k] = v
        pred = pred + values[leaf_of]
        trees.append(tree)
    return base, trees, pred


def predict_pooled(model: PooledModel, X: npt.ArrayLike) -> F64:
    """Raw scores (logits for ``logistic``) of the pooled model."""
    bins = model.binner.transform(X)
    out = np.full(bins.shape[0], model.base)
    for tree in model.trees:
        out += _route(tree, lambda k, party, key, r: bins[r, key[0]] <= key[1], bins.shape[0])
    return out


def _labels(y: npt.ArrayLike, n: int, p: BoostParams) -> F64:
    ya = np.asarray(y, dtype=np.float64).ravel()
    if ya.size != n:
        raise SecureBoostError(f"{ya.size} labels for {n} rows")
    if np.isnan(ya).any():
        raise SecureBoostError("labels contain NaN: drop those rows before training")
    if p.objective == "logistic" and not np.isin(ya, (0.0, 1.0)).all():
        raise SecureBoostError("logistic objective needs 0/1 labels")
    return ya


# ---------------------------------------------------------------- federated roles


@dataclass
class GuestModel:
    """The guest's part: tree structure, leaf values, its own splits, hosts' split ids."""

    params: BoostParams
    binner: Binner
    base: float
    trees: list[Tree]
    hosts: tuple[str, ...]
    #: seconds spent per phase of training (encrypt, own histograms, wait, decrypt)
    timings: dict[str, float] = field(default_factory=dict)


@dataclass
class HostModel:
    """A host's part: for each of its split ids, the feature and bin threshold."""

    binner: Binner
    records: list[tuple[int, int, float]]  # (feature, bin, real threshold: x <= value goes left)
    guest: str
    #: seconds spent per phase of training (accumulate, subtract, prefix, pack)
    timings: dict[str, float] = field(default_factory=dict)


def _layout(n: int, p: BoostParams) -> tuple[SlotLayout, int]:
    """Slots of a packed row (gradient + offset, hessian) and the offset.

    Each row's gradient ``|g| < offset = 2^grad_bits`` travels as ``g + offset > 0``. A sum
    over ``c`` of a node's ``T <= n`` rows holds ``G + c·offset``; the host, which knows
    ``c``, adds ``(T - c)·offset`` (:func:`_rebase`), so every candidate's gradient slot
    holds ``G + T·offset``, in ``[0, 2·n·offset)`` whatever the signs, and the guest, which
    knows ``T``, subtracts it. Hessians are non-negative, below ``n·2^grad_bits`` in sum.
    """
    nb = max(1, n.bit_length())
    lay = SlotLayout((p.grad_bits + 1 + nb, p.grad_bits + nb))
    return lay, 1 << p.grad_bits


def _rebase(ct: Any, shift: int, n: int, nsq: int) -> Any:
    """``ct`` with ``shift`` added to its plaintext: times the trivial encryption ``1 + shift·n``.

    ``ct`` is already randomised (a product of fresh encryptions), so the result is too.
    """
    return ct * (1 + shift * n) % nsq


def _unpack_candidates(
    plains: Sequence[int], count: int, per_ct: int, layout: SlotLayout, offset: int, total_c: int
) -> tuple[I64, I64]:
    """Gradient and hessian sums of ``count`` candidates packed ``per_ct`` to a plaintext
    (the first most significant) by a host, rebased by it to ``total_c`` rows (:func:`_layout`)."""
    bits = layout.bits
    mask = (1 << bits) - 1
    vals: list[tuple[int, ...]] = []
    for i, x in enumerate(plains):
        k = min(per_ct, count - i * per_ct)
        for j in range(k):
            vals.append(layout.unpack((int(x) >> (bits * (k - 1 - j))) & mask))
    a = np.array(vals, dtype=object).reshape(-1, 2)
    g = (a[:, 0] - total_c * offset).astype(np.int64)
    return g, a[:, 1].astype(np.int64)


class _GuestFinder(_Finder):
    def __init__(
        self, ch: Channel, hosts: tuple[str, ...], bins: U8, p: BoostParams, n: int
    ) -> None:
        self.ch, self.hosts, self.bins, self.p, self.n = ch, hosts, bins, p, n
        self.pk, self.sk = generate_keypair(p.key_bits)
        self.layout, self.offset = _layout(n, p)
        self.per_ct = (self.pk.bits - 1) // self.layout.bits
        self.width = (int(self.pk.nsq.bit_length()) + 7) // 8
        self.gq = self.hq = np.empty(0, dtype=np.int64)
        self._hists: dict[int, tuple[I64, I64, I64]] = {}
        self._records: dict[tuple[str, int], int] = {}
        self.tree_no = 0
        self.timings: dict[str, float] = {}
        for h in hosts:
            ch.send(
                h,
                "sb/setup",
                {
                    "key": self.pk.to_payload(),
                    "n": n,
                    "max_bins": p.max_bins,
                    "slot_bits": self.layout.bits,
                    "offset": self.offset,
                    "offset_at": self.layout.widths[1],
                    "min_child_samples": p.min_child_samples,
                    "per_ct": self.per_ct,
                    "workers": p.workers,
                },
            )
        for h in hosts:
            reply = ch.recv(h, "sb/ready")
            if reply["n"] != n:
                raise SecureBoostError(
                    f"{h} holds {reply['n']} aligned rows, {ch.me} holds {n}: align them with psi first"
                )
        self.pool = _work.Pool(p.workers)  # after the handshake: nothing to clean up on refusal
        # every worker keeps its fixed-base tables for the whole training
        self.window = best_window(n * p.n_trees // self.pool.workers, self.pk.bits)

    def start_tree(self, gq: I64, hq: I64) -> None:
        self.gq, self.hq = gq, hq
        plain = [
            self.layout.pack((int(g) + self.offset, int(h)))
            for g, h in zip(gq.tolist(), hq.tolist(), strict=True)
        ]
        n, hs = int(self.pk.n), int(self.pk.hs)
        with _timer(self.timings, "encrypt"):
            blob = b"".join(
                self.pool.map(
                    _work.encrypt_chunk,
                    [
                        (n, hs, plain[a:b], int(self.sk.p), int(self.sk.q), self.window)
                        for a, b in self.pool.split(len(plain), 256)
                    ],
                )
            )
        for h in self.hosts:
            self.ch.send(
                h, "sb/ctl", {"kind": "tree", "tree": self.tree_no, "gh": blob, "width": self.width}
            )

    def level(
        self,
        depth: int,
        assign: npt.NDArray[np.int32],
        plan: dict[int, tuple[str, int, int]],
        totals: dict[int, Totals],
    ) -> dict[int, Choice | None]:
        p = self.p
        msg = {
            "kind": "level",
            "assign": assign,
            "plan": {str(k): [m, a, b] for k, (m, a, b) in plan.items()},
        }
        for h in self.hosts:
            self.ch.send(h, "sb/ctl", msg)
        # own histograms meanwhile (plaintext integers, with subtraction)
        hists: dict[int, tuple[I64, I64, I64]] = {}
        for k, (mode, _, _) in sorted(plan.items()):
            if mode == "compute":
                hists[k] = _local_hists(
                    self.bins, np.flatnonzero(assign == k), self.gq, self.hq, p.max_bins
                )
        for k, (mode, parent, sib) in plan.items():
            if mode == "subtract":
                hists[k] = tuple(
                    a - b for a, b in zip(self._hists[parent], hists[sib], strict=True)
                )  # type: ignore[assignment]
        self._hists = hists
        best: dict[int, tuple[float, str, Any]] = {}
        for k in plan:
            gain, f, t = _best_local(self.bins, hists[k], totals[k], p)
            best[k] = (gain, self.ch.me, (f, t))
        for h in self.hosts:
            with _timer(self.timings, "wait for hosts"):
                reply = self.ch.recv(h, "sb/candidates")
            t0 = time.perf_counter()
            for ks, packed in reply["nodes"].items():
                k = int(ks)
                count = int(packed["count"])
                if count == 0:
                    continue
                gl, hl = self._open(packed["cts"], count, totals[k].c)
                gains = _gains(gl, hl, None, totals[k], p)
                top = float(gains.max())
                if top > best[k][0]:  # strictly better: earlier parties win ties
                    best[k] = (top, h, [int(i) for i in np.flatnonzero(gains == top)])
            self.timings["decrypt"] = self.timings.get("decrypt", 0.0) + time.perf_counter() - t0
        out: dict[int, Choice | None] = {}
        for k in plan:
            gain, party, key = best[k]
            out[k] = None if gain == -math.inf else Choice(party, key, gain)
        return out

    def _open(self, blob: bytes, count: int, total_c: int) -> tuple[I64, I64]:
        """The left gradient and hessian sums of ``count`` packed candidates of a node of
        ``total_c`` rows."""
        n, hs = int(self.pk.n), int(self.pk.hs)
        p_, q_ = int(self.sk.p), int(self.sk.q)
        w = self.width
        n_ct = len(blob) // w
        chunks = self.pool.split(n_ct, 8)
        plains = [
            x
            for part in self.pool.map(
                _work.decrypt_chunk, [(n, hs, p_, q_, blob[a * w : b * w]) for a, b in chunks]
            )
            for x in part
        ]
        return _unpack_candidates(plains, count, self.per_ct, self.layout, self.offset, total_c)

    def partition(
        self, choices: dict[int, Choice], rows: dict[int, npt.NDArray[np.intp]]
    ) -> dict[int, npt.NDArray[np.bool_]]:
        out: dict[int, npt.NDArray[np.bool_]] = {}
        for h in self.hosts:
            mine = {str(k): c.key for k, c in choices.items() if c.party == h}
            self.ch.send(h, "sb/decide", {"splits": mine})
        for k, c in choices.items():
            if c.party == self.ch.me:
                out[k] = self.bins[rows[k], c.key[0]] <= c.key[1]
        for h in self.hosts:
            reply = self.ch.recv(h, "sb/partition")
            for ks, d in reply["splits"].items():
                k = int(ks)
                left = np.unpackbits(d["left"], count=rows[k].size).astype(bool)
                out[k] = left
                choices[k] = Choice(h, int(d["record"]), choices[k].gain)
        return out

    def end_tree(self) -> None:
        self.tree_no += 1
        for h in self.hosts:
            self.ch.send(h, "sb/ctl", {"kind": "tree_end"})


def train_guest(
    ch: Channel,
    X: npt.ArrayLike,
    y: npt.ArrayLike,
    params: BoostParams | None = None,
    hosts: Sequence[str] | None = None,
) -> GuestModel:
    """The guest's role: train with ``hosts`` (default: every peer) on aligned rows."""
    p = params or BoostParams()
    Xa = np.asarray(X, dtype=np.float64)
    if Xa.ndim != 2:
        raise SecureBoostError(f"{ch.me}: features must be a 2-d array, got shape {Xa.shape}")
    ya = _labels(y, Xa.shape[0], p)
    hs = tuple(hosts if hosts is not None else ch.peers)
    binner = Binner.fit(Xa, p.max_bins)
    finder = _GuestFinder(ch, hs, binner.transform(Xa), p, Xa.shape[0])
    try:
        base, trees, _ = _boost_with(ya, p, finder)
    finally:
        finder.pool.close()
    for h in hs:
        ch.send(h, "sb/ctl", {"kind": "done", "trees": len(trees)})
    return GuestModel(p, binner, base, trees, hs, finder.timings)


def train_host(
    ch: Channel, X: npt.ArrayLike, guest: str, *, workers: int | None = None
) -> HostModel:
    """A host's role: answer the guest's levels until training is done."""
    Xa = np.asarray(X, dtype=np.float64)
    if Xa.ndim != 2:
        raise SecureBoostError(f"{ch.me}: features must be a 2-d array, got shape {Xa.shape}")
    setup = ch.recv(guest, "sb/setup")
    key = setup["key"]
    nsq = int(key["n"]) ** 2
    n_bins, slot_bits, per_ct = (
        int(setup["max_bins"]),
        int(setup["slot_bits"]),
        int(setup["per_ct"]),
    )
    offset, offset_at, min_rows = (
        int(setup["offset"]),
        int(setup["offset_at"]),
        int(setup["min_child_samples"]),
    )
    n_key = int(key["n"])
    ch.send(guest, "sb/ready", {"n": Xa.shape[0]})
    if int(setup["n"]) != Xa.shape[0]:
        raise SecureBoostError(
            f"{ch.me} holds {Xa.shape[0]} aligned rows, {guest} holds {setup['n']}: align them with psi first"
        )
    binner = Binner.fit(Xa, n_bins)
    bins = binner.transform(Xa)
    n_feat = bins.shape[1]
    pool = _work.Pool(int(setup["workers"]) if workers is None else workers)
    width = (nsq.bit_length() + 7) // 8
    records: list[tuple[int, int, float]] = []
    rng = secrets.SystemRandom()
    timings: dict[str, float] = {}
    try:
        while True:
            first = _recv_any(ch, guest, ("tree", "done"))
            if first[0] == "done":
                break
            blob: bytes = first[1]["gh"]
            if int(first[1]["width"]) != width or len(blob) != width * Xa.shape[0]:
                raise SecureBoostError(
                    f"{guest} sent {len(blob)} bytes of ciphertexts for {Xa.shape[0]} rows"
                )
            prev: dict[int, bytes] = {}
            with _work.CipherFile(blob, width) as tree_cts:
                while True:
                    kind, msg = _recv_any(ch, guest, ("level", "tree_end"))
                    if kind == "tree_end":
                        break
                    assign = np.asarray(msg["assign"])
                    plan = {
                        int(k): (str(v[0]), int(v[1]), int(v[2])) for k, v in msg["plan"].items()
                    }
                    hists: dict[int, bytes] = {}
                    counts: dict[int, I64] = {}
                    for k, (mode, _, _) in sorted(plan.items()):
                        rows = np.flatnonzero(assign == k)
                        counts[k] = (
                            np.stack(
                                [
                                    np.bincount(bins[rows, f], minlength=n_bins)
                                    for f in range(n_feat)
                                ]
                            )
                            if n_feat
                            else np.zeros((0, n_bins), dtype=np.int64)
                        )
                        if mode == "compute":
                            t0 = time.perf_counter()
                            # two feature ranges per worker: a busy core does not hold up the other
                            chunks = _feature_chunks(
                                n_feat, 2 * pool.workers if pool.workers > 1 else 1
                            )
                            parts = pool.map(
                                _work.accumulate_rows,
                                [
                                    (
                                        nsq,
                                        tree_cts.path,
                                        rows,
                                        np.ascontiguousarray(bins[rows, a:b]),
                                        n_bins,
                                    )
                                    for a, b in chunks
                                ],
                            )
                            hists[k] = b"".join(parts)
                            _add(timings, "accumulate", t0)
                    t0 = time.perf_counter()
                    for k, (mode, parent, sib) in plan.items():
                        if mode == "subtract":
                            hists[k] = _parallel_subtract(
                                pool, nsq, prev[parent], hists[sib], width
                            )
                    _add(timings, "subtract", t0)
                    prev = hists
                    nodes: dict[str, Any] = {}
                    ids: dict[int, list[tuple[int, int]]] = {}
                    for k in plan:
                        t0 = time.perf_counter()
                        cts = _work.from_blob(hists[k], width)
                        total_c = int(counts[k][0].sum()) if n_feat else 0
                        left_c = np.cumsum(counts[k], axis=1)
                        cand = (
                            _candidates(counts[k], total_c)
                            & _enough_rows(left_c, total_c, min_rows)
                            if n_feat
                            else np.zeros((0, n_bins), dtype=bool)
                        )
                        prefix: list[int] = []
                        keys: list[tuple[int, int]] = []
                        for f in range(n_feat):
                            acc = 1
                            for t in range(n_bins):
                                c = cts[f * n_bins + t]
                                if c != 1:
                                    acc = acc * c % nsq
                                if cand[f, t]:
                                    missing = (total_c - int(left_c[f, t])) * offset
                                    prefix.append(_rebase(acc, missing << offset_at, n_key, nsq))
                                    keys.append((f, t))
                        order = list(range(len(keys)))
                        rng.shuffle(order)
                        keys = [keys[i] for i in order]
                        shuffled = [prefix[i] for i in order]
                        ids[k] = keys
                        t0 = _add(timings, "prefix sums", t0)
                        nodes[str(k)] = {
                            "count": len(keys),
                            "cts": _parallel_pack(pool, nsq, shuffled, per_ct, slot_bits, width),
                        }
                        _add(timings, "pack", t0)
                    ch.send(guest, "sb/candidates", {"nodes": nodes})
                    decide = ch.recv(guest, "sb/decide")["splits"]
                    out: dict[str, Any] = {}
                    for ks, tied in decide.items():
                        k = int(ks)
                        f, t = min(ids[k][int(i)] for i in tied)
                        rows = np.flatnonzero(assign == k)
                        left = bins[rows, f] <= t
                        records.append((f, t, binner.threshold(f, t)))
                        out[ks] = {"record": len(records) - 1, "left": np.packbits(left)}
                    ch.send(guest, "sb/partition", {"splits": out})
    finally:
        pool.close()
    return HostModel(binner, records, guest, timings)


def _feature_chunks(n_feat: int, workers: int) -> list[tuple[int, int]]:
    """One range of features per worker, cut at even indices (features pair up)."""
    if workers <= 1 or n_feat < 4:
        return [(0, n_feat)] if n_feat else []
    edges = (
        [0]
        + [min(n_feat, 2 * round(n_feat * i / workers / 2)) for i in range(1, workers)]
        + [n_feat]
    )
    return [(a, b) for a, b in itertools.pairwise(edges) if b > a]


def _add(acc: dict[str, float], name: str, t0: float) -> float:
    now = time.perf_counter()
    acc[name] = acc.get(name, 0.0) + now - t0
    return now


def _parallel_subtract(
    pool: _work.Pool, nsq: int, parent: bytes, child: bytes, width: int
) -> bytes:
    n = len(parent) // width
    return b"".join(
        pool.map(
            _work.subtract,
            [
                (nsq, parent[a * width : b * width], child[a * width : b * width])
                for a, b in pool.split(n, 64)
            ],
        )
    )


def _parallel_pack(
    pool: _work.Pool, nsq: int, cts: list[int], per: int, slot_bits: int, width: int
) -> bytes:
    if not cts:
        return b""
    groups = (len(cts) + per - 1) // per
    calls = []
    for a, b in pool.split(groups):
        calls.append((nsq, _work.to_blob(cts[a * per : b * per], width), per, slot_bits))
    return b"".join(pool.map(_work.pack, calls))


def _recv_any(ch: Channel, frm: str, tags: tuple[str, ...]) -> tuple[str, dict[str, Any]]:
    # the guest always announces what comes next on one control tag
    msg = ch.recv(frm, "sb/ctl")
    kind = str(msg["kind"])
    if kind not in tags:
        raise SecureBoostError(f"{frm} sent {kind!r}, expected one of {tags}")
    return kind, msg


# ---------------------------------------------------------------- prediction


def predict_guest(ch: Channel, model: GuestModel, X: npt.ArrayLike) -> F64:
    """Raw scores of aligned rows ``X`` (the guest's columns); hosts run :func:`predict_host`."""
    bins = model.binner.transform(X)
    n = bins.shape[0]
    for h in model.hosts:
        ch.send(h, "sb/predict", {"n": n})
    decisions: dict[str, npt.NDArray[np.bool_]] = {}
    for h in model.hosts:
        reply = ch.recv(h, "sb/decisions")
        r = int(reply["records"])
        decisions[h] = (
            np.unpackbits(reply["left"], count=r * n).astype(bool).reshape(r, n)
            if r
            else np.zeros((0, n), dtype=bool)
        )

    def decide(k: int, party: str, key: Any, rows: npt.NDArray[np.intp]) -> npt.NDArray[np.bool_]:
        if party == ch.me:
            return np.asarray(bins[rows, key[0]] <= key[1], dtype=bool)
        return np.asarray(decisions[party][int(key), rows], dtype=bool)

    out = np.full(n, model.base)
    for tree in model.trees:
        out += _route(tree, decide, n)
    return out


def predict_host(ch: Channel, model: HostModel, X: npt.ArrayLike) -> None:
    """A host's part of prediction: its split decisions for every aligned row."""
    req = ch.recv(model.guest, "sb/predict")
    bins = model.binner.transform(X)
    if int(req["n"]) != bins.shape[0]:
        raise SecureBoostError(
            f"{ch.me} holds {bins.shape[0]} rows to score, {model.guest} asked for {req['n']}"
        )
    left = np.zeros((len(model.records), bins.shape[0]), dtype=bool)
    for i, (f, t, _) in enumerate(model.records):
        left[i] = bins[:, f] <= t
    ch.send(
        model.guest,
        "sb/decisions",
        {"records": len(model.records), "left": np.packbits(left.ravel())},
    )


def joint_trees(guest: GuestModel, hosts: Mapping[str, HostModel]) -> list[Tree]:
    """The federated trees in pooled terms (feature index over guest's then hosts' columns).

    Needs every party's part; for audits and the losslessness test only.
    """
    offset: dict[str, int] = {}
    at = len(guest.binner.edges)
    for h in guest.hosts:
        offset[h] = at
        at += len(hosts[h].binner.edges)
    out = []
    for tree in guest.trees:
        t = Tree(leaves=dict(tree.leaves))
        for k, (party, key) in tree.splits.items():
            if party in offset:
                f, b, _ = hosts[party].records[int(key)]
                t.splits[k] = ("pooled", (offset[party] + f, b))
            else:
                t.splits[k] = ("pooled", (int(key[0]), int(key[1])))
        out.append(t)
    return out


def params_payload(p: BoostParams) -> dict[str, Any]:
    """``p`` as a codec payload (the gateway stores it with the job)."""
    return asdict(p)

"""Vertical logistic regression between a guest (label) and one host, without a third party.

The loss is the second-order Taylor expansion of the logistic loss around 0 (Hardy et al.,
2017): the residual ``d = 0.25·(u_G + u_H) + 0.5 − y`` is linear in each party's score
``u = X·w``, so it can be formed under encryption. Each party has its own Paillier key:

1. host → guest: ``[[u_H]]_H`` (host's key).
2. guest: ``[[d]]_H = 0.25·[[u_H]]_H + (0.25·u_G + 0.5 − y)``; ``[[∇_G]]_H = Xᵀ_G [[d]]_H / n``,
   masked with a uniform ``r_G`` mod ``n_H``, → host, who decrypts ``∇_G + r_G`` and returns it.
3. guest → host: ``[[0.25·u_G + 0.5 − y]]_G``; host forms ``[[d]]_G`` and ``[[∇_H + r_H]]_G`` the
   same way; the guest decrypts only the masked value and returns it.

Each party learns its own gradient and nothing else (masks are uniform modulo the key);
labels, residuals and features never cross in the clear. Features are standardised by their
owner. :func:`train_pooled` runs the same updates on pooled columns in plaintext: the
federated weights equal it up to fixed-point rounding, and predictions match pooled logistic
regression closely (``tests/federation/test_algo_vlr.py``).
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass

import gmpy2
import numpy as np
import numpy.typing as npt
from gmpy2 import mpz

from cityos.errors import CityOSError
from cityos.federation import _work
from cityos.federation._channel import Channel
from cityos.federation.paillier import PublicKey, generate_keypair

__all__ = [
    "VLRError",
    "VLRGuestModel",
    "VLRHostModel",
    "VLRParams",
    "VLRPooledModel",
    "predict_guest",
    "predict_host",
    "predict_pooled",
    "train_guest",
    "train_host",
    "train_pooled",
]

F64 = npt.NDArray[np.float64]


class VLRError(CityOSError):
    """Vertical logistic regression failed."""


@dataclass(frozen=True)
class VLRParams:
    iterations: int = 30
    learning_rate: float = 0.5
    l2: float = 0.0
    key_bits: int = 2048
    frac_bits: int = 20


@dataclass
class _Scaler:
    mean: F64
    std: F64

    @classmethod
    def fit(cls, X: F64) -> _Scaler:
        sd = X.std(axis=0)
        return cls(X.mean(axis=0), np.where(sd > 0, sd, 1.0))

    def __call__(self, X: npt.ArrayLike) -> F64:
        return (np.asarray(X, dtype=np.float64) - self.mean) / self.std


@dataclass
class VLRGuestModel:
    weights: F64
    intercept: float
    scaler: _Scaler
    host: str


@dataclass
class VLRHostModel:
    weights: F64
    scaler: _Scaler
    guest: str


def _enc(v: float, frac: int, n: mpz) -> int:
    return round(v * (1 << frac)) % int(n)


def _dec(m: int, frac: int, n: mpz) -> float:
    m = int(m)
    if m > int(n) // 2:
        m -= int(n)
    return m / float(1 << frac)


def _encrypt_vec(pk: PublicKey, v: F64, frac: int) -> list[mpz]:
    return [pk.encrypt(_enc(float(x), frac, pk.n)) for x in v]


def _add_plain(pk: PublicKey, cts: list[mpz], v: F64, frac: int) -> list[mpz]:
    """``[[a + v]]`` from ``[[a]]`` (same scale); ``g^m = 1 + m·n`` needs no randomness."""
    n, nsq = pk.n, pk.nsq
    return [c * (1 + mpz(_enc(float(x), frac, n)) * n) % nsq for c, x in zip(cts, v, strict=True)]


def _scale_pow2(pk: PublicKey, cts: list[mpz], k: int) -> list[mpz]:
    return [gmpy2.powmod(c, mpz(1) << k, pk.nsq) for c in cts]


def _xt_dot(pk: PublicKey, cts: list[mpz], X: F64, frac: int) -> list[mpz]:
    """``[[Xᵀ·a]]`` (scale grows by ``2^frac``) from ``[[a]]`` and plaintext ``X``."""
    nsq = pk.nsq
    q = np.rint(X * (1 << frac)).astype(np.int64)
    acc = [mpz(1)] * X.shape[1]
    for i, c in enumerate(cts):
        inv = None
        for j in range(X.shape[1]):
            k = int(q[i, j])
            if k == 0:
                continue
            if k < 0:
                if inv is None:
                    inv = gmpy2.invert(c, nsq)
                acc[j] = acc[j] * gmpy2.powmod(inv, -k, nsq) % nsq
            else:
                acc[j] = acc[j] * gmpy2.powmod(c, k, nsq) % nsq
    return acc


def _mask(pk: PublicKey, cts: list[mpz]) -> tuple[list[mpz], list[int]]:
    rs = [secrets.randbelow(int(pk.n)) for _ in cts]
    return [c * (1 + mpz(r) * pk.n) % pk.nsq for c, r in zip(cts, rs, strict=True)], rs


def _blob(pk: PublicKey, cts: list[mpz]) -> bytes:
    return _work.to_blob(cts, (int(pk.nsq.bit_length()) + 7) // 8)


def _unblob(pk: PublicKey, blob: bytes, count: int, who: str) -> list[mpz]:
    width = (int(pk.nsq.bit_length()) + 7) // 8
    if len(blob) % width or (count >= 0 and len(blob) != width * count):
        raise VLRError(f"{who} sent {len(blob)} bytes, expected {count} ciphertexts")
    return _work.from_blob(blob, width)


def _gradient_step(w: F64, grad: F64, p: VLRParams) -> F64:
    return np.asarray(w - p.learning_rate * (grad + p.l2 * w), dtype=np.float64)


def train_guest(
    ch: Channel,
    X: npt.ArrayLike,
    y: npt.ArrayLike,
    params: VLRParams | None = None,
    host: str | None = None,
) -> VLRGuestModel:
    """The guest's role (label holder; its columns get the intercept)."""
    p = params or VLRParams()
    peer = host or (ch.peers[0] if len(ch.peers) == 1 else "")
    if not peer:
        raise VLRError(
            f"vertical logistic regression runs between a guest and one host; {ch.me} has peers {ch.peers}"
        )
    Xa = np.asarray(X, dtype=np.float64)
    ya = np.asarray(y, dtype=np.float64).ravel()
    if ya.size != Xa.shape[0] or not np.isin(ya, (0.0, 1.0)).all():
        raise VLRError(f"labels must be 0/1, one per row ({ya.size} labels for {Xa.shape[0]} rows)")
    scaler = _Scaler.fit(Xa)
    Xs = np.hstack([scaler(Xa), np.ones((Xa.shape[0], 1))])
    n = Xs.shape[0]
    pk, sk = generate_keypair(p.key_bits)
    ch.send(
        peer,
        "vlr/setup",
        {
            "key": pk.to_payload(),
            "n": n,
            "iterations": p.iterations,
            "learning_rate": p.learning_rate,
            "l2": p.l2,
            "frac_bits": p.frac_bits,
        },
    )
    hs = ch.recv(peer, "vlr/setup")
    if int(hs["n"]) != n:
        raise VLRError(
            f"{peer} holds {hs['n']} aligned rows, {ch.me} holds {n}: align them with psi first"
        )
    hpk = PublicKey.from_payload(hs["key"])
    f_host = int(hs["features"])
    fr = p.frac_bits
    w = np.zeros(Xs.shape[1])
    for _ in range(p.iterations):
        local = 0.25 * (Xs @ w) + 0.5 - ya
        u_h = _unblob(hpk, ch.recv(peer, "vlr/u")["cts"], n, peer)  # [[0.25 u_H]]_H
        g_enc, rs = _mask(hpk, _xt_dot(hpk, _add_plain(hpk, u_h, local, fr), Xs, fr))
        ch.send(peer, "vlr/masked_grad", {"cts": _blob(hpk, g_enc)})
        ch.send(peer, "vlr/d", {"cts": _blob(pk, _encrypt_vec(pk, local, fr))})
        theirs = _unblob(pk, ch.recv(peer, "vlr/masked_grad")["cts"], f_host, peer)
        ch.send(peer, "vlr/unmasked", {"values": [int(sk.decrypt(c)) for c in theirs]})
        mine = ch.recv(peer, "vlr/unmasked")["values"]
        if len(mine) != len(rs):
            raise VLRError(f"{peer} returned {len(mine)} gradient entries, expected {len(rs)}")
        grad = (
            np.array(
                [
                    _dec((int(v) - r) % int(hpk.n), 2 * fr, hpk.n)
                    for v, r in zip(mine, rs, strict=True)
                ]
            )
            / n
        )
        w = _gradient_step(w, grad, p)
    return VLRGuestModel(w[:-1].copy(), float(w[-1]), scaler, peer)


def train_host(ch: Channel, X: npt.ArrayLike, guest: str) -> VLRHostModel:
    """The host's role."""
    Xa = np.asarray(X, dtype=np.float64)
    setup = ch.recv(guest, "vlr/setup")
    gpk = PublicKey.from_payload(setup["key"])
    n = Xa.shape[0]
    pk, sk = generate_keypair(gpk.bits)
    ch.send(guest, "vlr/setup", {"key": pk.to_payload(), "n": n, "features": Xa.shape[1]})
    if int(setup["n"]) != n:
        raise VLRError(
            f"{ch.me} holds {n} aligned rows, {guest} holds {setup['n']}: align them with psi first"
        )
    p = VLRParams(
        iterations=int(setup["iterations"]),
        learning_rate=float(setup["learning_rate"]),
        l2=float(setup["l2"]),
        frac_bits=int(setup["frac_bits"]),
    )
    fr = p.frac_bits
    scaler = _Scaler.fit(Xa)
    Xs = scaler(Xa)
    w = np.zeros(Xs.shape[1])
    for _ in range(p.iterations):
        u = 0.25 * (Xs @ w)
        ch.send(guest, "vlr/u", {"cts": _blob(pk, _encrypt_vec(pk, u, fr))})
        theirs = _unblob(pk, ch.recv(guest, "vlr/masked_grad")["cts"], -1, guest)
        d_g = _unblob(gpk, ch.recv(guest, "vlr/d")["cts"], n, guest)
        g_enc, rs = _mask(gpk, _xt_dot(gpk, _add_plain(gpk, d_g, u, fr), Xs, fr))
        ch.send(guest, "vlr/masked_grad", {"cts": _blob(gpk, g_enc)})
        ch.send(guest, "vlr/unmasked", {"values": [int(sk.decrypt(c)) for c in theirs]})
        mine = ch.recv(guest, "vlr/unmasked")["values"]
        if len(mine) != len(rs):
            raise VLRError(f"{guest} returned {len(mine)} gradient entries, expected {len(rs)}")
        grad = (
            np.array(
                [
                    _dec((int(v) - r) % int(gpk.n), 2 * fr, gpk.n)
                    for v, r in zip(mine, rs, strict=True)
                ]
            )
            / n
        )
        w = _gradient_step(w, grad, p)
    return VLRHostModel(w, scaler, guest)


def predict_guest(ch: Channel, model: VLRGuestModel, X: npt.ArrayLike) -> F64:
    """Probabilities of aligned rows; the host sends its partial scores ``X_H·w_H``."""
    u = model.scaler(X) @ model.weights + model.intercept
    ch.send(model.host, "vlr/predict", {"n": u.size})
    uh = np.asarray(ch.recv(model.host, "vlr/partial")["u"], dtype=np.float64)
    if uh.shape != u.shape:
        raise VLRError(f"{model.host} scored {uh.size} rows, {ch.me} {u.size}")
    return np.asarray(1.0 / (1.0 + np.exp(-(u + uh))), dtype=np.float64)


def predict_host(ch: Channel, model: VLRHostModel, X: npt.ArrayLike) -> None:
    req = ch.recv(model.guest, "vlr/predict")
    u = model.scaler(X) @ model.weights
    if int(req["n"]) != u.size:
        raise VLRError(f"{ch.me} holds {u.size} rows to score, {model.guest} asked for {req['n']}")
    ch.send(model.guest, "vlr/partial", {"u": u})


@dataclass
class VLRPooledModel:
    weights: F64
    intercept: float
    scaler: _Scaler


def train_pooled(
    X: npt.ArrayLike, y: npt.ArrayLike, params: VLRParams | None = None
) -> VLRPooledModel:
    """The same Taylor-loss gradient descent on pooled columns, in plaintext."""
    p = params or VLRParams()
    Xa = np.asarray(X, dtype=np.float64)
    ya = np.asarray(y, dtype=np.float64).ravel()
    scaler = _Scaler.fit(Xa)
    Xs = np.hstack([scaler(Xa), np.ones((Xa.shape[0], 1))])
    w = np.zeros(Xs.shape[1])
    for _ in range(p.iterations):
        d = 0.25 * (Xs @ w) + 0.5 - ya
        w = _gradient_step(w, Xs.T @ d / Xs.shape[0], p)
    return VLRPooledModel(w[:-1].copy(), float(w[-1]), scaler)


def predict_pooled(model: VLRPooledModel, X: npt.ArrayLike) -> F64:
    z = model.scaler(X) @ model.weights + model.intercept
    return np.asarray(1.0 / (1.0 + np.exp(-z)), dtype=np.float64)

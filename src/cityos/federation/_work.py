"""Heavy Paillier work spread over local worker processes (gmpy2 holds the GIL).

Each function is pure over its arguments (big ints travel between a party and its own
workers as fixed-width bytes), so the same function runs in-process when ``workers == 1``.
A host's row ciphertexts of one tree are written once to a :class:`CipherFile` (a private
file in shared memory when there is one); workers read and parse it once per tree and then
get only row indices per node, instead of tens of megabytes of pickled ciphertexts per task.
Nothing here crosses between parties.
"""

from __future__ import annotations

import contextlib
import itertools
import multiprocessing
import os
import tempfile
from collections.abc import Callable, Sequence
from concurrent.futures import Executor, ProcessPoolExecutor
from typing import Any, TypeVar

import gmpy2
import numpy as np
import numpy.typing as npt
from gmpy2 import mpz

from cityos.federation.paillier import PrivateKey, PublicKey

__all__ = ["CipherFile", "Pool", "from_blob", "to_blob"]

T = TypeVar("T")
_KEYS: dict[tuple[int, int], PublicKey] = {}
_SKEYS: dict[tuple[int, int], PrivateKey] = {}
_FILES: dict[str, list[mpz]] = {}  # this process' parsed copy of the current CipherFile


class CipherFile:
    """One tree's row ciphertexts in a file private to this user, for the party's workers.

    >>> with CipherFile([5, 7, 9], 2) as f:
    ...     [int(c) for c in rows_of(f.path, 2, [2, 0])]
    [9, 5]
    """

    def __init__(self, cts: Sequence[int] | bytes, width: int) -> None:
        blob = cts if isinstance(cts, bytes) else to_blob(cts, width)
        shm = "/dev/shm"
        where = shm if os.path.isdir(shm) and os.access(shm, os.W_OK) else None
        fd, self.path = tempfile.mkstemp(prefix="cityos-fed-", suffix=".ct", dir=where)
        with os.fdopen(fd, "wb") as f:  # mkstemp: mode 0600
            f.write(blob)

    def close(self) -> None:
        _FILES.pop(self.path, None)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.path)

    def __enter__(self) -> CipherFile:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def rows_of(path: str, width: int, rows: Sequence[int]) -> list[mpz]:
    """The ciphertexts of ``rows`` from the :class:`CipherFile` at ``path`` (parsed once)."""
    cts = _FILES.get(path)
    if cts is None:
        _FILES.clear()  # one tree at a time
        with open(path, "rb") as f:
            cts = _FILES[path] = from_blob(f.read(), width)
    return [cts[r] for r in rows]


def to_blob(values: Sequence[int], width: int) -> bytes:
    return b"".join(int(v).to_bytes(width, "little") for v in values)


def from_blob(blob: bytes, width: int) -> list[mpz]:
    fb = int.from_bytes
    return [mpz(fb(blob[i : i + width], "little")) for i in range(0, len(blob), width)]


def _public(n: int, hs: int) -> PublicKey:
    pk = _KEYS.get((n, hs))
    if pk is None:
        _KEYS.clear()
        pk = _KEYS[(n, hs)] = PublicKey(n, hs)
    return pk


def _private(n: int, hs: int, p: int, q: int) -> PrivateKey:
    sk = _SKEYS.get((p, q))
    if sk is None:
        _SKEYS.clear()
        sk = _SKEYS[(p, q)] = PrivateKey(_public(n, hs), p, q)
    return sk


def encrypt_chunk(
    n: int, hs: int, plain: Sequence[int], p: int = 0, q: int = 0, window: int = 8
) -> bytes:
    """Encryptions of ``plain`` (through the CRT, with ``window``-bit fixed-base tables kept
    by this process, when the key holder passes ``p, q``)."""
    width = (_public(n, hs).nsq.bit_length() + 7) // 8
    if p:
        return to_blob(_private(n, hs, p, q).encrypt_many(plain, window), width)
    enc = _public(n, hs).encrypt
    return to_blob([enc(m) for m in plain], width)


def decrypt_chunk(n: int, hs: int, p: int, q: int, blob: bytes) -> list[int]:
    sk = _private(n, hs, p, q)
    width = (sk.public.nsq.bit_length() + 7) // 8
    return [int(sk.decrypt(c)) for c in from_blob(blob, width)]


def accumulate(nsq: int, bins: npt.NDArray[np.uint8], blob: bytes, n_bins: int) -> bytes:
    """Per feature and bin, the product (encrypted sum) of the rows' ciphertexts.

    ``bins`` is rows × features; ``blob`` holds one ciphertext per row. Returns features ×
    bins ciphertexts as a blob of the same width.
    """
    width = (int(nsq).bit_length() + 7) // 8
    return _accumulate(nsq, bins, from_blob(blob, width), n_bins, width)


def accumulate_rows(
    nsq: int, path: str, rows: npt.NDArray[np.int64], bins: npt.NDArray[np.uint8], n_bins: int
) -> bytes:
    """:func:`accumulate` over the ciphertexts of ``rows`` of the :class:`CipherFile` ``path``
    (``bins`` holds those rows' bins, in the same order)."""
    width = (int(nsq).bit_length() + 7) // 8
    return _accumulate(nsq, bins, rows_of(path, width, rows.tolist()), n_bins, width)


def _accumulate(
    nsq: int, bins: npt.NDArray[np.uint8], cts: list[mpz], n_bins: int, width: int
) -> bytes:
    m = mpz(nsq)
    out: list[mpz] = []
    one = mpz(1)
    n_feat = bins.shape[1]
    # Two features at a time: one pass over the rows fills their joint (b1, b2) histogram,
    # whose B² cells then give both marginals; n + 2·B² products instead of 2·n.
    pairs = len(cts) > 4 * n_bins * n_bins
    f = 0
    while f < n_feat:
        if pairs and f + 1 < n_feat:
            joint = [one] * (n_bins * n_bins)
            keys = (bins[:, f].astype(np.int64) * n_bins + bins[:, f + 1]).tolist()
            for c, k in zip(cts, keys, strict=True):
                joint[k] = joint[k] * c % m
            first = [one] * n_bins
            second = [one] * n_bins
            for k, c in enumerate(joint):
                if c != 1:
                    b1, b2 = divmod(k, n_bins)
                    first[b1] = first[b1] * c % m
                    second[b2] = second[b2] * c % m
            out.extend(first)
            out.extend(second)
            f += 2
            continue
        acc = [one] * n_bins
        for c, b in zip(cts, bins[:, f].tolist(), strict=True):
            acc[b] = acc[b] * c % m
        out.extend(acc)
        f += 1
    return to_blob(out, width)


def subtract(nsq: int, parent: bytes, child: bytes) -> bytes:
    """Ciphertexts of ``Dec(parent[i]) - Dec(child[i])`` (histogram subtraction)."""
    width = (int(nsq).bit_length() + 7) // 8
    m = mpz(nsq)
    out = [
        p * gmpy2.invert(c, m) % m if c != 1 else p
        for p, c in zip(from_blob(parent, width), from_blob(child, width), strict=True)
    ]
    return to_blob(out, width)


def pack(nsq: int, blob: bytes, per: int, slot_bits: int) -> bytes:
    """Groups of ``per`` ciphertexts packed into one each (plaintext shift and add)."""
    width = (int(nsq).bit_length() + 7) // 8
    cts = from_blob(blob, width)
    m = mpz(nsq)
    shift = mpz(1) << slot_bits
    out = []
    for i in range(0, len(cts), per):
        acc = cts[i]
        for c in cts[i + 1 : i + per]:
            acc = gmpy2.powmod(acc, shift, m) * c % m
        out.append(acc)
    return to_blob(out, width)


class _Inline(Executor):
    def submit(self, fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> Any:
        from concurrent.futures import Future

        fut: Future[T] = Future()
        fut.set_result(fn(*args, **kwargs))
        return fut


class Pool:
    """``workers`` local processes (spawned, so threads of the caller are safe), or inline."""

    def __init__(self, workers: int = 1) -> None:
        self.workers = max(1, int(workers))
        self._ex: Executor = (
            _Inline()
            if self.workers == 1
            else ProcessPoolExecutor(self.workers, mp_context=multiprocessing.get_context("spawn"))
        )

    def map(self, fn: Callable[..., T], calls: Sequence[tuple[Any, ...]]) -> list[T]:
        futs = [self._ex.submit(fn, *args) for args in calls]
        return [f.result() for f in futs]

    def split(self, n: int, min_chunk: int = 1) -> list[tuple[int, int]]:
        """``n`` items cut into about ``2 × workers`` ranges (one range inline)."""
        parts = 1 if self.workers == 1 else min(2 * self.workers, max(1, n // max(1, min_chunk)))
        edges = np.linspace(0, n, parts + 1).astype(int)
        return [(int(a), int(b)) for a, b in itertools.pairwise(edges) if b > a]

    def close(self) -> None:
        self._ex.shutdown()

    def __enter__(self) -> Pool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

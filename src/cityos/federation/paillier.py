"""Paillier encryption on gmpy2, with fast key-holder encryption and packed plaintexts.

Ciphertexts are plain ``gmpy2.mpz`` (they cross a federation as big ints through the codec).
Addition of plaintexts is multiplication of ciphertexts modulo ``n²``.

Encryption ``c = (1 + m·n) · hₛ^α mod n²`` follows Damgård, Jurik and Nielsen (2010): ``hₛ``
is the ``n``-th power of ``-x² mod n`` for a random ``x``, and ``α`` is uniform with (at least)
half as many bits as ``n``; because ``hₛ`` is fixed, ``hₛ^α`` is computed with a precomputed
fixed-base table of ``w``-bit windows, ``⌈|α|/w⌉`` multiplications instead of a full
exponentiation (128 for 8-bit windows and 2048-bit keys). The key holder encrypts through the
CRT over ``p²`` and ``q²`` and can pick wider windows for many encryptions
(:meth:`PrivateKey.encrypt_many`, :func:`best_window`): 86 multiplications with 12-bit
windows, for a table built once per process. Decryption uses the CRT over ``p²`` and ``q²``.

Packing: :class:`SlotLayout` places several non-negative fixed-width integers in one
plaintext; sums of up to ``capacity`` packed plaintexts never carry from one slot into the
next, so one ciphertext carries several running sums (gradient, hessian, count).

>>> pk, sk = generate_keypair(512)  # small key: the doctest is quick; use >= 2048
>>> a, b = pk.encrypt(20), pk.encrypt(22)
>>> sk.decrypt(pk.add(a, b))
mpz(42)
"""

from __future__ import annotations

import secrets
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import gmpy2
import numpy as np
from gmpy2 import mpz

__all__ = [
    "DEFAULT_KEY_BITS",
    "PrivateKey",
    "PublicKey",
    "SlotLayout",
    "best_window",
    "generate_keypair",
]

#: Default modulus size; the federation never uses less than 2048 bits unless told to.
DEFAULT_KEY_BITS = 2048
_WINDOW = 8
#: widest fixed-base window (12 bits: two tables of about 100 MB each for 2048-bit keys)
MAX_WINDOW = 12


class PublicKey:
    """The public half: encrypt and add."""

    def __init__(self, n: int, hs: int) -> None:
        self.n = mpz(n)
        self.nsq = self.n * self.n
        self.hs = mpz(hs)
        self.bits = int(self.n.bit_length())
        self._alpha_bits = (self.bits + 1) // 2
        self._table: list[list[mpz]] | None = None

    def to_payload(self) -> dict[str, int]:
        return {"n": int(self.n), "hs": int(self.hs)}

    @classmethod
    def from_payload(cls, d: dict[str, int]) -> PublicKey:
        n, hs = int(d["n"]), int(d["hs"])
        if n.bit_length() < 1024 or hs <= 1 or hs >= n * n:
            raise ValueError("not a Paillier public key")
        return cls(n, hs)

    def _fixed_base(self) -> list[list[mpz]]:
        if self._table is None:
            self._table = _table(self.hs, self.nsq, self._alpha_bits)
        return self._table

    def obfuscator(self) -> mpz:
        """``hₛ^α mod n²`` for a fresh random ``α``."""
        return _fixed_pow(self._fixed_base(), secrets.randbits(self._alpha_bits), self.nsq)

    def encrypt(self, m: int) -> mpz:
        """A fresh encryption of ``0 <= m < n``."""
        if not 0 <= m < self.n:
            raise ValueError("plaintext out of range [0, n)")
        return (1 + mpz(m) * self.n) * self.obfuscator() % self.nsq

    def encrypt_many(self, ms: Iterable[int]) -> list[mpz]:
        return [self.encrypt(m) for m in ms]

    def add(self, a: mpz, b: mpz) -> mpz:
        return a * b % self.nsq

    def sub(self, a: mpz, b: mpz) -> mpz:
        """An encryption of ``Dec(a) - Dec(b)`` (mod ``n``)."""
        return a * gmpy2.invert(b, self.nsq) % self.nsq

    def mul_pow2(self, a: mpz, k: int) -> mpz:
        """An encryption of ``Dec(a) · 2^k``."""
        return gmpy2.powmod(a, mpz(1) << k, self.nsq)

    def pack(self, cts: Sequence[mpz], width: int) -> mpz:
        """One ciphertext of ``Σ Dec(cts[j]) · 2^(width·(len-1-j))`` (each plaintext < 2^width)."""
        acc = cts[0]
        shift = mpz(1) << width
        for c in cts[1:]:
            acc = gmpy2.powmod(acc, shift, self.nsq) * c % self.nsq
        return acc


def _table(base: mpz, mod: mpz, bits: int, window: int = _WINDOW) -> list[list[mpz]]:
    """``table[i][d] = base^(d·2^(w·i)) mod mod``: fixed-base exponentiation in ``w``-bit windows."""
    table = []
    for _ in range((bits + window - 1) // window):
        row = [mpz(1), base]
        for _ in range(2, 1 << window):
            row.append(row[-1] * base % mod)
        table.append(row)
        base = row[-1] * base % mod
    return table


def _fixed_pow(table: list[list[mpz]], e: int, mod: mpz) -> mpz:
    acc = mpz(1)
    mask = (1 << _WINDOW) - 1
    for row in table:
        d = e & mask
        if d:
            acc = acc * row[d] % mod
        e >>= _WINDOW
    return acc


def _random_digits(count: int, rows: int, window: int) -> list[list[int]]:
    """``count`` uniform exponents of ``rows·window`` bits, as ``rows`` base-``2^window`` digits.

    >>> d = _random_digits(3, 86, 12)
    >>> len(d), len(d[0]), all(0 <= x < 4096 for r in d for x in r)
    (3, 86, True)
    """
    raw = np.frombuffer(secrets.token_bytes(2 * count * rows), dtype=np.uint16)
    digits: list[list[int]] = (raw & ((1 << window) - 1)).reshape(count, rows).tolist()
    return digits


def _pow_digits(table: list[list[mpz]], digits: Sequence[int], mod: mpz) -> mpz:
    """``∏ table[i][digits[i]] mod mod`` (``table[i][0]`` is 1)."""
    it = zip(table, digits, strict=True)
    row, d = next(it)
    acc = row[d]
    for row, d in it:
        acc = acc * row[d] % mod
    return acc


def best_window(encryptions: int, bits: int = DEFAULT_KEY_BITS) -> int:
    """The fixed-base window that makes ``encryptions`` key-holder encryptions cheapest.

    Cost in modular products: building the table (``rows · 2^w``) plus ``rows`` per
    encryption, ``rows = ⌈(bits/2)/w⌉``; at most :data:`MAX_WINDOW` bits (the table's memory).

    >>> best_window(10), best_window(50_000)
    (4, 12)
    """
    half = (bits + 1) // 2

    def cost(w: int) -> int:
        rows = -(-half // w)
        return rows * (1 << w) + rows * max(0, encryptions)

    return min(range(4, MAX_WINDOW + 1), key=cost)


class PrivateKey:
    """The private half: decrypt (CRT), and encrypt about twice as fast (CRT over p², q²)."""

    def __init__(self, pk: PublicKey, p: int, q: int) -> None:
        self.public = pk
        self.p, self.q = mpz(p), mpz(q)
        self.psq, self.qsq = self.p * self.p, self.q * self.q
        g = pk.n + 1
        self._hp = gmpy2.invert(self._l(gmpy2.powmod(g, self.p - 1, self.psq), self.p), self.p)
        self._hq = gmpy2.invert(self._l(gmpy2.powmod(g, self.q - 1, self.qsq), self.q), self.q)
        self._pinv = gmpy2.invert(self.p, self.q)
        self._psq_inv = gmpy2.invert(self.psq, self.qsq)
        self._tables: dict[int, tuple[list[list[mpz]], list[list[mpz]]]] = {}

    def _crt_tables(self, window: int) -> tuple[list[list[mpz]], list[list[mpz]]]:
        t = self._tables.get(window)
        if t is None:
            self._tables.clear()  # one window at a time: a wide table is large
            bits = self.public._alpha_bits
            t = self._tables[window] = (
                _table(self.public.hs % self.psq, self.psq, bits, window),
                _table(self.public.hs % self.qsq, self.qsq, bits, window),
            )
        return t

    def encrypt(self, m: int) -> mpz:
        """The same distribution as :meth:`PublicKey.encrypt`, computed modulo ``p²`` and ``q²``."""
        return self.encrypt_many([m])[0]

    def encrypt_many(self, ms: Sequence[int], window: int = _WINDOW) -> list[mpz]:
        """Fresh encryptions of ``ms`` through the CRT, with ``window``-bit fixed-base tables.

        Each obfuscator is ``hₛ^α`` for a fresh uniform ``α`` of ``⌈|n|/2 / w⌉·w`` bits (at
        least half as many as ``n``, as in :class:`PublicKey`); the tables for ``window`` are
        built on first use and kept (see :func:`best_window`).
        """
        pk = self.public
        if not 1 <= window <= MAX_WINDOW:
            raise ValueError(f"window must be in [1, {MAX_WINDOW}] bits, got {window}")
        for m in ms:
            if not 0 <= m < pk.n:
                raise ValueError("plaintext out of range [0, n)")
        tp, tq = self._crt_tables(window)
        psq, qsq, psq_inv, n, nsq = self.psq, self.qsq, self._psq_inv, pk.n, pk.nsq
        out = []
        for m, digits in zip(ms, _random_digits(len(ms), len(tp), window), strict=True):
            xp = _pow_digits(tp, digits, psq)
            xq = _pow_digits(tq, digits, qsq)
            obf = xp + psq * ((xq - xp) * psq_inv % qsq)
            out.append((1 + mpz(m) * n) * obf % nsq)
        return out

    @staticmethod
    def _l(x: mpz, d: mpz) -> mpz:
        return (x - 1) // d

    def decrypt(self, c: int) -> mpz:
        c = mpz(c)
        mp = self._l(gmpy2.powmod(c, self.p - 1, self.psq), self.p) * self._hp % self.p
        mq = self._l(gmpy2.powmod(c, self.q - 1, self.qsq), self.q) * self._hq % self.q
        return mp + self.p * ((mq - mp) * self._pinv % self.q)


def _prime(bits: int) -> mpz:
    while True:
        cand = mpz(secrets.randbits(bits)) | (mpz(3) << (bits - 2)) | 1
        p = gmpy2.next_prime(cand)
        if p.bit_length() == bits:
            return p


def generate_keypair(bits: int = DEFAULT_KEY_BITS) -> tuple[PublicKey, PrivateKey]:
    """A fresh key pair whose modulus ``n`` has exactly ``bits`` bits."""
    if bits < 512 or bits % 2:
        raise ValueError(f"key size {bits} bits: use an even size >= 2048 (>= 512 only for tests)")
    while True:
        p, q = _prime(bits // 2), _prime(bits // 2)
        n = p * q
        if p != q and n.bit_length() == bits and gmpy2.gcd(n, (p - 1) * (q - 1)) == 1:
            break
    x = mpz(secrets.randbelow(int(n) - 2)) + 2
    hs = gmpy2.powmod(-x * x % n, n, n * n)
    pk = PublicKey(int(n), int(hs))
    return pk, PrivateKey(pk, int(p), int(q))


@dataclass(frozen=True)
class SlotLayout:
    """Fixed-width slots of a packed plaintext, most significant first.

    ``widths[k]`` bits hold slot ``k``'s running sum; the whole fits in ``bits`` bits.

    >>> lay = SlotLayout((8, 8))
    >>> lay.unpack(lay.pack((3, 4)) + lay.pack((1, 2)))
    (4, 6)
    """

    widths: tuple[int, ...]

    @property
    def bits(self) -> int:
        return sum(self.widths)

    def pack(self, values: Sequence[int]) -> int:
        out = 0
        for v, w in zip(values, self.widths, strict=True):
            out = (out << w) | int(v)
        return out

    def unpack(self, x: int) -> tuple[int, ...]:
        x = int(x)
        out = []
        for w in reversed(self.widths):
            out.append(x & ((1 << w) - 1))
            x >>= w
        return tuple(reversed(out))

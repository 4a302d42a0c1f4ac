"""Paillier encryption on gmpy2, with fast key-holder encryption and packed plaintexts.

Ciphertexts are plain ``gmpy2.mpz`` (they cross a federation as big ints through the codec).
Addition of plaintexts is multiplication of ciphertexts modulo ``n²``.

Encryption ``c = (1 + m·n) · hₛ^α mod n²`` follows Damgård, Jurik and Nielsen (2010): ``hₛ``
is the ``n``-th power of ``-x² mod n`` for a random ``x``, and ``α`` is uniform with half as
many bits as ``n``; because ``hₛ`` is fixed, ``hₛ^α`` is computed with a precomputed
fixed-base table (8-bit windows), about 130 multiplications instead of a full exponentiation.
Decryption uses the CRT over ``p²`` and ``q²``.

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
from gmpy2 import mpz

__all__ = ["DEFAULT_KEY_BITS", "PrivateKey", "PublicKey", "SlotLayout", "generate_keypair"]

#: Default modulus size; the federation never uses less than 2048 bits unless told to.
DEFAULT_KEY_BITS = 2048
_WINDOW = 8


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


def _table(base: mpz, mod: mpz, bits: int) -> list[list[mpz]]:
    """``table[i][d] = base^(d·2^(8i)) mod mod``: fixed-base exponentiation in 8-bit windows."""
    table = []
    for _ in range((bits + _WINDOW - 1) // _WINDOW):
        row = [mpz(1), base]
        for _ in range(2, 1 << _WINDOW):
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
        self._tables: tuple[list[list[mpz]], list[list[mpz]]] | None = None

    def encrypt(self, m: int) -> mpz:
        """The same distribution as :meth:`PublicKey.encrypt`, computed modulo ``p²`` and ``q²``."""
        pk = self.public
        if not 0 <= m < pk.n:
            raise ValueError("plaintext out of range [0, n)")
        if self._tables is None:
            bits = pk._alpha_bits
            self._tables = (
                _table(pk.hs % self.psq, self.psq, bits),
                _table(pk.hs % self.qsq, self.qsq, bits),
            )
        alpha = secrets.randbits(pk._alpha_bits)
        xp = _fixed_pow(self._tables[0], alpha, self.psq)
        xq = _fixed_pow(self._tables[1], alpha, self.qsq)
        obf = xp + self.psq * ((xq - xp) * self._psq_inv % self.qsq)
        return (1 + mpz(m) * pk.n) * obf % pk.nsq

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

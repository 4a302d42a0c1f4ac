"""Entity alignment by ECDH private set intersection (DH-PSI over Curve25519).

Each party hashes its ids to the prime-order group of edwards25519 and blinds them with a
secret scalar; a point blinded by both secrets is equal for equal ids, and under the DDH
assumption a singly-blinded point of an id outside the intersection is indistinguishable from
a random point. The guest learns which of its ids intersect; the host learns the
intersection (the aligned ids both parties train on) and the size of the guest's set.

Group choice: the installed PyNaCl (1.6) does not expose libsodium's ristretto255 functions,
so ids are hashed to edwards25519 the way RFC 9380 ``hash_to_curve`` (and ristretto's
``from_hash``) does: SHA-512 of a domain-separated id gives two 32-byte field strings, each
is mapped by Elligator 2 (libsodium's ``crypto_core_ed25519_from_uniform``, which clears the
cofactor so the point lies in the prime-order subgroup) and the two points are added. A
single Elligator map would not be a random oracle into the group; the sum of two is.

Blinding runs on the birationally equivalent Montgomery curve (Curve25519): a hashed point is
sent and multiplied as its ``u``-coordinate ``(1 + y) / (1 - y)`` with X25519
(libsodium's ``crypto_scalarmult``, RFC 7748), which is about three times cheaper than an
edwards25519 scalar multiplication and needs no subgroup check: X25519 scalars are clamped to
multiples of the cofactor, so a point with a small-order component is mapped into the
prime-order subgroup and a small-order point is refused (its product is the identity).
Multiplication by clamped scalars commutes, and ``u`` identifies a point up to its sign, so
equal doubly-blinded ``u`` mean equal ids (a hash collision up to sign is as unlikely as any).
A value from a peer must be a canonical ``u`` (below ``2^255 - 19``) of a point on the curve
itself, not on its twist.

Protocol (guest G with ids X, host H with ids Y; secrets a, b):
1. G → H: ``[a·h(x) for x in X]`` (in G's order).
2. H → G: ``[b·(a·h(x))]`` in the same order, and ``[b·h(y) for y in Y]`` shuffled.
3. G computes ``a·(b·h(y))``; equal points mark the intersection. G → H: the positions of
   the intersecting entries in H's shuffled list, so H learns exactly the intersection.
Both return the intersecting ids sorted, the common row order of vertical training.
"""

from __future__ import annotations

import hashlib
import os
import secrets
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor

import gmpy2
import nacl.bindings as nb

from cityos.errors import CityOSError
from cityos.federation._channel import Channel

__all__ = ["NoOverlap", "PSIError", "hash_to_group", "run_guest", "run_host"]

_DOMAIN = b"cityos-psi-v1:edwards25519_XMD:SHA-512_ELL2_RO_:"
_CHUNK = 4096
_P = (1 << 255) - 19  # the field of Curve25519 / edwards25519
_A = 486662  # Curve25519: v² = u³ + A·u² + u
_MPZ_P = gmpy2.mpz(_P)


class PSIError(CityOSError):
    """Entity alignment failed."""


class NoOverlap(PSIError):
    """The parties have no id in common."""


def hash_to_group(ident: str) -> bytes:
    """The prime-order edwards25519 point of ``ident`` (random-oracle style, see module doc).

    >>> p = hash_to_group("sensor-1")
    >>> len(p), p == hash_to_group("sensor-1"), p == hash_to_group("sensor-2")
    (32, True, False)
    """
    h = hashlib.sha512(_DOMAIN + ident.encode("utf-8")).digest()
    return bytes(
        nb.crypto_core_ed25519_add(
            nb.crypto_core_ed25519_from_uniform(h[:32]), nb.crypto_core_ed25519_from_uniform(h[32:])
        )
    )


def _scalar() -> bytes:
    # X25519 clamps it: 2^254 + 8·(251 random bits), a permutation of the prime-order group
    return os.urandom(32)


def _montgomery_u(point: bytes) -> bytes:
    """The Curve25519 ``u`` of an edwards25519 point: ``(1 + y) / (1 - y)`` (RFC 7748)."""
    y = int.from_bytes(point, "little") & ((1 << 255) - 1)
    u = (1 + y) * int(gmpy2.invert(_MPZ_P - y + 1, _MPZ_P)) % _P
    return u.to_bytes(32, "little")


def _hash_u(ident: str) -> bytes:
    """The ``u``-coordinate of :func:`hash_to_group` ``(ident)``, the value X25519 blinds."""
    return _montgomery_u(hash_to_group(ident))


def _on_curve(u_bytes: bytes) -> bool:
    """``u_bytes`` is a canonical ``u`` of a point of Curve25519 (not of its quadratic twist)."""
    if len(u_bytes) != 32:
        return False
    u = int.from_bytes(u_bytes, "little")
    if u >= _P:
        return False
    rhs = (u * (u * (u + _A) + 1)) % _P
    return rhs != 0 and gmpy2.jacobi(rhs, _MPZ_P) == 1


def _x25519(k: bytes, u: bytes) -> bytes:
    try:
        return nb.crypto_scalarmult(k, u)
    except RuntimeError:  # libsodium refuses a product that is the identity
        raise PSIError("a peer sent a point of small order") from None


def _hash_blind(ids: Sequence[str], k: bytes) -> list[bytes]:
    return [_x25519(k, _hash_u(i)) for i in ids]


def _blind(points: Sequence[bytes], k: bytes) -> list[bytes]:
    out = []
    for p in points:
        if not _on_curve(p):
            raise PSIError("a peer sent a value that is not a point of the curve")
        out.append(_x25519(k, p))
    return out


def _parallel(fn: object, items: Sequence[object], k: bytes, workers: int) -> list[bytes]:
    # libsodium calls release the GIL, so threads use every core
    chunks = [items[i : i + _CHUNK] for i in range(0, len(items), _CHUNK)]
    if workers <= 1 or len(chunks) <= 1:
        return [p for c in chunks for p in fn(c, k)]  # type: ignore[operator]
    with ThreadPoolExecutor(workers) as ex:
        return [p for part in ex.map(lambda c: fn(c, k), chunks) for p in part]  # type: ignore[operator]


def _canon(ids: Iterable[object], who: str) -> list[str]:
    out = [str(i) for i in ids]
    if not out:
        raise PSIError(f"{who} has no ids to align")
    if len(set(out)) != len(out):
        raise PSIError(f"{who}'s ids are not unique ({len(out) - len(set(out))} duplicates)")
    return out


def _pack(points: list[bytes]) -> bytes:
    return b"".join(points)


def _unpack(blob: bytes, who: str) -> list[bytes]:
    if len(blob) % 32:
        raise PSIError(f"{who} sent {len(blob)} bytes, not a whole number of points")
    return [blob[i : i + 32] for i in range(0, len(blob), 32)]


def run_guest(
    ch: Channel, ids: Iterable[object], host: str, *, workers: int = 2, tag: str = "psi"
) -> list[str]:
    """The guest's role: the intersection of its ``ids`` with ``host``'s, sorted.

    Raises :class:`NoOverlap` (at both parties) when the intersection is empty.
    """
    mine = _canon(ids, ch.me)
    a = _scalar()
    ch.send(host, f"{tag}/guest", {"points": _pack(_parallel(_hash_blind, mine, a, workers))})
    reply = ch.recv(host, f"{tag}/host")
    mine_ab = _unpack(reply["guest_ab"], host)
    if len(mine_ab) != len(mine):
        raise PSIError(f"{host} returned {len(mine_ab)} points for {len(mine)} ids")
    theirs_ab = _parallel(_blind, _unpack(reply["host_b"], host), a, workers)
    index = {p: j for j, p in enumerate(theirs_ab)}
    hits = [(i, index[p]) for i, p in enumerate(mine_ab) if p in index]
    ch.send(host, f"{tag}/result", {"positions": sorted(j for _, j in hits)})
    if not hits:
        raise NoOverlap(
            f"no id of {ch.me} ({len(mine)} ids) is also an id of {host} ({len(theirs_ab)} ids)"
        )
    return sorted(mine[i] for i, _ in hits)


def run_host(
    ch: Channel, ids: Iterable[object], guest: str, *, workers: int = 2, tag: str = "psi"
) -> list[str]:
    """The host's role: the intersection of its ``ids`` with ``guest``'s, sorted."""
    mine = _canon(ids, ch.me)
    b = _scalar()
    order = list(range(len(mine)))
    secrets.SystemRandom().shuffle(order)
    shuffled = [mine[i] for i in order]
    theirs = _unpack(ch.recv(guest, f"{tag}/guest")["points"], guest)
    ch.send(
        guest,
        f"{tag}/host",
        {
            "guest_ab": _pack(_parallel(_blind, theirs, b, workers)),
            "host_b": _pack(_parallel(_hash_blind, shuffled, b, workers)),
        },
    )
    positions = ch.recv(guest, f"{tag}/result")["positions"]
    if not all(isinstance(j, int) and 0 <= j < len(shuffled) for j in positions):
        raise PSIError(f"{guest} sent positions outside this party's {len(shuffled)} ids")
    if not positions:
        raise NoOverlap(
            f"no id of {ch.me} ({len(mine)} ids) is also an id of {guest} ({len(theirs)} ids)"
        )
    return sorted(shuffled[j] for j in positions)

"""ECDH private set intersection between two parties."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from cityos.federation import psi
from cityos.federation._channel import Channel
from cityos.testing.federation import LocalFederation


def _run(
    guest_ids: list[str], host_ids: list[str], capture: list[bytes] | None = None
) -> dict[str, list[str]]:
    hook = None if capture is None else (lambda f, t, tag, raw: capture.append(raw))
    fed = LocalFederation(["env", "weather"], on_message=hook)
    out: dict[str, list[str]] = fed.run(
        {
            "env": lambda ch: psi.run_guest(ch, guest_ids, "weather"),
            "weather": lambda ch: psi.run_host(ch, host_ids, "env"),
        }
    )
    return out


def test_both_parties_get_exactly_the_sorted_intersection() -> None:
    g = [f"station-{i:05d}" for i in range(0, 3000, 2)]
    h = [f"station-{i:05d}" for i in range(0, 3000, 3)][::-1]
    out = _run(g, h)
    expected = sorted(set(g) & set(h))
    assert out["env"] == expected and out["weather"] == expected and len(expected) == 500


def test_no_id_and_no_unblinded_hash_crosses() -> None:
    g = [f"citizen-{i}" for i in range(200)]
    h = [f"citizen-{i}" for i in range(150, 400)]
    captured: list[bytes] = []
    out = _run(g, h, captured)
    assert out["env"] == sorted(set(g) & set(h))
    wire = b"".join(captured)
    for ident in set(g) | set(h):
        assert ident.encode() not in wire
        # the hash point of an id is only ever sent blinded by a secret scalar
        assert psi.hash_to_group(ident) not in wire
        assert psi._hash_u(ident) not in wire  # nor as the u-coordinate X25519 blinds


def test_no_overlap_is_a_clear_error_at_both_parties() -> None:
    fed = LocalFederation(["env", "weather"])
    errors: dict[str, str] = {}

    def role(fn: Any, ids: list[str], peer: str, me: str) -> Callable[[Channel], object]:
        def run(ch: Channel) -> object:
            try:
                return fn(ch, ids, peer)
            except psi.NoOverlap as e:
                errors[me] = str(e)
                return None

        return run

    fed.run(
        {
            "env": role(psi.run_guest, ["a", "b"], "weather", "env"),
            "weather": role(psi.run_host, ["c", "d", "e"], "env", "weather"),
        }
    )
    assert "no id of env (2 ids) is also an id of weather (3 ids)" in errors["env"]
    assert "no id of weather (3 ids)" in errors["weather"]


def test_duplicate_or_empty_ids_are_refused() -> None:
    with pytest.raises(psi.PSIError, match="not unique"):
        _run(["a", "a"], ["a"])
    with pytest.raises(psi.PSIError, match="no ids"):
        _run([], ["a"])


def test_a_non_group_point_from_a_peer_is_refused() -> None:
    fed = LocalFederation(["env", "weather"])

    def evil_guest(ch: Channel) -> None:
        ch.send("weather", "psi/guest", {"points": b"\x01" * 31 + b"\x80"})
        ch.recv("weather", "psi/host")

    with pytest.raises(psi.PSIError, match="not a point"):
        fed.run({"env": evil_guest, "weather": lambda ch: psi.run_host(ch, ["a"], "env")})


def test_the_montgomery_u_of_a_hashed_point_is_libsodiums() -> None:
    import nacl.bindings as nb

    for ident in ("a", "sensor-17", "id-000000042"):
        p = psi.hash_to_group(ident)
        assert psi._montgomery_u(p) == nb.crypto_sign_ed25519_pk_to_curve25519(p)


def test_blinding_commutes_and_separates_ids() -> None:
    a, b = psi._scalar(), psi._scalar()
    ids = [f"x-{i}" for i in range(50)]
    ab = psi._blind(psi._hash_blind(ids, a), b)
    ba = psi._blind(psi._hash_blind(ids, b), a)
    assert ab == ba
    assert len(set(ab)) == len(ids)


def test_twist_small_order_and_non_canonical_values_are_refused() -> None:
    k = psi._scalar()
    p = (1 << 255) - 19
    # u = 2 is on the twist of Curve25519 (2³ + 486662·2² + 2 is not a square mod p)
    twist = (2).to_bytes(32, "little")
    zero = bytes(32)  # u = 0: the point of order 2
    non_canonical = (p + 9).to_bytes(32, "little")  # 9 (the base point) plus p
    for bad in (twist, zero, non_canonical, b"\x09" * 31):
        with pytest.raises(psi.PSIError, match="not a point"):
            psi._blind([bad], k)
    assert psi._blind([(9).to_bytes(32, "little")], k)  # the base point itself is fine


def test_small_order_points_of_the_curve_are_refused() -> None:
    k = psi._scalar()
    order_4 = 1  # (1, ±√486664) has order 4
    order_8 = 325606250916557431795983626356110631294008115727848805560023387167927233504
    for u in (order_4, order_8):
        b = u.to_bytes(32, "little")
        assert psi._on_curve(b)  # on the curve, so only the product test catches it
        with pytest.raises(psi.PSIError, match="small order"):
            psi._blind([b], k)

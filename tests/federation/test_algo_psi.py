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

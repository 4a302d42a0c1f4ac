"""The federation codec and the in-process federation."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cityos.federation._channel import Channel, PeerLost
from cityos.federation._codec import CodecError, decode, encode
from cityos.testing.federation import LocalFederation

json_like = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**4200), max_value=2**4200)
    | st.floats(allow_nan=False)
    | st.text()
    | st.binary(),
    lambda kids: (
        st.lists(kids, max_size=12) | st.dictionaries(st.text(max_size=8), kids, max_size=6)
    ),
    max_leaves=40,
)


@settings(max_examples=25, deadline=None)
@given(st.dictionaries(st.text(max_size=10), json_like, max_size=6))
def test_round_trip_json_like(payload: dict[str, object]) -> None:
    assert decode(encode(payload)) == payload


def test_big_int_vectors_and_arrays() -> None:
    cts = [3**k * 2**4000 + k for k in range(50)] + [0, 1]
    arrays = {
        d: np.arange(12, dtype=d).reshape(3, 4)
        for d in ("int8", "uint16", "int64", "float32", "float64")
    }
    back = decode(encode({"cts": cts, "tup": (1, 2), **arrays, "b": np.array([True, False])}))
    assert back["cts"] == cts
    assert back["tup"] == [1, 2]
    for d, a in arrays.items():
        assert back[d].dtype == a.dtype and back[d].shape == (3, 4) and (back[d] == a).all()
    assert back["b"].tolist() == [True, False]


def test_gmpy2_ints_travel_as_ints() -> None:
    gmpy2 = pytest.importorskip("gmpy2")
    back = decode(encode({"c": gmpy2.mpz(2) ** 3000, "v": [gmpy2.mpz(k) for k in range(10)]}))
    assert back == {"c": 2**3000, "v": list(range(10))}


@pytest.mark.parametrize(
    "bad",
    [object(), {1: 2}, np.array(["a"]), np.array([object()]), {"f": lambda: 0}, set()],
)
def test_refuses_what_is_not_data(bad: object) -> None:
    with pytest.raises(CodecError):
        encode({"x": bad})


def test_refuses_malformed_bytes() -> None:
    good = encode({"x": [1, 2, "three"], "a": np.zeros(4)})
    with pytest.raises(CodecError, match="magic"):
        decode(b"\x80\x04pickle" + good)
    with pytest.raises(CodecError, match="version"):
        decode(good[:3] + b"\x09" + good[4:])
    for cut in range(5, len(good)):
        with pytest.raises(CodecError):
            decode(good[:cut])
    with pytest.raises(CodecError, match="trailing"):
        decode(good + b"N")
    # a huge declared length is refused before anything is allocated
    with pytest.raises(CodecError, match="exceeds"):
        decode(b"CFC\x01M\x01\x01xL" + b"\xff\xff\xff\xff\x0f")


def test_local_federation_orders_messages_per_tag_and_captures_bytes() -> None:
    seen: list[tuple[str, str, str, int]] = []
    fed = LocalFederation(
        ["a", "b", "c"], on_message=lambda f, t, tag, raw: seen.append((f, t, tag, len(raw)))
    )

    def a(ch: Channel) -> list[int]:
        for i in range(5):
            ch.send("b", "n", {"i": i})
        ch.send("c", "m", {"i": 99})
        return [ch.recv("b", "back")["i"] for _ in range(5)]

    def b(ch: Channel) -> None:
        for _ in range(5):
            ch.send("a", "back", {"i": ch.recv("a", "n")["i"] * 10})

    def c(ch: Channel) -> int:
        return int(ch.recv("a", "m")["i"])

    out = fed.run({"a": a, "b": b, "c": c})
    assert out["a"] == [0, 10, 20, 30, 40] and out["c"] == 99
    assert len(seen) == 11 and {s[:3] for s in seen} >= {
        ("a", "b", "n"),
        ("b", "a", "back"),
        ("a", "c", "m"),
    }
    assert isinstance(fed.channel("a"), Channel)


def test_a_failing_party_makes_its_peers_fail_not_hang() -> None:
    fed = LocalFederation(["guest", "host"], timeout=30)

    def guest(ch: Channel) -> None:
        ch.recv("host", "never")

    def host(ch: Channel) -> None:
        raise RuntimeError("host lost its dataset")

    t0 = time.monotonic()
    with pytest.raises(RuntimeError, match="lost its dataset"):
        fed.run({"guest": guest, "host": host})
    assert time.monotonic() - t0 < 10


def test_recv_timeout_is_peer_lost() -> None:
    fed = LocalFederation(["a", "b"])
    with pytest.raises(PeerLost, match="within the timeout"):
        fed.channel("a").recv("b", "x", timeout=0.05)
    with pytest.raises(KeyError):
        fed.channel("a").send("z", "x", {})
    assert threading.active_count() >= 1

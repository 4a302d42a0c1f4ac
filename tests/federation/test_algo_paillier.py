"""Paillier: correctness of encryption, addition, subtraction and packing."""

from __future__ import annotations

import secrets

import numpy as np

from cityos.federation import _work
from cityos.federation.paillier import DEFAULT_KEY_BITS, PublicKey, SlotLayout, generate_keypair


def test_default_key_is_2048_bits_and_round_trips() -> None:
    assert DEFAULT_KEY_BITS == 2048
    pk, sk = generate_keypair()
    assert pk.n.bit_length() == 2048 and sk.p * sk.q == pk.n
    for m in (0, 1, 2**100, int(pk.n) - 1):
        assert sk.decrypt(pk.encrypt(m)) == m
    a, b = pk.encrypt(2**60 + 5), pk.encrypt(7)
    assert sk.decrypt(pk.add(a, b)) == 2**60 + 12
    assert sk.decrypt(pk.sub(a, b)) == 2**60 - 2
    assert sk.decrypt(pk.mul_pow2(b, 300)) == 7 << 300
    assert pk.encrypt(5) != pk.encrypt(5)  # randomised
    assert PublicKey.from_payload(pk.to_payload()).n == pk.n


def test_packed_sums_and_host_side_packing() -> None:
    pk, sk = generate_keypair(1024)
    lay = SlotLayout((40, 30, 10))
    rows = [(secrets.randbelow(2**30), secrets.randbelow(2**20), 1) for _ in range(300)]
    cts = [pk.encrypt(lay.pack(r)) for r in rows]
    nsq = int(pk.nsq)
    width = (nsq.bit_length() + 7) // 8
    bins = np.array([[i % 3, (i // 3) % 3, i % 2] for i in range(300)], dtype="uint8")
    # 300 rows > 4·3² cells: features are summed two at a time through their joint histogram
    flat = _work.from_blob(_work.accumulate(nsq, bins, _work.to_blob(cts, width), 3), width)
    for f in range(3):
        for b in range(3):
            want = tuple(sum(r[k] for i, r in enumerate(rows) if bins[i, f] == b) for k in range(3))
            assert lay.unpack(sk.decrypt(flat[f * 3 + b])) == want
    hist = flat[:3]
    per = (pk.bits - 1) // lay.bits
    packed = _work.from_blob(_work.pack(nsq, _work.to_blob(hist, width), per, lay.bits), width)
    x = int(sk.decrypt(packed[0]))
    got = [lay.unpack((x >> (lay.bits * (2 - j))) & ((1 << lay.bits) - 1)) for j in range(3)]
    assert got == [lay.unpack(sk.decrypt(h)) for h in hist]


def test_key_holder_crt_encryption_decrypts_and_adds() -> None:
    pk, sk = generate_keypair(1024)
    a, b = sk.encrypt(123456789), pk.encrypt(11)
    assert sk.decrypt(a) == 123456789 and sk.decrypt(pk.add(a, b)) == 123456800
    assert sk.encrypt(5) != sk.encrypt(5)


def test_windowed_crt_encryption_decrypts_adds_and_is_randomised() -> None:
    pk, sk = generate_keypair(1024)
    ms = [0, 1, 2**90 + 3, int(pk.n) - 1]
    for w in (1, 5, 8, 11):
        cts = sk.encrypt_many(ms, window=w)
        assert [sk.decrypt(c) for c in cts] == ms
        assert sk.decrypt(pk.add(cts[1], cts[2])) == 2**90 + 4
        again = sk.encrypt_many(ms, window=w)
        assert all(a != b for a, b in zip(cts, again, strict=True))
    # the obfuscator hs^α has α of at least half the modulus' bits, whatever the window
    assert all(len(t) * w >= pk.bits // 2 for w in (5, 11) for t in sk._crt_tables(w))
    # through a worker process' entry point, as the guest calls it
    width = (int(pk.nsq).bit_length() + 7) // 8
    blob = _work.encrypt_chunk(int(pk.n), int(pk.hs), ms, int(sk.p), int(sk.q), 6)
    assert [sk.decrypt(c) for c in _work.from_blob(blob, width)] == ms


def test_windowed_encryption_refuses_out_of_range() -> None:
    import pytest

    pk, sk = generate_keypair(512)
    with pytest.raises(ValueError, match="out of range"):
        sk.encrypt_many([int(pk.n)], window=4)
    with pytest.raises(ValueError, match="window"):
        sk.encrypt_many([1], window=13)

"""CityOS's MQTT 3.1.1 subscriber: packets split anywhere across reads are parsed exactly,
remaining lengths of one to three bytes, QoS 0 and 1 PUBLISH bodies, CONNECT flags."""

from __future__ import annotations

import random
from typing import Any

from cityos.ingest._mqttwire import WireClient, _varlen, connect_packet, parse


def _publish(topic: str, mid: int, qos: int, payload: bytes) -> bytes:
    t = topic.encode()
    body = len(t).to_bytes(2, "big") + t + (mid.to_bytes(2, "big") if qos else b"") + payload
    return bytes([0x30 | (qos << 1)]) + _varlen(len(body)) + body


def test_packets_split_across_reads_are_parsed_exactly() -> None:
    rng = random.Random(7)
    sent = []
    for i in range(300):
        qos = i % 2
        size = rng.choice([0, 5, 120, 200, 20_000, 70_000])  # 1-, 2- and 3-byte lengths
        sent.append((f"city/air/s{i % 7}", (i % 65535) + 1 if qos else 0, qos, rng.randbytes(size)))
    stream = b"".join(_publish(*m) for m in sent) + b"\xd0\x00"  # and a PINGRESP
    got: list[tuple[str, int, int, bytes]] = []
    c = WireClient("127.0.0.1", 1, "t", [("city/#", 1)], lambda *m: got.append(m))
    buf = bytearray()
    i = 0
    while i < len(stream):
        n = rng.randint(1, 5000)
        buf += stream[i : i + n]
        i += n
        packets, used = parse(buf)
        del buf[:used]
        for kind, flags, body in packets:
            c._handle(None, kind, flags, body)  # type: ignore[arg-type]
    assert not buf
    assert got == sent


def test_connect_packet_flags() -> None:
    plain = connect_packet("cid", 30, None, None)
    assert plain[0] == 0x10 and plain[9] == 0x00  # clean session off, no credentials
    both = connect_packet("cid", 30, "u", "p")
    assert both[9] == 0xC0 and both.endswith(b"\x00\x01u\x00\x01p")
    assert parse(bytearray(both)) == ([(1, 0, both[2:])], len(both))


def test_refused_subscription_and_connection_raise() -> None:
    c = WireClient("127.0.0.1", 1, "t", [("a", 1)], lambda *m: None)
    errors: list[Any] = []
    for kind, body in ((2, b"\x00\x05"), (9, b"\x00\x01\x80")):
        try:
            c._handle(None, kind, 0, body)  # type: ignore[arg-type]
        except ConnectionError as e:
            errors.append(str(e))
    assert len(errors) == 2 and "return code 5" in errors[0] and "subscription" in errors[1]
    assert not c.connected.is_set()

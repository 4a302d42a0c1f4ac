"""Gateway certificates and the mutual-TLS transport: who may connect, and which messages
are accepted (authenticated, in order, once, untampered)."""

from __future__ import annotations

import datetime as dt
import struct
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from cityos.federation._certs import (
    CertificateRefused,
    create_federation,
    issue_party,
    load_identity,
    peer_identity,
)
from cityos.federation._channel import PeerLost
from cityos.federation._transport import (
    MSG_PATH,
    GatewayChannel,
    PeerClient,
    TransportServer,
    seal_envelope,
)
from cityos.federation.gateway_errors import FederationError


@pytest.fixture
def fed(tmp_path: Path) -> Path:
    create_federation(tmp_path / "bj", "beijing", ["env", "weather", "traffic"])
    return tmp_path / "bj"


@pytest.fixture
def pair(fed: Path) -> Iterator[tuple[TransportServer, TransportServer, list[bytes]]]:
    captured: list[bytes] = []
    env = TransportServer(load_identity(fed, "env")).start()
    weather = TransportServer(
        load_identity(fed, "weather"), on_message=lambda f, t, tag, raw: captured.append(raw)
    ).start()
    yield env, weather, captured
    env.stop()
    weather.stop()


def _channels(
    env: TransportServer, weather: TransportServer, name: str = "job-1"
) -> tuple[GatewayChannel, GatewayChannel]:
    a = GatewayChannel(env, {"weather": PeerClient(env.identity, "weather", weather.url)}, name)
    b = GatewayChannel(weather, {"env": PeerClient(weather.identity, "env", env.url)}, name)
    return a, b


def test_messages_arrive_in_order_per_tag(
    pair: tuple[TransportServer, TransportServer, list[bytes]],
) -> None:
    env, weather, captured = pair
    a, b = _channels(env, weather)
    for i in range(5):
        a.send_bytes("weather", "g" if i % 2 else "h", b"m%d" % i)
    assert [b.recv_bytes("env", "h", 5) for _ in range(3)] == [b"m0", b"m2", b"m4"]
    assert [b.recv_bytes("env", "g", 5) for _ in range(2)] == [b"m1", b"m3"]
    assert len(captured) == 5
    b.send_bytes("env", "back", b"ok")
    assert a.recv_bytes("weather", "back", 5) == b"ok"


def test_replayed_reordered_tampered_and_forged_messages_are_rejected(
    pair: tuple[TransportServer, TransportServer, list[bytes]],
) -> None:
    env, weather, captured = pair
    a, b = _channels(env, weather)
    a.send_bytes("weather", "t", b"first")
    a.send_bytes("weather", "t", b"second")
    assert b.recv_bytes("env", "t", 5) == b"first"
    first, _second = captured
    env_client = PeerClient(env.identity, "weather", weather.url)

    # replay: the first envelope again over an authenticated connection
    status, body = env_client.request("POST", MSG_PATH, first)
    assert status == 409 and b"replayed" in body
    # reordered: message 4 before 3
    key = env.identity.private_key()
    ahead = seal_envelope(
        key,
        federation="beijing",
        channel="job-1",
        frm="env",
        to="weather",
        seq=4,
        tag="t",
        body=b"later",
    )
    status, body = env_client.request("POST", MSG_PATH, ahead)
    assert status == 409 and b"reordered" in body
    # tampered: flip one byte of the body of a fresh (seq 3) envelope
    fresh = bytearray(
        seal_envelope(
            key,
            federation="beijing",
            channel="job-1",
            frm="env",
            to="weather",
            seq=3,
            tag="t",
            body=b"amount=10",
        )
    )
    fresh[-1] ^= 1
    status, body = env_client.request("POST", MSG_PATH, bytes(fresh))
    assert status == 409 and b"tampered" in body
    # tampered header (signature no longer verifies): change the tag inside the header
    hdr = bytearray(
        seal_envelope(
            key,
            federation="beijing",
            channel="job-1",
            frm="env",
            to="weather",
            seq=3,
            tag="t",
            body=b"x",
        )
    )
    (hlen,) = struct.unpack_from(">I", hdr, 0)
    i = bytes(hdr[: 4 + hlen]).index(b'"tag":"t"') + len(b'"tag":"')
    hdr[i] = ord("u")
    status, body = env_client.request("POST", MSG_PATH, bytes(hdr))
    assert status == 409 and b"tampered" in body
    # unauthenticated: traffic signs as env with its own key, over its own TLS identity
    traffic = load_identity(env.identity.cert_path.parent, "traffic")
    forged = seal_envelope(
        traffic.private_key(),
        federation="beijing",
        channel="job-1",
        frm="env",
        to="weather",
        seq=3,
        tag="t",
        body=b"forged",
    )
    status, body = PeerClient(traffic, "weather", weather.url).request("POST", MSG_PATH, forged)
    assert status == 409 and b"unauthenticated" in body
    # env's claim signed with traffic's key over env's connection: signature fails
    status, body = env_client.request("POST", MSG_PATH, forged)
    assert status == 409 and b"tampered" in body
    # nothing of the above was delivered; the genuine second message still is
    assert b.recv_bytes("env", "t", 5) == b"second"
    with pytest.raises(PeerLost):
        b.recv_bytes("env", "t", 0.3)
    reasons = [r for r, _ in weather.rejections]
    assert reasons == [
        "replayed",
        "reordered",
        "tampered",
        "tampered",
        "unauthenticated",
        "tampered",
    ]
    # after the rejections the channel goes on with the next number
    a.send_bytes("weather", "t", b"third")
    assert b.recv_bytes("env", "t", 5) == b"third"


def test_messages_of_a_closed_or_unknown_channel_are_refused(
    pair: tuple[TransportServer, TransportServer, list[bytes]],
) -> None:
    env, weather, captured = pair
    a, b = _channels(env, weather, "job-1/attempt-1")
    a.send_bytes("weather", "t", b"x")
    b.close()  # the attempt ended (failed, or the gateway restarted)
    client = PeerClient(env.identity, "weather", weather.url)
    status, body = client.request("POST", MSG_PATH, captured[0])
    assert status == 409 and b"unknown-channel" in body


def _expired(fed: Path) -> Path:
    ca_cert = x509.load_pem_x509_certificate((fed / "ca.pem").read_bytes())
    ca_key = serialization.load_pem_private_key((fed / "ca.key").read_bytes(), password=None)
    out = fed.parent / "expired"
    out.mkdir()
    (out / "ca.pem").write_bytes((fed / "ca.pem").read_bytes())
    issue_party(
        out,
        "env",
        ca_cert=ca_cert,
        ca_key=ca_key,  # type: ignore[arg-type]
        days=1,
        not_before=dt.datetime.now(dt.UTC) - dt.timedelta(days=3),
    )
    return out


def test_unknown_expired_and_other_federation_certificates_are_refused(
    fed: Path, pair: tuple[TransportServer, TransportServer, list[bytes]], tmp_path: Path
) -> None:
    env, weather, _ = pair
    ok = PeerClient(env.identity, "weather", weather.url)
    assert ok.call("GET", "/fed/v1/ping") == {"party": "weather"}

    # a party of another federation (its own CA) is refused by weather's handshake
    create_federation(tmp_path / "sh", "shanghai", ["env"])
    other = load_identity(tmp_path / "sh", "env")
    assert other.federation == "shanghai"
    with pytest.raises(FederationError, match="weather"):
        PeerClient(other, "weather", weather.url, retry_s=0.5).call("GET", "/fed/v1/ping")
    # an expired certificate of the right CA is refused too
    expired = load_identity(_expired(fed), "env")
    with pytest.raises(FederationError):
        PeerClient(expired, "weather", weather.url, retry_s=0.5).call("GET", "/fed/v1/ping")
    deadline = time.monotonic() + 5
    while len(weather.refusals) < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    refusals = list(weather.refusals)
    assert any(
        "unknown ca" in r.lower() or "certificate verify failed" in r.lower() for r in refusals
    )
    assert any("expired" in r.lower() for r in refusals)

    # the client refuses a server of another federation, and one that is not who it dialled
    foreign = TransportServer(other).start()
    try:
        with pytest.raises(FederationError, match="certificate is refused"):
            PeerClient(env.identity, "env", foreign.url, retry_s=0.5).call("GET", "/fed/v1/ping")
    finally:
        foreign.stop()
    with pytest.raises(FederationError, match="certificate is refused"):
        PeerClient(env.identity, "traffic", weather.url, retry_s=0.5).call("GET", "/fed/v1/ping")

    # the gateway's own check, with the reasons named
    with pytest.raises(CertificateRefused, match="not by the CA of federation 'beijing'"):
        peer_identity(other.cert_pem, "beijing", env.identity.ca_pem)
    with pytest.raises(CertificateRefused, match="expired"):
        peer_identity(expired.cert_pem, "beijing", env.identity.ca_pem)
    with pytest.raises(CertificateRefused, match="belongs to federation 'shanghai'"):
        peer_identity(other.cert_pem, "beijing", other.ca_pem)


def test_a_peer_that_drops_out_is_reported_lost(fed: Path) -> None:
    env = TransportServer(load_identity(fed, "env")).start()
    weather = TransportServer(load_identity(fed, "weather")).start()
    try:
        a, b = _channels(env, weather)
        weather.stop()
        b.close()
        t0 = time.monotonic()
        with pytest.raises(PeerLost, match="'weather' dropped out"):
            a.recv_bytes("weather", "never", timeout=30)
        assert time.monotonic() - t0 < 15
        a._clients["weather"].retry_s = 0.5
        with pytest.raises(PeerLost, match=r"'weather' at https://127\.0\.0\.1"):
            a.send_bytes("weather", "t", b"x")
    finally:
        env.stop()


def test_an_aborting_peer_wakes_the_waiting_party(
    pair: tuple[TransportServer, TransportServer, list[bytes]],
) -> None:
    env, weather, _ = pair
    _a, b = _channels(env, weather)
    threading.Timer(0.3, lambda: weather.inbox.abort("job-1", "env", "label missing")).start()
    with pytest.raises(PeerLost, match=r"'env' stopped .*label missing"):
        b.recv_bytes("env", "t", 10)

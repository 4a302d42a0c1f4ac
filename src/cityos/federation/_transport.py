"""Mutual-TLS transport between gateways, and the :class:`~cityos.federation._channel.Channel`
of a job over it.

Every gateway is an HTTPS server that requires a client certificate of its federation
(:mod:`cityos.federation._certs`), and a client of its peers with its own certificate. On
top of TLS each job message is an *envelope*::

    u32 header length | header (canonical JSON) | u32 signature length | signature | body

The header names the federation, the job's channel, sender, receiver, a per-(channel,
sender, receiver) sequence number, the tag and the SHA-256 of the body; the signature is
the sender's ECDSA (P-256, SHA-256) signature over the header with the key of its
certificate. A receiver accepts an envelope only if

* the TLS peer (the certificate the connection presented) is the claimed sender,
* the signature verifies with that certificate's key and the body matches its digest
  (tampering), and
* its sequence number is exactly the next one expected from that sender on that channel
  (a replayed envelope has an old number, a reordered one a future number).

Channels exist only while their job attempt runs, so envelopes of an earlier attempt (or
of before a restart) are refused as unknown. The body is the payload as serialised by
:mod:`cityos.federation._codec`.
"""

from __future__ import annotations

import contextlib
import hashlib
import http.client
import json
import logging
import socket
import ssl
import struct
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec

from cityos.federation._certs import CertificateRefused, Identity, peer_identity
from cityos.federation._channel import PeerLost
from cityos.federation.gateway_errors import FederationError, MessageRejected

__all__ = [
    "GATEWAY_FILE",
    "Envelope",
    "GatewayChannel",
    "Inbox",
    "PeerAborted",
    "PeerClient",
    "RpcError",
    "TransportServer",
    "client_context",
    "open_envelope",
    "seal_envelope",
    "server_context",
]

log = logging.getLogger("cityos.federation.transport")

MSG_PATH = "/fed/v1/msg"
#: Where a serving gateway writes its address in its city home (read by client commands).
GATEWAY_FILE = "federation/gateway.json"
#: Largest envelope a gateway accepts (bytes).
MAX_BODY = 512 * 1024 * 1024
#: Envelope format version.
VERSION = 1


# -- TLS contexts ----------------------------------------------------------------------------
def server_context(ident: Identity) -> ssl.SSLContext:
    """A server context that presents ``ident`` and requires a client certificate signed by
    the federation's CA (unknown issuers and expired certificates fail the handshake)."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.load_cert_chain(str(ident.cert_path), str(ident.key_path))
    ctx.load_verify_locations(cadata=ident.ca_pem.decode("ascii"))
    ctx.verify_mode = ssl.CERT_REQUIRED
    return ctx


def client_context(ident: Identity) -> ssl.SSLContext:
    """A client context that presents ``ident`` and checks that the server's certificate is
    the federation's and names the party dialled (``server_hostname``)."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.load_cert_chain(str(ident.cert_path), str(ident.key_path))
    ctx.load_verify_locations(cadata=ident.ca_pem.decode("ascii"))
    ctx.check_hostname = True
    ctx.verify_mode = ssl.CERT_REQUIRED
    return ctx


# -- envelopes -------------------------------------------------------------------------------
@dataclass(frozen=True)
class Envelope:
    """A verified job message."""

    federation: str
    channel: str
    frm: str
    to: str
    seq: int
    tag: str
    body: bytes


def _canonical(header: Mapping[str, Any]) -> bytes:
    return json.dumps(header, sort_keys=True, separators=(",", ":")).encode("utf-8")


def seal_envelope(
    key: ec.EllipticCurvePrivateKey,
    *,
    federation: str,
    channel: str,
    frm: str,
    to: str,
    seq: int,
    tag: str,
    body: bytes,
) -> bytes:
    """The wire bytes of one message, signed with the sender's key."""
    header = _canonical(
        {
            "v": VERSION,
            "fed": federation,
            "ch": channel,
            "frm": frm,
            "to": to,
            "seq": seq,
            "tag": tag,
            "sha256": hashlib.sha256(body).hexdigest(),
            "len": len(body),
        }
    )
    sig = key.sign(header, ec.ECDSA(hashes.SHA256()))
    return struct.pack(">I", len(header)) + header + struct.pack(">I", len(sig)) + sig + body


def open_envelope(raw: bytes, peer_cert_der: bytes, *, federation: str, me: str) -> Envelope:
    """Parse and check ``raw`` received over a TLS connection whose peer presented
    ``peer_cert_der``; :class:`MessageRejected` if unauthenticated or tampered."""
    try:
        (hlen,) = struct.unpack_from(">I", raw, 0)
        header_b = raw[4 : 4 + hlen]
        (slen,) = struct.unpack_from(">I", raw, 4 + hlen)
        sig = raw[8 + hlen : 8 + hlen + slen]
        body = raw[8 + hlen + slen :]
        header = json.loads(header_b)
        if not isinstance(header, dict):
            raise ValueError("header is not an object")
        frm, to, tag, ch = (
            str(header["frm"]),
            str(header["to"]),
            str(header["tag"]),
            str(header["ch"]),
        )
        seq = int(header["seq"])
    except (struct.error, ValueError, KeyError, TypeError) as exc:
        raise MessageRejected("malformed", f"malformed envelope: {exc}") from exc
    cert = x509.load_der_x509_certificate(peer_cert_der)
    tls_party = str(cert.subject.get_attributes_for_oid(x509.NameOID.COMMON_NAME)[0].value)
    if frm != tls_party:
        raise MessageRejected(
            "unauthenticated",
            f"message claims to come from {frm!r} but the TLS peer is {tls_party!r}",
        )
    if header.get("fed") != federation or to != me:
        raise MessageRejected(
            "misdirected",
            f"message for {header.get('fed')!r}/{to!r} reached {federation!r}/{me!r}",
        )
    pub = cert.public_key()
    if not isinstance(pub, ec.EllipticCurvePublicKey):
        raise MessageRejected("unauthenticated", f"the certificate of {frm!r} has no EC key")
    try:
        pub.verify(sig, header_b, ec.ECDSA(hashes.SHA256()))
    except InvalidSignature as exc:
        raise MessageRejected(
            "tampered", f"message {ch}/{seq} from {frm!r}: the signature does not verify"
        ) from exc
    if header.get("sha256") != hashlib.sha256(body).hexdigest() or header.get("len") != len(body):
        raise MessageRejected(
            "tampered", f"message {ch}/{seq} from {frm!r}: the body does not match its digest"
        )
    return Envelope(federation, ch, frm, to, seq, tag, body)


class PeerAborted(PeerLost):
    """A peer (or this gateway's operator) stopped the job channel, saying why."""


# -- the receiving side ------------------------------------------------------------------------
@dataclass
class _ChannelBox:
    peers: frozenset[str]
    expected: dict[str, int] = field(default_factory=dict)  # next seq per sender
    last_digest: dict[str, str] = field(default_factory=dict)
    queues: dict[tuple[str, str], deque[bytes]] = field(default_factory=dict)
    closed: str | None = None  # why the channel was closed (abort reason)
    aborted_by: str | None = None


class Inbox:
    """Messages received for the open channels of this gateway, in order per sender."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._boxes: dict[str, _ChannelBox] = {}

    def open(self, channel: str, peers: tuple[str, ...]) -> None:
        with self._cond:
            self._boxes.setdefault(channel, _ChannelBox(frozenset(peers)))

    def close(self, channel: str) -> None:
        with self._cond:
            self._boxes.pop(channel, None)
            self._cond.notify_all()

    def abort(self, channel: str, by: str, reason: str) -> None:
        """Mark ``channel`` aborted by peer ``by`` (receivers waiting on it fail)."""
        with self._cond:
            box = self._boxes.get(channel)
            if box is not None and by in box.peers:
                box.closed, box.aborted_by = reason, by
                self._cond.notify_all()

    def abort_local(self, channel: str, reason: str) -> None:
        """Stop ``channel`` from this side (a cancel): its waiting receivers fail."""
        with self._cond:
            box = self._boxes.get(channel)
            if box is not None:
                box.closed, box.aborted_by = reason, "this gateway"
                self._cond.notify_all()

    def abort_all(self, reason: str) -> None:
        """Stop every open channel from this side (the gateway is stopping)."""
        with self._cond:
            for box in self._boxes.values():
                box.closed, box.aborted_by = reason, "this gateway"
            self._cond.notify_all()

    def deliver(self, env: Envelope) -> str:
        """Queue a verified envelope; ``"ok"`` or ``"duplicate"`` (same seq and digest as the
        last one, a retry); :class:`MessageRejected` if replayed, reordered or unknown."""
        digest = hashlib.sha256(env.body).hexdigest()
        with self._cond:
            box = self._boxes.get(env.channel)
            if box is None or env.frm not in box.peers:
                raise MessageRejected(
                    "unknown-channel",
                    f"no running job channel {env.channel!r} with party {env.frm!r} here",
                )
            nxt = box.expected.get(env.frm, 1)
            if env.seq == nxt - 1 and box.last_digest.get(env.frm) == f"{env.tag}:{digest}":
                return "duplicate"
            if env.seq < nxt:
                raise MessageRejected(
                    "replayed",
                    f"message {env.seq} from {env.frm!r} on {env.channel!r} was already "
                    f"received (next expected {nxt})",
                )
            if env.seq > nxt:
                raise MessageRejected(
                    "reordered",
                    f"message {env.seq} from {env.frm!r} on {env.channel!r} arrived before "
                    f"message {nxt}",
                )
            box.expected[env.frm] = nxt + 1
            box.last_digest[env.frm] = f"{env.tag}:{digest}"
            box.queues.setdefault((env.frm, env.tag), deque()).append(env.body)
            self._cond.notify_all()
            return "ok"

    def take(
        self,
        channel: str,
        frm: str,
        tag: str,
        deadline: float,
        alive: Callable[[], str | None] | None = None,
    ) -> bytes:
        """The next body from ``frm`` under ``tag``, waiting until ``deadline``
        (``time.monotonic()``); :class:`PeerLost` on timeout, abort, or when ``alive()``
        (checked every second) reports the peer gone."""
        last_check = time.monotonic()
        with self._cond:
            while True:
                box = self._boxes.get(channel)
                if box is None:
                    raise PeerLost(f"channel {channel!r} is closed")
                q = box.queues.get((frm, tag))
                if q:
                    return q.popleft()
                if box.closed is not None:
                    raise PeerAborted(
                        f"party {box.aborted_by!r} stopped job channel {channel!r}: {box.closed}"
                    )
                now = time.monotonic()
                if now >= deadline:
                    raise PeerLost(f"no message {tag!r} from party {frm!r} on {channel!r} in time")
                if alive is not None and now - last_check >= 1.0:
                    self._cond.release()
                    try:
                        gone = alive()
                    finally:
                        self._cond.acquire()
                    last_check = time.monotonic()
                    if gone is not None:
                        raise PeerLost(gone)
                    continue
                self._cond.wait(min(0.5, deadline - now))


# -- HTTP server -------------------------------------------------------------------------------
Handler = Callable[[str, str, bytes], tuple[int, bytes]]
"""A route: ``(peer party, path, body) -> (status, JSON body)``."""


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def setup(self) -> None:
        super().setup()
        self.connection.settimeout(120)

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("%s %s", self.address_string(), format % args)

    def _reply(self, status: int, body: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _handle(self) -> None:
        gw = self.server.gateway
        length = int(self.headers.get("Content-Length") or 0)
        if length > MAX_BODY:
            self._reply(413, b'{"error":"message too large"}')
            return
        body = self.rfile.read(length) if length else b""
        der = self.connection.getpeercert(binary_form=True) or b""
        try:
            peer = self.server.peer_of(der)
        except CertificateRefused as exc:
            self._reply(403, json.dumps({"error": str(exc), "reason": "certificate"}).encode())
            return
        path = self.path.split("?", 1)[0]
        try:
            status, out = gw.route(peer, self.command, path, body, der)
        except Exception as exc:  # a bug in a route must answer, not hang the peer
            log.exception("route %s %s failed", self.command, path)
            status, out = 500, json.dumps({"error": f"{type(exc).__name__}: {exc}"}).encode()
        self._reply(status, out)

    def do_POST(self) -> None:
        self._handle()

    def do_GET(self) -> None:
        self._handle()


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    gateway: TransportServer

    def finish_request(self, request: Any, client_address: Any) -> None:
        with contextlib.suppress(OSError):
            request.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        try:
            tls = self.gateway.ssl_server.wrap_socket(request, server_side=True)
        except (ssl.SSLError, OSError) as exc:
            self.gateway.note_refusal(f"{client_address[0]}:{client_address[1]}: {exc}")
            with contextlib.suppress(OSError):
                request.close()
            return
        with self.gateway.conn_lock:
            self.gateway.connections.add(tls)
        try:
            _Handler(tls, client_address, self)
        finally:
            with self.gateway.conn_lock:
                self.gateway.connections.discard(tls)
            with contextlib.suppress(OSError):
                tls.close()

    def peer_of(self, der: bytes) -> str:
        if not der:
            raise CertificateRefused("no client certificate")
        ident = self.gateway.identity
        return peer_identity(der, ident.federation, ident.ca_pem)


class TransportServer:
    """The HTTPS (mutual TLS) side of a gateway: receives envelopes into :attr:`inbox` and
    hands other paths to ``routes`` (``path prefix -> handler``).

    ``on_message(frm, to, tag, raw)`` sees every envelope that arrives (before it is
    checked), for tests that inspect what crosses between parties.
    """

    def __init__(
        self,
        identity: Identity,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        on_message: Callable[[str, str, str, bytes], None] | None = None,
    ) -> None:
        self.identity = identity
        self.ssl_server = server_context(identity)
        self.key = identity.private_key()  # signs this gateway's envelopes
        self.inbox = Inbox()
        self.routes: dict[str, Handler] = {}
        self.on_message = on_message
        self.refusals: deque[str] = deque(maxlen=100)
        self.rejections: deque[tuple[str, str]] = deque(maxlen=1000)  # (reason, message)
        self.connections: set[ssl.SSLSocket] = set()
        self.conn_lock = threading.Lock()
        self._httpd = _Server((host, port), _Handler, bind_and_activate=True)
        self._httpd.gateway = self
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        return int(self._httpd.server_address[1])

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    def note_refusal(self, what: str) -> None:
        log.warning("refused a connection: %s", what)
        self.refusals.append(what)

    def start(self) -> TransportServer:
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.2}, daemon=True
        )
        self._thread.start()
        return self

    def serve_forever(self) -> None:
        self._httpd.serve_forever(poll_interval=0.2)

    def stop(self) -> None:
        """Stop serving and drop every open connection (peers see this gateway gone)."""
        if self._thread is not None:
            self._httpd.shutdown()
        self._httpd.server_close()
        with self.conn_lock:
            conns = list(self.connections)
        for c in conns:
            with contextlib.suppress(OSError):
                c.shutdown(socket.SHUT_RDWR)

    def route(
        self, peer: str, method: str, path: str, body: bytes, der: bytes
    ) -> tuple[int, bytes]:
        if path == MSG_PATH and method == "POST":
            return self._receive(peer, body, der)
        if path == "/fed/v1/ping":
            return 200, json.dumps({"party": self.identity.party}).encode()
        for prefix, handler in self.routes.items():
            if path.startswith(prefix):
                return handler(peer, f"{method} {path}", body)
        return 404, json.dumps({"error": f"no route {method} {path}"}).encode()

    def _receive(self, peer: str, raw: bytes, der: bytes) -> tuple[int, bytes]:
        if self.on_message is not None:
            self._capture(raw)
        try:
            env = open_envelope(
                raw, der, federation=self.identity.federation, me=self.identity.party
            )
            status = self.inbox.deliver(env)
        except MessageRejected as exc:
            self.rejections.append((exc.reason, str(exc)))
            log.warning("rejected a message from %s: %s", peer, exc)
            return 409, json.dumps({"error": str(exc), "reason": exc.reason}).encode()
        return 200, json.dumps({"status": status}).encode()

    def _capture(self, raw: bytes) -> None:
        assert self.on_message is not None
        try:
            (hlen,) = struct.unpack_from(">I", raw, 0)
            h = json.loads(raw[4 : 4 + hlen])
            self.on_message(str(h.get("frm")), str(h.get("to")), str(h.get("tag")), raw)
        except (struct.error, ValueError):
            self.on_message("?", self.identity.party, "?", raw)


# -- the sending side --------------------------------------------------------------------------
class RpcError(FederationError):
    """A peer answered a request with an error (``status`` and the peer's message)."""

    def __init__(self, peer: str, path: str, status: int, message: str, reason: str = "") -> None:
        super().__init__(f"party {peer!r} answered {path} with {status}: {message}")
        self.peer, self.path, self.status, self.reason = peer, path, status, reason
        self.remote_message = message


class PeerClient:
    """A keep-alive HTTPS connection to one peer gateway, with this party's certificate.

    Requests are serialised (one at a time per peer), which keeps a channel's envelopes in
    order. Connection failures are retried until ``retry_s`` has passed, then
    :class:`PeerLost` names the peer and its address.
    """

    def __init__(self, ident: Identity, peer: str, url: str, *, retry_s: float = 10.0) -> None:
        if not url.startswith("https://"):
            raise FederationError(f"party {peer!r}: gateway address {url!r} must be https://")
        hostport = url[len("https://") :].rstrip("/")
        host, _, port = hostport.rpartition(":")
        self.peer, self.url, self.host, self.port = peer, url, host, int(port)
        self.ctx = client_context(ident)
        self.retry_s = retry_s
        self._conn: http.client.HTTPSConnection | None = None
        self._lock = threading.Lock()

    def _connect(self, timeout: float) -> http.client.HTTPSConnection:
        conn = http.client.HTTPSConnection(self.host, self.port, context=self.ctx, timeout=timeout)
        # the server's certificate must name the party dialled
        raw = socket.create_connection((self.host, self.port), timeout=timeout)
        raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        try:
            conn.sock = self.ctx.wrap_socket(raw, server_hostname=self.peer)
        except BaseException:
            raw.close()
            raise
        return conn

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None

    def request(
        self,
        method: str,
        path: str,
        body: bytes = b"",
        *,
        timeout: float = 60.0,
        retry_s: float | None = None,
    ) -> tuple[int, bytes]:
        """Send one request; ``(status, body)``. Retries connection failures."""
        budget = self.retry_s if retry_s is None else retry_s
        deadline = time.monotonic() + budget
        delay = 0.05
        last: BaseException | None = None
        with self._lock:
            while True:
                try:
                    if self._conn is None:
                        self._conn = self._connect(timeout)
                    self._conn.timeout = timeout
                    if self._conn.sock is not None:
                        self._conn.sock.settimeout(timeout)
                    self._conn.request(
                        method,
                        path,
                        body=body,
                        headers={"Content-Type": "application/octet-stream"},
                    )
                    resp = self._conn.getresponse()
                    data = resp.read()
                    if resp.getheader("Connection", "").lower() == "close":
                        self._conn.close()
                        self._conn = None
                    return resp.status, data
                except ssl.SSLCertVerificationError as exc:
                    self._drop()
                    raise FederationError(
                        f"party {self.peer!r} at {self.url}: its certificate is refused "
                        f"({exc.verify_message})"
                    ) from exc
                except ssl.SSLError as exc:
                    self._drop()
                    if isinstance(exc, ssl.SSLEOFError | ssl.SSLZeroReturnError):
                        last = exc  # the peer went away mid-handshake: as unreachable
                        if time.monotonic() + delay > deadline:
                            break
                        time.sleep(delay)
                        delay = min(delay * 2, 1.0)
                        continue
                    raise FederationError(
                        f"party {self.peer!r} at {self.url} refused this gateway's "
                        f"certificate or the TLS handshake failed ({exc.reason or exc})"
                    ) from exc
                except (OSError, http.client.HTTPException) as exc:
                    self._drop()
                    last = exc
                    if time.monotonic() + delay > deadline:
                        break
                    time.sleep(delay)
                    delay = min(delay * 2, 1.0)
        raise PeerLost(f"party {self.peer!r} at {self.url} is unreachable: {last}") from last

    def _drop(self) -> None:
        if self._conn is not None:
            with contextlib.suppress(Exception):
                self._conn.close()
            self._conn = None

    def call(self, method: str, path: str, payload: Any = None, **kw: Any) -> Any:
        """A JSON request; the decoded JSON answer, :class:`RpcError` on a 4xx/5xx."""
        body = b"" if payload is None else json.dumps(payload).encode("utf-8")
        status, data = self.request(method, path, body, **kw)
        try:
            out = json.loads(data) if data else None
        except ValueError:
            out = {"error": data[:200].decode("utf-8", "replace")}
        if status >= 400:
            err = out.get("error", "") if isinstance(out, dict) else str(out)
            reason = out.get("reason", "") if isinstance(out, dict) else ""
            raise RpcError(self.peer, path, status, str(err), str(reason))
        return out


# -- the channel -------------------------------------------------------------------------------
class GatewayChannel:
    """One party's end of a job over the mutual-TLS transport (a :class:`Channel`).

    Parameters
    ----------
    server:
        This gateway's transport (its inbox receives the peers' envelopes).
    clients:
        A :class:`PeerClient` per peer of the job.
    channel:
        The job attempt's channel id (the same at every party).
    timeout:
        Default seconds :meth:`recv` waits when called without ``timeout``.
    """

    def __init__(
        self,
        server: TransportServer,
        clients: Mapping[str, PeerClient],
        channel: str,
        *,
        timeout: float = 300.0,
    ) -> None:
        self.me = server.identity.party
        self.peers = tuple(sorted(clients))
        self.channel = channel
        self._server = server
        self._clients = dict(clients)
        self._key = server.key
        self._seq: dict[str, int] = {}
        self._send_lock = threading.Lock()
        self.timeout = timeout
        self.bytes_sent = 0
        self.messages_sent = 0
        server.inbox.open(channel, self.peers)

    def __enter__(self) -> GatewayChannel:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._server.inbox.close(self.channel)

    def _client(self, party: str) -> PeerClient:
        c = self._clients.get(party)
        if c is None:
            raise FederationError(
                f"party {party!r} is not in job channel {self.channel!r} "
                f"(peers: {', '.join(self.peers)})"
            )
        return c

    def send_bytes(self, to: str, tag: str, body: bytes) -> None:
        """Send an already-serialised body (the codec's output) to ``to``."""
        client = self._client(to)
        with self._send_lock:
            seq = self._seq.get(to, 0) + 1
            self._seq[to] = seq
            raw = seal_envelope(
                self._key,
                federation=self._server.identity.federation,
                channel=self.channel,
                frm=self.me,
                to=to,
                seq=seq,
                tag=tag,
                body=body,
            )
            status, data = client.request("POST", MSG_PATH, raw)
            if status != 200:
                raise MessageRejected(
                    "refused", f"party {to!r} refused message {seq} ({tag!r}): {data[:300]!r}"
                )
            self.bytes_sent += len(raw)
            self.messages_sent += 1

    def recv_bytes(self, frm: str, tag: str, timeout: float | None = None) -> bytes:
        client = self._client(frm)
        wait = self.timeout if timeout is None else timeout

        def alive() -> str | None:
            try:
                client.request("GET", "/fed/v1/ping", retry_s=2.0, timeout=5.0)
            except PeerLost as exc:
                return f"party {frm!r} dropped out of job channel {self.channel!r}: {exc}"
            except FederationError as exc:
                return str(exc)
            return None

        return self._server.inbox.take(self.channel, frm, tag, time.monotonic() + wait, alive=alive)

    def send(self, to: str, tag: str, payload: Mapping[str, Any]) -> None:
        from cityos.federation import _codec

        self.send_bytes(to, tag, _codec.encode(payload))

    def recv(self, frm: str, tag: str, timeout: float | None = None) -> dict[str, Any]:
        from cityos.federation import _codec

        out: dict[str, Any] = _codec.decode(self.recv_bytes(frm, tag, timeout))
        return out

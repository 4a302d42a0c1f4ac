"""A small MQTT 3.1.1 subscriber for :class:`cityos.ingest.MqttSource` (QoS 0 and 1): one
network thread that reads the socket in large blocks and parses every complete packet of a
block in one pass, and acknowledgements written in one ``send`` per batch.

paho-mqtt reads each packet with several small ``recv`` calls, builds a message object per
message and wakes its network thread through a socket pair for every manual acknowledgement;
at 10,000+ messages per second that, not decoding or storing, was what limited the MQTT
source. Semantics are those the source relies on: a persistent session (clean session off,
fixed client id), subscriptions renewed on every connection, reconnection after 1-2 s, and
acknowledgements sent only when the caller says so (after its batch is stored)."""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Callable, Iterable

__all__ = ["WireClient"]

_CONNACK, _PUBLISH, _SUBACK, _PINGRESP = 2, 3, 9, 13


def _varlen(n: int) -> bytes:
    out = bytearray()
    while True:
        n, b = divmod(n, 128)
        out.append(b | (128 if n else 0))
        if not n:
            return bytes(out)


def _str(s: str | bytes) -> bytes:
    b = s.encode("utf8") if isinstance(s, str) else s
    return len(b).to_bytes(2, "big") + b


def connect_packet(
    client_id: str, keepalive: int, username: str | None, password: str | None
) -> bytes:
    """CONNECT, clean session off (a persistent session).

    Examples
    --------
    >>> connect_packet("c", 30, None, None)
    b'\\x10\\r\\x00\\x04MQTT\\x04\\x00\\x00\\x1e\\x00\\x01c'
    """
    flags = 0
    payload = _str(client_id)
    if username is not None:
        flags |= 0x80
        payload += _str(username)
        if password is not None:
            flags |= 0x40
            payload += _str(password)
    body = _str("MQTT") + bytes([4, flags]) + keepalive.to_bytes(2, "big") + payload
    return b"\x10" + _varlen(len(body)) + body


def parse(buf: bytearray) -> tuple[list[tuple[int, int, bytes]], int]:
    """The complete packets at the start of ``buf`` as ``(type, flags, body)`` and how many
    bytes they took (an incomplete packet at the end waits for more bytes).

    Examples
    --------
    >>> parse(bytearray(b"\\xd0\\x00\\x90\\x03\\x00\\x01\\x01\\x30"))
    ([(13, 0, b''), (9, 0, b'\\x00\\x01\\x01')], 7)
    """
    out: list[tuple[int, int, bytes]] = []
    i, n = 0, len(buf)
    while i + 2 <= n:
        head = buf[i]
        length, mult, j = 0, 1, i + 1
        while True:
            if j >= n:
                return out, i
            b = buf[j]
            length += (b & 127) * mult
            mult *= 128
            j += 1
            if not b & 128:
                break
            if mult > 128**3:
                raise ConnectionError("malformed MQTT packet length")
        if j + length > n:
            return out, i
        out.append((head >> 4, head & 15, bytes(buf[j : j + length])))
        i = j + length
    return out, i


class WireClient:
    """Subscribe to ``topics`` (pattern → QoS ≤ 1) and hand every PUBLISH to
    ``on_message(topic, packet id, qos, payload)`` from the network thread.

    ``connected`` is set once the broker has acknowledged the subscriptions of the current
    connection, cleared when it is lost.
    """

    def __init__(
        self,
        host: str,
        port: int,
        client_id: str,
        topics: Iterable[tuple[str, int]],
        on_message: Callable[[str, int, int, bytes], None],
        *,
        username: str | None = None,
        password: str | None = None,
        keepalive: int = 30,
    ) -> None:
        self.host, self.port, self.client_id = host, port, client_id
        self.topics = [(t, min(int(q), 1)) for t, q in topics]
        self.on_message = on_message
        self.username, self.password, self.keepalive = username, password, keepalive
        self.connected = threading.Event()
        self.error: str | None = None  # the last connection problem, for messages
        self._sock: socket.socket | None = None
        self._send_lock = threading.Lock()
        self._stop = threading.Event()
        self._last_send = 0.0
        self._thread = threading.Thread(target=self._run, name="cityos-mqtt", daemon=True)

    def start(self) -> None:
        self._thread.start()

    # -- sending -----------------------------------------------------------------------------
    def _send(self, data: bytes) -> None:
        with self._send_lock:
            s = self._sock
            if s is None:
                return  # not connected: the broker re-delivers what was not acknowledged
            try:
                s.sendall(data)
                self._last_send = time.monotonic()
            except OSError:
                self._drop(s)

    def ack(self, mid: int, qos: int) -> None:
        """Acknowledge one message (paho's signature)."""
        self.ack_many([(mid, qos)])

    def ack_many(self, acks: Iterable[tuple[int, int]]) -> None:
        """Acknowledge QoS 1 messages ``(packet id, qos)`` in one write."""
        data = b"".join(b"\x40\x02" + mid.to_bytes(2, "big") for mid, qos in acks if qos == 1)
        if data:
            self._send(data)

    def _drop(self, s: socket.socket) -> None:
        self.connected.clear()
        if self._sock is s:
            self._sock = None
        with contextlib.suppress(OSError):
            s.close()

    # -- the network thread ------------------------------------------------------------------
    def _open(self) -> socket.socket:
        s = socket.create_connection((self.host, self.port), timeout=10)
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        s.sendall(connect_packet(self.client_id, self.keepalive, self.username, self.password))
        return s

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                s = self._open()
            except OSError as e:
                self.error = str(e)
                self._stop.wait(1.0)
                continue
            with self._send_lock:
                self._sock = s
                self._last_send = time.monotonic()
            try:
                self._serve(s)
            except (OSError, ConnectionError) as e:
                self.error = str(e)
            self._drop(s)
            if not self._stop.is_set():
                self._stop.wait(1.0)  # reconnect after a second, as paho's minimum delay

    def _serve(self, s: socket.socket) -> None:
        s.settimeout(1.0)
        buf = bytearray()
        while not self._stop.is_set():
            try:
                chunk = s.recv(1 << 18)
            except TimeoutError:
                chunk = None
            if chunk == b"":
                raise ConnectionError("the broker closed the connection")
            if chunk:
                buf += chunk
                packets, used = parse(buf)
                del buf[:used]
                for kind, flags, body in packets:
                    self._handle(s, kind, flags, body)
            if time.monotonic() - self._last_send > self.keepalive / 2:
                self._send(b"\xc0\x00")  # PINGREQ

    def _handle(self, s: socket.socket, kind: int, flags: int, body: bytes) -> None:
        if kind == _PUBLISH:
            n = int.from_bytes(body[0:2], "big")
            topic = body[2 : 2 + n].decode("utf8", "replace")
            qos = (flags >> 1) & 3
            if qos:
                mid = int.from_bytes(body[2 + n : 4 + n], "big")
                payload = body[4 + n :]
            else:
                mid, payload = 0, body[2 + n :]
            self.on_message(topic, mid, qos, payload)
        elif kind == _CONNACK:
            if len(body) < 2 or body[1] != 0:
                code = body[1] if len(body) > 1 else -1
                raise ConnectionError(f"the broker refused the connection (return code {code})")
            subs = b"".join(_str(t) + bytes([q]) for t, q in self.topics)
            self._send(b"\x82" + _varlen(2 + len(subs)) + b"\x00\x01" + subs)
        elif kind == _SUBACK:
            if any(c == 0x80 for c in body[2:]):
                raise ConnectionError("the broker refused a subscription")
            self.error = None
            self.connected.set()
        # PINGRESP and anything else: nothing to do

    def stop(self) -> None:
        """Disconnect cleanly (unacknowledged messages stay queued in the session)."""
        self._stop.set()
        with self._send_lock:
            s = self._sock
        if s is not None:
            with contextlib.suppress(OSError):
                s.sendall(b"\xe0\x00")  # DISCONNECT
        if self._thread.is_alive():
            self._thread.join(5)
        if s is not None:
            self._drop(s)

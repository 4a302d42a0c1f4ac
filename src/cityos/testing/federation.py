"""An in-process federation: one :class:`~cityos.federation._channel.Channel` per party.

The real implementation of the Channel protocol for tests (as httpx's ``MockTransport`` is
for HTTP): every message is encoded by :mod:`cityos.federation._codec`, handed to an
optional capture hook ``on_message(frm, to, tag, raw_bytes)`` and decoded at the receiver,
so what a test captures is exactly what would cross a wire. :meth:`LocalFederation.run`
runs one role per party on its own thread; a party that fails makes every peer waiting on it
fail with :class:`~cityos.federation._channel.PeerLost` instead of hanging.

>>> fed = LocalFederation(["guest", "host"])
>>> def guest(ch):
...     ch.send("host", "ping", {"x": 1})
...     return ch.recv("host", "pong")["x"]
>>> def host(ch):
...     ch.send("guest", "pong", {"x": ch.recv("guest", "ping")["x"] + 1})
>>> fed.run({"guest": guest, "host": host})["guest"]
2
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from cityos.federation._channel import Channel, PeerLost
from cityos.federation._codec import decode, encode

__all__ = ["LocalChannel", "LocalFederation", "MessageHook"]

MessageHook = Callable[[str, str, str, bytes], None]


class LocalFederation:
    """Parties connected in one process.

    Parameters
    ----------
    parties
        The parties' names.
    on_message
        Called with ``(frm, to, tag, raw_bytes)`` for every message sent.
    timeout
        Default seconds a ``recv`` waits before :class:`PeerLost`.
    """

    def __init__(
        self,
        parties: Iterable[str],
        on_message: MessageHook | None = None,
        timeout: float = 600.0,
    ) -> None:
        names = tuple(parties)
        if len(set(names)) != len(names) or len(names) < 2:
            raise ValueError(f"a federation needs at least two distinct parties, got {names}")
        self.parties = names
        self.on_message = on_message
        self.timeout = timeout
        self._cond = threading.Condition()
        self._queues: dict[tuple[str, str, str], deque[bytes]] = {}
        self._failed: dict[str, str] = {}
        self.bytes_sent: dict[tuple[str, str], int] = {}
        self.messages_sent = 0

    def channel(self, me: str) -> LocalChannel:
        """Party ``me``'s end."""
        if me not in self.parties:
            raise KeyError(f"{me!r} is not a party of this federation ({self.parties})")
        return LocalChannel(self, me)

    def fail(self, party: str, reason: str) -> None:
        """Mark ``party`` as dropped out: peers waiting on it get :class:`PeerLost`."""
        with self._cond:
            self._failed[party] = reason
            self._cond.notify_all()

    def _put(self, frm: str, to: str, tag: str, raw: bytes) -> None:
        if self.on_message is not None:
            self.on_message(frm, to, tag, raw)
        with self._cond:
            self._queues.setdefault((to, frm, tag), deque()).append(raw)
            self.bytes_sent[(frm, to)] = self.bytes_sent.get((frm, to), 0) + len(raw)
            self.messages_sent += 1
            self._cond.notify_all()

    def _get(self, me: str, frm: str, tag: str, timeout: float | None) -> bytes:
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        with self._cond:
            while True:
                q = self._queues.get((me, frm, tag))
                if q:
                    return q.popleft()
                if frm in self._failed:
                    raise PeerLost(
                        f"{me}: peer {frm!r} dropped out ({self._failed[frm]}) while waiting for {tag!r}"
                    )
                left = deadline - time.monotonic()
                if left <= 0:
                    raise PeerLost(f"{me}: no {tag!r} message from {frm!r} within the timeout")
                self._cond.wait(left)

    def run(self, roles: Mapping[str, Callable[[Channel], Any]]) -> dict[str, Any]:
        """Run ``roles[party](channel)`` for every party on its own thread; their results.

        The first party's exception (other than the :class:`PeerLost` it caused) is re-raised.
        """
        results: dict[str, Any] = {}
        errors: dict[str, BaseException] = {}

        def target(party: str, fn: Callable[[Channel], Any]) -> None:
            try:
                results[party] = fn(self.channel(party))
            except BaseException as e:  # re-raised in the caller's thread
                errors[party] = e
                self.fail(party, f"{type(e).__name__}: {e}")

        threads = [
            threading.Thread(target=target, args=(p, fn), name=f"party-{p}", daemon=True)
            for p, fn in roles.items()
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        if errors:
            primary = [e for e in errors.values() if not isinstance(e, PeerLost)]
            raise (primary or list(errors.values()))[0]
        return results


class LocalChannel:
    """One party's end of a :class:`LocalFederation` (implements ``Channel``)."""

    def __init__(self, fed: LocalFederation, me: str) -> None:
        self._fed = fed
        self.me = me
        self.peers = tuple(p for p in fed.parties if p != me)

    def send(self, to: str, tag: str, payload: Mapping[str, Any]) -> None:
        if to not in self.peers:
            raise KeyError(f"{self.me}: {to!r} is not a peer ({self.peers})")
        self._fed._put(self.me, to, tag, encode(payload))

    def recv(self, frm: str, tag: str, timeout: float | None = None) -> dict[str, Any]:
        if frm not in self.peers:
            raise KeyError(f"{self.me}: {frm!r} is not a peer ({self.peers})")
        return decode(self._fed._get(self.me, frm, tag, timeout))

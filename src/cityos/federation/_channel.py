"""The one interface every federated algorithm talks through.

A :class:`Channel` is one party's end of a federation job: it sends tagged messages to a
named peer and receives the next message with a given tag from a peer, in order. The
in-process implementation (:mod:`cityos.testing.federation`) and the mutual-TLS gateway
transport implement the same protocol, so an algorithm never knows which one it runs on.
Payloads are serialised only by :mod:`cityos.federation._codec` (never pickle).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol, runtime_checkable

__all__ = ["Channel", "PeerLost"]


class PeerLost(RuntimeError):
    """A peer did not answer in time or dropped out of the job."""


@runtime_checkable
class Channel(Protocol):
    """One party's end of a federation job."""

    #: This party's name.
    me: str
    #: The other parties of the job.
    peers: tuple[str, ...]

    def send(self, to: str, tag: str, payload: Mapping[str, Any]) -> None:
        """Send ``payload`` to party ``to`` under ``tag``."""
        ...

    def recv(self, frm: str, tag: str, timeout: float | None = None) -> dict[str, Any]:
        """The next payload from ``frm`` under ``tag``; :class:`PeerLost` after ``timeout``."""
        ...

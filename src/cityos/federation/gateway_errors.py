"""Errors of the federation gateway; each names what went wrong and where."""

from __future__ import annotations

from cityos.errors import CityOSError, ConflictError, ValidationError

__all__ = [
    "FederationError",
    "JobFailed",
    "MessageRejected",
    "NotPublished",
    "ProjectConflict",
    "ProjectNotFound",
    "UnboundDataset",
]


class FederationError(CityOSError):
    """A federation project, job or peer could not do what was asked."""


class MessageRejected(FederationError):
    """A message between gateways was refused: unauthenticated, tampered, replayed or out
    of order (``reason`` says which)."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


class ProjectNotFound(FederationError, KeyError):
    """No such project (or job, or model) in this party's home."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


class ProjectConflict(ConflictError):
    """The project is not in a state that allows the action (e.g. serve before publish)."""


class NotPublished(ProjectConflict):
    """A model was asked to serve or score before it was published."""


class UnboundDataset(ValidationError):
    """A party has no dataset bound to the project (or the binding is broken)."""


class JobFailed(FederationError):
    """A training or inference job failed (``job`` and ``party`` say which and where)."""

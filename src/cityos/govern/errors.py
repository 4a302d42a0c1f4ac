"""Errors of the governance layer (all :class:`cityos.errors.CityOSError`)::

GovernError
├── EventNotFound          no event, warning, service or department of that id (HTTP 404)
├── StaleVersion           the version you acted on is not the current one (HTTP 409)
├── IllegalTransition      the action is not allowed in the event's state (HTTP 409)
├── IdempotencyConflict    an idempotency key reused for a different request (HTTP 409)
└── IntakeError            a field of a request is missing or invalid (HTTP 422),
    ├── UnknownDepartment  naming the field, and nothing was stored
    └── OutsideJurisdiction
"""

from __future__ import annotations

from cityos.errors import CityOSError

__all__ = [
    "EventNotFound",
    "GovernError",
    "IdempotencyConflict",
    "IllegalTransition",
    "IntakeError",
    "OutsideJurisdiction",
    "StaleVersion",
    "UnknownDepartment",
    "http_status",
]


class GovernError(CityOSError):
    """Root of the governance layer's errors."""

    status = 400


class EventNotFound(GovernError, KeyError):
    """No object with that id."""

    status = 404

    def __str__(self) -> str:
        return str(self.args[0])


class StaleVersion(GovernError):
    """Optimistic locking: someone changed the event since the version you read."""

    status = 409

    def __init__(self, what: str, given: int, current: int) -> None:
        self.given, self.current = given, current
        super().__init__(
            f"{what} is at version {current}, not {given}: it changed since you read it; "
            "reload it and try again"
        )


class IllegalTransition(GovernError):
    """The action does not apply to the event's current state."""

    status = 409


class IdempotencyConflict(GovernError):
    """The key was used before for a request with different content."""

    status = 409


class IntakeError(GovernError, ValueError):
    """A field is missing or invalid; ``field`` names it. Nothing was stored."""

    status = 422

    def __init__(self, message: str, *, field: str | None = None) -> None:
        self.field = field
        super().__init__(message)


class UnknownDepartment(IntakeError):
    """The named department does not exist."""


class OutsideJurisdiction(IntakeError):
    """The position lies outside every jurisdiction of the city."""


def http_status(exc: Exception) -> int:
    """HTTP status of a governance error (400 for anything else).

    >>> http_status(StaleVersion("E-000001", 1, 2))
    409
    """
    return int(getattr(exc, "status", 400)) if isinstance(exc, GovernError) else 400

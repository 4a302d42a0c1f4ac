"""Errors of the access layer: who you are, what you may do, and whether the audit holds.

The hierarchy (all derive from :class:`cityos.errors.CityOSError`)::

    AccessError
    ├── AuthenticationError     could not tell who is calling (HTTP 401)
    │   ├── InvalidCredentials  wrong user name, password or API key
    │   ├── InvalidToken        token malformed, forged or of the wrong kind
    │   ├── TokenExpired        token was genuine but is past its expiry
    │   └── ApiKeyRevoked       API key was revoked; make a new one
    ├── PermissionDenied        caller is known but may not do this (HTTP 403)
    ├── AccessNotFound          no such user, role, department, grant or key (HTTP 404)
    ├── AccessConflict          the name is taken (HTTP 409)
    ├── PolicyError             a grant, row filter or masking rule is malformed (HTTP 422)
    └── AuditBroken             the audit log does not verify (refused to anchor it)
"""

from __future__ import annotations

from cityos.errors import CityOSError

__all__ = [
    "AccessConflict",
    "AccessError",
    "AccessNotFound",
    "ApiKeyRevoked",
    "AuditBroken",
    "AuthenticationError",
    "InvalidCredentials",
    "InvalidToken",
    "PermissionDenied",
    "PolicyError",
    "TokenExpired",
]


class AccessError(CityOSError):
    """Root of the access layer's errors."""


class AuthenticationError(AccessError):
    """The caller could not be identified."""


class InvalidCredentials(AuthenticationError):
    """User name, password or API key is wrong (the message never says which)."""


class InvalidToken(AuthenticationError):
    """The token is malformed, its signature does not verify, or it is not an access token."""


class TokenExpired(InvalidToken):
    """The token is genuine but expired; log in again."""


class ApiKeyRevoked(AuthenticationError):
    """The API key was revoked; create a new key."""


class PermissionDenied(AccessError):
    """The caller is authenticated but not allowed to do this."""


class AccessNotFound(AccessError, KeyError):
    """No user, role, department, grant or API key with that name or id."""

    def __str__(self) -> str:  # KeyError would quote the message again
        return str(self.args[0])


class AccessConflict(AccessError):
    """A user, role or department with that name already exists."""


class PolicyError(AccessError, ValueError):
    """A classification, grant, row filter or masking rule is malformed."""


class AuditBroken(AccessError):
    """The audit log's hash chain does not verify."""

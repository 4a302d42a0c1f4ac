"""Who is calling: users, departments, roles, passwords, access tokens and API keys.

Passwords are hashed with argon2id; access tokens are short-lived HS256 JWTs signed with
the city's secret key; API keys are random strings stored only as SHA-256 hashes.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import threading
import weakref
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, Literal

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from cityos._compat import import_optional
from cityos.access._audit import append_audit, audit_transaction, record
from cityos.access._generation import bump_generation, read_generation
from cityos.access._tables import ApiKeyRow, DepartmentRow, RoleRow, UserRoleRow, UserRow
from cityos.access.errors import (
    AccessConflict,
    AccessNotFound,
    ApiKeyRevoked,
    InvalidCredentials,
    InvalidToken,
    PolicyError,
    TokenExpired,
)
from cityos.db import Database, utcnow

if TYPE_CHECKING:
    from argon2 import PasswordHasher

__all__ = [
    "ADMIN_ROLE",
    "TOKEN_TTL",
    "ApiKeyInfo",
    "Principal",
    "UserInfo",
    "assign_role",
    "authenticate",
    "configure_password_hashing",
    "create_api_key",
    "create_department",
    "create_role",
    "create_user",
    "current_principal",
    "get_user",
    "hash_password",
    "issue_token",
    "list_api_keys",
    "list_departments",
    "list_roles",
    "list_users",
    "principal_for",
    "principal_from_api_key",
    "principal_from_token",
    "revoke_api_key",
    "revoke_role",
    "set_password",
    "set_user_active",
    "update_user",
    "verify_password",
    "verify_token",
]

#: Role whose members administer users, policies and the audit log, and see everything.
ADMIN_ROLE = "admin"
#: Default lifetime of an access token.
TOKEN_TTL = timedelta(minutes=15)
_ISSUER = "cityos"
_KEY_PREFIX = "cos"
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.@\-]{0,99}$")
_hasher: PasswordHasher | None = None


@dataclass(frozen=True)
class Principal:
    """An authenticated caller: the user context every access decision is made for.

    Examples
    --------
    >>> p = Principal(user_id=1, username="li", roles=frozenset({"district_officer"}))
    >>> p.is_admin
    False
    """

    user_id: int | None
    username: str
    roles: frozenset[str] = field(default_factory=frozenset)
    department: str | None = None
    via: Literal["password", "token", "api_key", "python"] = "python"
    #: The user's token generation when this principal was loaded (a token's ``gen``
    #: claim); a token whose generation is no longer the user's is refused.
    token_generation: int | None = None

    @property
    def is_admin(self) -> bool:
        return ADMIN_ROLE in self.roles


@dataclass(frozen=True)
class UserInfo:
    """Public view of a user (never the password hash)."""

    id: int
    username: str
    full_name: str
    department: str | None
    roles: tuple[str, ...]
    is_active: bool


@dataclass(frozen=True)
class ApiKeyInfo:
    """Public view of an API key (never the key or its hash)."""

    key_id: str
    username: str
    name: str
    created_at: datetime
    revoked: bool


# -- passwords ---------------------------------------------------------------------------
def _password_hasher() -> PasswordHasher:
    global _hasher
    if _hasher is None:
        argon2 = import_optional("argon2", "password hashing")
        _hasher = argon2.PasswordHasher()
    return _hasher


def configure_password_hashing(
    *, time_cost: int = 3, memory_cost_kib: int = 65536, parallelism: int = 4
) -> None:
    """Set the argon2id cost (defaults are argon2-cffi's; tests may lower them)."""
    global _hasher
    argon2 = import_optional("argon2", "password hashing")
    _hasher = argon2.PasswordHasher(
        time_cost=time_cost, memory_cost=memory_cost_kib, parallelism=parallelism
    )


def hash_password(password: str) -> str:
    """argon2id hash of ``password`` (salted; encodes its own parameters)."""
    if len(password) < 8:
        raise PolicyError("passwords must have at least 8 characters")
    return _password_hasher().hash(password)


def verify_password(password_hash: str, password: str) -> bool:
    """Whether ``password`` matches ``password_hash``."""
    argon2_exc = import_optional("argon2.exceptions", "password hashing")
    try:
        return bool(_password_hasher().verify(password_hash, password))
    except (argon2_exc.VerificationError, argon2_exc.InvalidHashError):
        return False


# -- directory -----------------------------------------------------------------------------
def _check_name(kind: str, name: str) -> str:
    if not _NAME_RE.match(name):
        raise PolicyError(
            f"{kind} name {name!r} is invalid: use 1-100 letters, digits, '_', '.', '@' or '-'"
        )
    return name


def _department(s: Session, name: str) -> DepartmentRow:
    row = s.scalar(select(DepartmentRow).where(DepartmentRow.name == name))
    if row is None:
        raise AccessNotFound(f"no department {name!r}; create it first")
    return row


def _role(s: Session, name: str) -> RoleRow:
    row = s.scalar(select(RoleRow).where(RoleRow.name == name))
    if row is None:
        raise AccessNotFound(f"no role {name!r}; create it first")
    return row


def _user(s: Session, username: str) -> UserRow:
    row = s.scalar(select(UserRow).where(UserRow.username == username))
    if row is None:
        raise AccessNotFound(f"no user {username!r}")
    return row


def _create(db: Database, actor: str, action: str, detail: dict[str, Any], row: Any) -> None:
    try:
        with audit_transaction(db) as s:
            s.add(row)
            s.flush()
            append_audit(s, actor=actor, action=action, detail=detail)
    except IntegrityError as exc:
        raise AccessConflict(
            f"{action.split('.')[0]} {detail.get('name')!r} already exists"
        ) from exc


def create_department(
    db: Database, name: str, *, description: str = "", actor: str = "system"
) -> None:
    """Create a department (a unit that may own datasets)."""
    _create(
        db,
        actor,
        "department.create",
        {"name": _check_name("department", name)},
        DepartmentRow(name=name, description=description),
    )


def create_role(db: Database, name: str, *, description: str = "", actor: str = "system") -> None:
    """Create a role (grants, row filters and unmasking are given to roles)."""
    _create(
        db,
        actor,
        "role.create",
        {"name": _check_name("role", name)},
        RoleRow(name=name, description=description),
    )


def create_user(
    db: Database,
    username: str,
    password: str | None,
    *,
    full_name: str = "",
    department: str | None = None,
    roles: tuple[str, ...] | list[str] = (),
    actor: str = "system",
) -> UserInfo:
    """Create a user, optionally in a department and with roles.

    ``password=None`` makes a machine user that can only authenticate with API keys.

    Examples
    --------
    >>> from cityos.db import Database
    >>> db = Database("sqlite://"); db.migrate()
    >>> create_role(db, "analyst")
    >>> create_user(db, "wang", None, roles=["analyst"]).roles
    ('analyst',)
    """
    _check_name("user", username)
    pw_hash = hash_password(password) if password is not None else None
    try:
        with audit_transaction(db) as s:
            dept = _department(s, department) if department else None
            row = UserRow(
                username=username,
                password_hash=pw_hash,
                full_name=full_name,
                department_id=dept.id if dept else None,
                is_active=True,
                created_at=utcnow(),
            )
            s.add(row)
            s.flush()
            for r in roles:
                s.add(UserRoleRow(user_id=row.id, role_id=_role(s, r).id))
            append_audit(
                s,
                actor=actor,
                action="user.create",
                detail={"name": username, "department": department, "roles": sorted(roles)},
            )
    except IntegrityError as exc:
        raise AccessConflict(f"user {username!r} already exists") from exc
    return get_user(db, username)


def _user_info(s: Session, row: UserRow) -> UserInfo:
    roles = s.scalars(
        select(RoleRow.name)
        .join(UserRoleRow, UserRoleRow.role_id == RoleRow.id)
        .where(UserRoleRow.user_id == row.id)
        .order_by(RoleRow.name)
    )
    dept = s.get(DepartmentRow, row.department_id) if row.department_id else None
    return UserInfo(
        id=row.id,
        username=row.username,
        full_name=row.full_name,
        department=dept.name if dept else None,
        roles=tuple(roles),
        is_active=row.is_active,
    )


def get_user(db: Database, username: str) -> UserInfo:
    """Public view of one user; raises :class:`AccessNotFound`."""
    with db.session() as s:
        return _user_info(s, _user(s, username))


def list_users(db: Database) -> list[UserInfo]:
    """Every user, by name."""
    with db.session() as s:
        return [_user_info(s, r) for r in s.scalars(select(UserRow).order_by(UserRow.username))]


def list_roles(db: Database) -> list[str]:
    """Every role name."""
    with db.session() as s:
        return list(s.scalars(select(RoleRow.name).order_by(RoleRow.name)))


def list_departments(db: Database) -> list[str]:
    """Every department name."""
    with db.session() as s:
        return list(s.scalars(select(DepartmentRow.name).order_by(DepartmentRow.name)))


def assign_role(db: Database, username: str, role: str, *, actor: str = "system") -> None:
    """Give ``username`` the role ``role`` (idempotent); audited as a grant change."""
    with audit_transaction(db) as s:
        u, r = _user(s, username), _role(s, role)
        if s.get(UserRoleRow, (u.id, r.id)) is None:
            s.add(UserRoleRow(user_id=u.id, role_id=r.id))
            _revoke_tokens(s, u)
            append_audit(
                s, actor=actor, action="role.assign", detail={"user": username, "role": role}
            )


def revoke_role(db: Database, username: str, role: str, *, actor: str = "system") -> None:
    """Take ``role`` away from ``username``; audited as a grant change."""
    with audit_transaction(db) as s:
        u, r = _user(s, username), _role(s, role)
        link = s.get(UserRoleRow, (u.id, r.id))
        if link is None:
            raise AccessNotFound(f"user {username!r} does not have role {role!r}")
        s.delete(link)
        _revoke_tokens(s, u)
        append_audit(s, actor=actor, action="role.revoke", detail={"user": username, "role": role})


def set_password(db: Database, username: str, password: str, *, actor: str = "system") -> None:
    """Replace a user's password; tokens issued before stop working."""
    pw_hash = hash_password(password)
    with audit_transaction(db) as s:
        u = _user(s, username)
        u.password_hash = pw_hash
        _revoke_tokens(s, u)
        append_audit(s, actor=actor, action="user.password", detail={"name": username})


def set_user_active(db: Database, username: str, active: bool, *, actor: str = "system") -> None:
    """Enable or disable a user; a disabled user's tokens and keys stop working at once
    (and tokens issued before stay invalid when the user is enabled again)."""
    with audit_transaction(db) as s:
        u = _user(s, username)
        u.is_active = active
        _revoke_tokens(s, u)
        append_audit(
            s,
            actor=actor,
            action="user.enable" if active else "user.disable",
            detail={"name": username},
        )


# -- principals ----------------------------------------------------------------------------
def _principal(s: Session, row: UserRow, via: Any) -> Principal:
    info = _user_info(s, row)
    return Principal(
        user_id=row.id,
        username=row.username,
        roles=frozenset(info.roles),
        department=info.department,
        via=via,
        token_generation=row.token_generation,
    )


def _revoke_tokens(s: Session, row: UserRow) -> None:
    """Make every token issued to ``row`` so far invalid (inside ``s``'s transaction)."""
    row.token_generation = (row.token_generation or 0) + 1
    bump_generation(s)


@dataclass(frozen=True)
class _UserState:
    """What a request needs to know about a user, as of one access generation."""

    generation: int
    username: str
    is_active: bool
    roles: frozenset[str]
    department: str | None
    token_generation: int = 0


@dataclass(frozen=True)
class _KeyState:
    generation: int
    key_hash: str
    revoked: bool
    user_id: int


# Per database, per process: user id -> state, key id -> state. Entries are trusted only
# at the generation they were loaded at; every change of roles, activity or keys bumps it
# (see ``_generation``), so the next request after a revocation reloads.
_users: weakref.WeakKeyDictionary[Database, dict[int, _UserState]] = weakref.WeakKeyDictionary()
_keys: weakref.WeakKeyDictionary[Database, dict[str, _KeyState]] = weakref.WeakKeyDictionary()
_state_lock = threading.Lock()
# Bounds memory under churn; a cleared cache only costs reloads.
_CACHE_MAX = 10_000


def _remember(
    cache: weakref.WeakKeyDictionary[Database, dict[Any, Any]], db: Database, key: Any, value: Any
) -> None:
    with _state_lock:
        entries = cache.setdefault(db, {})
        if len(entries) >= _CACHE_MAX:
            entries.clear()
        entries[key] = value


def _user_state(db: Database, user_id: int, generation: int) -> _UserState | None:
    """The user's state at ``generation`` (cached), or ``None`` if there is no such user."""
    cached = _users.get(db, {}).get(user_id)
    if cached is not None and cached.generation == generation:
        return cached
    with db.session() as s:
        row = s.get(UserRow, user_id)
        if row is None:
            return None  # not cached: unknown ids must not grow the cache
        info = _user_info(s, row)
        token_gen = int(row.token_generation or 0)
    # loaded after ``generation`` was read, so at least as new as its label
    state = _UserState(
        generation,
        info.username,
        info.is_active,
        frozenset(info.roles),
        info.department,
        token_gen,
    )
    _remember(_users, db, user_id, state)
    return state


def current_principal(
    db: Database, principal: Principal, *, generation: int | None = None
) -> Principal:
    """``principal`` with the roles and department its user has now.

    A principal held for a long time (e.g. by a :class:`SecureStore`) would otherwise
    keep roles revoked since it was made. Principals without a user id (built by hand for
    scripts) are returned as they are.

    Raises
    ------
    InvalidCredentials
        The user no longer exists, was renamed or is disabled.
    InvalidToken
        ``principal`` came from a token issued before the user's password, roles or
        activity last changed.
    """
    if principal.user_id is None:
        return principal
    gen = read_generation(db) if generation is None else generation
    state = _user_state(db, principal.user_id, gen)
    if state is None or state.username != principal.username or not state.is_active:
        raise InvalidCredentials(f"user {principal.username!r} no longer exists or is disabled")
    _check_token_generation(principal, state)
    if state.roles == principal.roles and state.department == principal.department:
        return principal
    return Principal(
        user_id=principal.user_id,
        username=principal.username,
        roles=state.roles,
        department=state.department,
        via=principal.via,
        token_generation=principal.token_generation,
    )


_STALE_TOKEN = (
    "the access token was issued before the user's password, roles or status changed; log in again"
)


def _check_token_generation(principal: Principal, state: _UserState) -> None:
    if principal.via == "token" and principal.token_generation != state.token_generation:
        raise InvalidToken(_STALE_TOKEN)


def principal_for(db: Database, username: str) -> Principal:
    """The user context of ``username`` for the Python API (e.g. ``SecureStore``).

    Raises
    ------
    AccessNotFound
        No such user.
    InvalidCredentials
        The user is disabled.
    """
    with db.session() as s:
        row = _user(s, username)
        if not row.is_active:
            raise InvalidCredentials(f"user {username!r} is disabled")
        return _principal(s, row, "python")


# A fixed argon2 hash verified for unknown users so that the response time does not
# reveal which user names exist.
_DUMMY_HASH: str | None = None


def authenticate(db: Database, username: str, password: str) -> Principal:
    """Check a user name and password; every attempt is written to the audit log.

    Raises
    ------
    InvalidCredentials
        Unknown user, wrong password, machine user or disabled user (one message for all).
    """
    global _DUMMY_HASH
    with db.session() as s:
        row = s.scalar(select(UserRow).where(UserRow.username == username))
        ok = False
        if row is not None and row.password_hash and row.is_active:
            ok = verify_password(row.password_hash, password)
        else:
            if _DUMMY_HASH is None:
                _DUMMY_HASH = _password_hasher().hash(secrets.token_hex(8))
            verify_password(_DUMMY_HASH, password)
        principal = _principal(s, row, "password") if ok and row is not None else None
    record(
        db,
        actor=username[:100],
        action="login" if ok else "login.failed",
        detail={"method": "password"},
    )
    if principal is None:
        raise InvalidCredentials("wrong user name or password")
    return principal


def _signing_key(secret_key: str) -> bytes:
    # A dedicated 256-bit key derived from the city's secret: tokens never share a key
    # with other uses of the secret, and HS256 always gets a full-length key.
    return hmac.new(secret_key.encode("utf-8"), b"cityos access token v1", hashlib.sha256).digest()


def issue_token(principal: Principal, secret_key: str, *, ttl: timedelta = TOKEN_TTL) -> str:
    """A signed HS256 access token for ``principal`` valid for ``ttl``.

    Examples
    --------
    >>> tok = issue_token(Principal(user_id=1, username="li"), "k" * 32)
    >>> tok.count(".")
    2
    """
    jwt = import_optional("jwt", "access tokens")
    now = datetime.now(UTC)
    claims = {
        "sub": principal.username,
        "uid": principal.user_id,
        "iat": now,
        "exp": now + ttl,
        "iss": _ISSUER,
        "typ": "access",
        "jti": secrets.token_hex(8),
        # the user's token generation: a password, role or status change bumps it
        "gen": principal.token_generation or 0,
    }
    return str(jwt.encode(claims, _signing_key(secret_key), algorithm="HS256"))


def verify_token(token: str, secret_key: str) -> Principal:
    """Check an access token's signature, expiry and claims, without the database.

    The principal returned has **no roles**: it names the user and nothing more, so code
    that forgets to resolve it gets fewer rights, never more. Resolve it with
    :func:`current_principal` (which also refuses disabled or deleted users);
    :class:`SecureStore` does so on every operation, which is why the server's query
    routes need no separate user lookup.

    Raises
    ------
    TokenExpired
        The token is past its expiry.
    InvalidToken
        Bad signature, wrong algorithm or missing claims.
    """
    jwt = import_optional("jwt", "access tokens")
    try:
        claims = jwt.decode(
            token,
            _signing_key(secret_key),
            algorithms=["HS256"],
            issuer=_ISSUER,
            options={"require": ["exp", "iat", "sub", "iss", "gen"]},
        )
    except jwt.ExpiredSignatureError as exc:
        raise TokenExpired("the access token has expired; log in again") from exc
    except jwt.PyJWTError as exc:
        raise InvalidToken(f"the access token is not valid: {exc}") from exc
    if claims.get("typ") != "access" or not isinstance(claims.get("sub"), str):
        raise InvalidToken("the token is not an access token")
    uid = claims.get("uid")
    # bool is an int subclass; a forged-but-signed token could not carry one, but be exact
    if not isinstance(uid, int) or isinstance(uid, bool):
        raise InvalidToken("the token's user no longer exists or is disabled")
    gen = claims.get("gen")
    if not isinstance(gen, int) or isinstance(gen, bool):
        raise InvalidToken("the token carries no valid generation; log in again")
    return Principal(user_id=uid, username=claims["sub"], via="token", token_generation=gen)


def principal_from_token(db: Database, token: str, secret_key: str) -> Principal:
    """Verify an access token and load the current roles of its user.

    Raises
    ------
    TokenExpired
        The token is past its expiry.
    InvalidToken
        Bad signature, wrong algorithm, missing claims, or the user is gone or disabled.
    """
    claimed = verify_token(token, secret_key)
    assert claimed.user_id is not None
    # one read of the generation; roles come from the cache unless something changed
    state = _user_state(db, claimed.user_id, read_generation(db))
    if state is None or state.username != claimed.username or not state.is_active:
        raise InvalidToken("the token's user no longer exists or is disabled")
    _check_token_generation(claimed, state)
    return Principal(
        user_id=claimed.user_id,
        username=state.username,
        roles=state.roles,
        department=state.department,
        via="token",
        token_generation=claimed.token_generation,
    )


# -- API keys ------------------------------------------------------------------------------
def _key_hash(key: str) -> str:
    # API keys carry 256 random bits, so a fast hash is enough: no dictionary to guess from
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


def create_api_key(
    db: Database, username: str, *, name: str = "", actor: str = "system"
) -> tuple[str, str]:
    """Create a long-lived API key for ``username``.

    Returns
    -------
    (key_id, key)
        ``key`` is shown once and never stored; keep it secret. ``key_id`` names the key
        for listing and revocation.
    """
    key_id = secrets.token_hex(8)
    key = f"{_KEY_PREFIX}_{key_id}_{secrets.token_urlsafe(32)}"
    with audit_transaction(db) as s:
        u = _user(s, username)
        s.add(
            ApiKeyRow(
                key_id=key_id,
                key_hash=_key_hash(key),
                user_id=u.id,
                name=name[:200],
                created_at=utcnow(),
            )
        )
        append_audit(
            s,
            actor=actor,
            action="apikey.create",
            detail={"user": username, "key_id": key_id, "name": name[:200]},
        )
    return key_id, key


def list_api_keys(db: Database, username: str | None = None) -> list[ApiKeyInfo]:
    """API keys (never their secrets), optionally of one user."""
    q = select(ApiKeyRow, UserRow.username).join(UserRow, UserRow.id == ApiKeyRow.user_id)
    if username is not None:
        q = q.where(UserRow.username == username)
    with db.session() as s:
        return [
            ApiKeyInfo(k.key_id, u, k.name, k.created_at, k.revoked_at is not None)
            for k, u in s.execute(q.order_by(ApiKeyRow.id))
        ]


def revoke_api_key(
    db: Database, key_id: str, *, actor: str = "system", owner: str | None = None
) -> None:
    """Revoke a key for good; requests with it fail with :class:`ApiKeyRevoked`.

    ``owner`` restricts revocation to that user's keys (self-service).
    """
    with audit_transaction(db) as s:
        row = s.scalar(select(ApiKeyRow).where(ApiKeyRow.key_id == key_id))
        if row is None or (owner is not None and _user(s, owner).id != row.user_id):
            raise AccessNotFound(f"no API key {key_id!r}")
        if row.revoked_at is None:
            row.revoked_at = utcnow()
            bump_generation(s)
            append_audit(s, actor=actor, action="apikey.revoke", detail={"key_id": key_id})


def principal_from_api_key(db: Database, key: str) -> Principal:
    """The user behind an API key.

    Raises
    ------
    InvalidCredentials
        Malformed or unknown key.
    ApiKeyRevoked
        The key was revoked.
    """
    parts = key.split("_", 2)  # the random part may itself contain "_"
    if len(parts) != 3 or parts[0] != _KEY_PREFIX or len(parts[1]) != 16:
        raise InvalidCredentials("malformed API key")
    key_id = parts[1]
    gen = read_generation(db)
    ks = _keys.get(db, {}).get(key_id)
    if ks is None or ks.generation != gen:
        with db.session() as s:
            row = s.scalar(select(ApiKeyRow).where(ApiKeyRow.key_id == key_id))
            if row is None:
                raise InvalidCredentials("unknown API key")  # misses are not cached
            ks = _KeyState(gen, row.key_hash, row.revoked_at is not None, row.user_id)
        _remember(_keys, db, key_id, ks)
    # the hash is compared on every request: the cache holds no key, only its hash
    if not hmac.compare_digest(ks.key_hash, _key_hash(key)):
        raise InvalidCredentials("unknown API key")
    if ks.revoked:
        raise ApiKeyRevoked(f"API key {key_id} was revoked; create a new key")
    state = _user_state(db, ks.user_id, gen)
    if state is None or not state.is_active:
        raise InvalidCredentials("the API key's user is disabled")
    return Principal(
        user_id=ks.user_id,
        username=state.username,
        roles=state.roles,
        department=state.department,
        via="api_key",
    )


def update_user(
    db: Database,
    username: str,
    *,
    password: str | None = None,
    is_active: bool | None = None,
    add_roles: tuple[str, ...] | list[str] = (),
    remove_roles: tuple[str, ...] | list[str] = (),
    actor: str = "system",
) -> UserInfo:
    """Apply several changes to a user in one audited transaction."""
    pw_hash = hash_password(password) if password is not None else None
    with audit_transaction(db) as s:
        u = _user(s, username)
        changes: dict[str, Any] = {}
        if pw_hash is not None:
            u.password_hash = pw_hash
            changes["password"] = True
        if is_active is not None and is_active != u.is_active:
            u.is_active = is_active
            changes["is_active"] = is_active
        for name in add_roles:
            r = _role(s, name)
            if s.get(UserRoleRow, (u.id, r.id)) is None:
                s.add(UserRoleRow(user_id=u.id, role_id=r.id))
                changes.setdefault("roles_added", []).append(name)
        for name in remove_roles:
            link = s.get(UserRoleRow, (u.id, _role(s, name).id))
            if link is None:
                raise AccessNotFound(f"user {username!r} does not have role {name!r}")
            s.delete(link)
            changes.setdefault("roles_removed", []).append(name)
        if changes:
            _revoke_tokens(s, u)
            append_audit(s, actor=actor, action="user.update", detail={"name": username, **changes})
    return get_user(db, username)

"""CLI commands of the access layer: ``cityos audit …``, ``cityos user …``, ``cityos role …``
and ``cityos policy …``. :func:`register` adds them to the main Typer app."""

from __future__ import annotations

import shlex
import subprocess
import sys
from pathlib import Path
from typing import Annotated

import typer

from cityos import access
from cityos.config import get_settings
from cityos.db import Database

__all__ = ["register"]

HomeOpt = Annotated[
    Path | None, typer.Option("--home", help="City folder (default: $CITYOS_HOME or ./city)")
]


def _db(home: Path | None) -> Database:
    settings = get_settings(**({"home": home} if home is not None else {}))
    assert settings.database_url is not None
    db = Database(settings.database_url)
    db.migrate()
    return db


#: Default anchor file, beside the city (better: elsewhere; see ``--to`` / ``--command``).
ANCHOR_FILE = "audit.anchor"
AnchorOpt = Annotated[
    Path | None,
    typer.Option(
        "--anchor",
        envvar="CITYOS_AUDIT_ANCHOR",
        help="Anchor file written by `cityos audit anchor` (default: HOME/audit.anchor)",
    ),
]


def _anchor_path(home: Path | None, anchor: Path | None) -> Path:
    if anchor is not None:
        return anchor
    return get_settings(**({"home": home} if home is not None else {})).home / ANCHOR_FILE


_NO_ANCHOR = (
    "WARNING: no audit anchor to compare with ({path}). A log that was deleted, "
    "truncated or consistently rewritten would also verify. Run `cityos audit anchor` "
    "regularly and keep the anchor outside this machine (--to / --command), then pass "
    "it with --anchor."
)


def _fail(exc: Exception) -> typer.Exit:
    from cityos.errors import exit_code  # the same code for the same kind in every command

    typer.secho(f"error: {exc}", fg=typer.colors.RED, err=True)
    return typer.Exit(exit_code(exc))


audit_app = typer.Typer(
    help="Inspect and verify the tamper-evident audit log.", no_args_is_help=True
)
user_app = typer.Typer(help="Users, roles, departments and API keys.", no_args_is_help=True)
policy_app = typer.Typer(help="Dataset classification, grants and unmasking.", no_args_is_help=True)


@audit_app.command("verify")
def audit_verify(
    home: HomeOpt = None,
    head: Annotated[
        str | None, typer.Option(help="SEQ:HASH recorded earlier outside the database")
    ] = None,
    anchor: AnchorOpt = None,
    require_anchor: Annotated[
        bool, typer.Option(help="Exit 1 when there is no anchor to compare with")
    ] = False,
) -> None:
    """Recompute the hash chain and compare it with the latest anchor; exit 1 and name
    the first broken entry if tampered. Warns loudly when there is no anchor."""
    expect = None
    where = "--head"
    if head:
        seq, _, digest = head.partition(":")
        try:
            expect = (int(seq), digest)
        except ValueError as exc:
            raise _fail(ValueError(f"--head must be SEQ:HASH, not {head!r}")) from exc
    else:
        path = _anchor_path(home, anchor)
        try:
            found = access.read_anchor(path)
        except ValueError as exc:
            raise _fail(exc) from exc
        if found is None:
            if anchor is not None:  # named explicitly: its absence is an error
                raise _fail(FileNotFoundError(f"no audit anchor file {path}"))
            typer.secho(_NO_ANCHOR.format(path=path), fg=typer.colors.YELLOW, err=True, bold=True)
            if require_anchor:
                raise typer.Exit(1)
        else:
            expect, where = (found.seq, found.hash), f"anchor {path} ({found.ts})"
    report = access.verify_audit(_db(home), expect_head=expect)
    if report.ok:
        anchored = f"; matches {where} at entry {expect[0]}" if expect else " (unanchored)"
        typer.echo(
            f"audit log OK: {report.entries} entries; head {report.head_seq}:"
            f"{report.head_hash}{anchored}"
        )
        return
    typer.secho(
        f"audit log BROKEN at entry {report.first_broken}: {report.reason} "
        f"({report.entries} entries verified before it)",
        fg=typer.colors.RED,
        err=True,
    )
    raise typer.Exit(1)


@audit_app.command("anchor")
def audit_anchor(
    home: HomeOpt = None,
    to: Annotated[
        Path | None,
        typer.Option(
            "--to",
            envvar="CITYOS_AUDIT_ANCHOR",
            help="Append the anchor to this file (default: HOME/audit.anchor)",
        ),
    ] = None,
    command: Annotated[
        str | None,
        typer.Option(
            help="Also pipe the anchor (one JSON line) to this command's standard input, "
            'e.g. "ssh vault \'cat >> cityos.anchor\'" or "logger -t cityos-audit"'
        ),
    ] = None,
) -> None:
    """Verify the chain and export its head (sequence and hash) outside the database, so
    `audit verify` detects a deleted or consistently rewritten log."""
    try:
        anchor = access.anchor_audit(_db(home))
    except access.AuditBroken as exc:
        typer.secho(f"error: {exc}", fg=typer.colors.RED, err=True)
        raise typer.Exit(1) from exc
    path = _anchor_path(home, to)
    access.write_anchor(path, anchor)
    if command:
        done = subprocess.run(
            shlex.split(command), input=anchor.to_json() + "\n", text=True, check=False
        )
        if done.returncode != 0:
            typer.secho(
                f"error: the anchor sink {command!r} exited with {done.returncode}",
                fg=typer.colors.RED,
                err=True,
            )
            raise typer.Exit(2)
    typer.echo(f"anchored the audit log at entry {anchor.seq}:{anchor.hash} in {path}")


@audit_app.command("list")
def audit_list(
    home: HomeOpt = None,
    after: int = 0,
    limit: int = 50,
    actor: str | None = None,
    dataset: str | None = None,
) -> None:
    """Print audit entries (oldest first) as JSON lines."""
    for e in access.read_audit(_db(home), after=after, limit=limit, actor=actor, dataset=dataset):
        typer.echo(access.canonical_json(e.payload()))


@user_app.command("create")
def user_create(
    username: str,
    home: HomeOpt = None,
    role: Annotated[list[str] | None, typer.Option("--role", help="Role (repeatable)")] = None,
    department: str | None = None,
    full_name: str = "",
    machine: Annotated[bool, typer.Option(help="No password: API keys only")] = False,
) -> None:
    """Create a user (asks for the password unless --machine)."""
    password = (
        None if machine else typer.prompt("password", hide_input=True, confirmation_prompt=True)
    )
    try:
        access.create_user(
            _db(home),
            username,
            password,
            roles=role or [],
            department=department,
            full_name=full_name,
            actor="cli",
        )
    except access.AccessError as exc:
        raise _fail(exc) from exc
    typer.echo(f"created user {username}")


@user_app.command("list")
def user_list(home: HomeOpt = None) -> None:
    """List users with their department and roles."""
    for u in access.list_users(_db(home)):
        state = "" if u.is_active else " (disabled)"
        typer.echo(f"{u.username}\t{u.department or '-'}\t{','.join(u.roles) or '-'}{state}")


@user_app.command("role")
def role_create(name: str, home: HomeOpt = None) -> None:
    """Create a role."""
    try:
        access.create_role(_db(home), name, actor="cli")
    except access.AccessError as exc:
        raise _fail(exc) from exc
    typer.echo(f"created role {name}")


@user_app.command("department")
def department_create(name: str, home: HomeOpt = None) -> None:
    """Create a department."""
    try:
        access.create_department(_db(home), name, actor="cli")
    except access.AccessError as exc:
        raise _fail(exc) from exc
    typer.echo(f"created department {name}")


@user_app.command("assign")
def user_assign(username: str, role: str, home: HomeOpt = None) -> None:
    """Give a user a role."""
    try:
        access.assign_role(_db(home), username, role, actor="cli")
    except access.AccessError as exc:
        raise _fail(exc) from exc
    typer.echo(f"{username} now has role {role}")


@user_app.command("api-key")
def user_api_key(username: str, home: HomeOpt = None, name: str = "") -> None:
    """Create an API key for a user; the key is printed once."""
    try:
        key_id, key = access.create_api_key(_db(home), username, name=name, actor="cli")
    except access.AccessError as exc:
        raise _fail(exc) from exc
    typer.echo(f"key id: {key_id}", err=True)
    sys.stdout.write(key + "\n")


@user_app.command("revoke-key")
def user_revoke_key(key_id: str, home: HomeOpt = None) -> None:
    """Revoke an API key by its id."""
    try:
        access.revoke_api_key(_db(home), key_id, actor="cli")
    except access.AccessError as exc:
        raise _fail(exc) from exc
    typer.echo(f"revoked {key_id}")


@policy_app.command("set")
def policy_set(
    dataset: str, classification: str, home: HomeOpt = None, owner: str | None = None
) -> None:
    """Classify a dataset (public|internal|sensitive|secret) and name its owner."""
    try:
        access.set_dataset_policy(
            _db(home), dataset, classification, owner_department=owner, actor="cli"
        )
    except access.AccessError as exc:
        raise _fail(exc) from exc
    typer.echo(f"{dataset}: {classification}")


@policy_app.command("grant")
def policy_grant(role: str, dataset: str, home: HomeOpt = None, permission: str = "read") -> None:
    """Grant a role read or write on a dataset ('*' for every non-secret dataset)."""
    try:
        access.grant(_db(home), role, dataset, permission, actor="cli")
    except (access.AccessError, ValueError) as exc:
        raise _fail(exc) from exc
    typer.echo(f"granted {permission} on {dataset} to {role}")


@policy_app.command("revoke")
def policy_revoke(role: str, dataset: str, home: HomeOpt = None, permission: str = "read") -> None:
    """Remove a grant."""
    try:
        access.revoke(_db(home), role, dataset, permission, actor="cli")
    except (access.AccessError, ValueError) as exc:
        raise _fail(exc) from exc
    typer.echo(f"revoked {permission} on {dataset} from {role}")


@policy_app.command("unmask")
def policy_unmask(role: str, home: HomeOpt = None, dataset: str = "*", personal: str = "*") -> None:
    """Let a role see personal fields in clear."""
    try:
        access.allow_unmask(_db(home), role, dataset, personal, actor="cli")
    except access.AccessError as exc:
        raise _fail(exc) from exc
    typer.echo(f"{role} sees {personal} of {dataset} in clear")


def register(app: typer.Typer) -> None:
    """Add the ``audit``, ``user`` and ``policy`` command groups to ``app``."""
    app.add_typer(audit_app, name="audit")
    app.add_typer(user_app, name="user")
    app.add_typer(policy_app, name="policy")

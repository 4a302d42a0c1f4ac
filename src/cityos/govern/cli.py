"""``cityos govern …``: load or generate the organisation, take in requests, list queues,
act on events, run the timer, import history, evaluate. govern-intel adds its ``rules``
commands from :mod:`cityos.govern.cli_rules` when that module exists."""

from __future__ import annotations

import importlib
import json
from pathlib import Path
from typing import Annotated, Any

import typer

__all__ = ["govern_app"]

govern_app = typer.Typer(
    help="City governance: organisation, intake, queues, workflow, evaluation.",
    no_args_is_help=True,
)
org_app = typer.Typer(
    help="The organisation: units, departments, staff, services.", no_args_is_help=True
)
govern_app.add_typer(org_app, name="org")
hooks_app = typer.Typer(
    help="Grid workers' webhook subscriptions (signed deliveries of their events).",
    no_args_is_help=True,
)
govern_app.add_typer(hooks_app, name="webhooks")

HomeOpt = Annotated[
    Path | None, typer.Option("--home", help="City folder (default: $CITYOS_HOME or ./city)")
]
ActorOpt = Annotated[
    str, typer.Option("--actor", help="Who acts (recorded in the history and the audit)")
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON")]


def _gov(home: Path | None, *, webhooks: bool = False) -> Any:
    from cityos.config import get_settings
    from cityos.govern import Governance
    from cityos.store import Store

    settings = get_settings(**({"home": home} if home is not None else {}))
    store = Store(settings=settings)
    return Governance(store.db, store, webhooks=webhooks)


def _print(obj: Any, as_json: bool) -> None:
    if as_json:
        typer.echo(json.dumps(obj, ensure_ascii=False, indent=2, default=str))
        return
    if isinstance(obj, list):
        for row in obj:
            typer.echo("  ".join(f"{k}={v}" for k, v in row.items() if v not in (None, "", [], {})))
    else:
        for k, v in obj.items():
            typer.echo(f"{k}: {v}")


def _brief(e: Any) -> dict[str, Any]:
    return {
        "id": e.id,
        "status": e.status,
        "service": e.service_code,
        "department": e.department,
        "assignee": e.assignee,
        "due_at": e.due_at,
        "version": e.version,
        "overdue": e.overdue,
        "title": e.title,
    }


@org_app.command("load")
def org_load(
    path: Path,
    home: HomeOpt = None,
    password: Annotated[
        str | None, typer.Option(help="Password for staff without one (default: API keys only)")
    ] = None,
) -> None:
    """Load an organisation from a YAML file or a folder of CSV files."""
    from cityos.govern import load_organisation

    gov = _gov(home)
    s = load_organisation(gov.db, path, store=gov.store, password=password)
    typer.echo(
        f"loaded {s.units} units {s.levels}, {s.departments} departments, {s.staff} staff, "
        f"{s.services} services"
    )


@org_app.command("generate")
def org_generate(
    home: HomeOpt = None,
    districts: str = "districts",
    password: Annotated[str | None, typer.Option()] = None,
) -> None:
    """Generate an organisation over the districts dataset (the demo city's 12)."""
    from cityos.govern import generate_organisation

    gov = _gov(home)
    s = generate_organisation(gov.db, gov.store, districts=districts, password=password)
    typer.echo(
        f"generated {s.units} units {s.levels}, {s.departments} departments, {s.staff} staff, "
        f"{s.services} services"
    )


@org_app.command("show")
def org_show(home: HomeOpt = None, as_json: JsonOpt = False) -> None:
    """Departments with their level, function and services."""
    _print(_gov(home).departments(), as_json)


@govern_app.command("intake")
def intake(
    service: str,
    lat: Annotated[float, typer.Option()],
    long: Annotated[float, typer.Option("--long")],
    description: str = "",
    title: str = "",
    channel: str = "hotline",
    source_id: Annotated[str | None, typer.Option("--source-id")] = None,
    idempotency_key: Annotated[str | None, typer.Option("--idempotency-key")] = None,
    actor: ActorOpt = "cli",
    home: HomeOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Take in one request (idempotent with --source-id or --idempotency-key)."""
    r = _gov(home).intake(
        service,
        x=long,
        y=lat,
        description=description,
        title=title,
        channel=channel,
        source_id=source_id,
        idempotency_key=idempotency_key,
        actor=actor,
    )
    _print(
        {
            **_brief(r.event),
            "created": r.created,
            "merged_into": r.merged_into,
            "token": r.report.token,
        },
        as_json,
    )


@govern_app.command("queue")
def queue(
    department: Annotated[str | None, typer.Option()] = None,
    home: HomeOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """The dispatcher queue, or a department's open work."""
    _print([_brief(e) for e in _gov(home).queue(department)], as_json)


@govern_app.command("show")
def show(event_id: str, home: HomeOpt = None, as_json: JsonOpt = False) -> None:
    """One event with its history and reports."""
    g = _gov(home)
    e = g.event(event_id)
    _print(
        {
            **e.to_dict(),
            "history": [t.to_dict() for t in g.history(event_id)],
            "reports": [r.to_dict(contact=False) for r in g.reports(event_id)],
        },
        as_json,
    )


@govern_app.command("act")
def act(
    event_id: str,
    action: str,
    version: Annotated[int, typer.Option(help="The version you read (optimistic locking)")],
    note: str = "",
    department: Annotated[str | None, typer.Option()] = None,
    assisting: Annotated[list[str] | None, typer.Option(help="Co-handling departments")] = None,
    outcome: Annotated[str | None, typer.Option(help="confirmed | false_alarm")] = None,
    parent: Annotated[str | None, typer.Option(help="merge: the parent event")] = None,
    actor: ActorOpt = "cli",
    home: HomeOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Act on an event: dispatch, accept, start, resolve, verify, close, return, reassign,
    escalate, reopen, merge, note."""
    e = _gov(home).transition(
        event_id,
        action,
        actor,
        version,
        note,
        department=department,
        assisting=assisting,
        outcome=outcome,
        parent=parent,
    )
    _print(_brief(e), as_json)


@govern_app.command("assign")
def assign(
    event_id: str,
    assignee: Annotated[str, typer.Argument(help="A grid worker of the event's grid")],
    version: Annotated[int, typer.Option(help="The version you read (optimistic lock)")],
    note: str = "",
    actor: ActorOpt = "cli",
    home: HomeOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Assign a dispatched event to a grid worker (their webhooks are sent before exit)."""
    gov = _gov(home, webhooks=True)
    try:
        e = gov.assign(event_id, assignee, actor, version, note)
    finally:
        gov.close()
    _print(_brief(e), as_json)


@hooks_app.command("add")
def hooks_add(
    username: str,
    url: str,
    allow_private: Annotated[
        bool, typer.Option(help="Allow a loopback or private address (a local receiver)")
    ] = False,
    actor: ActorOpt = "cli",
    home: HomeOpt = None,
) -> None:
    """Subscribe a grid worker's webhook; prints the signing secret (shown only now)."""
    gov = _gov(home, webhooks=True)
    try:
        gov.webhooks.allow_private = allow_private
        sub = gov.add_subscription(username, url, actor)
    finally:
        gov.close()
    _print(sub.to_dict(), False)


@hooks_app.command("list")
def hooks_list(
    username: Annotated[str | None, typer.Option(help="Only this person's")] = None,
    home: HomeOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Active subscriptions (secrets are not shown)."""
    _print([x.to_dict() for x in _gov(home).subscriptions(username)], as_json)


@hooks_app.command("remove")
def hooks_remove(subscription_id: int, actor: ActorOpt = "cli", home: HomeOpt = None) -> None:
    """End a subscription."""
    sub = _gov(home).remove_subscription(subscription_id, actor)
    typer.echo(f"removed subscription {sub.id} of {sub.username}")


@govern_app.command("sweep")
def sweep(home: HomeOpt = None) -> None:
    """Run the timer once: mark overdue work and escalate it."""
    r = _gov(home).sweep()
    typer.echo(f"{len(r.overdue)} overdue, {len(r.escalated)} escalated")


@govern_app.command("import")
def import_(
    source: str, mapping: Annotated[Path | None, typer.Option()] = None, home: HomeOpt = None
) -> None:
    """Import historical requests from a file, folder or URL (default mapping: NYC 311)."""
    from cityos.govern import bulk_import

    res = bulk_import(_gov(home), source, mapping=mapping)
    for line in res.lines():
        typer.echo(line)


@govern_app.command("evaluate")
def evaluate(
    level: str = "department",
    min_sample: int = 20,
    scope: Annotated[str, typer.Option(help="all | live | history (imported)")] = "all",
    home: HomeOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """On-time rate (open overdue work counted), handling-time percentiles, reopen rate,
    satisfaction per department, level, district, service or source."""
    rows = _gov(home).evaluate(level, min_sample=min_sample, scope=scope)
    if as_json:
        _print(rows, True)
        return
    for r in rows:
        rate = "-" if r["on_time_rate"] is None else f"{r['on_time_rate']:.0%}"
        p50 = "-" if r["handling_h_p50"] is None else f"{r['handling_h_p50']:.1f} h"
        typer.echo(
            f"{r[level]!s:<32} events={r['events']:<5} on_time={rate:<5} open_overdue={r['open_overdue']:<4} "
            f"p50={p50:<9} {r['note']}"
        )


@govern_app.command("kpi")
def kpi(home: HomeOpt = None) -> None:
    """The dashboard's headline figures."""
    _print(_gov(home).kpi(), False)


try:  # govern-intel's commands (rules, backtests), when its module exists
    _intel = importlib.import_module("cityos.govern.cli_rules")
    for _name, _app in getattr(_intel, "COMMANDS", {}).items():
        govern_app.add_typer(_app, name=_name)
except ModuleNotFoundError:
    pass

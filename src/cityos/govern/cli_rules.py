"""``cityos govern ...`` intelligence commands (mounted by the govern CLI group):
``rules check|run|backtest``, ``search``, ``quality``. Loaded only when a govern command
runs; each command imports what it needs.

CityOS errors propagate to the root CLI, which prints one line naming what is wrong and
exits with the error's code (a rule naming a missing dataset: the rule and the dataset)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

govern_intel = typer.Typer(
    no_args_is_help=True, help="Early-warning rules, search and the quality of dedup and dispatch."
)
rules_app = typer.Typer(
    no_args_is_help=True, help="Early-warning rules from YAML: check, run, backtest."
)
govern_intel.add_typer(rules_app, name="rules")
console = Console()
HomeOpt = Annotated[Path, typer.Option("--home", envvar="CITYOS_HOME", help="Folder of the city.")]
_HOME = Path("city")
RulesArg = Annotated[Path, typer.Argument(help="YAML file of rules", exists=True, dir_okay=False)]


@rules_app.command("check")
def rules_check(rules: RulesArg, home: HomeOpt = _HOME) -> None:
    """Check every rule against the city: datasets, fields, SQL."""
    from cityos.govern.rules import RuleEngine, load_rules
    from cityos.store import Store

    eng = RuleEngine(Store(home), load_rules(rules))
    for name in eng.rules:
        eng.check(name)
        console.print(f"[green]ok[/] {name}")


@rules_app.command("run")
def rules_run(rules: RulesArg, start: str, end: str, home: HomeOpt = _HOME) -> None:
    """Evaluate every rule over [START, END) and raise its warnings through governance."""
    from cityos.govern.rules import RuleEngine, load_rules
    from cityos.store import Store

    store = Store(home)
    sink = _governance(store)
    eng = RuleEngine(store, load_rules(rules), sink=sink)
    t = Table("rule", "candidates", "raised", "repeated")
    for r in eng.run(start, end):
        t.add_row(r.rule, str(r.candidates), str(r.raised), str(r.repeated))
    console.print(t)


def _governance(store: Any) -> Any:
    """Governance over the city (its warnings table and the store's ``warnings`` dataset)."""
    from cityos.govern import Governance

    return Governance(store.db, store)


@rules_app.command("backtest")
def rules_backtest(rules: RulesArg, rule: str, start: str, end: str, home: HomeOpt = _HOME) -> None:
    """What RULE would have raised over [START, END) (nothing is raised)."""
    from cityos.govern.rules import RuleEngine, load_rules
    from cityos.store import Store

    bt = RuleEngine(Store(home), load_rules(rules)).backtest(rule, start, end)
    console.print(f"{bt.rule}: {len(bt.warnings)} warning(s) over {bt.evaluations} evaluation(s)")
    if len(bt.warnings):
        t = Table("t", "severity", "place", "title")
        for w in bt.warnings.head(50).to_dict("records"):
            ev = w.get("evidence") or {}
            t.add_row(str(w["t"]), str(w["severity"]), str(ev.get("place")), str(w["title"]))
        console.print(t)


@govern_intel.command("search")
def search_cmd(
    q: str,
    bbox: Annotated[str | None, typer.Option(help="min_lon,min_lat,max_lon,max_lat")] = None,
    start: str | None = None,
    end: str | None = None,
    limit: int = 20,
    as_json: Annotated[bool, typer.Option("--json")] = False,
    home: HomeOpt = _HOME,
) -> None:
    """Search events, datasets, enterprises and places (zh or en)."""
    from cityos.govern.search import Search
    from cityos.store import Store

    box = tuple(float(v) for v in bbox.split(",")) if bbox else None
    hits = Search(Store(home)).search(q, bbox=box, start=start, end=end, limit=limit)
    if as_json:
        typer.echo(json.dumps([h.to_dict() for h in hits], ensure_ascii=False))
        return
    t = Table("kind", "id", "title", "score")
    for h in hits:
        t.add_row(h.kind, h.id, h.title, f"{h.score:.2f}")
    console.print(t)


@govern_intel.command("quality")
def quality_cmd(
    shared_data: Annotated[Path | None, typer.Option(help="folder holding nyc-311/")] = None,
) -> None:
    """Duplicate detection and dispatch against their baselines (generated + NYC 311)."""
    from cityos.govern.quality import dedup_table, dispatch_table
    from cityos.synth import make_city

    city = make_city(size_km=10.0)
    t = Table(
        "set",
        "method",
        "precision",
        "recall",
        "merges",
        "should merge",
        title="duplicate detection",
    )
    for r in dedup_table(city, shared_data):
        t.add_row(*r)
    console.print(t)
    t = Table(
        "set",
        "method",
        "accuracy",
        "auto share",
        "auto precision",
        "threshold",
        "n test",
        title="dispatch",
    )
    for r in dispatch_table(city, shared_data):
        t.add_row(*r)
    console.print(t)


#: what the ``cityos govern`` group mounts: ``cityos govern rules ...`` and
#: ``cityos govern intel search|quality|rules ...``
COMMANDS: dict[str, typer.Typer] = {"rules": rules_app, "intel": govern_intel}

"""``cityos ai ...``: features, train, evaluate, automl, models, stage, deploy, predict,
monitor. Loaded
only when an ``ai`` command runs; each command imports what it needs."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

ai_app = typer.Typer(
    no_args_is_help=True, help="The AI engine: features, models, registry, serving."
)
console = Console()
err = Console(stderr=True)
HomeOpt = Annotated[Path, typer.Option("--home", envvar="CITYOS_HOME", help="Folder of the city.")]
_HOME = Path("city")


def _spec(
    dataset: str,
    target: str,
    covariates: str | None,
    kind: str,
    freq: str,
    country: str | None,
    tz: str,
) -> Any:
    from cityos.ai import FeatureSpec

    return FeatureSpec(
        dataset,
        target,
        covariates=tuple(c for c in (covariates or "").split(",") if c),
        kind=kind,  # type: ignore[arg-type]  # checked by FeatureSpec itself
        freq=freq,
        country=country,
        timezone=tz,
    )


def _fail(exc: Exception) -> None:
    err.print(f"[bold red]error:[/] {exc}")
    raise typer.Exit(2)


Dataset = Annotated[str, typer.Argument(help="store dataset")]
Target = Annotated[str, typer.Argument(help="field to forecast")]
Cov = Annotated[str | None, typer.Option(help="covariate fields, comma-separated")]
Kind = Annotated[str, typer.Option(help="station | grid | network")]


@ai_app.command()
def features(
    dataset: Dataset,
    target: Target,
    covariates: Cov = None,
    kind: Kind = "station",
    freq: str = "1h",
    country: str | None = None,
    timezone: str = "UTC",
    home: HomeOpt = _HOME,
) -> None:
    """Build (and cache) the panel of a feature spec; print its shape and dataset versions."""
    from cityos.ai import AIError, build_panel
    from cityos.store import Store

    try:
        p = build_panel(
            Store(home), _spec(dataset, target, covariates, kind, freq, country, timezone)
        )
    except AIError as exc:
        _fail(exc)
    console.print(
        f"panel {p.shape} (steps, places, channels {list(p.channels)}) from {p.times[0]} "
        f"to {p.times[-1]}; dataset versions {p.datasets}"
    )


@ai_app.command("train")
def train_cmd(
    dataset: Dataset,
    target: Target,
    family: Annotated[str, typer.Option(help="zoo family")] = "lightgbm",
    name: str | None = None,
    covariates: Cov = None,
    kind: Kind = "station",
    freq: str = "1h",
    horizon: int = 24,
    train_end: str | None = None,
    val_end: str | None = None,
    params: Annotated[str | None, typer.Option(help="JSON parameters")] = None,
    country: str | None = None,
    timezone: str = "UTC",
    workers: Annotated[
        int, typer.Option(help="deep models: train data-parallel across N processes (gloo)")
    ] = 1,
    home: HomeOpt = _HOME,
) -> None:
    """Train a model with a chronological split and register it."""
    from cityos.ai import AIError
    from cityos.ai._lifecycle import train
    from cityos.store import Store

    try:
        r = train(
            Store(home),
            _spec(dataset, target, covariates, kind, freq, country, timezone),
            family,
            horizon=horizon,
            params=json.loads(params) if params else None,
            train_end=train_end,
            val_end=val_end,
            name=name,
            workers=workers,
        )
    except AIError as exc:
        _fail(exc)
    assert r.version is not None
    console.print(
        f"registered [bold]{r.version.name}[/] v{r.version.version} ({family}) in {r.fit_seconds:.1f} s"
    )
    _metrics(r.version.metrics)


def _metrics(m: dict[str, Any]) -> None:
    for split in ("val", "test"):
        if split not in m:
            continue
        t = Table("horizon", "MAE", "RMSE", "persistence MAE", title=split)
        for h, v in m[split]["mae"].items():
            t.add_row(
                h,
                f"{v:.3f}",
                f"{m[split]['rmse'][h]:.3f}",
                f"{m[f'{split}_persistence']['mae'][h]:.3f}",
            )
        console.print(t)


@ai_app.command()
def evaluate(name: str, version: str | None = None, home: HomeOpt = _HOME) -> None:
    """Show a registered version's metrics per horizon."""
    from cityos.ai import AIError
    from cityos.ai._registry import ModelRegistry
    from cityos.store import Store

    try:
        v = ModelRegistry.of(Store(home)).get(name, version)
    except AIError as exc:
        _fail(exc)
    console.print(
        f"{v.name} v{v.version} ({v.family}, stage {v.stage}); datasets {v.datasets}; {v.code_version}"
    )
    _metrics(v.metrics)


@ai_app.command()
def automl(
    dataset: Dataset,
    target: Target,
    name: str | None = None,
    covariates: Cov = None,
    budget: Annotated[str, typer.Option(help="wall-clock budget, e.g. 10m, 90s")] = "10m",
    horizon: int = 24,
    train_end: str | None = None,
    val_end: str | None = None,
    country: str | None = None,
    timezone: str = "UTC",
    home: HomeOpt = _HOME,
) -> None:
    """Search families and hyper-parameters under a budget; register the best."""
    import pandas as pd

    from cityos.ai import AIError
    from cityos.ai._automl import automl as run
    from cityos.store import Store

    try:
        r = run(
            Store(home),
            _spec(dataset, target, covariates, "station", "1h", country, timezone),
            horizon=horizon,
            budget_s=pd.Timedelta(budget).total_seconds(),
            train_end=train_end,
            val_end=val_end,
            name=name,
        )
    except AIError as exc:
        _fail(exc)
    console.print(
        f"best: {r.best_family} {r.best_params} (validation MAE {r.best_value:.3f}) "
        f"after {len(r.trials)} trials; registered v{r.version.version if r.version else '?'}"
    )


@ai_app.command()
def models(
    name: Annotated[str | None, typer.Argument(help="one model: all its versions")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="print JSON")] = False,
    home: HomeOpt = _HOME,
) -> None:
    """The registry: per model its production (else latest) version, or one model's
    versions, with family, stage, dataset versions and lineage (e.g. a federated model's
    federation, project and job)."""
    from cityos.ai import AIError
    from cityos.ai._registry import ModelRegistry
    from cityos.store import Store

    reg = ModelRegistry.of(Store(home))
    try:
        vs = reg.versions(name) if name else reg.list_models()
        if name and not vs:
            reg.get(name)  # raises VersionNotFound naming the registered models
    except AIError as exc:
        _fail(exc)
    if as_json:
        typer.echo(json.dumps([v.to_dict() for v in vs], indent=2, default=str))
        return
    t = Table("model", "version", "family", "stage", "datasets", "lineage", "by")
    for v in vs:
        lineage = v.lineage or {}
        t.add_row(
            v.name,
            str(v.version),
            v.family,
            v.stage,
            ", ".join(f"{d}@{n}" for d, n in v.datasets.items()),
            _lineage(lineage),
            v.created_by,
        )
    console.print(t)


def _lineage(lineage: dict[str, Any]) -> str:
    """One line of a version's lineage: a federated model's federation, project, job and
    every party's data versions."""
    out = [f"{k}={lineage[k]}" for k in ("federation", "project", "job") if k in lineage]
    parties = lineage.get("parties") or {}
    out += [f"{p}:{v['dataset']}@{v['version']}" for p, v in sorted(parties.items())]
    return " ".join(out)


@ai_app.command()
def stage(
    name: str,
    version: int,
    to: Annotated[str, typer.Argument(help="none | staging | production | archived (retired)")],
    reason: str = "",
    home: HomeOpt = _HOME,
) -> None:
    """Move a version to a stage; ``archived`` retires it (it is no longer served)."""
    from cityos.ai import AIError
    from cityos.ai._registry import ModelRegistry
    from cityos.store import Store

    try:
        v = ModelRegistry.of(Store(home)).transition(name, version, to, reason=reason)
    except AIError as exc:
        _fail(exc)
    console.print(f"{v.name} v{v.version} is in stage {v.stage}")


@ai_app.command()
def deploy(
    name: str,
    version: int | None = None,
    rollback: Annotated[
        bool, typer.Option("--rollback", help="back to the previous production version")
    ] = False,
    home: HomeOpt = _HOME,
) -> None:
    """Put a version into production (or roll back)."""
    from cityos.ai import AIError
    from cityos.ai._registry import ModelRegistry
    from cityos.store import Store

    reg = ModelRegistry.of(Store(home))
    try:
        v = reg.rollback(name) if rollback else reg.deploy(name, version)
    except AIError as exc:
        _fail(exc)
    console.print(f"{v.name} v{v.version} is in production")


@ai_app.command()
def predict(
    name: str,
    version: str | None = None,
    at: str | None = None,
    output: Annotated[str | None, typer.Option(help="batch-score into this dataset")] = None,
    start: str | None = None,
    end: str | None = None,
    home: HomeOpt = _HOME,
) -> None:
    """Forecast fresh data from the store (or batch-score [start, end) into --output)."""
    from cityos.ai import AIError
    from cityos.ai._lifecycle import predict_fresh, score_to_dataset
    from cityos.store import Store

    store = Store(home)
    try:
        if output:
            if not (start and end):
                raise typer.BadParameter("--output needs --start and --end")
            n = score_to_dataset(store, name, output, start, end, version)
            console.print(f"wrote {n:,} predictions to {output}")
            return
        df = predict_fresh(store, name, version, at=at)
    except AIError as exc:
        _fail(exc)
    console.print(df[["id", "t", "horizon", "yhat", "lower", "upper"]].to_string(index=False))


@ai_app.command()
def monitor(
    name: str, start: str, end: str, version: str | None = None, home: HomeOpt = _HOME
) -> None:
    """Live error vs persistence and input drift of a version on [start, end); alerts."""
    from cityos.ai import AIError
    from cityos.ai._monitor import monitor as run
    from cityos.store import Store

    try:
        r = run(Store(home), name, version, start=start, end=end)
    except AIError as exc:
        _fail(exc)
    console.print_json(json.dumps(r.to_dict(), default=str))
    if r.alerts:
        raise typer.Exit(1)


def register(app: typer.Typer) -> None:
    """Add ``cityos ai ...`` to the CLI."""
    app.add_typer(ai_app, name="ai")

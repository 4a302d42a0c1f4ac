"""The ``cityos`` command line: set up a city, manage datasets, load files, query, run the demo.

Every command works on the city in ``--home`` (or ``CITYOS_HOME``, default ``./city``).
Layers join the CLI with one row of :data:`LAYER_COMMANDS` (command name → module path and
help line); a layer's module is imported only when its command runs, so ``cityos --help``
imports no layer. Failures print one line and exit with the code of their kind
(:func:`cityos.errors.exit_code`); ``--debug`` shows the traceback instead.
"""

from __future__ import annotations

import importlib
import json
import os
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from typer.core import TyperCommand, TyperGroup

try:  # recent Typer ships its own copy of click; its classes are the ones Typer raises
    from typer import _click as click
except ImportError:  # pragma: no cover - older Typer depends on click
    import click  # type: ignore[no-redef]

from cityos.errors import EXIT_INTERNAL, exit_code

#: Commands of the layers: name -> ("module:attribute", help line). The attribute is a
#: ``typer.Typer`` (a command group) or a function (one command). Listed in ``--help``
#: without importing the module; imported when the command runs. A layer joins with a row.
LAYER_COMMANDS: dict[str, tuple[str, str]] = {
    "ingest": (
        "cityos.ingest.cli:ingest_app",
        "Bring data in from files, databases and MQTT brokers.",
    ),
    "deadletters": (
        "cityos.ingest.cli:dead_app",
        "Records that failed validation: list, fix, replay, discard.",
    ),
    "analytics": (
        "cityos.analytics.cli:analytics_app",
        "Trajectory and flow analysis over datasets.",
    ),
    "audit": ("cityos.access.cli:audit_app", "Inspect and verify the tamper-evident audit log."),
    "user": ("cityos.access.cli:user_app", "Users, roles, departments and API keys."),
    "policy": ("cityos.access.cli:policy_app", "Dataset classification, grants and unmasking."),
    "serve": (
        "cityos.server.cli:serve_command",
        "Serve the city's HTTP API (OpenAPI docs at /docs).",
    ),
    "ai": (
        "cityos.ai.cli:ai_app",
        "The AI engine: features, models, registry, serving, monitoring.",
    ),
    "govern": (
        "cityos.govern.cli:govern_app",
        "City governance: intake, queues, workflow, evaluation.",
    ),
    "gateway": (
        "cityos.federation.cli:gateway_app",
        "The federation gateway: certificates, serve a party, projects and jobs.",
    ),
}


def _load_layer_command(name: str) -> click.Command:
    """Import the module behind ``LAYER_COMMANDS[name]`` and build its click command."""
    target, help_line = LAYER_COMMANDS[name]
    module, _, attr = target.partition(":")
    obj = getattr(importlib.import_module(module), attr)
    if isinstance(obj, typer.Typer):
        cmd: click.Command = typer.main.get_group(obj)
    else:
        single = typer.Typer()
        single.command(name, help=obj.__doc__ or help_line)(obj)
        cmd = typer.main.get_command(single)
    cmd.name = name
    return cmd


class LazyGroup(TyperGroup):
    """The root command group: layer commands are placeholders (name and help line) until
    one runs, and every failure becomes one line on stderr and the exit code of its kind."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._loaded: dict[str, click.Command] = {}

    def list_commands(self, ctx: click.Context) -> list[str]:
        return [*super().list_commands(ctx), *(n for n in LAYER_COMMANDS if n not in self.commands)]

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        cmd = super().get_command(ctx, cmd_name)
        if cmd is not None or cmd_name not in LAYER_COMMANDS:
            return cmd
        if cmd_name in self._loaded:
            return self._loaded[cmd_name]
        help_line = LAYER_COMMANDS[cmd_name][1]
        return TyperCommand(cmd_name, help=help_line, short_help=help_line)

    def resolve_command(
        self, ctx: click.Context, args: list[str]
    ) -> tuple[str | None, click.Command | None, list[str]]:
        name = args[0] if args else None
        if name in LAYER_COMMANDS and name not in self.commands:
            if name not in self._loaded:
                self._loaded[name] = _load_layer_command(name)
            return name, self._loaded[name], args[1:]
        return super().resolve_command(ctx, args)

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except (typer.Exit, typer.Abort, typer.TyperException):
            raise  # Typer's own exits, usage errors and aborts
        except Exception as exc:
            if _debug(ctx):
                raise
            raise typer.Exit(_report(exc)) from None
        except KeyboardInterrupt:
            typer.echo("interrupted", err=True)
            raise typer.Exit(130) from None


def _debug(ctx: click.Context) -> bool:
    return bool(ctx.params.get("debug")) or os.environ.get("CITYOS_DEBUG", "") not in ("", "0")


def _report(exc: BaseException) -> int:
    """Print ``exc`` as one line (what, where, what to do) and return its exit code."""
    code = exit_code(exc)
    msg = str(exc).strip() or type(exc).__name__
    if code == EXIT_INTERNAL:
        msg = (
            f"unexpected {type(exc).__name__}: {msg.splitlines()[0]} "
            "(a bug in CityOS: rerun with --debug for the traceback and report it)"
        )
    typer.echo(f"error: {msg}", err=True)
    return code


app = typer.Typer(
    cls=LazyGroup,
    no_args_is_help=True,
    add_completion=False,
    help="CityOS: an urban operating system (data engine, AI, governance).",
)
dataset_app = typer.Typer(no_args_is_help=True, help="Create, list, describe and drop datasets.")
app.add_typer(dataset_app, name="dataset")

HomeOpt = Annotated[Path, typer.Option("--home", envvar="CITYOS_HOME", help="Folder of the city.")]
_DEFAULT_HOME = Path("city")


@app.callback()
def _root(
    debug: Annotated[
        bool, typer.Option("--debug", envvar="CITYOS_DEBUG", help="show tracebacks of failures")
    ] = False,
) -> None:
    """CityOS: an urban operating system (data engine, AI, governance)."""


def _console(stderr: bool = False) -> Any:
    from rich.console import Console

    return Console(stderr=stderr)


def _store(home: Path) -> Any:
    from cityos.store import Store

    return Store(home)


@app.command()
def init(home: HomeOpt = _DEFAULT_HOME) -> None:
    """Create an empty city (catalog, data folder and its own secret key) in HOME."""
    from cityos.config import city_secret

    s = _store(home)
    _, source = city_secret(s.settings)  # the token-signing secret, never printed
    typer.echo(f"city ready in {s.settings.home} (catalog {s.settings.database_url})")
    typer.echo(f"access tokens are signed with the secret from {source}")


@dataset_app.command("create")
def dataset_create(
    name: str,
    model: Annotated[
        str,
        typer.Option(
            help="point_static | point_series | point_st | network_static | "
            "network_series | network_st | table"
        ),
    ] = "point_st",
    field: Annotated[
        list[str] | None,
        typer.Option(
            help="NAME:TYPE, repeatable (types: string, int64, float64, bool, timestamp, ...)"
        ),
    ] = None,
    crs: str = "EPSG:4326",
    geometry: Annotated[str, typer.Option(help="point | line | region | any")] = "point",
    id_type: Annotated[str, typer.Option(help="string | int64")] = "string",
    key: Annotated[str | None, typer.Option(help="record key columns, comma-separated")] = None,
    description: str = "",
    home: HomeOpt = _DEFAULT_HOME,
) -> None:
    """Register a dataset with its model and fields."""
    from cityos.model import DatasetSchema, Field, GeometryType, ModelKind

    try:
        kind, gtype = ModelKind(model), GeometryType(geometry)
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from None
    fields = []
    for f in field or []:
        n, _, t = f.partition(":")
        fields.append(Field(n, t or "string"))
    schema = DatasetSchema(
        kind,
        fields=tuple(fields),
        crs=crs,
        geometry_type=gtype,
        id_type=id_type,
        key=tuple(key.split(",")) if key else (),
    )
    info = _store(home).create_dataset(name, schema, description=description)
    typer.echo(f"created {info.name} ({info.model}, {info.schema.crs})")


@dataset_app.command("list")
def dataset_list(home: HomeOpt = _DEFAULT_HOME) -> None:
    """List datasets with their size."""
    from rich.table import Table

    t = Table("name", "model", "rows", "files", "MB", "from", "to")
    for d in _store(home).list_datasets():
        dd = d.to_dict()
        t.add_row(
            d.name,
            d.model,
            f"{d.rows:,}",
            str(d.files),
            f"{d.bytes / 1e6:.2f}",
            str(dd["t_min"] or ""),
            str(dd["t_max"] or ""),
        )
    _console().print(t)


@dataset_app.command("describe")
def dataset_describe(name: str, home: HomeOpt = _DEFAULT_HOME) -> None:
    """Show a dataset's schema and statistics as JSON."""
    _console().print_json(json.dumps(_store(home).describe(name).to_dict(), default=str))


@dataset_app.command("drop")
def dataset_drop(
    name: str,
    yes: Annotated[bool, typer.Option("--yes", help="do not ask")] = False,
    home: HomeOpt = _DEFAULT_HOME,
) -> None:
    """Delete a dataset and its files."""
    if not yes and not typer.confirm(f"drop dataset {name!r} and all its data?"):
        raise typer.Exit(1)
    _store(home).drop_dataset(name)
    typer.echo(f"dropped {name}")


@app.command()
def load(
    name: Annotated[str, typer.Argument(help="dataset to load into (it must exist)")],
    path: Annotated[
        Path, typer.Argument(exists=True, dir_okay=False, help="CSV, Parquet, GeoJSON, ...")
    ],
    id: Annotated[str, typer.Option(help="column holding the object/feature id")] = "id",
    t: Annotated[str, typer.Option(help="column holding the time")] = "t",
    x: Annotated[str, typer.Option(help="column holding x / longitude")] = "x",
    y: Annotated[str, typer.Option(help="column holding y / latitude")] = "y",
    geometry: Annotated[
        str, typer.Option(help="column holding WKT/WKB geometry (when there is no x/y)")
    ] = "geometry",
    column: Annotated[
        list[str] | None,
        typer.Option(help="FIELD=COLUMN: take a declared field from another column, repeatable"),
    ] = None,
    delimiter: Annotated[
        str | None, typer.Option(help="CSV field delimiter (default: detected: , ; tab |)")
    ] = None,
    fmt: Annotated[
        str | None, typer.Option("--format", help="csv, jsonl, geojson, parquet, gpkg, shp")
    ] = None,
    crs: Annotated[str | None, typer.Option(help="CRS of the file's coordinates")] = None,
    time_format: Annotated[
        str, typer.Option(help="iso8601 | epoch_s | epoch_ms | a strftime pattern")
    ] = "iso8601",
    timezone: Annotated[str, typer.Option(help="zone of times without an offset")] = "UTC",
    chunk_rows: int = 1_000_000,
    home: HomeOpt = _DEFAULT_HOME,
) -> None:
    """Load a CSV, Parquet or GeoJSON/GeoPackage file into a dataset.

    Appends, skipping records already stored; bad records go to `cityos deadletters`. For
    mappings (renames, units, time zones, CRS conversion) and streams use `cityos ingest`.
    """
    from cityos.ingest import load_file

    columns = {}
    for c in column or []:
        f, sep, src = c.partition("=")
        if not sep or not f or not src:
            raise typer.BadParameter(f"--column {c!r}: use FIELD=COLUMN, e.g. speed=v_kmh")
        columns[f] = src
    if delimiter is not None:
        delimiter = {"\\t": "\t", "tab": "\t"}.get(delimiter, delimiter)
        if len(delimiter) != 1:
            raise typer.BadParameter(f"--delimiter {delimiter!r}: give one character")
    store = _store(home)
    store.describe(name)  # an unknown dataset fails before the file is read
    res = load_file(
        store,
        name,
        path,
        batch_rows=chunk_rows,
        id=id,
        t=t,
        x=x,
        y=y,
        geometry=geometry,
        columns=columns,
        crs=crs,
        time_format=time_format,
        timezone=timezone,
        delimiter=delimiter,
        format=fmt,
    )
    for note in res.notes:
        typer.echo(f"note: {note}", err=True)
    rep = res.report
    el = rep.seconds
    rejected = rep.rejected
    typer.echo(
        f"{name}: {res.written:,} rows written, {res.duplicates:,} already stored, "
        f"{rejected:,} dead-lettered, {el:.1f} s "
        f"({(res.written + res.duplicates) / max(el, 1e-9):,.0f} rows/s)"
    )
    if rejected:
        typer.echo(
            f"see why with `cityos deadletters list --dataset {name}`; fix and "
            "`cityos deadletters replay`",
            err=True,
        )


def parse_agg_options(values: list[str] | None) -> dict[str, Any]:
    """``--agg`` options as one aggregation spec (the same one Python and HTTP take).

    Examples
    --------
    >>> parse_agg_options(["n=count", "speed=mean", "top=speed:max"])
    {'n': 'count', 'speed': 'mean', 'top': ('speed', 'max')}
    """
    out: dict[str, Any] = {}
    for v in values or ["n=count"]:
        name, sep, what = v.partition("=")
        if not sep or not name or not what:
            raise typer.BadParameter(
                f"--agg {v!r}: write NAME=count, COLUMN=FN or NAME=COLUMN:FN", param_hint="--agg"
            )
        col, sep, fn = what.partition(":")
        out[name.strip()] = (col.strip(), fn.strip()) if sep else what.strip()
    return out


def _aggregate_query(
    store: Any,
    name: str,
    agg: list[str] | None,
    bbox: str | None,
    grid_m: float | None,
    grid_crs: str | None,
    regions: str | None,
    time_bin: str,
    start: str | None,
    end: str | None,
    engine: str,
) -> Any:
    from cityos.store import Grid

    grid = None
    geometry = None
    box: Any = tuple(float(v) for v in bbox.split(",")) if bbox else None
    if regions is None:
        if grid_m is None:
            raise typer.BadParameter("--agg needs --grid-m METRES or --regions DATASET")
        if box is None:
            box = store.describe(name).bbox
            if box is None:
                raise typer.BadParameter(f"dataset {name!r} is empty: give --bbox for the grid")
        grid = Grid.from_metres(box, grid_m, crs=grid_crs)
    elif box is not None:
        geometry = box
    return store.aggregate(
        name,
        grid=grid,
        regions=regions,
        time_bin=None if time_bin.lower() == "none" else time_bin,
        aggs=parse_agg_options(agg),
        start=start,
        end=end,
        geometry=geometry,
        crs=grid_crs if geometry is not None else None,
        engine=engine,
    )


@app.command()
def query(
    name: Annotated[str | None, typer.Argument(help="dataset (omit with --sql)")] = None,
    bbox: Annotated[str | None, typer.Option(help="xmin,ymin,xmax,ymax")] = None,
    start: Annotated[str | None, typer.Option(help="ISO time, inclusive")] = None,
    end: Annotated[str | None, typer.Option(help="ISO time, exclusive")] = None,
    ids: Annotated[str | None, typer.Option(help="object ids, comma-separated")] = None,
    knn: Annotated[str | None, typer.Option(help="x,y,k: the k nearest points")] = None,
    sql: Annotated[
        str | None,
        typer.Option(help="SQL over every dataset (views by name; ST_* functions; see --engine)"),
    ] = None,
    agg: Annotated[
        list[str] | None,
        typer.Option(
            help="aggregate per cell/region and time bin: NAME=count, COLUMN=FN or "
            "NAME=COLUMN:FN (FN: count sum mean min max); repeat for several"
        ),
    ] = None,
    grid_m: Annotated[
        float | None, typer.Option(help="with --agg: grid cells of about this many metres")
    ] = None,
    grid_crs: Annotated[
        str | None, typer.Option(help="with --grid-m: CRS of --bbox/the grid (default: dataset's)")
    ] = None,
    regions: Annotated[
        str | None, typer.Option(help="with --agg: aggregate per region of this dataset")
    ] = None,
    time_bin: Annotated[
        str, typer.Option(help="with --agg: time bin such as 15min, 1h, 1D, or 'none'")
    ] = "1h",
    engine: Annotated[str, typer.Option(help="a registered engine: duckdb | spark")] = "duckdb",
    limit: int = 20,
    fmt: Annotated[str, typer.Option("--format", help="table | csv | json")] = "table",
    home: HomeOpt = _DEFAULT_HOME,
) -> None:
    """Query a dataset by space, time, ids or nearest neighbours, aggregate it, or run SQL."""
    from cityos.errors import QueryError

    store = _store(home)
    stats: dict[str, Any] = {}
    if sql:
        tbl = store.sql(sql, engine=engine)
    elif name is None:
        raise typer.BadParameter("give a dataset name or --sql")
    elif agg or grid_m is not None or regions:
        r = _aggregate_query(
            store, name, agg, bbox, grid_m, grid_crs, regions, time_bin, start, end, engine
        )
        tbl, stats = r.table, r.stats
    elif knn:
        parts = knn.split(",")
        try:
            kx, ky, kk = float(parts[0]), float(parts[1]), int(parts[2])
        except (ValueError, IndexError):
            raise typer.BadParameter(f"--knn {knn!r}: use X,Y,K, e.g. 116.40,39.91,10") from None
        r = store.knn(name, kx, ky, kk, start=start, end=end, engine=engine)
        tbl, stats = r.table, r.stats
    else:
        try:
            geom = tuple(float(v) for v in bbox.split(",")) if bbox else None
        except ValueError:
            raise typer.BadParameter(f"--bbox {bbox!r}: use XMIN,YMIN,XMAX,YMAX") from None
        if geom is not None and len(geom) != 4:
            raise QueryError(f"--bbox {bbox!r}: give 4 numbers XMIN,YMIN,XMAX,YMAX")
        r = store.scan(
            name,
            geometry=geom,
            start=start,
            end=end,
            ids=ids.split(",") if ids else None,
            engine=engine,
        )
        tbl, stats = r.table, r.stats
    df = _printable(tbl)
    if fmt == "csv":
        df.to_csv(sys.stdout, index=False)
        return
    if fmt == "json":
        sys.stdout.write(df.to_json(orient="records", date_format="iso") + "\n")
        return
    from rich.table import Table

    t = Table(*[str(c) for c in df.columns])
    for row in df.head(limit).itertuples(index=False):
        t.add_row(*[str(v) for v in row])
    con = _console()
    con.print(t)
    more = f" (showing {limit})" if len(df) > limit else ""
    ms = (
        f" in {stats['elapsed_ms']:.1f} ms, {stats.get('row_groups_read', 0)}/{stats.get('row_groups_total', 0)} row groups read"
        if stats
        else ""
    )
    con.print(f"{len(df):,} rows{more}{ms}")


def _printable(tbl: Any) -> Any:
    """A result as a pandas frame for printing: geometry (WKB) columns as WKT text."""
    import pyarrow as pa

    cols = {}
    for i, f in enumerate(tbl.schema):
        col = tbl.column(i)
        typ = f.type.storage_type if isinstance(f.type, pa.ExtensionType) else f.type
        meta = {k.decode(): v.decode() for k, v in (f.metadata or {}).items()}
        ext = getattr(f.type, "extension_name", "") or meta.get("ARROW:extension:name", "")
        if (pa.types.is_binary(typ) or pa.types.is_large_binary(typ)) and (
            "wkb" in ext or f.name == "geometry"
        ):
            import shapely

            vals = col.cast(typ).to_numpy(zero_copy_only=False)
            col = pa.array(shapely.to_wkt(shapely.from_wkb(vals, on_invalid="ignore")))
        cols[f.name] = col
    return pa.table(cols).to_pandas() if cols else tbl.to_pandas()


@app.command()
def vacuum(
    grace: Annotated[
        float, typer.Option(help="keep unreferenced files younger than this (seconds)")
    ] = 3600.0,
    dry_run: Annotated[bool, typer.Option(help="only list what would be removed")] = False,
    home: HomeOpt = _DEFAULT_HOME,
) -> None:
    """Remove data files no catalog version references (left by crashed writes, replaced
    by compaction or delete). Safe while writers run: files of in-flight writes and files
    younger than --grace are kept."""
    res = _store(home).vacuum(older_than_s=grace, dry_run=dry_run)
    for rel in res.removed:
        typer.echo(f"{'would remove' if dry_run else 'removed'} {rel}")
    typer.echo(
        f"{len(res.removed)} unreferenced files {'to remove' if dry_run else 'removed'}; "
        f"kept {res.kept_young} younger than {grace:g} s and {res.kept_in_flight} of writes "
        f"in flight; {res.stale_leases} leases of dead writers cleared"
    )


@app.command()
def demo(
    home: Annotated[Path, typer.Option("--home", help="folder for the demo city")] = Path(
        "demo-city"
    ),
    vehicles: Annotated[int, typer.Option(help="number of simulated vehicles")] = 300,
    days: Annotated[int, typer.Option(help="days of simulated movement")] = 2,
    shared_data: Annotated[
        Path | None,
        typer.Option(envvar="CITYOS_SHARED_DATA", help="folder of the real public data"),
    ] = None,
    fresh: Annotated[bool, typer.Option(help="delete the demo city first")] = True,
    serve: Annotated[
        bool, typer.Option(help="end by serving the dashboard on loopback (--no-serve: finish)")
    ] = True,
) -> None:
    """Build and tour the demo city (synthetic city + real air-quality and 311 data)."""
    from cityos.demo import run_demo

    run_demo(
        home,
        vehicles=vehicles,
        days=days,
        shared_data=shared_data,
        fresh=fresh,
        serve=serve,
        console=_console(),
    )


if __name__ == "__main__":  # pragma: no cover
    app()

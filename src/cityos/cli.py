"""The ``cityos`` command line: set up a city, manage datasets, load files, query, run the demo.

Every command works on the city in ``--home`` (or ``CITYOS_HOME``, default ``./city``).
Layers add their own commands through a ``register(app)`` hook (ingest, access, server).
"""

from __future__ import annotations

import importlib
import json
import sys
import time
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from cityos.errors import CityOSError

app = typer.Typer(
    no_args_is_help=True,
    add_completion=False,
    help="CityOS: an urban operating system (data engine, AI, governance).",
)
dataset_app = typer.Typer(no_args_is_help=True, help="Create, list, describe and drop datasets.")
app.add_typer(dataset_app, name="dataset")
console = Console()
err = Console(stderr=True)

HomeOpt = Annotated[Path, typer.Option("--home", envvar="CITYOS_HOME", help="Folder of the city.")]
_DEFAULT_HOME = Path("city")


def _store(home: Path) -> Any:
    from cityos.store import Store

    return Store(home)


def _fail(exc: Exception) -> None:
    err.print(f"[bold red]error:[/] {exc}")
    raise typer.Exit(2)


@app.command()
def init(home: HomeOpt = _DEFAULT_HOME) -> None:
    """Create an empty city (catalog and data folder) in HOME."""
    s = _store(home)
    console.print(f"city ready in [bold]{s.settings.home}[/] (catalog {s.settings.database_url})")


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
        fields = []
        for f in field or []:
            n, _, t = f.partition(":")
            fields.append(Field(n, t or "string"))
        schema = DatasetSchema(
            ModelKind(model),
            fields=tuple(fields),
            crs=crs,
            geometry_type=GeometryType(geometry),
            id_type=id_type,
            key=tuple(key.split(",")) if key else (),
        )
        info = _store(home).create_dataset(name, schema, description=description)
    except (CityOSError, ValueError) as exc:
        _fail(exc)
    console.print(f"created [bold]{info.name}[/] ({info.model}, {info.schema.crs})")


@dataset_app.command("list")
def dataset_list(home: HomeOpt = _DEFAULT_HOME) -> None:
    """List datasets with their size."""
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
    console.print(t)


@dataset_app.command("describe")
def dataset_describe(name: str, home: HomeOpt = _DEFAULT_HOME) -> None:
    """Show a dataset's schema and statistics as JSON."""
    try:
        console.print_json(json.dumps(_store(home).describe(name).to_dict(), default=str))
    except CityOSError as exc:
        _fail(exc)


@dataset_app.command("drop")
def dataset_drop(
    name: str,
    yes: Annotated[bool, typer.Option("--yes", help="do not ask")] = False,
    home: HomeOpt = _DEFAULT_HOME,
) -> None:
    """Delete a dataset and its files."""
    if not yes and not typer.confirm(f"drop dataset {name!r} and all its data?"):
        raise typer.Exit(1)
    try:
        _store(home).drop_dataset(name)
    except CityOSError as exc:
        _fail(exc)
    console.print(f"dropped {name}")


@app.command()
def load(
    name: str,
    path: Path,
    id: Annotated[str, typer.Option(help="column holding the object/feature id")] = "id",
    t: Annotated[str, typer.Option(help="column holding the time")] = "t",
    x: Annotated[str, typer.Option(help="column holding x / longitude")] = "x",
    y: Annotated[str, typer.Option(help="column holding y / latitude")] = "y",
    chunk_rows: int = 1_000_000,
    home: HomeOpt = _DEFAULT_HOME,
) -> None:
    """Load a CSV, Parquet/GeoParquet or GeoJSON/GeoPackage file into a dataset (appends,
    skipping records already stored). For mappings, CRS conversion and streams use `ingest`."""
    import pandas as pd
    import pyarrow.csv as pcsv
    import pyarrow.parquet as pq
    from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    store = _store(home)
    ren = {k: v for k, v in {id: "id", t: "t", x: "x", y: "y"}.items() if k != v}
    try:
        store.describe(name)
        suffix = path.suffix.lower()
        batches: Any
        if suffix == ".csv":
            reader = pcsv.open_csv(path, read_options=pcsv.ReadOptions(block_size=64 << 20))
            batches = (pd.DataFrame(b.to_pandas()) for b in reader)
        elif suffix == ".parquet":
            pf = pq.ParquetFile(path)
            batches = (b.to_pandas() for b in pf.iter_batches(batch_size=chunk_rows))
        else:
            import geopandas as gpd

            batches = iter([gpd.read_file(path)])
        written = dups = 0
        t0 = time.perf_counter()
        # the total row count is unknown until the file is read: show rows done and the rate
        with Progress(
            SpinnerColumn(),
            TextColumn("{task.description}"),
            TextColumn("{task.completed:,.0f} rows"),
            TimeElapsedColumn(),
            console=console,
            transient=True,
        ) as prog:
            task = prog.add_task(f"loading {path.name}", total=None)
            for df in batches:
                df = df.rename(columns=ren)
                r = store.append(name, df, source=str(path))
                written += r.rows_written
                dups += r.duplicates
                prog.update(task, advance=r.rows_in)
        el = time.perf_counter() - t0
    except (CityOSError, OSError) as exc:
        _fail(exc)
    console.print(
        f"{name}: {written:,} rows written, {dups:,} already stored, "
        f"{el:.1f} s ({(written + dups) / max(el, 1e-9):,.0f} rows/s)"
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
        str | None, typer.Option(help="DuckDB SQL over every dataset (views by name)")
    ] = None,
    engine: Annotated[str, typer.Option(help="duckdb | spark")] = "duckdb",
    limit: int = 20,
    fmt: Annotated[str, typer.Option("--format", help="table | csv | json")] = "table",
    home: HomeOpt = _DEFAULT_HOME,
) -> None:
    """Query a dataset by space, time, ids or nearest neighbours, or run SQL."""
    store = _store(home)
    try:
        if sql:
            tbl = store.sql(sql)
            stats: dict[str, Any] = {}
        elif name is None:
            raise typer.BadParameter("give a dataset name or --sql")
        elif knn:
            kx, ky, kk = knn.split(",")
            r = store.knn(name, float(kx), float(ky), int(kk), start=start, end=end, engine=engine)
            tbl, stats = r.table, r.stats
        else:
            geom = tuple(float(v) for v in bbox.split(",")) if bbox else None
            r = store.scan(
                name,
                geometry=geom,
                start=start,
                end=end,
                ids=ids.split(",") if ids else None,
                engine=engine,
            )
            tbl, stats = r.table, r.stats
    except (CityOSError, ValueError) as exc:
        _fail(exc)
    df = tbl.to_pandas()
    if fmt == "csv":
        df.to_csv(sys.stdout, index=False)
        return
    if fmt == "json":
        sys.stdout.write(df.to_json(orient="records", date_format="iso") + "\n")
        return
    t = Table(*[str(c) for c in df.columns])
    for row in df.head(limit).itertuples(index=False):
        t.add_row(*[str(v) for v in row])
    console.print(t)
    more = f" (showing {limit})" if len(df) > limit else ""
    ms = (
        f" in {stats['elapsed_ms']:.1f} ms, {stats.get('row_groups_read', 0)}/{stats.get('row_groups_total', 0)} row groups read"
        if stats
        else ""
    )
    console.print(f"{len(df):,} rows{more}{ms}")


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
) -> None:
    """Build and tour the demo city (synthetic city + real air-quality and 311 data)."""
    from cityos.demo import run_demo

    try:
        run_demo(
            home,
            vehicles=vehicles,
            days=days,
            shared_data=shared_data,
            fresh=fresh,
            console=console,
        )
    except CityOSError as exc:
        _fail(exc)


#: Layers contributing commands through ``register(app)``; each is optional until built.
_LAYER_CLIS = (
    "cityos.ingest.cli",
    "cityos.access.cli",
    "cityos.server.cli",
    "cityos.analytics.cli",
    "cityos.ai.cli",
)


def _register_layers() -> None:
    for mod in _LAYER_CLIS:
        try:
            m = importlib.import_module(mod)
        except ModuleNotFoundError as exc:
            if exc.name and (exc.name == mod or mod.startswith(exc.name)):
                continue  # that layer ships no CLI yet
            raise
        m.register(app)


_register_layers()


if __name__ == "__main__":  # pragma: no cover
    app()

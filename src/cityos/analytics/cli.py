"""``cityos analytics``: stay points, segmentation, map matching and grid flows over store
datasets from the command line, printed or saved back into the store as datasets."""

from __future__ import annotations

import contextlib
import sys
import time
from pathlib import Path
from typing import Annotated, Any

import typer

__all__ = ["register"]

analytics_app = typer.Typer(
    no_args_is_help=True, help="Trajectory and flow analysis over datasets."
)

HomeOpt = Annotated[Path, typer.Option("--home", envvar="CITYOS_HOME", help="Folder of the city.")]
IdsOpt = Annotated[str | None, typer.Option(help="object ids, comma-separated")]
StartOpt = Annotated[str | None, typer.Option(help="ISO time, inclusive")]
EndOpt = Annotated[str | None, typer.Option(help="ISO time, exclusive")]
SaveOpt = Annotated[
    str | None, typer.Option(help="store the result as this dataset (replacing it)")
]
FmtOpt = Annotated[str, typer.Option("--format", help="table | csv")]


def _store(home: Path) -> Any:
    from cityos.store import Store

    return Store(home)


def _query(ids: str | None, start: str | None, end: str | None) -> dict[str, Any]:
    return {"ids": ids.split(",") if ids else None, "start": start, "end": end}


def _emit(df: Any, fmt: str, what: str, t0: float, limit: int = 20) -> None:
    from rich.console import Console
    from rich.table import Table

    if fmt == "csv":
        df.to_csv(sys.stdout, index=False)
        return
    con = Console()
    t = Table(*[str(c) for c in df.columns])
    for row in df.head(limit).itertuples(index=False):
        t.add_row(*[str(v) for v in row])
    con.print(t)
    con.print(f"{len(df):,} {what} in {time.perf_counter() - t0:.2f} s")


def _save(store: Any, name: str | None, frame: Any) -> None:
    if not name:
        return
    from cityos.errors import DatasetNotFound

    with contextlib.suppress(DatasetNotFound):
        store.drop_dataset(name)
    store.create_dataset(name, frame.schema_)
    store.append(name, frame.to_arrow(), source="cityos analytics")
    typer.echo(f"saved {len(frame):,} rows as dataset {name!r}")


@analytics_app.command("stays")
def stays(
    dataset: str,
    ids: IdsOpt = None,
    start: StartOpt = None,
    end: EndOpt = None,
    max_distance_m: float = 200.0,
    min_duration: str = "5min",
    save: SaveOpt = None,
    fmt: FmtOpt = "table",
    home: HomeOpt = Path("city"),
) -> None:
    """Stay points: places an object stayed within MAX_DISTANCE_M for at least MIN_DURATION."""
    from cityos.analytics import stay_points_dataset
    from cityos.model import MovingPoints

    t0 = time.perf_counter()
    store = _store(home)
    df = stay_points_dataset(
        store, dataset, max_distance_m, min_duration, **_query(ids, start, end)
    )
    if save:
        _save(
            store,
            save,
            MovingPoints.from_pandas(
                df.rename(columns={"t_start": "t"}) if "t" not in df.columns else df
            ),
        )
    _emit(df, fmt, "stay points", t0)


@analytics_app.command("segment")
def segment(
    dataset: str,
    gap: str = "10min",
    ids: IdsOpt = None,
    start: StartOpt = None,
    end: EndOpt = None,
    fmt: FmtOpt = "table",
    home: HomeOpt = Path("city"),
) -> None:
    """Split each object's points into trajectories wherever reports stop for longer than GAP."""
    from cityos.analytics import split_dataset

    t0 = time.perf_counter()
    df = split_dataset(_store(home), dataset, gap, **_query(ids, start, end))
    summary = (
        df.groupby("traj_id")
        .agg(id=("id", "first"), start=("t", "min"), end=("t", "max"), points=("t", "size"))
        .reset_index()
    )
    _emit(summary, fmt, "trajectories", t0)


@analytics_app.command("match")
def match(
    dataset: str,
    roads: str,
    ids: IdsOpt = None,
    start: StartOpt = None,
    end: EndOpt = None,
    save: SaveOpt = None,
    fmt: FmtOpt = "table",
    home: HomeOpt = Path("city"),
) -> None:
    """Map-match points to the road network dataset ROADS (hidden Markov model)."""
    from cityos.analytics import map_match_dataset

    t0 = time.perf_counter()
    store = _store(home)
    res = map_match_dataset(store, dataset, roads, **_query(ids, start, end))
    if save:
        _save(store, save, res.routes)
    _emit(res.points, fmt, "matched points", t0)


@analytics_app.command("flows")
def flows(
    dataset: str,
    cell_m: float = 500.0,
    time_bin: str = "1h",
    start: StartOpt = None,
    end: EndOpt = None,
    save: SaveOpt = None,
    fmt: FmtOpt = "table",
    home: HomeOpt = Path("city"),
) -> None:
    """Crowd flows per grid cell and time bin: counts, distinct objects, inflow and outflow."""
    from cityos.analytics import load_points
    from cityos.analytics._flows import grid_flows

    t0 = time.perf_counter()
    store = _store(home)
    series = grid_flows(load_points(store, dataset, start=start, end=end), cell_m, time_bin)
    if save:
        _save(store, save, series)
    _emit(series.to_pandas(), fmt, "cell x time-bin rows", t0)


def register(app: typer.Typer) -> None:
    """Add ``cityos analytics ...`` to the CLI."""
    app.add_typer(analytics_app, name="analytics")

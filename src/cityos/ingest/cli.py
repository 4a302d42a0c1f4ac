"""``cityos ingest …`` and ``cityos deadletters …``: file loads with progress bars, streams
with live counters, lineage, and listing, fixing and replaying dead letters."""

from __future__ import annotations

import json
import os
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

if TYPE_CHECKING:
    from cityos.ingest._base import Batch, BatchResult, IngestReport, Source
    from cityos.store import Store

__all__ = ["register"]

Home = Annotated[
    Path | None, typer.Option("--home", help="city folder (default: $CITYOS_HOME or ./city)")
]


def _store(home: Path | None) -> Store:
    from cityos.store import open_city

    h = home or Path(os.environ.get("CITYOS_HOME", "city"))
    return open_city(h)


def _run_with_progress(src: Source, store: Store, *, stream: bool) -> IngestReport:
    from rich.console import Console
    from rich.live import Live
    from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TimeRemainingColumn

    from cityos.ingest._base import SourceContext
    from cityos.ingest._state import IngestState

    console = Console(stderr=True)
    stop = threading.Event()
    totals = {"received": 0, "accepted": 0, "duplicates": 0, "rejected": 0}
    t0 = time.monotonic()

    def counters() -> str:
        rate = totals["received"] / max(time.monotonic() - t0, 1e-9)
        return (
            f"received {totals['received']:,}  stored {totals['accepted']:,}  "
            f"duplicates {totals['duplicates']:,}  dead-lettered {totals['rejected']:,}  "
            f"({rate:,.0f} records/s)"
        )

    def add(res: BatchResult) -> None:
        for k in totals:
            totals[k] += getattr(res, k)

    try:
        if stream:
            with Live(counters(), console=console, refresh_per_second=4) as live:

                def on_batch(res: BatchResult, _b: Batch) -> None:
                    add(res)
                    live.update(counters())

                return src.run(store, stop=stop, on_batch=on_batch)
        total = src.total(SourceContext(store, IngestState(store.db), stop))
        with Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            DownloadColumn(),
            TimeRemainingColumn(),
            TextColumn("{task.fields[counts]}"),
            console=console,
        ) as bar:
            task = bar.add_task(src.name[-40:], total=total, counts="")

            def on_file_batch(res: BatchResult, b: Batch) -> None:
                add(res)
                bar.update(task, advance=b.progress, counts=counters())

            return src.run(store, stop=stop, on_batch=on_file_batch)
    except KeyboardInterrupt:
        stop.set()
        raise typer.Exit(130) from None


def _print(lines: list[str]) -> None:
    for line in lines:
        typer.echo(line)


ingest_app = typer.Typer(
    help="Bring data in from files, databases and MQTT brokers.", no_args_is_help=True
)
dead_app = typer.Typer(
    help="Records that failed validation: list, fix, replay, discard.", no_args_is_help=True
)


@ingest_app.command("files")
def ingest_files(
    path: Annotated[Path, typer.Argument(help="a file or a folder")],
    mapping: Annotated[Path, typer.Option("--mapping", "-m", help="mapping YAML/JSON")],
    home: Home = None,
    full: Annotated[
        bool, typer.Option("--full", help="read every file, not only new ones")
    ] = False,
    pattern: Annotated[str | None, typer.Option(help="file name pattern, e.g. '*.csv'")] = None,
    fmt: Annotated[
        str | None, typer.Option("--format", help="csv, jsonl, geojson, parquet, gpkg, shp")
    ] = None,
    base_dir: Annotated[
        Path | None, typer.Option(help="folder for the mapping's relative paths")
    ] = None,
) -> None:
    """Ingest a file or a folder of files (only new files unless --full)."""
    from cityos.ingest import FileSource, load_mapping

    m = load_mapping(mapping, base_dir=base_dir or (path if path.is_dir() else path.parent))
    src = FileSource(path, m, incremental=not full, pattern=pattern, format=fmt)
    _print(_run_with_progress(src, _store(home), stream=False).lines() or ["no new files"])


@ingest_app.command("sql")
def ingest_sql(
    url: Annotated[str, typer.Argument(help="SQLAlchemy URL of the source database")],
    mapping: Annotated[Path, typer.Option("--mapping", "-m")],
    table: Annotated[str | None, typer.Option(help="table to read")] = None,
    query: Annotated[str | None, typer.Option(help="SELECT to read instead of a table")] = None,
    watermark: Annotated[
        str | None, typer.Option(help="increasing column for incremental pulls")
    ] = None,
    home: Home = None,
) -> None:
    """Ingest a database table or query, in full or past the last watermark."""
    from cityos.ingest import SQLSource, load_mapping

    src = SQLSource(url, load_mapping(mapping), table=table, query=query, watermark=watermark)
    _print(_run_with_progress(src, _store(home), stream=True).lines() or ["no new rows"])


@ingest_app.command("mqtt")
def ingest_mqtt(
    topic: Annotated[list[str], typer.Option("--topic", "-t", help="PATTERN=MAPPING, repeatable")],
    host: Annotated[str, typer.Option()] = "127.0.0.1",
    port: Annotated[int, typer.Option()] = 1883,
    username: Annotated[str | None, typer.Option(envvar="CITYOS_MQTT_USERNAME")] = None,
    password: Annotated[str | None, typer.Option(envvar="CITYOS_MQTT_PASSWORD")] = None,
    client_id: Annotated[str | None, typer.Option(help="persistent session id")] = None,
    batch_rows: Annotated[int, typer.Option()] = 5000,
    linger: Annotated[float, typer.Option(help="seconds a record may wait for its batch")] = 0.05,
    idle_timeout: Annotated[
        float | None, typer.Option(help="stop after this long without messages")
    ] = None,
    max_records: Annotated[int | None, typer.Option()] = None,
    quiet: Annotated[bool, typer.Option(help="no live counters")] = False,
    home: Home = None,
) -> None:
    """Subscribe to MQTT topics and ingest until stopped (Ctrl-C) or idle."""
    from cityos.ingest import MqttSource, load_mapping

    topics = {}
    for t in topic:
        pattern, sep, mpath = t.partition("=")
        if not sep:
            raise typer.BadParameter(
                f"--topic {t!r}: use PATTERN=MAPPING, e.g. 'sensors/#=air.yaml'"
            )
        topics[pattern] = load_mapping(Path(mpath))
    src = MqttSource(
        topics,
        host=host,
        port=port,
        username=username,
        password=password,
        client_id=client_id,
        batch_rows=batch_rows,
        linger_s=linger,
        idle_timeout_s=idle_timeout,
        max_records=max_records,
    )
    store = _store(home)
    report = src.run(store) if quiet else _run_with_progress(src, store, stream=True)
    _print(report.lines())


@ingest_app.command("lineage")
def ingest_lineage(
    dataset: Annotated[str | None, typer.Argument()] = None, home: Home = None
) -> None:
    """Which sources fed each dataset, when, and how many records were accepted and rejected."""
    from cityos.ingest import lineage

    for e in lineage(_store(home), dataset):
        typer.echo(
            f"{e.dataset}\t{e.source}\t{e.kind}\t{e.started_at:%Y-%m-%d %H:%M:%S}\t"
            f"accepted={e.accepted}\tduplicates={e.duplicates}\trejected={e.rejected}"
        )


@dead_app.command("list")
def dead_list(
    dataset: Annotated[str | None, typer.Option()] = None,
    status: Annotated[str, typer.Option(help="open, replayed, discarded or all")] = "open",
    limit: Annotated[int, typer.Option()] = 50,
    as_json: Annotated[bool, typer.Option("--json", help="one JSON object per line")] = False,
    home: Home = None,
) -> None:
    """List dead letters: id, dataset, position, the rule broken and why."""
    from cityos.ingest import DeadLetters

    items = DeadLetters(_store(home)).list(
        dataset=dataset, status=None if status == "all" else status, limit=limit
    )
    for d in items:
        if as_json:
            typer.echo(
                json.dumps(
                    {
                        "id": d.id,
                        "dataset": d.dataset,
                        "source": d.source,
                        "position": d.position,
                        "rule": d.rule,
                        "message": d.message,
                        "status": d.status,
                        "payload": d.payload,
                    },
                    default=str,
                )
            )
        else:
            typer.echo(f"{d.id}\t{d.dataset}\t{d.position}\t{d.rule}\t{d.message}")
    if not items and not as_json:
        typer.echo("no dead letters")


@dead_app.command("fix")
def dead_fix(
    id: Annotated[int, typer.Argument()],
    set_: Annotated[
        list[str] | None, typer.Option("--set", help="FIELD=VALUE (JSON or text), repeatable")
    ] = None,
    payload: Annotated[str | None, typer.Option(help="the whole corrected payload as JSON")] = None,
    home: Home = None,
) -> None:
    """Correct a dead letter's payload before replaying it."""
    from cityos.ingest import DeadLetters

    dl = DeadLetters(_store(home))
    try:
        new: Any = json.loads(payload) if payload is not None else dict(dl.get(id).payload)
    except ValueError as e:
        raise typer.BadParameter(f"--payload is not JSON: {e}") from None
    if not isinstance(new, dict) and set_:
        raise typer.BadParameter("--set needs a payload that is a JSON object")
    for kv in set_ or []:
        k, _, v = kv.partition("=")
        try:
            new[k] = json.loads(v)
        except ValueError:
            new[k] = v
    dl.fix(id, new)
    typer.echo(f"dead letter {id} updated; replay it with `cityos deadletters replay --id {id}`")


@dead_app.command("replay")
def dead_replay(
    dataset: Annotated[str | None, typer.Option()] = None,
    id: Annotated[
        list[int] | None, typer.Option("--id", help="replay only these, repeatable")
    ] = None,
    mapping: Annotated[Path | None, typer.Option(help="a corrected mapping to use")] = None,
    home: Home = None,
) -> None:
    """Run open dead letters through their dataset's mapping again."""
    from cityos.ingest import DeadLetters, load_mapping

    m = load_mapping(mapping) if mapping is not None else None
    _print(DeadLetters(_store(home)).replay(dataset=dataset, ids=id, mapping=m).lines())


@dead_app.command("discard")
def dead_discard(ids: Annotated[list[int], typer.Argument()], home: Home = None) -> None:
    """Mark dead letters as discarded (kept, never replayed)."""
    from cityos.ingest import DeadLetters

    DeadLetters(_store(home)).discard(ids)
    typer.echo(f"discarded {len(ids)} dead letter(s)")


def register(app: typer.Typer) -> None:
    """Add ``ingest`` and ``deadletters`` command groups to the ``cityos`` CLI.

    Examples
    --------
    >>> app = typer.Typer(); register(app)
    >>> sorted(g.name for g in app.registered_groups)
    ['deadletters', 'ingest']
    """
    app.add_typer(ingest_app, name="ingest")
    app.add_typer(dead_app, name="deadletters")

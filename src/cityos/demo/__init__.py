"""The demo city's story: one city walked through the whole loop, each layer adding a
chapter (sense, store and query, learn, warn, govern, share, see and act; DESIGN.md).

No layer imports this package; it sits above all of them.

>>> [c.title.split(":")[0] for c in CHAPTERS][:3]
['Sense', 'Store and query', 'Learn']
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from cityos.demo._city import Sense, build_demo_city, demo_ingest
from cityos.demo._govern import Govern
from cityos.demo._learn import Learn
from cityos.demo._see import SeeAndAct, keep_serving
from cityos.demo._share import Share
from cityos.demo._story import Chapter, DemoContext, DemoReport, Section, run_story, timed
from cityos.demo._tour import StoreAndQuery, tour
from cityos.demo._warn import Warn

__all__ = [
    "CHAPTERS",
    "Chapter",
    "DemoContext",
    "DemoReport",
    "Section",
    "build_demo_city",
    "demo_ingest",
    "run_demo",
    "run_story",
    "timed",
    "tour",
]

#: The chapters of the city story, in order. A layer adds its chapter here, once.
CHAPTERS: tuple[type[Chapter], ...] = (Sense, StoreAndQuery, Learn, Warn, Govern, Share, SeeAndAct)


def run_demo(
    home: Path,
    *,
    vehicles: int = 300,
    days: int = 2,
    shared_data: Path | None = None,
    fresh: bool = True,
    serve: bool = False,
    console: Any = None,
    chapters: tuple[type[Chapter], ...] | None = None,
) -> DemoReport:
    """Build the demo city in ``home``, run every chapter of the story, and print it."""
    from rich.console import Console

    con = console or Console()
    if shared_data is None:
        from cityos.datasets import shared_data_dir

        shared_data = shared_data_dir()
    ctx = DemoContext(
        home=Path(home),
        report=DemoReport(home=Path(home)),
        vehicles=vehicles,
        days=days,
        shared_data=shared_data,
        fresh=fresh,
        serve=serve,
        log=lambda m: con.print(f"[cyan]•[/] {m}"),
    )
    try:
        run_story(chapters or CHAPTERS, ctx)
        _print(con, ctx)
        if serve:
            keep_serving(ctx, con)  # the demo ends by serving the dashboard on loopback
    finally:
        if ctx.state.get("twin_served") is not None:
            ctx.state["twin_served"].stop()
        if ctx.store is not None:
            ctx.store.close()
    return ctx.report


def _print(con: Any, ctx: DemoContext) -> None:
    from rich.markup import escape
    from rich.table import Table

    store, report, home = ctx.require_store(), ctx.report, ctx.home
    t = Table(
        "dataset", "model", "rows", "stored MB", "bytes/row", title="Datasets in the demo city"
    )
    for info in store.list_datasets():
        t.add_row(
            info.name,
            info.model,
            f"{info.rows:,}",
            f"{info.bytes / 1e6:.2f}",
            f"{info.bytes / max(info.rows, 1):.1f}",
        )
    con.print(t)
    q = Table("what", "rows", "ms", title="Tour")
    for what, rows, ms in report.timings:
        q.add_row(what, f"{rows:,}", f"{ms:,.1f}")
    con.print(q)
    if report.analytics:
        con.print("[bold]One vehicle through the analysis library[/]")
        for line in report.analytics:
            con.print(line, markup=False, highlight=False)
    for sec in report.sections:
        st = Table(*sec.columns, title=sec.title)
        for row in sec.rows:
            st.add_row(*row)
        con.print(st)
    for n in report.notes:
        con.print(f"[green]✓[/] {escape(n)}")
    if ctx.city is not None:
        cx, cy = ctx.city.center
        con.print(
            f"\nThe demo city is in [bold]{report.home}[/]. Try:\n"
            f"  .venv/bin/cityos dataset list --home {home}\n"
            f"  .venv/bin/cityos query vehicles --home {home} --bbox {cx - 0.01:.3f},"
            f"{cy - 0.01:.3f},{cx + 0.01:.3f},{cy + 0.01:.3f} "
            "--start 2026-03-02T08:00Z --end 2026-03-02T09:00Z\n"
            f'  .venv/bin/cityos query --home {home} --sql "SELECT kind, count(*) FROM vehicles GROUP BY 1"'
        )

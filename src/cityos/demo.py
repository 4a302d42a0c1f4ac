"""The demo city: a synthetic city (roads, districts, POIs, a fleet moving for days) plus
real Beijing air-quality readings and NYC 311 requests when the public data is at hand,
loaded into the store and toured with example queries and their timings."""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from cityos.model import DatasetSchema, Field, GeometryType, ModelKind
from cityos.store import Grid, Store

__all__ = ["DemoReport", "build_demo_city", "run_demo"]


@dataclass
class DemoReport:
    """What the demo built and measured."""

    home: Path
    datasets: dict[str, int] = field(default_factory=dict)
    timings: list[tuple[str, int, float]] = field(default_factory=list)  # (what, rows, ms)
    notes: list[str] = field(default_factory=list)
    analytics: list[str] = field(default_factory=list)


def _timed(report: DemoReport, what: str, fn: Callable[[], Any]) -> Any:
    t0 = time.perf_counter()
    out = fn()
    ms = (time.perf_counter() - t0) * 1000
    rows = len(out) if hasattr(out, "__len__") else int(getattr(out, "rows_written", out))
    report.timings.append((what, rows, ms))
    return out


def build_demo_city(
    home: Path,
    *,
    vehicles: int = 300,
    days: int = 2,
    shared_data: Path | None = None,
    fresh: bool = True,
    seed: int = 7,
    log: Callable[[str], None] = print,
) -> tuple[Store, Any, DemoReport]:
    """Create the demo city's datasets in ``home``; returns (store, synthetic city, report)."""
    from cityos.synth import make_city, make_sensor_readings, simulate_vehicles

    home = Path(home)
    if fresh and home.exists():
        shutil.rmtree(home)
    store = Store(home)
    report = DemoReport(home=store.settings.home)

    log("generating the city: road network, districts, POIs ...")
    city = make_city(seed=seed)
    roads = city.edges.rename(columns={"edge_id": "id"})
    store.create_dataset(
        "roads",
        DatasetSchema(
            ModelKind.NETWORK_STATIC,
            id_type="int64",
            fields=(
                Field("length_m", "float64", unit="m"),
                Field("road_class"),
                Field("speed_limit_kmh", "float64", unit="km/h"),
                Field("oneway", "bool"),
            ),
            description="Road network: one row per directed road segment",
        ),
        exist_ok=True,
    )
    store.append("roads", roads, source="cityos.synth")
    districts = city.districts.rename(columns={"district_id": "id"})
    store.create_dataset(
        "districts",
        DatasetSchema(
            ModelKind.POINT_STATIC,
            geometry_type=GeometryType.REGION,
            id_type="int64",
            fields=(Field("name"),),
            description="Administrative districts",
        ),
        exist_ok=True,
    )
    store.append("districts", districts, source="cityos.synth")
    pois = city.pois.rename(columns={"poi_id": "id"})
    store.create_dataset(
        "pois",
        DatasetSchema(
            ModelKind.POINT_STATIC,
            id_type="int64",
            fields=(Field("name"), Field("category"), Field("district_id", "int64")),
            description="Points of interest: schools, hospitals, chemical plants, ...",
        ),
        exist_ok=True,
    )
    store.append("pois", pois, source="cityos.synth")

    log(
        f"simulating {vehicles} vehicles for {days} days (taxis, buses, trucks, hazmat carriers) ..."
    )
    t0 = time.perf_counter()
    fleet = simulate_vehicles(city, vehicles, days=days, interval_s=10, seed=seed)
    gen_s = time.perf_counter() - t0
    feed = fleet[["id", "t", "x", "y", "kind", "speed_kmh", "heading", "trip_id"]]
    store.create_dataset(
        "vehicles",
        DatasetSchema(
            ModelKind.POINT_ST,
            fields=(
                Field("kind"),
                Field("speed_kmh", "float64", unit="km/h", minimum=0),
                Field("heading", "float64", unit="deg"),
                Field("trip_id", "int64"),
            ),
            description="GPS feed of the city's fleet",
        ),
        exist_ok=True,
    )
    w = _timed(
        report,
        f"load {len(feed):,} GPS points",
        lambda: store.append("vehicles", feed, source="cityos.synth"),
    )
    rate = w.rows_written / max(report.timings[-1][2] / 1000, 1e-9)
    report.notes.append(
        f"generated {len(feed):,} GPS points in {gen_s:.1f} s; stored at {rate:,.0f} points/s"
    )

    _load_city_data(store, report, city, shared_data, make_sensor_readings, log)

    for info in store.list_datasets():
        report.datasets[info.name] = info.rows
    return store, city, report


def _load_city_data(
    store: Store,
    report: DemoReport,
    city: Any,
    shared_data: Path | None,
    make_sensor_readings: Callable[..., pd.DataFrame],
    log: Callable[[str], None],
) -> None:
    """Real data through the data through-train (shipped mappings), or generated readings."""
    if (
        shared_data is not None
        and (Path(shared_data) / "beijing-air-quality").is_dir()
        and (Path(shared_data) / "nyc-311").is_dir()
    ):
        from cityos.ingest import demo_ingest

        log(
            "ingesting real Beijing air-quality readings and NYC 311 requests through the shipped mappings ..."
        )
        t0 = time.perf_counter()
        lines = demo_ingest(store, shared_data)
        report.timings.append(
            (
                "ingest real data (CSV → mapping → validation → store)",
                sum(store.describe(n).rows for n in ("beijing_air_quality", "nyc311")),
                (time.perf_counter() - t0) * 1000,
            )
        )
        report.notes += [ln.strip() for ln in lines]
        return
    log("no real data found: generating sensor readings instead ...")
    air = make_sensor_readings(city, 12, start="2026-03-02", days=7, interval="1h", seed=1)
    store.create_dataset(
        "sensor_readings",
        DatasetSchema(
            ModelKind.POINT_SERIES,
            time_partition="30D",
            time_bin="1D",
            fields=(Field("value", "float64", unit="veh/h"), Field("edge_id", "int64")),
            description="Hourly loop-detector counts (generated)",
        ),
        exist_ok=True,
    )
    _timed(
        report,
        f"load {len(air):,} generated sensor readings",
        lambda: store.append("sensor_readings", air),
    )
    report.notes.append("sensor_readings: generated (real data not found)")


def tour(store: Store, city: Any, report: DemoReport) -> None:
    """Run the example queries, recording rows and timings."""
    info = store.describe("vehicles")
    assert info.t_min is not None
    # the fleet runs on Beijing time, so its first UTC day starts the evening before
    day0 = (pd.Timestamp(info.t_min, unit="ms", tz="UTC") + pd.Timedelta("12h")).normalize()
    cx, cy = city.center
    box = (cx - 0.01, cy - 0.01, cx + 0.01, cy + 0.01)
    am = (day0 + pd.Timedelta("8h"), day0 + pd.Timedelta("9h"))
    _timed(
        report,
        "ST range: vehicles within ~1 km of the centre, 08:00-09:00 UTC (16-17 h Beijing)",
        lambda: store.st_range("vehicles", box, *am),
    )
    some = store.scan("vehicles", start=am[0], end=am[1], columns=["id"]).table["id"][0].as_py()
    traj = _timed(
        report,
        f"ID-temporal: {some} over the morning",
        lambda: store.id_temporal("vehicles", some, am[0], am[1]),
    )
    _timed(
        report,
        "kNN: 10 GPS points nearest the centre, 08:00-09:00",
        lambda: store.knn("vehicles", cx, cy, 10, start=am[0], end=am[1]),
    )
    _timed(
        report,
        "kNN trajectories: 5 vehicles passing nearest the centre",
        lambda: store.knn_trajectories("vehicles", cx, cy, 5, start=am[0], end=am[1]),
    )
    q = traj.to_pandas()[["x", "y"]].to_numpy()[:60]
    if len(q):
        _timed(
            report,
            "similarity: 3 trajectories most like it (discrete Fréchet)",
            lambda: store.similar("vehicles", q, 3, start=am[0], end=am[1], metric="frechet"),
        )
    _timed(
        report,
        "join: morning GPS points per district",
        lambda: store.join_regions("vehicles", "districts", start=am[0], end=am[1]),
    )
    _timed(
        report,
        "join: map morning points to the nearest road (≤ 30 m)",
        lambda: store.join_nearest(
            "vehicles", "roads", max_distance_m=30, start=am[0], end=am[0] + pd.Timedelta("10min")
        ),
    )
    grid = Grid.from_metres(city.bounds, 1000)
    _timed(
        report,
        "aggregate: vehicles per 1 km cell per hour (crowd-flow tensor)",
        lambda: store.aggregate(
            "vehicles",
            grid=grid,
            time_bin="1h",
            aggs={"points": "count", "speed": ("speed_kmh", "mean")},
            start=day0,
            end=day0 + pd.Timedelta("1D"),
        ),
    )
    _timed(
        report,
        "SQL: hazmat GPS points per hour (DuckDB view)",
        lambda: store.sql(
            "SELECT date_trunc('hour', t) AS hour, count(*) AS n FROM vehicles "
            "WHERE kind = 'hazmat' GROUP BY 1 ORDER BY 1"
        ),
    )
    schools = store.sql("SELECT x, y FROM pois WHERE category = 'school'").to_pandas()
    if len(schools):
        sx, sy = float(schools.x.iloc[0]), float(schools.y.iloc[0])
        near = _timed(
            report,
            "kNN: hazmat-relevant — 20 GPS points nearest a school",
            lambda: store.knn("vehicles", sx, sy, 20, start=am[0], end=am[1]),
        )
        kinds = near.to_pandas()["kind"].value_counts().to_dict()
        report.notes.append(f"vehicles nearest a school 08:00-09:00 by kind: {kinds}")
    names = set(report.datasets) | {d.name for d in store.list_datasets()}
    if "beijing_air_quality" in names:
        air = store.describe("beijing_air_quality")
        assert air.t_min is not None
        a0 = pd.Timestamp(air.t_min, unit="ms", tz="UTC")
        _timed(
            report,
            "aggregate: daily mean PM2.5 per station, first month (real data)",
            lambda: store.aggregate(
                "beijing_air_quality",
                grid=Grid.from_metres(air.bbox or city.bounds, 2000),
                time_bin="1D",
                aggs={"pm25": ("pm25", "mean")},
                start=a0,
                end=a0 + pd.Timedelta("30D"),
            ),
        )
        worst = store.sql(
            "SELECT id, round(avg(pm25), 1) AS pm25 FROM beijing_air_quality "
            "GROUP BY id ORDER BY pm25 DESC LIMIT 1"
        ).to_pylist()
        if worst:
            report.notes.append(
                f"most polluted station 2013-2017: {worst[0]['id']} "
                f"(mean PM2.5 {worst[0]['pm25']} µg/m³)"
            )
    if "nyc311" in names:
        _timed(
            report,
            "SQL: NYC 311 requests by agency (real data)",
            lambda: store.sql(
                "SELECT agency, count(*) AS n FROM nyc311 GROUP BY 1 ORDER BY 2 DESC"
            ),
        )
    if "sensor_readings" in names:
        _timed(
            report,
            "aggregate: daily mean loop-detector flow per 2 km cell",
            lambda: store.aggregate(
                "sensor_readings",
                grid=Grid.from_metres(city.bounds, 2000),
                time_bin="1D",
                aggs={"flow": ("value", "mean")},
            ),
        )
    from cityos.analytics import demo_tour

    t0 = time.perf_counter()
    report.analytics = demo_tour(store, "vehicles", "roads")
    report.timings.append(
        (
            "analytics: clean, segment, map-match, aggregate one vehicle",
            1,
            (time.perf_counter() - t0) * 1000,
        )
    )


def run_demo(
    home: Path,
    *,
    vehicles: int = 300,
    days: int = 2,
    shared_data: Path | None = None,
    fresh: bool = True,
    console: Any = None,
) -> DemoReport:
    """Build the demo city in ``home``, tour it, and print what happened."""
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    con = console or Console()
    if shared_data is None:
        from cityos.datasets import shared_data_dir

        shared_data = shared_data_dir()
    store, city, report = build_demo_city(
        home,
        vehicles=vehicles,
        days=days,
        shared_data=shared_data,
        fresh=fresh,
        log=lambda m: con.print(f"[cyan]•[/] {m}"),
    )
    tour(store, city, report)
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
    for n in report.notes:
        con.print(f"[green]✓[/] {escape(n)}")
    con.print(
        f"\nThe demo city is in [bold]{report.home}[/]. Try:\n"
        f"  .venv/bin/cityos dataset list --home {home}\n"
        f"  .venv/bin/cityos query vehicles --home {home} --bbox {city.center[0] - 0.01:.3f},"
        f"{city.center[1] - 0.01:.3f},{city.center[0] + 0.01:.3f},{city.center[1] + 0.01:.3f} "
        "--start 2026-03-02T08:00Z --end 2026-03-02T09:00Z\n"
        f'  .venv/bin/cityos query --home {home} --sql "SELECT kind, count(*) FROM vehicles GROUP BY 1"'
    )
    store.close()
    return report

"""Chapter 1 of the city story, *sense*: a synthetic city (roads, districts, POIs, water, a fleet
moving for days) plus the real Beijing air-quality readings and NYC 311 requests when the
public data is at hand, ingested through the shipped mappings."""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pandas as pd

from cityos.demo._story import Chapter, DemoContext, DemoReport, timed
from cityos.ingest import FileSource, example_mapping
from cityos.ingest.errors import SourceError
from cityos.model import DatasetSchema, Field, GeometryType, ModelKind
from cityos.store import Store

__all__ = ["Sense", "build_demo_city", "demo_ingest"]


def build_demo_city(
    home: Path,
    *,
    vehicles: int = 300,
    days: int = 2,
    shared_data: Path | None = None,
    fresh: bool = True,
    seed: int = 7,
    log: Callable[[str], None] = print,
    report: DemoReport | None = None,
) -> tuple[Store, Any, DemoReport]:
    """Create the demo city's datasets in ``home``; returns (store, synthetic city, report)."""
    from cityos.synth import make_city, make_sensor_readings, simulate_vehicles

    home = Path(home)
    if fresh and home.exists():
        shutil.rmtree(home)
    store = Store(home)
    report = report or DemoReport(home=store.settings.home)
    report.home = store.settings.home

    log("generating the city: road network, districts, POIs, water ...")
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
    water = city.water.rename(columns={"water_id": "id"})
    store.create_dataset(
        "water",
        DatasetSchema(
            ModelKind.POINT_STATIC,
            geometry_type=GeometryType.REGION,
            id_type="int64",
            fields=(
                Field("name"),
                Field("kind"),
                Field("width_m", "float64", unit="m"),
                Field("area_m2", "float64", unit="m2"),
            ),
            description="Water: the river across the city, lakes and ponds",
        ),
        exist_ok=True,
    )
    store.append("water", water, source="cityos.synth")

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
    w = timed(
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
    timed(
        report,
        f"load {len(air):,} generated sensor readings",
        lambda: store.append("sensor_readings", air),
    )
    report.notes.append("sensor_readings: generated (real data not found)")


def demo_ingest(store: Store, shared_data_dir: str | Path) -> list[str]:
    """Ingest the Beijing air-quality readings and the NYC 311 samples into ``store``.

    Runs incrementally: a second call finds no new files. Returns one report line per dataset.

    Examples
    --------
    >>> import tempfile, cityos
    >>> from cityos.datasets import shared_data_dir
    >>> lines = demo_ingest(cityos.open_city(tempfile.mkdtemp()), shared_data_dir())  # doctest: +SKIP
    """
    root = Path(shared_data_dir)
    lines: list[str] = []
    for name, folder in (
        ("beijing_stations", "beijing-air-quality"),  # first: the readings reference it
        ("beijing_air_quality", "beijing-air-quality"),
        ("nyc311", "nyc-311"),
    ):
        d = root / folder
        if not d.is_dir():
            raise SourceError(
                f"{d} is missing; point shared_data_dir at the folder holding {folder}/"
            )
        m = example_mapping(name, base_dir=d)
        report = FileSource(d, m, name=f"demo:{folder}").run(store)
        lines += report.lines() or [f"{m.dataset}: no new files in {d}"]
    return lines


class Sense(Chapter):
    """Chapter 1: generate the city and its fleet, ingest the real data."""

    title = "Sense: the city's data through the data through-train"

    def run(self, ctx: DemoContext) -> None:
        ctx.store, ctx.city, _ = build_demo_city(
            ctx.home,
            vehicles=ctx.vehicles,
            days=ctx.days,
            shared_data=ctx.shared_data,
            fresh=ctx.fresh,
            log=ctx.log,
            report=ctx.report,
        )

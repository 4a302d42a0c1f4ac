"""Chapter 2 of the city story, *store and query*: the spatio-temporal tour of the store's
query types on the demo city, with timings, and one vehicle through the analysis library."""

from __future__ import annotations

import time
from typing import Any

import pandas as pd

from cityos.demo._analytics import analytics_tour
from cityos.demo._story import Chapter, DemoContext, DemoReport, timed
from cityos.store import Grid, Store

__all__ = ["StoreAndQuery", "tour"]


def tour(store: Store, city: Any, report: DemoReport) -> None:
    """Run the example queries, recording rows and timings."""
    info = store.describe("vehicles")
    assert info.t_min is not None
    # the fleet runs on Beijing time, so its first UTC day starts the evening before
    day0 = (pd.Timestamp(info.t_min, unit="ms", tz="UTC") + pd.Timedelta("12h")).normalize()
    cx, cy = city.center
    box = (cx - 0.01, cy - 0.01, cx + 0.01, cy + 0.01)
    am = (day0 + pd.Timedelta("8h"), day0 + pd.Timedelta("9h"))
    timed(
        report,
        "ST range: vehicles within ~1 km of the centre, 08:00-09:00 UTC (16-17 h Beijing)",
        lambda: store.st_range("vehicles", box, *am),
    )
    some = store.scan("vehicles", start=am[0], end=am[1], columns=["id"]).table["id"][0].as_py()
    traj = timed(
        report,
        f"ID-temporal: {some} over the morning",
        lambda: store.id_temporal("vehicles", some, am[0], am[1]),
    )
    timed(
        report,
        "kNN: 10 GPS points nearest the centre, 08:00-09:00",
        lambda: store.knn("vehicles", cx, cy, 10, start=am[0], end=am[1]),
    )
    timed(
        report,
        "kNN trajectories: 5 vehicles passing nearest the centre",
        lambda: store.knn_trajectories("vehicles", cx, cy, 5, start=am[0], end=am[1]),
    )
    q = traj.to_pandas()[["x", "y"]].to_numpy()[:60]
    if len(q):
        timed(
            report,
            "similarity: 3 trajectories most like it (discrete Fréchet)",
            lambda: store.similar("vehicles", q, 3, start=am[0], end=am[1], metric="frechet"),
        )
    timed(
        report,
        "join: morning GPS points per district",
        lambda: store.join_regions("vehicles", "districts", start=am[0], end=am[1]),
    )
    timed(
        report,
        "join: map morning points to the nearest road (≤ 30 m)",
        lambda: store.join_nearest(
            "vehicles", "roads", max_distance_m=30, start=am[0], end=am[0] + pd.Timedelta("10min")
        ),
    )
    grid = Grid.from_metres(city.bounds, 1000)
    timed(
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
    timed(
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
        near = timed(
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
        timed(
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
        timed(
            report,
            "SQL: NYC 311 requests by agency (real data)",
            lambda: store.sql(
                "SELECT agency, count(*) AS n FROM nyc311 GROUP BY 1 ORDER BY 2 DESC"
            ),
        )
    if "sensor_readings" in names:
        timed(
            report,
            "aggregate: daily mean loop-detector flow per 2 km cell",
            lambda: store.aggregate(
                "sensor_readings",
                grid=Grid.from_metres(city.bounds, 2000),
                time_bin="1D",
                aggs={"flow": ("value", "mean")},
            ),
        )
    t0 = time.perf_counter()
    report.analytics = analytics_tour(store, "vehicles", "roads")
    report.timings.append(
        (
            "analytics: clean, segment, map-match, aggregate one vehicle",
            1,
            (time.perf_counter() - t0) * 1000,
        )
    )


class StoreAndQuery(Chapter):
    """Chapter 2: every query type of the store on the demo city, timed."""

    title = "Store and query: the spatio-temporal tour"

    def run(self, ctx: DemoContext) -> None:
        tour(ctx.require_store(), ctx.city, ctx.report)

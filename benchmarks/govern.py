"""Governance benchmark (not a timed test): intake throughput and latency with duplicate
detection + auto-dispatch on vs off, the dedup and dispatch quality tables against their
baselines, and rule evaluation time over 30 days of the demo city's data.

    PYTHONPATH=src python benchmarks/govern.py [--pg URL] [--intakes 2000] [--shared-data DIR]

Targets (issue 12): >= 500 intakes/s sustained with p99 < 200 ms on PostgreSQL, 2 cores;
dedup P >= 0.95, R >= 0.90 on the generated set and better than FixMyStreet's rule;
hazardous-chemical suspected sites R >= 0.85 at P >= 0.80.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd


def _table(title: str, cols: tuple[str, ...], rows: list[tuple[str, ...]]) -> None:
    print(f"\n## {title}\n")
    print("| " + " | ".join(cols) + " |")
    print("|" + "---|" * len(cols))
    for r in rows:
        print("| " + " | ".join(r) + " |")


def intelligence_latency(city: Any, n: int) -> list[tuple[str, ...]]:
    """Per-intake cost of the intelligence alone: DuplicateDetector.find against the open
    events nearby plus Dispatcher.predict, one event at a time as intake calls them."""
    from cityos.govern.dedup import DuplicateDetector
    from cityos.govern.dispatch import Dispatcher, jurisdictions_from_districts
    from cityos.synth._reports import make_reports

    det = DuplicateDetector().fit(make_reports(city, 600, seed=101))
    disp = Dispatcher(jurisdictions_from_districts(city.districts)).fit(
        make_reports(city, 600, seed=11)
    )
    stream = make_reports(city, max(n // 2, 50), seed=5).head(n)
    lat_d, lat_p = [], []
    open_rows: list[dict[str, Any]] = []
    for row in stream.to_dict("records"):
        t0 = time.perf_counter()
        near = [
            r
            for r in open_rows
            if abs(r["x"] - row["x"]) < 0.006 and abs(r["y"] - row["y"]) < 0.005
        ][-200:]
        m = det.find(row, near) if near else None
        t1 = time.perf_counter()
        disp.predict([row])
        t2 = time.perf_counter()
        lat_d.append(t1 - t0)
        lat_p.append(t2 - t1)
        if m is None:
            open_rows.append(row)
    out = []
    for name, lat in (
        ("dedup find", lat_d),
        ("dispatch predict", lat_p),
        ("both", list(np.add(lat_d, lat_p))),
    ):
        a = np.array(lat) * 1000
        out.append(
            (
                name,
                str(len(a)),
                f"{np.median(a):.1f}",
                f"{np.percentile(a, 99):.1f}",
                f"{1000 / a.mean():.0f}",
            )
        )
    return out


#: generated categories → the generated organisation's services (govern-core's DEFAULT_SERVICES)
SERVICE_OF = {
    "road": "pothole",
    "streetlight": "streetlight",
    "sanitation": "garbage",
    "noise": "noise",
    "water": "water_leak",
    "parking": "illegal_parking",
    "greening": "tree",
    "market": "general",
    "environment": "air_pollution",
}


def _svc(gov: Any, category: str) -> str:
    """The organisation's service for a generated category (the same code when it has one)."""
    return category if category in gov.services else SERVICE_OF.get(category, "general")


def _governed_city(pg_url: str | None, city: Any, history: pd.DataFrame) -> tuple[Any, Any]:
    """A store with the city's districts, the generated organisation, and ``history``
    taken in and dispatched by the routing table (what dispatchers did before)."""
    from cityos.govern import Governance, generate_organisation
    from cityos.model import DatasetSchema, Field, GeometryType, ModelKind
    from cityos.store import Store
    from cityos.testing.postgres import fresh_database

    home = tempfile.mkdtemp()
    store = Store(home, database_url=fresh_database(pg_url)) if pg_url else Store(home)
    store.create_dataset(
        "districts",
        DatasetSchema(
            ModelKind.POINT_STATIC,
            geometry_type=GeometryType.REGION,
            id_type="int64",
            fields=(Field("name"),),
        ),
    )
    store.append("districts", city.districts.rename(columns={"district_id": "id"}))
    generate_organisation(store.db, store, streets_per_district=2, grids_per_street=2)
    gov = Governance(store.db, store, webhooks=False)
    with gov.batch():
        for r in history.to_dict("records"):
            if not gov.jurisdictions.inside(r["x"], r["y"]):
                continue
            code = _svc(gov, r["category"])
            e = gov.intake(
                code,
                x=r["x"],
                y=r["y"],
                title=r["title"],
                description=r["description"],
                dedup=False,
            ).event
            resp = gov.jurisdictions.responsible(gov.service(code), e.x, e.y)
            if resp:
                gov.dispatch(e.id, resp[0], "dispatcher1", e.version)
    return store, gov


def intake_throughput(pg_url: str | None, n: int, city: Any) -> list[tuple[str, ...]]:
    """Governance intake, one request at a time, with duplicate detection + auto-dispatch
    off vs on (detector trained on generated reports, dispatcher on the city's history)."""
    from cityos.govern.dedup import DuplicateDetector
    from cityos.govern.dispatch import Dispatcher
    from cityos.synth._reports import make_reports

    history = make_reports(city, 300, seed=21)
    stream = make_reports(city, max(n // 2, 50), seed=5).head(n)
    rows = []
    for label in ("off", "on"):
        store, gov = _governed_city(pg_url, city, history)
        if label == "on":
            gov.deduplicator = DuplicateDetector.pretrained()
            gov.dispatcher = Dispatcher.from_governance(gov)
            if np.isfinite(gov.dispatcher.threshold):
                gov.auto_dispatch_threshold = gov.dispatcher.threshold
        lat = []
        merged = auto = 0
        t0 = time.perf_counter()
        inside = [r for r in stream.to_dict("records") if gov.jurisdictions.inside(r["x"], r["y"])]
        for r in inside:
            a = time.perf_counter()
            res = gov.intake(
                _svc(gov, r["category"]),
                x=r["x"],
                y=r["y"],
                title=r["title"],
                description=r["description"],
                channel="app",
                source_id=r["id"],
                dedup=label == "on",
                auto_dispatch=label == "on",
            )
            lat.append(time.perf_counter() - a)
            merged += res.merged_into is not None
            auto += bool(res.dispatched)
        el = time.perf_counter() - t0
        a_ms = np.array(lat) * 1000
        rows.append(
            (
                label,
                str(len(a_ms)),
                f"{len(a_ms) / el:.0f}",
                f"{np.median(a_ms):.1f}",
                f"{np.percentile(a_ms, 99):.1f}",
                str(merged),
                str(auto),
            )
        )
        store.close()
    return rows


def rules_30_days(city: Any) -> list[tuple[str, ...]]:
    """Rule evaluation time over 30 days: a sustained-threshold SQL rule over 30 days of
    hourly readings at 35 stations, and the abnormal-stay rule over the hazardous-chemical
    carriers' GPS (2 days simulated: the carriers' feed, scaled per day)."""
    import cityos
    from cityos.govern.rules import RuleEngine, WarningLog, load_rules
    from cityos.model import DatasetSchema, Field, ModelKind
    from cityos.synth._hazchem import make_hazchem

    store = cityos.open_city(tempfile.mkdtemp())
    rng = np.random.default_rng(0)
    t0 = pd.Timestamp("2026-02-01T00:00Z")
    hours = 30 * 24
    ids = [f"S{i:02d}" for i in range(35)]
    df = pd.DataFrame(
        {
            "id": np.repeat(ids, hours),
            "t": np.tile(pd.date_range(t0, periods=hours, freq="1h"), len(ids)),
            "x": np.repeat(116.3 + rng.random(len(ids)) * 0.2, hours),
            "y": np.repeat(39.8 + rng.random(len(ids)) * 0.2, hours),
            "pm25": np.clip(rng.gamma(2.0, 40.0, hours * len(ids)), 0, None),
        }
    )
    store.create_dataset(
        "air",
        DatasetSchema(
            ModelKind.POINT_SERIES, fields=(Field("pm25", "float64"),), time_partition="30D"
        ),
    )
    store.append("air", df)
    sql = """
WITH r AS (SELECT id, t, x, y, pm25 FROM air WHERE t >= {start} AND t < {end}),
f AS (SELECT *, pm25 > {limit} AS hi, row_number() OVER (PARTITION BY id ORDER BY t)
      - row_number() OVER (PARTITION BY id, pm25 > {limit} ORDER BY t) AS grp FROM r)
SELECT id AS place, min(t) AS t, any_value(x) AS x, any_value(y) AS y, count(*) AS hours_above
FROM f WHERE hi GROUP BY id, grp HAVING count(*) >= {hours}"""
    rules = load_rules(
        [
            {
                "name": "pm25",
                "kind": "threshold",
                "sql": sql,
                "params": {"limit": 75, "hours": 3},
                "schedule": "1D",
            },
            {
                "name": "hazchem_stay",
                "kind": "spatiotemporal",
                "detector": "abnormal_stay",
                "schedule": "6h",
                "dedup_window": "30D",
            },
        ]
    )
    from cityos.govern.hazchem import load_world

    w = make_hazchem(city, 20, days=2, seed=1)
    load_world(store, w)
    eng = RuleEngine(store, rules, sink=WarningLog())
    out = []
    a = time.perf_counter()
    bt = eng.backtest("pm25", t0, t0 + pd.Timedelta("30D"))
    out.append(
        (
            "pm25 sustained > 75 for 3 h, 35 stations",
            f"{len(df):,} readings, 30 daily runs",
            f"{time.perf_counter() - a:.2f}",
            str(len(bt.warnings)),
        )
    )
    h0 = pd.Timestamp(w.points["t"].min()).floor("1D")
    a = time.perf_counter()
    bt = eng.backtest("hazchem_stay", h0, h0 + pd.Timedelta("3D"))
    el = time.perf_counter() - a
    out.append(
        (
            "hazchem abnormal stays, 20 carriers",
            f"{len(w.points):,} GPS points, 12 six-hour runs",
            f"{el:.2f} (30 days ≈ {el * 10:.0f})",
            str(len(bt.warnings)),
        )
    )
    store.close()
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument(
        "--pg",
        default=os.environ.get("CITYOS_BENCH_PG"),
        help="PostgreSQL URL for intake, or 'auto' to start a private server",
    )
    ap.add_argument("--only", default="dedup,dispatch,hazchem,rules,latency,intake")
    ap.add_argument("--intakes", type=int, default=2000)
    ap.add_argument(
        "--shared-data",
        default=os.environ.get(
            "CITYOS_SHARED_DATA", str(Path(__file__).resolve().parents[2] / "shared" / "data")
        ),
    )
    a = ap.parse_args()
    only = set(a.only.split(","))
    from cityos.govern.quality import dedup_table, dispatch_table, hazchem_table
    from cityos.synth import make_city

    print(f"load average at start: {os.getloadavg()} (the machine is shared with other jobs)")
    city = make_city(size_km=10.0)
    sd = a.shared_data if Path(a.shared_data).is_dir() else None
    t = time.perf_counter()
    if "dedup" in only:
        _table(
            "Duplicate detection vs FixMyStreet's rule",
            ("set", "method", "precision", "recall", "merges", "should merge"),
            dedup_table(city, sd),
        )
    if "dispatch" in only:
        _table(
            "Dispatch vs baselines (auto share at >= 95% precision on validation)",
            ("set", "method", "accuracy", "auto share", "auto precision", "threshold", "n test"),
            dispatch_table(city, sd),
        )
    if "hazchem" in only:
        import cityos

        store = cityos.open_city(tempfile.mkdtemp())
        rows, _ = hazchem_table(city, store)
        _table("Hazardous chemicals: suspected sites", ("", "value"), rows)
        store.close()
    if "rules" in only:
        _table("Rule evaluation", ("rule", "data", "seconds", "warnings"), rules_30_days(city))
    if "latency" in only:
        _table(
            "Intelligence per intake (in process)",
            ("step", "events", "median ms", "p99 ms", "per s"),
            intelligence_latency(city, min(a.intakes, 1000)),
        )
    if "intake" in only:
        if a.pg == "auto":
            from cityos.testing.postgres import postgres_server

            with postgres_server() as url:
                res = intake_throughput(url, a.intakes, city)
        else:
            res = intake_throughput(a.pg, a.intakes, city)
        _table(
            f"Intake ({'PostgreSQL' if a.pg else 'SQLite'}), dedup + auto-dispatch off vs on",
            (
                "intelligence",
                "intakes",
                "per s",
                "median ms",
                "p99 ms",
                "merged",
                "auto-dispatched",
            ),
            res,
        )
    print(f"\ntotal {time.perf_counter() - t:.0f} s; load average at end: {os.getloadavg()}")


if __name__ == "__main__":
    main()

"""Early-warning rules: the four kinds (threshold over a sensor series, spatio-temporal,
cross-dataset over plain tables, model-based), de-duplication, schedule, backtest, and
clear errors for rules that name missing datasets or fields."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from cityos.govern.rules import RuleEngine, RuleError, WarningLog, load_rules, register_detector
from cityos.model import DatasetSchema, Field, ModelKind
from cityos.store import Store

T0 = pd.Timestamp("2026-03-02T00:00Z")

PM25_RULE = """
rules:
  - name: pm25_episode
    kind: threshold
    severity: warning
    datasets: [air]
    fields: {air: [pm25]}
    schedule: 1D
    dedup_window: 1D
    params: {limit: 75, hours: 3}
    title: "PM2.5 above 75 for {hours_above} h at {place}"
    sql: |
      WITH r AS (SELECT id, t, x, y, pm25 FROM air WHERE t >= {start} AND t < {end}),
      f AS (SELECT *, pm25 > {limit} AS hi,
                   row_number() OVER (PARTITION BY id ORDER BY t)
                 - row_number() OVER (PARTITION BY id, pm25 > {limit} ORDER BY t) AS grp FROM r)
      SELECT id AS place, min(t) AS t, any_value(x) AS x, any_value(y) AS y,
             count(*) AS hours_above, max(pm25) AS peak,
             CASE WHEN max(pm25) > 150 THEN 'critical' ELSE 'warning' END AS severity
      FROM f WHERE hi GROUP BY id, grp HAVING count(*) >= {hours}
"""


def _air(store: Store) -> None:
    store.create_dataset(
        "air", DatasetSchema(ModelKind.POINT_ST, fields=(Field("pm25", "float64"),))
    )
    rows = []
    a = [40, 80, 90, 160, 85, 50, 40, 40] + [40] * 16  # 4 h above 75 (one above 150)
    b = [40, 80, 90, 40, 40, 80, 90, 40] + [40] * 16  # twice 2 h: never 3 in a row
    for h in range(24):
        rows.append(
            {"id": "A", "t": T0 + pd.Timedelta(hours=h), "x": 116.40, "y": 39.90, "pm25": a[h]}
        )
        rows.append(
            {"id": "B", "t": T0 + pd.Timedelta(hours=h), "x": 116.45, "y": 39.95, "pm25": b[h]}
        )
    store.append("air", rows)


def test_threshold_rule_sustained_pm25_with_dedup(city: Store) -> None:
    _air(city)
    log = WarningLog()
    eng = RuleEngine(city, load_rules(PM25_RULE), sink=log)
    res = eng.run_rule("pm25_episode", T0, T0 + pd.Timedelta("1D"))
    assert res.raised == 1 and res.repeated == 0
    w = log.rows[0]
    assert w["evidence"]["place"] == "A" and w["evidence"]["hours_above"] == 4
    assert w["severity"] == "critical" and w["title"] == "PM2.5 above 75 for 4 h at A"
    again = eng.run_rule("pm25_episode", T0, T0 + pd.Timedelta("1D"))
    assert again.raised == 0 and again.repeated == 1 and len(log.rows) == 1


def test_schedule_runs_due_rules_over_the_window_since_last_run(city: Store) -> None:
    _air(city)
    eng = RuleEngine(city, load_rules(PM25_RULE))
    assert eng.due(T0 + pd.Timedelta("1D")) == ["pm25_episode"]
    (r,) = eng.tick(T0 + pd.Timedelta("1D"))
    assert r.start == T0 and r.raised == 1
    assert eng.due(T0 + pd.Timedelta("1D") + pd.Timedelta("2h")) == []


def test_backtest_counts_confirmed(city: Store) -> None:
    _air(city)
    eng = RuleEngine(city, load_rules(PM25_RULE))
    bt = eng.backtest(
        "pm25_episode", T0 - pd.Timedelta("3D"), T0 + pd.Timedelta("1D"), outcomes={"A": True}
    )
    assert (
        bt.evaluations == 4 and len(bt.warnings) == 1 and bt.confirmed == 1 and bt.precision == 1.0
    )
    assert isinstance(eng.sink, WarningLog) and not eng.sink.rows  # a backtest raises nothing


def test_cross_dataset_rule_over_plain_tables(city: Store) -> None:
    city.create_dataset(
        "medical_payments",
        DatasetSchema(
            ModelKind.TABLE,
            fields=(Field("resident_id"), Field("paid_on", "date"), Field("self_pay", "float64")),
        ),
    )
    city.create_dataset(
        "relief_applications", DatasetSchema(ModelKind.TABLE, fields=(Field("resident_id"),))
    )
    pays = [
        {"id": "p1", "resident_id": "R1", "paid_on": "2026-01-10", "self_pay": 15000.0},
        {
            "id": "p2",
            "resident_id": "R1",
            "paid_on": "2026-02-10",
            "self_pay": 9000.0,
        },  # 24,000, no relief
        {"id": "p3", "resident_id": "R2", "paid_on": "2026-01-05", "self_pay": 30000.0},  # applied
        {"id": "p4", "resident_id": "R3", "paid_on": "2026-01-05", "self_pay": 12000.0},  # below
        {
            "id": "p5",
            "resident_id": "R4",
            "paid_on": "2025-06-05",
            "self_pay": 25000.0,
        },  # last year
    ]
    city.append("medical_payments", pays)
    city.append("relief_applications", [{"id": "a1", "resident_id": "R2"}])
    rules = load_rules(
        """
- name: medical_hardship
  kind: cross_dataset
  severity: info
  datasets: [medical_payments, relief_applications]
  location: [116.40, 39.90]
  params: {year: 2026, limit: 20000}
  sql: |
    SELECT p.resident_id AS place, sum(p.self_pay) AS self_pay_total
    FROM medical_payments p
    WHERE year(p.paid_on) = {year}
      AND p.resident_id NOT IN (SELECT resident_id FROM relief_applications)
    GROUP BY p.resident_id HAVING sum(p.self_pay) > {limit}
"""
    )
    log = WarningLog()
    RuleEngine(city, rules, sink=log).run_rule("medical_hardship", "2026-01-01", "2027-01-01")
    assert [w["evidence"]["place"] for w in log.rows] == ["R1"]
    assert log.rows[0]["evidence"]["self_pay_total"] == 24000.0 and log.rows[0]["x"] == 116.40


class InflowAboveForecast:
    """A simple model-based detector: hourly arrivals per 0.01° cell against a forecast
    (the mean of the same hour on earlier days); far above it is a detection."""

    kind = "inflow_above_forecast"

    def __init__(
        self, dataset: str = "people", factor: float = 3.0, min_excess: float = 10.0
    ) -> None:
        self.dataset, self.factor, self.min_excess = dataset, factor, min_excess

    def detect(self, store: Store, start: Any, end: Any) -> pa.Table:
        df = store.sql(f"SELECT id, t, x, y FROM {self.dataset}").to_pandas()
        df["cell"] = (
            (df["x"] / 0.01).round().astype(int).astype(str)
            + ":"
            + (df["y"] / 0.01).round().astype(int).astype(str)
        )
        df["hour"] = df["t"].dt.floor("h")
        n = df.groupby(["cell", "hour"]).size().rename("n").reset_index()
        n["hod"] = n["hour"].dt.hour
        lo, hi = pd.Timestamp(start), pd.Timestamp(end)
        out = []
        for _, r in n[(n["hour"] >= lo) & (n["hour"] < hi)].iterrows():
            past = n[(n["cell"] == r["cell"]) & (n["hod"] == r["hod"]) & (n["hour"] < r["hour"])]
            exp = float(past["n"].sum()) / max(int((r["hour"] - n["hour"].min()).days), 1)
            if r["n"] > self.factor * exp + self.min_excess:
                cx, cy = (float(v) * 0.01 for v in r["cell"].split(":"))
                out.append(
                    {
                        "id": r["cell"],
                        "t": r["hour"],
                        "x": cx,
                        "y": cy,
                        "kind": self.kind,
                        "place": r["cell"],
                        "observed": float(r["n"]),
                        "expected": exp,
                    }
                )
        return pa.Table.from_pylist(out) if out else pa.table({"id": pa.array([], pa.string())})


def test_model_based_rule_with_a_registered_detector(city: Store) -> None:
    register_detector("test_inflow", InflowAboveForecast)
    city.create_dataset("people", DatasetSchema(ModelKind.POINT_ST))
    rng = np.random.default_rng(0)
    rows = []
    for d in range(4):
        for h in range(24):
            k = 3 if not (d == 3 and h == 20) else 60  # a crowd gathers on day 4 at 20:00
            for i in range(k):
                rows.append(
                    {
                        "id": f"p{d}{h}{i}",
                        "t": T0 + pd.Timedelta(days=d, hours=h, minutes=int(rng.integers(60))),
                        "x": 116.40 + rng.normal(0, 0.001),
                        "y": 39.90 + rng.normal(0, 0.001),
                    }
                )
    city.append("people", rows)
    rules = load_rules(
        "- {name: crowd, kind: model, detector: test_inflow, severity: critical, params: {factor: 3}}"
    )
    log = WarningLog()
    RuleEngine(city, rules, sink=log).run_rule(
        "crowd", T0 + pd.Timedelta("3D"), T0 + pd.Timedelta("4D")
    )
    assert len(log.rows) == 1
    ev = log.rows[0]["evidence"]
    assert ev["observed"] == 60 and ev["expected"] < 5 and ev["t"].startswith("2026-03-05T20:00")


def test_missing_datasets_fields_and_params_are_named(city: Store) -> None:
    _air(city)
    missing_ds = load_rules("- {name: r1, kind: threshold, datasets: [nowhere], sql: 'SELECT 1'}")
    with pytest.raises(RuleError, match=r"rule 'r1': dataset 'nowhere' is not in the store"):
        RuleEngine(city, missing_ds).check("r1")
    missing_f = load_rules("- {name: r2, kind: threshold, fields: {air: [pm10]}, sql: 'SELECT 1'}")
    with pytest.raises(RuleError, match=r"dataset 'air' has no field\(s\) \['pm10'\]"):
        RuleEngine(city, missing_f).check("r2")
    bad_col = load_rules(
        "- {name: r3, kind: threshold, sql: 'SELECT id AS place, t, x, y FROM air WHERE no2 > 1'}"
    )
    with pytest.raises(RuleError, match=r"rule 'r3'.*no2"):
        RuleEngine(city, bad_col).check("r3")
    with pytest.raises(RuleError, match=r"rule 'r4'.*\{limit\}"):
        RuleEngine(city, load_rules("- {name: r4, kind: threshold, sql: 'SELECT {limit}'}")).check(
            "r4"
        )
    with pytest.raises(RuleError, match="detector 'nope' is not registered"):
        load_rules("- {name: r5, kind: model, detector: nope}")
    with pytest.raises(RuleError, match="kind 'weird'"):
        load_rules("- {name: r6, kind: weird, sql: 'SELECT 1'}")
    with pytest.raises(RuleError, match=r"unknown field\(s\) \['sqll'\]"):
        load_rules("- {name: r7, kind: threshold, sql: 'SELECT 1', sqll: x}")


def test_run_forever_ticks_on_the_clock_until_stopped(city: Store) -> None:
    import threading

    from cityos.testing.clock import FakeClock

    _air(city)
    log = WarningLog()
    eng = RuleEngine(city, load_rules(PM25_RULE), sink=log)
    clock = FakeClock(T0 + pd.Timedelta("1D"))
    stop = threading.Event()
    t = threading.Thread(
        target=eng.run_forever, args=(stop,), kwargs={"clock": clock, "poll_s": 0.01}
    )
    t.start()
    for _ in range(500):
        if log.rows:
            break
        stop.wait(0.01)
    stop.set()
    t.join(timeout=10)
    assert not t.is_alive() and len(log.rows) == 1  # ran once; not due again at the same time
    assert eng.last_end["pm25_episode"] == T0 + pd.Timedelta("1D")

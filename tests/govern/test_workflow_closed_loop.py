"""The full closed loop on SQLite and PostgreSQL: sensor data → govern-intel's rule →
warning → event → automatic dispatch → handled against its deadline → outcome → the
rule's measured precision (and a backtest that sees the outcomes)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from cityos.access import verify_audit
from cityos.govern import load_organisation
from cityos.model import DatasetSchema, Field, ModelKind

from .conftest import make_city

rules = pytest.importorskip("cityos.govern.rules")

T0 = pd.Timestamp("2026-03-02T00:00Z")
RULE = """
rules:
  - name: pm25_episode
    kind: threshold
    severity: warning
    datasets: [air]
    fields: {air: [pm25]}
    schedule: 1D
    dedup_window: 1D
    params: {limit: 75, hours: 3}
    service_code: air_quality
    open_event: true
    title: "PM2.5 above 75 for {hours_above} h at {place}"
    sql: |
      WITH r AS (SELECT id, t, x, y, pm25 FROM air WHERE t >= {start} AND t < {end}),
      f AS (SELECT *, pm25 > {limit} AS hi,
                   row_number() OVER (PARTITION BY id ORDER BY t)
                 - row_number() OVER (PARTITION BY id, pm25 > {limit} ORDER BY t) AS grp FROM r)
      SELECT id AS place, min(t) AS t, any_value(x) AS x, any_value(y) AS y,
             count(*) AS hours_above, max(pm25) AS peak
      FROM f WHERE hi GROUP BY id, grp HAVING count(*) >= {hours}
"""


class EnvDispatcher:
    """Air-quality events belong to the city's environment office, surely."""

    def predict(self, events: Sequence[dict[str, Any]]) -> list[tuple[str, str | None, float]]:
        return [
            ("city-environment", "city", 0.99 if e["service_code"] == "air_quality" else 0.1)
            for e in events
        ]


def test_sensor_to_rule_precision(tmp_path: Path, db_url: str) -> None:
    c = make_city(tmp_path / "c", db_url, dispatcher=EnvDispatcher(), auto_dispatch_threshold=0.9)
    load_organisation(
        c.db,
        {
            "departments": [
                {"code": "city-environment", "unit": "city", "function": "environment"}
            ],
            "staff": [
                {"username": "env1", "role": "department_staff", "department": "city-environment"}
            ],
            "services": [
                {
                    "code": "air_quality",
                    "name": "Air quality episode",
                    "function": "environment",
                    "workflow": {"resolve_within": "12h", "deadlines": {"accept": "30m"}},
                }
            ],
        },
    )
    g = c.gov
    g.reload()
    # sensor data: station A has a real episode, station B a faulty sensor; C stays clean
    c.store.create_dataset(
        "air", DatasetSchema(ModelKind.POINT_ST, fields=(Field("pm25", "float64"),))
    )
    levels = {
        "A": [40, 80, 90, 160, 85, 50] + [40] * 18,
        "B": [40] * 10 + [300, 300, 300, 300] + [40] * 10,
        "C": [30] * 24,
    }
    pos = {"A": (0.2, 0.2), "B": (1.5, 0.7), "C": (0.8, 0.8)}
    c.store.append(
        "air",
        [
            {
                "id": s,
                "t": T0 + pd.Timedelta(hours=h),
                "x": pos[s][0],
                "y": pos[s][1],
                "pm25": float(v[h]),
            }
            for s, v in levels.items()
            for h in range(24)
        ],
    )
    eng = rules.RuleEngine(c.store, rules.load_rules(RULE), sink=g)
    c.clock.set(T0 + pd.Timedelta("1D"))
    res = eng.run_rule("pm25_episode", T0, T0 + pd.Timedelta("1D"))
    assert res.raised == 2
    ws = {w.evidence["place"]: w for w in g.warnings(rule="pm25_episode")}
    assert set(ws) == {"A", "B"} and all(w.status == "event_opened" for w in ws.values())
    # each warning opened an event that dispatched itself to the environment office
    ev = {p: g.event(w.event_id) for p, w in ws.items()}  # type: ignore[arg-type]
    for e in ev.values():
        assert (e.channel, e.status, e.department, e.dispatch_mode) == (
            "warning",
            "dispatched",
            "city-environment",
            "auto",
        )
        assert e.service_code == "air_quality" and e.warning_id is not None
    # running the rule again raises nothing new (de-duplicated)
    again = eng.run_rule("pm25_episode", T0, T0 + pd.Timedelta("1D"))
    assert again.raised == 0 and again.repeated == 2 and len(g.warnings()) == 2
    # handled: A confirmed on site; B's accept is late, the timer marks it, then a false alarm
    env = c.principal("env1")
    a = g.transition(ev["A"].id, "accept", env, ev["A"].version)
    a = g.transition(a.id, "start", env, a.version)
    a = g.transition(
        a.id, "resolve", env, a.version, "smoke from a plant; ordered to stop", outcome="confirmed"
    )
    c.clock.advance(minutes=31)
    swept = g.sweep()
    assert ev["B"].id in swept.overdue
    b = g.event(ev["B"].id)
    b = g.transition(b.id, "accept", "env1", b.version)
    b = g.transition(b.id, "resolve", "env1", b.version, "sensor fault", outcome="false_alarm")
    assert (
        g.warning(ws["A"].id).status == "confirmed"
        and g.warning(ws["B"].id).status == "false_alarm"
    )
    p = g.rule_precision()["pm25_episode"]
    assert (p["confirmed"], p["false_alarm"], p["pending"], p["precision"]) == (1, 1, 0, 0.5)
    bt = eng.backtest(
        "pm25_episode",
        T0,
        T0 + pd.Timedelta("1D"),
        outcomes=rules.outcomes_from(g, eng.rules["pm25_episode"]),
    )
    assert bt.judged == 2 and bt.confirmed == 1 and bt.precision == 0.5
    # the store shows it all, and the audit chain holds
    wrows = {r["id"]: r for r in c.store.read("warnings").table.to_pylist()}
    assert {wrows[ws["A"].id]["status"], wrows[ws["B"].id]["status"]} == {
        "confirmed",
        "false_alarm",
    }
    erows = {r["id"]: r for r in c.store.read("events").table.to_pylist()}
    assert erows[ev["A"].id]["status"] == "resolved" and erows[ev["B"].id]["status"] == "resolved"
    assert verify_audit(c.db).ok
    c.store.close()

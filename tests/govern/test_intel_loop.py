"""The closed loop on SQLite and PostgreSQL, with govern-intel's real components plugged
into governance: history → a dispatcher trained on it; citizen duplicates merged by the
trained detector; sensor data → rule → warning → event → auto-dispatch → handled →
outcome → the rule's measured precision and a backtest that counts it."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from cityos.govern.dedup import DuplicateDetector
from cityos.govern.dispatch import Dispatcher
from cityos.govern.rules import RuleEngine, load_rules, outcomes_from
from cityos.model import DatasetSchema, Field, ModelKind
from cityos.synth import make_city as make_synth_city
from cityos.synth._reports import make_reports

from .conftest import make_city

TEXTS = {
    "pothole": [
        "deep pothole in the road",
        "路面有个大坑",
        "road surface broken, big hole",
        "马路上出现坑洼",
    ],
    "garbage": [
        "bins overflowing",
        "垃圾桶满了没人清",
        "trash not collected for days",
        "垃圾堆积如山",
    ],
    "leak": [
        "water main burst",
        "自来水管爆裂",
        "water gushing from the pavement",
        "水管破了水流满街",
    ],
}
RULE = """
- name: pipe_pressure
  kind: threshold
  severity: critical
  datasets: [pressure]
  fields: {pressure: [bar]}
  schedule: 1D
  dedup_window: 1D
  service_code: leak
  open_event: true
  params: {limit: 1.0, hours: 3}
  title: "Pressure below 1 bar for {hours_low} h at {place}"
  sql: |
    WITH f AS (SELECT *, bar < {limit} AS lo,
                      row_number() OVER (PARTITION BY id ORDER BY t)
                    - row_number() OVER (PARTITION BY id, bar < {limit} ORDER BY t) AS grp
               FROM pressure WHERE t >= {start} AND t < {end})
    SELECT id AS place, min(t) AS t, any_value(x) AS x, any_value(y) AS y, count(*) AS hours_low,
           min(bar) AS lowest
    FROM f WHERE lo GROUP BY id, grp HAVING count(*) >= {hours}
"""


def test_closed_loop_with_trained_components(tmp_path: Path, db_url: str) -> None:
    c = make_city(tmp_path / "c", db_url)
    g = c.gov
    # history: citizens' reports a dispatcher routed by hand
    for k in range(36):
        svc = ("pothole", "garbage", "leak")[k % 3]
        x, y = (0.2 + 0.02 * k) % 2.0, 0.1 + 0.02 * (k % 40)
        attrs = {"severity": "2"} if svc == "pothole" else None
        e = g.intake(svc, x=x, y=y, description=TEXTS[svc][k % 4], attributes=attrs).event
        dept = {
            "pothole": f"d{1 if x < 1 else 2}-roads",
            "garbage": "d1-sanitation" if x < 1 else "city-sanitation",
            "leak": "city-water",
        }[svc]
        g.dispatch(e.id, dept, "disp", e.version)
        c.clock.advance(minutes=30)
    disp = Dispatcher.from_governance(g)
    g.dispatcher = disp
    g.deduplicator = DuplicateDetector().fit(
        make_reports(make_synth_city(size_km=6.0), 150, seed=1)
    )
    auto = g.intake(
        "pothole", x=1.5, y=0.5, description="pothole on the road", attributes={"severity": "1"}
    )
    assert auto.event.department == "d2-roads" and auto.event.dispatch_mode == "auto"
    # two citizens, one burst pipe
    a = g.intake("leak", x=0.3000, y=0.9000, description="自来水管爆裂，水流满街", reporter="ann")
    c.clock.advance(minutes=25)
    b = g.intake("leak", x=0.3003, y=0.9002, description="水管破了，路上全是水", reporter="bob")
    assert b.merged_into == a.event.id
    assert [r.reporter for r in g.reports(a.event.id)] == ["ann", "bob"]

    # sensor data → rule → warning → event → auto-dispatch
    c.store.create_dataset(
        "pressure", DatasetSchema(ModelKind.POINT_ST, fields=(Field("bar", "float64"),))
    )
    t0 = pd.Timestamp("2026-03-02T00:00Z")
    rows = []
    for h in range(24):
        rows.append(
            {
                "id": "P1",
                "t": t0 + pd.Timedelta(hours=h),
                "x": 0.6,
                "y": 0.6,
                "bar": 0.4 if 5 <= h < 9 else 2.5,
            }
        )
        rows.append(
            {
                "id": "P2",
                "t": t0 + pd.Timedelta(hours=h),
                "x": 1.6,
                "y": 0.2,
                "bar": 0.6 if 12 <= h < 16 else 2.5,
            }
        )
    c.store.append("pressure", rows)
    eng = RuleEngine(c.store, load_rules(RULE), sink=g)
    res = eng.run_rule("pipe_pressure", t0, t0 + pd.Timedelta("1D"))
    assert res.raised == 2
    again = eng.run_rule("pipe_pressure", t0, t0 + pd.Timedelta("1D"))
    assert again.raised == 0 and again.repeated == 2  # the same episodes: no new warnings
    ws = {w.evidence["place"]: w for w in g.warnings(rule="pipe_pressure")}
    w1 = ws["P1"]
    assert w1.status == "event_opened" and w1.severity == "critical"
    ev = g.event(w1.event_id)  # type: ignore[arg-type]
    assert ev.department == "city-water" and ev.dispatch_mode == "auto" and ev.channel == "warning"
    # handled: the crew finds the leak; the other warning was a faulty gauge
    ev = g.transition(ev.id, "accept", "disp", ev.version)
    g.transition(ev.id, "resolve", "disp", ev.version, "valve replaced", outcome="confirmed")
    g.warning_outcome(ws["P2"].id, False, "disp")
    p = g.rule_precision()["pipe_pressure"]
    assert (p["confirmed"], p["false_alarm"], p["precision"]) == (1, 1, 0.5)
    bt = eng.backtest(
        "pipe_pressure",
        t0 - pd.Timedelta("2D"),
        t0 + pd.Timedelta("1D"),
        outcomes=outcomes_from(g, eng.rules["pipe_pressure"]),
    )
    assert len(bt.warnings) == 2 and bt.judged == 2 and bt.confirmed == 1
    # an override feeds retraining
    low = g.intake("garbage", x=1.4, y=0.3, description="垃圾桶满了")
    chosen = "d1-sanitation" if low.event.department != "d1-sanitation" else "city-sanitation"
    disp.record_override(low.event, chosen)
    assert len(disp.overrides) == 1
    disp.retrain()
    assert not disp.overrides
    c.store.close()

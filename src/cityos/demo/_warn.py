"""Chapter 4 of the city story, *warn*: early-warning rules over the demo city raise
warnings — PM2.5 episodes at the real Beijing stations (a generated-series threshold when
the real data is absent), the crowd gathering the Learn chapter's model detects, and
abnormal stays of hazardous-chemical carriers matched to a suspected-site list — and the
chapter prints the quality of duplicate detection, AI dispatch and the suspected sites.

The warnings are left in ``ctx.state["warnings"]`` (and the engine in
``ctx.state["rule_engine"]``) for the Govern chapter, which raises them through
governance, where they become events.
"""

from __future__ import annotations

import time

import pandas as pd

from cityos.demo._story import Chapter, DemoContext, Section

__all__ = ["Warn"]

PM25_SQL = """
WITH r AS (SELECT id, t, x, y, pm25 FROM beijing_air_quality WHERE t >= {start} AND t < {end} AND pm25 IS NOT NULL),
f AS (SELECT *, pm25 > {limit} AS hi,
             row_number() OVER (PARTITION BY id ORDER BY t)
           - row_number() OVER (PARTITION BY id, pm25 > {limit} ORDER BY t) AS grp FROM r)
SELECT id AS place, min(t) AS t, any_value(x) AS x, any_value(y) AS y, count(*) AS hours_above,
       max(pm25) AS peak, CASE WHEN max(pm25) > 250 THEN 'critical' ELSE 'warning' END AS severity
FROM f WHERE hi GROUP BY id, grp HAVING count(*) >= {hours}
"""

SERIES_SQL = """
WITH r AS (SELECT id, t, x, y, value FROM sensor_readings WHERE t >= {start} AND t < {end}),
f AS (SELECT *, value > {limit} AS hi,
             row_number() OVER (PARTITION BY id ORDER BY t)
           - row_number() OVER (PARTITION BY id, value > {limit} ORDER BY t) AS grp FROM r)
SELECT id AS place, min(t) AS t, any_value(x) AS x, any_value(y) AS y, count(*) AS hours_above, max(value) AS peak
FROM f WHERE hi GROUP BY id, grp HAVING count(*) >= {hours}
"""


class Warn(Chapter):
    """Chapter 4: rules and models raise warnings; dedup, dispatch and hazchem figures."""

    title = "Warn: early-warning rules, duplicate detection, dispatch and hazardous chemicals"

    def run(self, ctx: DemoContext) -> None:
        from cityos.govern.quality import dedup_table, dispatch_table, hazchem_table
        from cityos.govern.rules import RuleEngine, WarningLog, load_rules

        store = ctx.require_store()
        names = {d.name for d in store.list_datasets()}
        rules = []
        if "beijing_air_quality" in names:
            info = store.describe("beijing_air_quality")
            end = pd.Timestamp(info.t_max, unit="ms", tz="UTC").ceil("1D")
            rules.append(
                {
                    "name": "pm25_episode",
                    "kind": "threshold",
                    "datasets": ["beijing_air_quality"],
                    "fields": {"beijing_air_quality": ["pm25"]},
                    "sql": PM25_SQL,
                    "params": {"limit": 150, "hours": 6},
                    "schedule": "30D",
                    "dedup_window": "1D",
                    "service_code": "air_quality",
                    "open_event": True,
                    "title": "PM2.5 above 150 µg/m³ for {hours_above} h at {place}",
                }
            )
            what = "PM2.5 > 150 µg/m³ for 6 h at a Beijing station (real readings)"
        elif "sensor_readings" in names:
            info = store.describe("sensor_readings")
            end = pd.Timestamp(info.t_max, unit="ms", tz="UTC").ceil("1D")
            rules.append(
                {
                    "name": "flow_surge",
                    "kind": "threshold",
                    "datasets": ["sensor_readings"],
                    "sql": SERIES_SQL,
                    "params": {"limit": 900, "hours": 2},
                    "schedule": "30D",
                    "dedup_window": "1D",
                }
            )
            what = (
                "loop-detector count > 900 veh/h for 2 h (generated readings; no real PM2.5 here)"
            )
        else:
            end, what = pd.Timestamp.now(tz="UTC").floor("1D"), ""
        start = end - pd.Timedelta("30D")
        log = WarningLog()
        rows: list[tuple[str, ...]] = []
        eng = RuleEngine(store, load_rules(rules), sink=log)
        for r in eng.rules.values():
            tick = time.perf_counter()
            res = eng.run_rule(r, start, end)
            rows.append(
                (
                    r.name,
                    r.kind,
                    what,
                    str(res.candidates),
                    str(res.raised),
                    f"{time.perf_counter() - tick:.2f}",
                )
            )
        # the crowd gathering the Learn chapter's model sees
        from cityos.ai._registry import ModelRegistry

        if "crowd_inflow" in ModelRegistry.of(store).names():
            v = store.describe("vehicles")
            t1 = pd.Timestamp(v.t_max, unit="ms", tz="UTC").floor("1h")
            ver = ModelRegistry.of(store).versions("crowd_inflow")[-1].version
            crowd = load_rules(
                [
                    {
                        "name": "crowd_gathering",
                        "kind": "model",
                        "detector": "crowd_gathering",
                        "severity": "critical",
                        "service_code": "crowd",
                        "open_event": True,
                        "params": {"name": "crowd_inflow", "version": ver},
                        "dedup_window": "6h",
                    }
                ]
            )
            eng.rules.update({r.name: r for r in crowd})
            tick = time.perf_counter()
            res = eng.run_rule("crowd_gathering", t1 - pd.Timedelta("4h"), t1 + pd.Timedelta("1h"))
            rows.append(
                (
                    "crowd_gathering",
                    "model",
                    "grid inflow far above its forecast (Learn's model)",
                    str(res.candidates),
                    str(res.raised),
                    f"{time.perf_counter() - tick:.2f}",
                )
            )
        ctx.log(
            "hazardous chemicals: enterprises, permits, carriers with injected illegal stops ..."
        )
        tick = time.perf_counter()
        hz_rows, hz_fig = hazchem_table(ctx.city, store, n_carriers=20, days=2, seed=1)
        rows.append(
            (
                "hazchem_stay",
                "spatiotemporal",
                "carrier stays > 30 min outside permitted sites",
                hz_rows[2][1],
                hz_rows[2][1],
                f"{time.perf_counter() - tick:.2f}",
            )
        )
        ctx.report.sections.append(
            Section(
                "Early-warning rules (last 30 days of data)",
                ("rule", "kind", "condition", "candidates", "warnings", "s"),
                rows,
            )
        )
        ctx.report.sections.append(
            Section(
                "Hazardous chemicals: suspected sites vs injected illegal stops",
                ("", "value"),
                hz_rows,
            )
        )
        ctx.report.figures.update(hz_fig)
        ctx.log("duplicate detection and dispatch quality against their baselines ...")
        dd = dedup_table(ctx.city, ctx.shared_data, n_train=600, n_test=300, seeds=(2,))
        ctx.report.sections.append(
            Section(
                "Duplicate detection (事件辨重) vs FixMyStreet's rule",
                ("set", "method", "precision", "recall", "merges", "should merge"),
                dd,
            )
        )
        ours = next(r for r in dd if r[1] == "ours")
        ctx.report.figures["dedup.precision"] = float(ours[2])
        ctx.report.figures["dedup.recall"] = float(ours[3])
        dp = dispatch_table(ctx.city, ctx.shared_data, n_train=500)
        ctx.report.sections.append(
            Section(
                "AI dispatch (AI 智能分拨) vs baselines",
                (
                    "set",
                    "method",
                    "accuracy",
                    "auto share",
                    "auto precision",
                    "threshold",
                    "n test",
                ),
                dp,
            )
        )
        ctx.report.figures["dispatch.accuracy"] = float(dp[0][2])
        ctx.report.figures["dispatch.auto_share"] = float(dp[0][3])
        ctx.report.figures["warn.warnings"] = float(len(log.rows))
        ctx.state["warnings"] = log.frame()
        ctx.state["rule_engine"] = eng
        ctx.report.notes.append(
            f"warn: {len(log.rows)} warning(s) from {len(eng.rules)} rule(s), left for the Govern chapter"
        )

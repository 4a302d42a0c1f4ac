"""Hazardous chemicals end to end: generated enterprises, permits and carriers with
injected illegal stops; the abnormal-stay rule; the suspected-site list against the
ground truth; night stays near unregistered sites; the enterprise archive."""

from __future__ import annotations

import pandas as pd
import pytest

from cityos.govern.hazchem import (
    AbnormalStayDetector,
    enterprise_archive,
    evaluate_sites,
    load_world,
    suspected_sites,
)
from cityos.govern.rules import RuleEngine, WarningLog, load_rules
from cityos.store import Store
from cityos.synth import make_city
from cityos.synth._hazchem import make_hazchem

RULE = """
- name: hazchem_stay
  kind: spatiotemporal
  severity: critical
  detector: abnormal_stay
  schedule: 6h
  dedup_window: 30D
"""


def test_suspected_sites_recall_and_precision(city: Store) -> None:
    w = make_hazchem(make_city(size_km=10.0), 16, days=2, seed=1)
    assert len(w.truth) >= 8 and len(w.decoys) >= 3
    load_world(city, w)
    eng = RuleEngine(city, load_rules(RULE), sink=WarningLog())
    bt = eng.backtest("hazchem_stay", "2026-03-01T16:00Z", "2026-03-04T00:00Z")
    ev = pd.DataFrame(list(bt.warnings["evidence"])).assign(
        x=bt.warnings["x"].to_numpy(), y=bt.warnings["y"].to_numpy()
    )
    # decoy rests outside permitted sites are abnormal stays too, but at no chemical site
    assert len(ev) > len(w.truth)
    sus = suspected_sites(ev, w.enterprises, permitted=set(w.permits["enterprise_id"]))
    q = evaluate_sites(sus, w.truth["site_id"])
    assert q.recall >= 0.85 and q.precision >= 0.80, q
    # every dedup key is one stay: a second backtest over the same month raises the same set
    assert len(
        eng.backtest("hazchem_stay", "2026-03-01T16:00Z", "2026-03-04T00:00Z").warnings
    ) == len(bt.warnings)


def test_night_stay_near_an_unregistered_site() -> None:
    det = AbnormalStayDetector(min_minutes=30, night_min_minutes=10, tz="Asia/Shanghai")
    ents = pd.DataFrame({"id": ["PLANT", "SMALL"], "x": [116.30, 116.40], "y": [39.90, 39.90]})
    permits = pd.DataFrame(
        {
            "enterprise_id": ["PLANT"],
            "valid_from": ["2025-01-01T00:00Z"],
            "valid_to": ["2027-01-01T00:00Z"],
        }
    )
    t_night = pd.Timestamp("2026-03-02T15:00Z")  # 23:00 in Beijing
    t_day = pd.Timestamp("2026-03-02T03:00Z")  # 11:00
    rows = []
    for vid, t0, x in (
        ("night", t_night, 116.4001),
        ("day", t_day, 116.4001),
        ("home", t_night, 116.3001),
    ):
        for k in range(31):  # 15 minutes at 30 s
            rows.append({"id": vid, "t": t0 + pd.Timedelta(seconds=30 * k), "x": x, "y": 39.9})
    ab = det.classify(det.stays(pd.DataFrame(rows)), ents, permits, t_night)
    assert ab["id"].tolist() == ["night"]  # 15 min by day is fine; at the permitted plant too
    assert ab["reason"].tolist() == ["night_near_unregistered"] and ab[
        "nearest_enterprise"
    ].tolist() == ["SMALL"]


def test_enterprise_archive(city: Store) -> None:
    w = make_hazchem(make_city(size_km=8.0), 6, days=1, seed=3)
    load_world(city, w)
    plant = w.enterprises[w.enterprises["kind"] == "chemical_plant"]["id"].iloc[0]
    a = enterprise_archive(city, plant)
    assert a["enterprise"]["id"] == plant and a["permits"] and a["vehicles"]
    assert {v["enterprise_id"] for v in a["vehicles"]} == {plant}
    assert a["warnings"] == [] and a["events"] == [] and a["inspections"] == []
    with pytest.raises(KeyError, match="no enterprise 'ENT-9999'"):
        enterprise_archive(city, "ENT-9999")

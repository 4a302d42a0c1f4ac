"""The quality tables of governance intelligence, measured the same way by the benchmark,
the demo and the docs: duplicate detection and dispatch against their baselines on a
generated set and on the real NYC 311 samples, and the hazardous-chemicals suspected-site
list against the injected ground truth.

Every function trains on one generated set and measures on others made with different
seeds (never the training data).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd

__all__ = ["dedup_table", "dispatch_table", "hazchem_table", "nyc_files"]


def nyc_files(shared_data: str | Path | None) -> list[Path]:
    """The NYC 311 sample files under ``shared_data`` (empty when absent)."""
    if shared_data is None:
        return []
    d = Path(shared_data) / "nyc-311"
    return sorted(d.glob("nyc311_*.csv")) if d.is_dir() else []


def dedup_table(
    city: Any,
    shared_data: str | Path | None = None,
    *,
    n_train: int = 1000,
    n_test: int = 400,
    seeds: Sequence[int] = (2, 3),
) -> list[tuple[str, ...]]:
    """Rows (set, method, precision, recall, merges, should merge) for the generated test
    sets and, when present, the NYC 311 2025 sample (all requests, and only the agencies
    that write duplicate resolutions)."""
    from cityos.govern.dedup import (
        DuplicateDetector,
        evaluate,
        evaluate_flags,
        fixmystreet_rule,
        nyc_311_reports,
    )
    from cityos.synth._reports import make_reports

    det = DuplicateDetector().fit(make_reports(city, n_train, seed=101))
    rows: list[tuple[str, ...]] = []
    for s in seeds:
        test = make_reports(city, n_test, seed=s)
        for name, res in (("ours", det.run(test)), ("FixMyStreet 250 m", fixmystreet_rule(test))):
            q = evaluate(res, test)
            rows.append(
                (
                    f"generated seed {s} ({len(test)} reports)",
                    name,
                    f"{q.precision:.3f}",
                    f"{q.recall:.3f}",
                    str(q.merges),
                    str(q.should_merge),
                )
            )
    for f in nyc_files(shared_data):
        n = nyc_311_reports(f)
        if not n["is_duplicate"].any():
            continue
        for name, res in (("ours", det.run(n)), ("FixMyStreet 250 m", fixmystreet_rule(n))):
            for label, mask in (("all", None), ("DEP+HPD", n["labelling_agency"].to_numpy())):
                q = evaluate_flags(res, n, mask)
                rows.append(
                    (
                        f"NYC 311 {f.stem[7:17]} {label} (small: {int(n['is_duplicate'].sum())} labelled)",
                        name,
                        f"{q.precision:.3f}",
                        f"{q.recall:.3f}",
                        str(q.merges),
                        str(q.should_merge),
                    )
                )
    return rows


def dispatch_table(
    city: Any, shared_data: str | Path | None = None, *, n_train: int = 800
) -> list[tuple[str, ...]]:
    """Rows (set, method, accuracy, auto share at 95%, auto precision, threshold, n test)."""
    from cityos.govern.dispatch import (
        evaluate_dispatch,
        jurisdictions_from_districts,
        nyc_311_dispatch_set,
    )
    from cityos.synth._reports import make_reports

    jur = jurisdictions_from_districts(city.districts)
    rows: list[tuple[str, ...]] = []
    res = evaluate_dispatch(
        make_reports(city, n_train, seed=11),
        make_reports(city, 300, seed=12),
        make_reports(city, 400, seed=13),
        jurisdictions=jur,
    )
    rows += [("generated zh/en", *q.row()) for q in res]
    files = nyc_files(shared_data)
    if files:
        tr, va, te = nyc_311_dispatch_set(files)
        rows += [
            (f"NYC 311 (small: {len(tr)}/{len(va)}/{len(te)})", *q.row())
            for q in evaluate_dispatch(tr, va, te)
        ]
    return rows


def hazchem_table(
    city: Any, store: Any, *, n_carriers: int = 20, days: int = 2, seed: int = 1
) -> tuple[list[tuple[str, ...]], dict[str, float]]:
    """Generate the hazardous-chemicals world into ``store``, backtest the abnormal-stay
    rule over it and score the suspected-site list: (rows, figures)."""
    from cityos.govern.hazchem import evaluate_sites, load_world, suspected_sites
    from cityos.govern.rules import RuleEngine, WarningLog, load_rules
    from cityos.synth._hazchem import make_hazchem

    w = make_hazchem(city, n_carriers, days=days, seed=seed)
    load_world(store, w)
    rules = load_rules(
        "- {name: hazchem_stay, kind: spatiotemporal, severity: critical, detector: abnormal_stay, schedule: 6h, dedup_window: 30D, service_code: hazchem}"
    )
    t0 = pd.Timestamp(w.points["t"].min()).floor("1h")
    t1 = pd.Timestamp(w.points["t"].max()).ceil("1h") + pd.Timedelta("1h")
    bt = RuleEngine(store, rules, sink=WarningLog()).backtest("hazchem_stay", t0, t1)
    ev = (
        pd.DataFrame(list(bt.warnings["evidence"]))
        if len(bt.warnings)
        else pd.DataFrame(columns=["vehicle", "observed"])
    )
    if len(bt.warnings):
        ev = ev.assign(x=bt.warnings["x"].to_numpy(), y=bt.warnings["y"].to_numpy())
    sus = (
        suspected_sites(ev, w.enterprises, permitted=set(w.permits["enterprise_id"]))
        if len(ev)
        else pd.DataFrame(columns=["enterprise_id"])
    )
    q = evaluate_sites(sus, w.truth["site_id"])
    rows: list[tuple[str, ...]] = [
        ("carriers / GPS points", f"{len(w.vehicles)} / {len(w.points):,}"),
        ("injected illegal stops / decoy rests", f"{len(w.truth)} / {len(w.decoys)}"),
        ("abnormal-stay warnings", str(len(bt.warnings))),
        ("suspected sites (correct / listed / truth)", f"{q.correct} / {q.suspected} / {q.truth}"),
        ("precision / recall", f"{q.precision:.3f} / {q.recall:.3f}"),
    ]
    return rows, {
        "hazchem.precision": q.precision,
        "hazchem.recall": q.recall,
        "hazchem.warnings": float(len(bt.warnings)),
    }

"""Group commit of intakes: concurrent reports share one transaction and one audit-chain
append, yet each is recorded, idempotent, validated and durable on its own; a group gives
the results of taking its reports in one at a time; the store's ``events`` dataset holds
every event after close (write-behind included)."""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from cityos.access import read_audit, verify_audit
from cityos.govern import EventNotFound, Governance, IdempotencyConflict, IntakeError
from cityos.govern._core import Intake
from cityos.govern._group import GroupCommit, Job
from cityos.store import Store
from cityos.testing.postgres import fresh_database

from .conftest import NearbySameService, TableDispatcher, make_city


def _parallel(n: int, fn: Callable[[int], Any]) -> list[Any]:
    """Run ``fn(i)`` for i < n on n threads released together; exceptions are returned."""
    gate = threading.Barrier(n)

    def one(i: int) -> Any:
        gate.wait()
        try:
            return fn(i)
        except Exception as exc:
            return exc

    with ThreadPoolExecutor(n) as pool:
        return list(pool.map(one, range(n)))


def _intakes(db: Any) -> list[dict[str, Any]]:
    return [e.detail for e in read_audit(db, action="govern.intake", limit=100_000)]


def test_concurrent_intakes_each_recorded_and_chain_verifies(tmp_path: Path, db_url: str) -> None:
    c = make_city(tmp_path / "c", db_url)
    g = c.gov
    n = 24
    out = _parallel(
        n,
        lambda i: g.intake(
            "garbage", x=0.1 + i * 0.03, y=0.3, source_id=f"s{i}", channel="hotline"
        ),
    )
    assert all(isinstance(r, Intake) and r.created for r in out), out
    ids = sorted(r.id for r in out)
    assert len(set(ids)) == n
    assert sorted(d["event"] for d in _intakes(c.db)) == ids  # one entry per intake
    assert verify_audit(c.db).ok
    assert len(g.events(limit=None)) == n
    assert sorted(r["id"] for r in c.store.read("events").table.to_pylist()) == ids
    c.store.close()


def test_one_key_posted_concurrently_makes_one_event(tmp_path: Path, db_url: str) -> None:
    c = make_city(tmp_path / "c", db_url)
    g = c.gov
    out = _parallel(
        16,
        lambda i: g.intake("garbage", x=0.4, y=0.4, description="bins", idempotency_key="same-key"),
    )
    assert all(isinstance(r, Intake) for r in out), out
    assert sum(r.created for r in out) == 1
    assert {r.id for r in out} == {out[0].id}
    # the same key for a different request, concurrently: one event, the rest refused
    out2 = _parallel(
        8,
        lambda i: g.intake("garbage", x=0.4, y=0.4, description=f"v{i}", idempotency_key="k2"),
    )
    made = [r for r in out2 if isinstance(r, Intake)]
    assert len(made) == 1 and made[0].created
    assert all(isinstance(r, IdempotencyConflict) for r in out2 if not isinstance(r, Intake))
    assert len(g.events(limit=None)) == 2
    assert len(_intakes(c.db)) == 2 and verify_audit(c.db).ok
    c.store.close()


def test_intake_many_is_one_group_and_isolates_bad_reports(tmp_path: Path, db_url: str) -> None:
    c = make_city(tmp_path / "c", db_url)
    g = c.gov
    reports: list[dict[str, Any]] = [
        {"service_code": "garbage", "x": 0.2, "y": 0.2, "source_id": "a", "channel": "hotline"},
        {"service_code": "nope", "x": 0.2, "y": 0.2},
        {"service_code": "garbage", "x": 0.3, "y": 0.2, "idempotency_key": "k"},
        {"service_code": "garbage", "x": 9.0, "y": 0.2},
        {"service_code": "garbage", "x": 0.3, "y": 0.2, "idempotency_key": "k"},
        {"service_code": "garbage", "x": 0.3, "y": 0.2, "idempotency_key": "k", "title": "x"},
        {"service_code": "pothole", "x": 0.5, "y": 0.5, "attributes": {"severity": "9"}},
        {"service_code": "garbage", "x": 0.2, "y": 0.2, "source_id": "a", "channel": "hotline"},
    ]
    out = g.intake_many(reports)
    assert [type(r).__name__ for r in out] == [
        "Intake",
        "IntakeError",
        "Intake",
        "OutsideJurisdiction",
        "Intake",
        "IdempotencyConflict",
        "IntakeError",
        "Intake",
    ]
    a, k1, k2, a2 = out[0], out[2], out[4], out[7]
    assert isinstance(a, Intake) and isinstance(k1, Intake)
    assert isinstance(k2, Intake) and isinstance(a2, Intake)
    assert a.created and k1.created and not k2.created and not a2.created
    assert (k2.id, a2.id) == (k1.id, a.id)
    assert isinstance(out[6], IntakeError) and out[6].field == "attribute[severity]"
    assert list(g._group.group_sizes)[-1] == 5  # the valid ones, one group
    assert len(g.events(limit=None)) == 2 and len(_intakes(c.db)) == 2
    assert verify_audit(c.db).ok
    c.store.close()


class _BrokenFor:
    """A duplicate rule naming a parent that does not exist for one description."""

    def __init__(self, bad: str) -> None:
        self.bad = bad

    def find(self, event: dict[str, Any], candidates: Sequence[dict[str, Any]]) -> Any:
        return "E-999999" if event["description"] == self.bad else None


def test_a_report_failing_at_commit_does_not_fail_its_group(tmp_path: Path, db_url: str) -> None:
    c = make_city(tmp_path / "c", db_url, deduplicator=_BrokenFor("bad"))
    g = c.gov
    g.intake("garbage", x=0.2, y=0.2, description="seed")  # so every report has a candidate
    out = g.intake_many(
        [
            {"service_code": "garbage", "x": 0.2, "y": 0.2, "description": d, "source_id": d}
            for d in ("one", "bad", "two")
        ]
    )
    assert isinstance(out[0], Intake) and isinstance(out[2], Intake)
    assert isinstance(out[1], EventNotFound)
    assert len(g.events(limit=None)) == 3 and len(_intakes(c.db)) == 3
    assert verify_audit(c.db).ok
    c.store.close()


def _reports(n: int, shift: bool = True) -> list[dict[str, Any]]:
    """Generated citizen reports (with paraphrased duplicates) moved into the test city,
    as intake keyword arguments."""
    from cityos.synth import make_city as synth_city
    from cityos.synth._reports import make_reports

    df = make_reports(synth_city(size_km=6.0), n, seed=2)
    x0, y0 = df["x"].min(), df["y"].min()
    service = {}
    codes = ["garbage", "leak"]
    out = []
    for r in df.sort_values("t", kind="stable").to_dict("records"):
        code = service.setdefault(r["category"], codes[len(service) % 2])
        out.append(
            {
                "service_code": code,
                "x": float(r["x"] - x0) + 0.05,
                "y": float(r["y"] - y0) + 0.05,
                "title": r["title"],
                "description": r["description"],
                "received_at": r["t"].to_pydatetime(),
                "source_id": str(r["id"]),
                "channel": "app",
            }
        )
    return out


def _outcome(r: Intake | Exception) -> tuple[Any, ...]:
    assert isinstance(r, Intake), r
    e = r.event
    return (r.id, r.merged_into, r.dispatched, e.status, e.department, e.dispatch_confidence)


def test_group_gives_the_results_of_one_at_a_time(tmp_path: Path, db_url: str) -> None:
    from cityos.govern.dedup import DuplicateDetector
    from cityos.synth import make_city as synth_city
    from cityos.synth._reports import make_reports

    det = DuplicateDetector().fit(make_reports(synth_city(size_km=6.0), 150, seed=1))
    hooks = {
        "deduplicator": det,
        "dispatcher": TableDispatcher({"garbage": 0.95, "leak": 0.5}),
        "auto_dispatch_threshold": 0.9,
    }
    reports = _reports(50)[:100]
    n = len(reports)
    one = make_city(tmp_path / "one", db_url, **hooks)
    seq = [_outcome(one.gov.intake(**r)) for r in reports]
    # a second city: another SQLite file, or another database on the same PostgreSQL
    url2 = db_url.replace("cityos.db", "cityos2.db")
    url2 = fresh_database(db_url) if url2 == db_url else url2
    grp = make_city(tmp_path / "grp", url2, group_max=40, **hooks)
    out = grp.gov.intake_many(reports)
    assert [_outcome(r) for r in out] == seq
    assert sum(m is not None for _, m, *_ in seq) >= 5  # duplicates were found, some in-group
    assert any(d for _, _, d, *_ in seq)
    assert list(grp.gov._group.group_sizes) == [40] * (n // 40) + ([n % 40] if n % 40 else [])
    assert verify_audit(grp.db).ok
    one.store.close()
    grp.store.close()


def test_find_many_equals_find_one_by_one() -> None:
    from cityos.govern.dedup import DuplicateDetector
    from cityos.synth import make_city as synth_city
    from cityos.synth._reports import make_reports

    city = synth_city(size_km=6.0)
    det = DuplicateDetector().fit(make_reports(city, 150, seed=1))
    recs = make_reports(city, 60, seed=3).sort_values("t").to_dict("records")[:120]
    events = recs[40:]
    cands = [recs[max(0, k - 30) : k + 40] for k in range(40, 120)]
    many = det.find_many(events, cands)
    assert many == [det.find(e, c) for e, c in zip(events, cands, strict=True)]
    assert sum(m is not None for m in many) >= 5


def test_dispatch_predict_batch_equals_one_by_one() -> None:
    from cityos.govern.dispatch import Dispatcher, jurisdictions_from_districts
    from cityos.synth import make_city as synth_city
    from cityos.synth._reports import make_reports

    city = synth_city(size_km=6.0)
    d = Dispatcher(jurisdictions_from_districts(city.districts)).fit(
        make_reports(city, 200, seed=11)
    )
    recs = make_reports(city, 60, seed=4).to_dict("records")
    assert d.predict(recs) == [d.predict([r])[0] for r in recs]


def test_nested_dedup_chain_inside_one_group(tmp_path: Path, db_url: str) -> None:
    """A report whose only candidate is an earlier report of its own group that merged
    elsewhere is judged again without it, as one-at-a-time intake would."""
    c = make_city(tmp_path / "c", db_url, deduplicator=NearbySameService(100))
    g = c.gov
    base = g.intake("garbage", x=0.3, y=0.3, description="first")
    out = g.intake_many(
        [
            {"service_code": "garbage", "x": 0.3005, "y": 0.3, "description": "b"},
            {"service_code": "garbage", "x": 0.3013, "y": 0.3, "description": "c"},
            {"service_code": "garbage", "x": 0.6, "y": 0.6, "description": "d"},
            {"service_code": "garbage", "x": 0.6004, "y": 0.6, "description": "e"},
        ]
    )
    b, cc, d, e = out
    assert isinstance(b, Intake) and isinstance(cc, Intake)
    assert isinstance(d, Intake) and isinstance(e, Intake)
    assert b.merged_into == base.id  # 55 m from the first
    assert cc.merged_into is None  # 144 m from the first; b (89 m) merged, so not a candidate
    assert d.merged_into is None and e.merged_into == d.id  # a parent made in the same group
    assert [r.description for r in g.reports(d.id)] == ["d", "e"]
    c.store.close()


@pytest.mark.parametrize("mirror_every_s", [None, 30.0])
def test_store_holds_every_event_after_close(
    tmp_path: Path, db_url: str, mirror_every_s: float | None
) -> None:
    home = tmp_path / "c"
    c = make_city(home, db_url, mirror_every_s=mirror_every_s)
    n = 40
    out = _parallel(
        8,
        lambda k: [
            c.gov.intake("garbage", x=0.1 + (k * 5 + i) * 0.01, y=0.6, source_id=f"{k}-{i}")
            for i in range(5)
        ],
    )
    ids = sorted(r.id for rs in out for r in rs)
    assert len(ids) == n
    c.gov.close()
    c.store.close()
    store = Store(home, database_url=db_url)
    assert sorted(store.read("events").table.column("id").to_pylist()) == ids
    gov = Governance(store.db, store)
    assert sorted(e.id for e in gov.events(limit=None)) == ids
    store.close()


def test_group_commit_hands_the_lead_on() -> None:
    seen: list[list[int]] = []
    gate = threading.Event()

    def run(jobs: list[Job]) -> None:
        if not seen:
            gate.wait(5)  # the first group holds while the others queue
        seen.append([j.value for j in jobs])
        for j in jobs:
            j.result = j.value

    g = GroupCommit(run, max_size=3, wait_s=0.0)
    out: dict[int, Any] = {}
    t0 = threading.Thread(target=lambda: out.__setitem__(0, g.submit([Job(0)])))
    t0.start()
    while not g._leading:
        pass
    rest = [
        threading.Thread(target=lambda i=i: out.__setitem__(i, g.submit([Job(i)])))
        for i in range(1, 6)
    ]
    for t in rest:
        t.start()
    while len(g._queue) < 5:
        pass
    gate.set()
    for t in [t0, *rest]:
        t.join(5)
    assert seen[0] == [0] and sorted(v for s in seen[1:] for v in s) == [1, 2, 3, 4, 5]
    assert all(len(s) <= 3 for s in seen) and len(seen) == 3
    assert {i: out[i][0].result for i in out} == {i: i for i in range(6)}

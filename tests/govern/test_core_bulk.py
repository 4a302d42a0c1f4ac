"""Bulk import of the real NYC 311 samples through the shipped ingest mapping: every
request with a position becomes one event in its historical state, once."""

from __future__ import annotations

import http.server
import threading
from functools import partial
from pathlib import Path

import pytest

from cityos.govern import Governance, IntakeError
from cityos.govern._bulk import bulk_import
from cityos.store import Store
from cityos.testing.clock import FakeClock


@pytest.fixture
def nyc(shared_data: Path) -> Path:
    return shared_data / "nyc-311"


def test_nyc_samples_land_as_events_once(tmp_path: Path, nyc: Path) -> None:
    store = Store(tmp_path / "c")
    gov = Governance(store.db, store, clock=FakeClock("2025-03-25T00:00:00Z"))
    res = bulk_import(gov, nyc)
    import csv

    total = 0
    with_pos = 0
    for f in sorted(nyc.glob("nyc311_*.csv")):
        with f.open(newline="") as fh:
            for r in csv.DictReader(fh):
                total += 1
                with_pos += bool(r["Latitude"] and r["Longitude"])
    assert res.rows == total and res.created == with_pos
    assert len(res.rejected) == total - with_pos and all(r["field"] for r in res.rejected)
    evs = {e.source_id: e for e in gov.events(limit=None)}
    assert len(evs) == with_pos
    # one known row of the 2022 sample: NYPD, residential noise, still in progress
    e = evs["govern_nyc311:54049402"]
    assert (e.department, e.category, e.status, e.channel) == (
        "NYPD",
        "Noise - Residential",
        "in_progress",
        "bulk",
    )
    assert e.received_at.isoformat() == "2022-05-01T04:00:03+00:00"  # 00:00:03 New York time (EDT)
    closed = evs["govern_nyc311:54046813"]
    assert closed.status == "closed" and closed.closed_at is not None
    assert (closed.closed_at - closed.received_at).total_seconds() == 7 * 60 + 37  # type: ignore[operator]
    assert store.describe("events").rows == with_pos
    assert "NYPD" in {d["code"] for d in gov.departments()}
    again = bulk_import(gov, nyc)
    assert again.created == 0 and again.existing == with_pos
    assert store.describe("events").rows == with_pos
    rows = {r["department"]: r for r in gov.evaluate("department", min_sample=30)}
    assert rows["NYPD"]["events"] > 100 and rows["NYPD"]["resolved"] > 0
    store.close()


def test_from_url_and_bad_source(tmp_path: Path, nyc: Path) -> None:
    handler = partial(http.server.SimpleHTTPRequestHandler, directory=str(nyc))
    handler.log_message = lambda *a: None  # type: ignore[attr-defined]
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    try:
        store = Store(tmp_path / "c")
        gov = Governance(store.db, store)
        url = f"http://127.0.0.1:{srv.server_address[1]}/nyc311_2025-03-24_sample.csv"
        res = bulk_import(gov, url)
        assert res.rows == 235 and res.created + len(res.rejected) == 235 and res.created > 200
        with pytest.raises(IntakeError, match="neither a file"):
            bulk_import(gov, tmp_path / "nothing-here.csv")
        store.close()
    finally:
        srv.shutdown()

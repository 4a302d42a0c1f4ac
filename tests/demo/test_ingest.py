"""The demo ingests the real Beijing air-quality CSVs and NYC 311 samples through the
shipped example mappings."""

from __future__ import annotations

from pathlib import Path

import pytest

from cityos.demo import demo_ingest
from cityos.ingest import DeadLetters
from cityos.store import Store


def test_demo_ingest_real_data(city: Store, shared_data: Path) -> None:
    lines = demo_ingest(city, shared_data)
    assert lines[0].startswith("beijing_stations: 12 stored")
    assert lines[1].startswith("beijing_air_quality: 420,768 stored")
    aq = city.sql(
        "SELECT count(DISTINCT id) AS n, min(t) AS t0, avg(co) AS co, "
        "min(x) AS x0, max(y) AS y1 FROM beijing_air_quality"
    ).to_pylist()[0]
    assert aq["n"] == 12
    assert str(aq["t0"]).startswith("2013-02-28 16:00")  # 2013-03-01 00:00 Beijing time
    assert 0.5 < aq["co"] < 3.0  # CO converted from ug/m3 to mg/m3
    assert aq["x0"] > 116.1 and aq["y1"] < 40.4
    # positions come from the stations dataset, by station id
    st = city.sql(
        "SELECT count(*) AS n FROM beijing_air_quality a JOIN beijing_stations s "
        "ON a.id = s.id AND a.x = s.x AND a.y = s.y"
    ).to_pylist()[0]
    assert st["n"] == 420_768
    ev = city.describe("nyc311")
    dead = DeadLetters(city).list(dataset="nyc311", limit=None)
    assert ev.rows + len(dead) == 924 + 235
    assert all(d.rule.startswith(("x:", "y:")) for d in dead)  # requests with no position
    again = demo_ingest(city, shared_data)
    assert all("no new files" in line for line in again)
    assert city.describe("beijing_air_quality").rows == 420_768
    pytest.importorskip("pandas")

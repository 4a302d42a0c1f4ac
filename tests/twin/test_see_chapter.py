"""The demo's See and act chapter on a small demo city: road speeds derived, the
dispatcher's desk seeded, data rights and logins set, the dashboard served and checked
through HTTP (the commander reads the fleet, the citizen is refused), then stopped."""

from __future__ import annotations

from pathlib import Path

import httpx

from cityos import access
from cityos.demo import DemoContext, DemoReport, run_story
from cityos.demo._city import Sense
from cityos.demo._see import SeeAndAct


def test_see_and_act_serves_the_twin_with_each_users_rights(tmp_path: Path) -> None:
    access.configure_password_hashing(time_cost=1, memory_cost_kib=8, parallelism=1)
    ctx = DemoContext(
        home=tmp_path / "city",
        report=DemoReport(home=tmp_path),
        vehicles=8,
        days=1,
        shared_data=tmp_path / "none",
        log=lambda m: None,
    )
    ctx.state["twin_logins"] = {"commander": "c-pass-123", "citizen": "z-pass-123"}
    run_story((Sense, SeeAndAct), ctx)
    store = ctx.require_store()
    speeds = store.describe("road_speeds")
    assert str(speeds.schema.model) == "network_series" and speeds.schema.network == "roads"
    assert speeds.rows > 0
    assert store.describe("events").rows > 0 and store.describe("warnings").rows > 0
    sec = next(s for s in ctx.report.sections if s.title.startswith("What each login"))
    rows = {r[0]: r for r in sec.rows}
    assert rows["commander"][2].endswith("rows") and int(rows["commander"][2].split()[0]) > 0
    assert rows["citizen"][2] == "HTTP 403"
    assert int(rows["commander"][1]) > int(rows["citizen"][1])
    served = ctx.state["twin_served"]
    assert not served.thread.is_alive()  # --no-serve: stopped after the check
    try:
        httpx.get(served.url + "/", timeout=2)
        raise AssertionError("the server still answers")
    except httpx.TransportError:
        pass
    store.close()

"""``cityos govern …``: load an organisation, take in, queue, act, sweep, evaluate."""

from __future__ import annotations

import json
from pathlib import Path

import yaml
from typer.testing import CliRunner

from cityos.cli import app

from .conftest import small_org

runner = CliRunner()


def run(*args: str) -> str:
    res = runner.invoke(app, list(args), catch_exceptions=False)
    assert res.exit_code == 0, res.output
    return res.output


def test_a_dispatchers_day_on_the_command_line(tmp_path: Path) -> None:
    home = str(tmp_path / "city")
    org = tmp_path / "org.yaml"
    org.write_text(yaml.safe_dump(small_org()))
    assert "15 units" in run("govern", "org", "load", str(org), "--home", home)
    out = json.loads(
        run(
            "govern",
            "intake",
            "garbage",
            "--lat",
            "0.3",
            "--long",
            "0.3",
            "--description",
            "bins",
            "--source-id",
            "call-1",
            "--home",
            home,
            "--json",
        )
    )
    eid = out["id"]
    again = json.loads(
        run(
            "govern",
            "intake",
            "garbage",
            "--lat",
            "0.3",
            "--long",
            "0.3",
            "--source-id",
            "call-1",
            "--home",
            home,
            "--json",
        )
    )
    assert again["id"] == eid and again["created"] is False
    assert eid in run("govern", "queue", "--home", home)
    run(
        "govern",
        "act",
        eid,
        "dispatch",
        "--version",
        "1",
        "--department",
        "d1-sanitation",
        "--actor",
        "disp",
        "--home",
        home,
    )
    assert eid in run("govern", "queue", "--department", "d1-sanitation", "--home", home)
    run("govern", "act", eid, "accept", "--version", "2", "--actor", "san1", "--home", home)
    res = runner.invoke(app, ["govern", "act", eid, "accept", "--version", "2", "--home", home])
    assert res.exit_code != 0 and "version 3, not 2" in res.output
    res = runner.invoke(app, ["govern", "act", eid, "close", "--version", "3", "--home", home])
    assert res.exit_code != 0 and "'accepted': cannot close" in res.output
    run("govern", "act", eid, "resolve", "--version", "3", "--note", "emptied", "--home", home)
    shown = json.loads(run("govern", "show", eid, "--home", home, "--json"))
    assert [h["action"] for h in shown["history"]] == ["receive", "dispatch", "accept", "resolve"]
    assert "0 overdue" in run("govern", "sweep", "--home", home)
    ev = json.loads(run("govern", "evaluate", "--min-sample", "1", "--home", home, "--json"))
    assert ev[0]["department"] == "d1-sanitation" and ev[0]["on_time_rate"] == 1.0
    assert "open_events" in run("govern", "kpi", "--home", home)

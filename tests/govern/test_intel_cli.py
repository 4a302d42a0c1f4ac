"""The govern intelligence CLI sub-app: rules check/backtest and search over a city."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from cityos.govern.cli_rules import govern_intel
from cityos.govern.rules import RuleError
from cityos.model import DatasetSchema, Field, ModelKind
from cityos.store import Store


def test_rules_check_backtest_and_search(tmp_path: Path) -> None:
    home = tmp_path / "city"
    store = Store(home)
    store.create_dataset(
        "air",
        DatasetSchema(
            ModelKind.POINT_ST, fields=(Field("pm25", "float64"),), description="air quality"
        ),
    )
    t0 = pd.Timestamp("2026-03-02T00:00Z")
    store.append(
        "air",
        [
            {"id": "A", "t": t0 + pd.Timedelta(hours=h), "x": 116.4, "y": 39.9, "pm25": 200.0}
            for h in range(5)
        ],
    )
    store.close()
    rules = tmp_path / "rules.yaml"
    rules.write_text(
        "- {name: hot, kind: threshold, datasets: [air], schedule: 1D, "
        "sql: 'SELECT id AS place, min(t) AS t, any_value(x) AS x, any_value(y) AS y FROM air "
        "WHERE pm25 > 150 AND t >= {start} AND t < {end} GROUP BY id'}\n"
    )
    run = CliRunner()
    r = run.invoke(govern_intel, ["rules", "check", str(rules), "--home", str(home)])
    assert r.exit_code == 0 and "ok hot" in r.output
    r = run.invoke(
        govern_intel,
        ["rules", "backtest", str(rules), "hot", "2026-03-01", "2026-03-04", "--home", str(home)],
    )
    assert r.exit_code == 0 and "hot: 1 warning(s) over 3 evaluation(s)" in r.output
    r = run.invoke(govern_intel, ["search", "air quality", "--json", "--home", str(home)])
    assert r.exit_code == 0 and json.loads(r.output)[0]["id"] == "air"
    bad = tmp_path / "bad.yaml"
    bad.write_text("- {name: cold, kind: threshold, datasets: [nowhere], sql: 'SELECT 1'}\n")
    r = run.invoke(govern_intel, ["rules", "check", str(bad), "--home", str(home)])
    assert isinstance(r.exception, RuleError) and "dataset 'nowhere'" in str(r.exception)
    with pytest.raises(RuleError):
        raise r.exception


def test_mounted_under_cityos_govern(tmp_path: Path) -> None:
    from cityos.cli import app

    home = tmp_path / "city"
    Store(home).close()
    bad = tmp_path / "bad.yaml"
    bad.write_text("- {name: cold, kind: threshold, datasets: [nowhere], sql: 'SELECT 1'}\n")
    r = CliRunner().invoke(app, ["govern", "rules", "check", str(bad), "--home", str(home)])
    assert r.exit_code != 0 and "dataset 'nowhere' is not in the store" in r.output
    r = CliRunner().invoke(app, ["govern", "intel", "--help"])
    assert r.exit_code == 0 and "search" in r.output and "quality" in r.output

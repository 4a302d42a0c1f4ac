"""The ``cityos`` command line end to end: set up a city, create, load, query, drop."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from builders import make_points
from cityos.cli import app
from cityos.errors import EXIT_BAD_INPUT, EXIT_NOT_FOUND

runner = CliRunner()


def run(*args: str) -> str:
    res = runner.invoke(app, list(args), catch_exceptions=False)
    assert res.exit_code == 0, res.output
    return res.output


def test_city_lifecycle_from_the_command_line(tmp_path: Path) -> None:
    home = str(tmp_path / "c")
    run("init", "--home", home)
    run(
        "dataset",
        "create",
        "cars",
        "--model",
        "point_st",
        "--field",
        "speed:float64",
        "--home",
        home,
    )
    csv = tmp_path / "cars.csv"
    make_points(5, 40).rename(columns={"id": "plate", "t": "time", "x": "lon", "y": "lat"}).to_csv(
        csv, index=False
    )
    out = run(
        "load",
        "cars",
        str(csv),
        "--id",
        "plate",
        "--t",
        "time",
        "--x",
        "lon",
        "--y",
        "lat",
        "--home",
        home,
    )
    assert "200 rows written" in out
    assert "0 rows written, 200 already stored" in run(
        "load",
        "cars",
        str(csv),
        "--id",
        "plate",
        "--t",
        "time",
        "--x",
        "lon",
        "--y",
        "lat",
        "--home",
        home,
    )
    assert "cars" in run("dataset", "list", "--home", home)
    desc = json.loads(run("dataset", "describe", "cars", "--home", home))
    assert desc["rows"] == 200 and desc["model"] == "point_st"
    rows = json.loads(
        run(
            "query",
            "cars",
            "--bbox",
            "116.0,39.5,117.0,40.5",
            "--start",
            "2026-03-02T00:00Z",
            "--end",
            "2026-03-02T00:30Z",
            "--format",
            "json",
            "--home",
            home,
        )
    )
    assert len(rows) > 0 and all(r["t"] < "2026-03-02T00:30" for r in rows)
    knn = json.loads(
        run("query", "cars", "--knn", "116.4,39.91,3", "--format", "json", "--home", home)
    )
    assert [r["distance_m"] for r in knn] == sorted(r["distance_m"] for r in knn) and len(knn) == 3
    sql = run("query", "--sql", "SELECT count(*) AS n FROM cars", "--format", "csv", "--home", home)
    assert sql.split() == ["n", "200"]
    run("dataset", "drop", "cars", "--yes", "--home", home)
    assert "cars" not in run("dataset", "list", "--home", home)


def test_errors_are_reported_not_raised(tmp_path: Path) -> None:
    home = str(tmp_path / "c")
    res = runner.invoke(app, ["dataset", "describe", "nope", "--home", home])
    assert res.exit_code == EXIT_NOT_FOUND and "unknown dataset 'nope'" in res.output
    res = runner.invoke(app, ["dataset", "create", "Bad Name", "--home", home])
    assert res.exit_code == EXIT_BAD_INPUT and "invalid dataset name" in res.output


def test_analytics_commands(tmp_path: Path) -> None:
    home = str(tmp_path / "c")
    run("dataset", "create", "cars", "--home", home)
    csv = tmp_path / "cars.csv"
    df = make_points(3, 120, step_s=60)
    df.loc[df.index[10:40], ["x", "y"]] = df.loc[
        df.index[10], ["x", "y"]
    ].to_numpy()  # a 30-minute stay
    df.drop(columns=["speed"]).to_csv(csv, index=False)
    run("load", "cars", str(csv), "--home", home)
    out = run(
        "analytics", "stays", "cars", "--min-duration", "10min", "--format", "csv", "--home", home
    )
    assert "obj-000" in out
    assert "trajectories" in run("analytics", "segment", "cars", "--gap", "5min", "--home", home)
    run("analytics", "flows", "cars", "--cell-m", "1000", "--save", "cars_flows", "--home", home)
    desc = json.loads(run("dataset", "describe", "cars_flows", "--home", home))
    assert desc["model"] == "point_series" and desc["rows"] > 0

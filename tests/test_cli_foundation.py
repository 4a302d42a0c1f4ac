"""The command line as a user meets it: `cityos load` through the ingest FileSource, one
exit code per kind of failure with one clear line, and a root that imports no layer."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from cityos.cli import LAYER_COMMANDS, app
from cityos.errors import EXIT_BAD_INPUT, EXIT_NOT_FOUND, EXIT_USAGE

runner = CliRunner()


def invoke(*args: str) -> tuple[int, str, str]:
    res = runner.invoke(app, list(args))
    return res.exit_code, res.stdout, res.stderr


def ok(*args: str) -> str:
    code, out, err = invoke(*args)
    assert code == 0, out + err
    return out + err


@pytest.fixture
def home(tmp_path: Path) -> str:
    h = str(tmp_path / "city")
    ok("dataset", "create", "cars", "--field", "speed:float64", "--home", h)
    return h


def _rows(home: str) -> list[dict[str, object]]:
    out = ok("query", "--sql", "SELECT * FROM cars ORDER BY t", "--format", "json", "--home", home)
    rows: list[dict[str, object]] = json.loads(out)
    return rows


# -- 1. cityos load is a front of the ingest FileSource ---------------------------------------
def test_chosen_columns_win_over_columns_named_id_t_x_y(tmp_path: Path, home: str) -> None:
    csv = tmp_path / "gps.csv"
    csv.write_text(
        "id,t,x,y,plate,time,lon,lat,speed\n"
        "1,0,0,0,A,2026-03-02T08:00Z,116.40,39.90,30\n"
        "2,0,0,0,B,2026-03-02T08:01Z,116.41,39.91,40\n"
    )
    code, out, err = invoke(
        "load", "cars", str(csv), "--id", "plate", "--t", "time", "--x", "lon", "--y", "lat",
        "--home", home,
    )  # fmt: skip
    assert code == 0, out + err
    assert "2 rows written" in out
    assert "file column 'id' is not stored: the id comes from 'plate' (--id)" in err
    assert "file column 'x' is not stored" in err
    rows = _rows(home)
    assert [r["id"] for r in rows] == ["A", "B"]
    assert [round(float(str(r["x"])), 4) for r in rows] == [116.40, 116.41]
    assert [r["speed"] for r in rows] == [30.0, 40.0]


def test_semicolon_files_are_detected_and_delimiter_can_be_given(tmp_path: Path, home: str) -> None:
    semi = tmp_path / "semi.csv"
    semi.write_text('id;t;x;y;speed\n"A;1";2026-03-02T08:00Z;116.4;39.9;5\n')
    assert "1 rows written" in ok("load", "cars", str(semi), "--home", home)
    assert _rows(home)[0]["id"] == "A;1"
    pipe = tmp_path / "pipe.txt"
    pipe.write_text("id|t|x|y\nB|2026-03-02T09:00Z|116.4|39.9\n")
    assert "1 rows written" in ok(
        "load", "cars", str(pipe), "--delimiter", "|", "--format", "csv", "--home", home
    )
    code, _, err = invoke("load", "cars", str(pipe), "--delimiter", "||", "--home", home)
    assert code == EXIT_USAGE and "one character" in err


def test_missing_column_error_names_the_users_choice(tmp_path: Path, home: str) -> None:
    csv = tmp_path / "a.csv"
    csv.write_text("plate,time,lon,lat\nA,2026-03-02T08:00Z,116.4,39.9\n")
    code, _, err = invoke(
        "load", "cars", str(csv), "--id", "plate", "--t", "when", "--x", "lon", "--y", "lat",
        "--home", home,
    )  # fmt: skip
    assert code == EXIT_BAD_INPUT
    assert "no column 'when' for the time (--t when)" in err
    assert "'plate', 'time', 'lon', 'lat'" in err
    assert len(err.strip().splitlines()) == 1


@pytest.mark.parametrize("content", ["", "\x00\x01\x02 not a csv \xff\n"])
def test_empty_or_malformed_csv_prints_one_line(tmp_path: Path, home: str, content: str) -> None:
    csv = tmp_path / "bad.csv"
    csv.write_text(content)
    code, out, err = invoke("load", "cars", str(csv), "--home", home)
    assert code == EXIT_BAD_INPUT, out + err
    assert "Traceback" not in out + err
    assert len(err.strip().splitlines()) == 1 and err.startswith("error: ")


def test_bad_rows_go_to_dead_letters_and_the_load_to_lineage(tmp_path: Path, home: str) -> None:
    csv = tmp_path / "a.csv"
    csv.write_text("id,t,x,y\nA,2026-03-02T08:00Z,116.4,39.9\nB,yesterday,116.4,39.9\n")
    code, out, err = invoke("load", "cars", str(csv), "--home", home)
    assert code == 0 and "1 rows written" in out and "1 dead-lettered" in out
    assert "cityos deadletters list --dataset cars" in err
    dead = ok("deadletters", "list", "--dataset", "cars", "--home", home)
    assert "cannot read the time" in dead
    assert f"load:{csv.resolve()}" in ok("ingest", "lineage", "cars", "--home", home)


# -- 5. one exit code per kind of failure, one line, tracebacks only with --debug -------------
@pytest.mark.parametrize(
    "args",
    [
        ["query", "nosuch"],
        ["dataset", "describe", "nosuch"],
        ["analytics", "stays", "nosuch"],
        ["analytics", "flows", "nosuch"],
        ["dataset", "drop", "nosuch", "--yes"],
    ],
)
def test_unknown_dataset_is_one_line_and_the_same_code_everywhere(
    home: str, args: list[str]
) -> None:
    code, out, err = invoke(*args, "--home", home)
    assert code == EXIT_NOT_FOUND, out + err
    assert err.strip().splitlines() == [err.strip()] and "unknown dataset 'nosuch'" in err
    assert "Traceback" not in out + err


def test_debug_shows_the_traceback(home: str) -> None:
    res = runner.invoke(app, ["--debug", "query", "nosuch", "--home", home])
    assert res.exit_code != 0 and res.exception is not None
    assert type(res.exception).__name__ == "DatasetNotFound"


def test_bad_option_values_are_usage_errors(home: str) -> None:
    code, _, err = invoke("query", "cars", "--knn", "1,2", "--home", home)
    assert code == EXIT_USAGE and "X,Y,K" in err
    code, _, err = invoke("dataset", "create", "d2", "--model", "nosuch", "--home", home)
    assert code == EXIT_USAGE and "nosuch" in err


# -- 6. a lazy root: --help imports no layer --------------------------------------------------
_PROBE = """
import sys
from typer.testing import CliRunner
from cityos.cli import app
res = CliRunner().invoke(app, ["--help"])
assert res.exit_code == 0, res.output
heavy = sorted(m for m in sys.modules if m.split(".")[0] in ("fastapi", "torch", "pyspark",
    "pandas", "pyarrow", "duckdb") or m.startswith(("cityos.ingest", "cityos.access",
    "cityos.server", "cityos.analytics", "cityos.store")))
print(repr(heavy))
print(res.output)
"""


def test_help_lists_every_layer_without_importing_any() -> None:
    out = subprocess.run(
        [sys.executable, "-c", _PROBE], capture_output=True, text=True, check=True
    ).stdout
    first, _, helptext = out.partition("\n")
    assert first == "[]"
    for name, (_, help_line) in LAYER_COMMANDS.items():
        assert name in helptext and help_line[:30] in helptext


@pytest.mark.parametrize("name", sorted(LAYER_COMMANDS))
def test_every_registered_layer_command_loads_when_run(name: str) -> None:
    code, out, err = invoke(name, "--help")
    assert code == 0, out + err
    assert "Usage:" in out

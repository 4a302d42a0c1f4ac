"""The project's own checks are part of the suite: docstring examples run as doctests,
mypy is strict with exceptions only for untyped dependencies."""

from __future__ import annotations

import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CONFIG = tomllib.loads((ROOT / "pyproject.toml").read_text())


def test_doctests_of_the_package_and_docs_are_collected() -> None:
    ini = CONFIG["tool"]["pytest"]["ini_options"]
    assert "--doctest-modules" in ini["addopts"] and "src/cityos" in ini["testpaths"]
    assert "--doctest-glob='*.md'" in ini["addopts"] and "docs" in ini["testpaths"]


def test_geo_examples_show_the_values_the_code_computes() -> None:
    """The two examples that were wrong (checked against independent formulas)."""
    import math

    from cityos.geo.crs import transform_xy
    from cityos.geo.distance import haversine

    x, _ = transform_xy(116.4, 39.9, "EPSG:4326", "EPSG:3857")
    assert round(float(x)) == round(6378137 * math.radians(116.4)) == 12957589
    d = float(haversine(116.3, 39.9, 116.4, 39.9))
    assert round(d) == 8530
    assert "12957589" in (ROOT / "src/cityos/geo/crs.py").read_text()
    assert "    8530\n" in (ROOT / "src/cityos/geo/distance.py").read_text()


def test_mypy_is_strict_without_global_weakening() -> None:
    mypy = CONFIG["tool"]["mypy"]
    assert mypy["strict"] is True
    for weakening in ("ignore_missing_imports", "warn_unused_ignores", "disallow_untyped_defs"):
        assert weakening not in mypy, f"global {weakening} weakens --strict"
    for o in mypy.get("overrides", []):
        assert set(o) <= {"module", "ignore_missing_imports"}, o


@pytest.mark.slow
def test_mypy_strict_is_clean(tmp_path: Path) -> None:
    if shutil.which("mypy") is None and not (Path(sys.executable).parent / "mypy").exists():
        pytest.fail("mypy is not installed (dev extra)")
    res = subprocess.run(
        [sys.executable, "-m", "mypy", "--cache-dir", str(tmp_path), "src/cityos"],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert res.returncode == 0, res.stdout[-4000:]


def test_setup_installs_the_hashed_lock_of_the_whole_tree() -> None:
    import re

    lock = (ROOT / "requirements.lock").read_text()
    pinned = {
        m.group(1).lower().replace("_", "-")
        for m in re.finditer(r"^([A-Za-z0-9_.\-]+)==\S+ \\$", lock, re.M)
    }
    project = CONFIG["project"]
    wanted = list(project["dependencies"])
    for extra in ("postgres", "spark", "server", "mqtt", "files", "dev"):
        wanted += project["optional-dependencies"][extra]
    for req in wanted:
        name = re.split(r"[<>=\[; ]", req, maxsplit=1)[0].lower().replace("_", "-")
        assert name in pinned, f"{name} is not in requirements.lock (run scripts/lock.sh)"
    entries = re.split(r"\n(?=[A-Za-z0-9])", lock.strip())
    assert all("--hash=sha256:" in e for e in entries if "==" in e)
    assert "torch" not in pinned  # never in the base lock (a CUDA build would follow)
    setup = (ROOT / "scripts" / "setup.sh").read_text()
    assert "--require-hashes --no-deps -r requirements.lock" in setup
    assert "--no-deps -e ." in setup
    assert "--generate-hashes" in (ROOT / "scripts" / "lock.sh").read_text()

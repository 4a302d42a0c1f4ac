"""The engine contract on a real Spark cluster: a standalone master and one worker started as
separate processes (``cityos.testing.spark``) on loopback, the contract of
``test_engine_contract.py`` run against them over the same files, and both stopped.

The contract runs in a child pytest process: a process holds one SparkSession, and the
xdist worker running this test may already hold a local-mode one."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from cityos.testing.spark import SparkCluster, SparkUnavailable, java_available, spark_cluster

pytestmark = [pytest.mark.integration, pytest.mark.spark]

CONTRACT = Path(__file__).with_name("test_engine_contract.py")


@pytest.fixture(scope="module")
def cluster() -> Iterator[SparkCluster]:
    """A running cluster; in CI a missing Java or PySpark is a failure, not a skip."""
    problem = None if java_available() else "Java is not installed"
    if problem is None:
        try:
            import pyspark  # noqa: F401
        except ImportError:
            problem = "pyspark is not installed"
    if problem is not None:
        if os.environ.get("CI"):
            pytest.fail(f"the Spark cluster test cannot run in CI: {problem}")
        pytest.skip(problem)
    try:
        with spark_cluster(cores=2, memory="2g") as c:
            yield c
    except SparkUnavailable as exc:
        pytest.fail(f"the Spark cluster did not start: {exc}")


def test_cluster_processes(cluster: SparkCluster) -> None:
    """Master and worker are separate live processes, and the worker has registered."""
    assert cluster.master.pid != cluster.worker.pid
    assert cluster.master.poll() is None and cluster.worker.poll() is None
    assert cluster.master_url.startswith("spark://127.0.0.1:")
    assert cluster.alive_workers() == 1
    (w,) = cluster.status()["workers"]
    assert w["host"] == "127.0.0.1" and w["cores"] == cluster.cores


def test_engine_contract_on_cluster(cluster: SparkCluster, tmp_path: Path) -> None:
    before = {a["id"] for a in cluster.applications()}
    env = {
        **os.environ,
        "CITYOS_SPARK_MASTER": cluster.master_url,
        "SPARK_LOCAL_IP": "127.0.0.1",
        # a skip inside the child (no Java, no PySpark) must fail, as in CI
        "CI": os.environ.get("CI") or "true",
        "PYTHONPATH": cluster.env["PYTHONPATH"],
    }
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            str(CONTRACT),
            "-m",
            "spark",
            "-n",
            "0",
            "-p",
            "no:cacheprovider",
            "-q",
            "-rfEs",
            "--basetemp",
            str(tmp_path / "contract"),
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=1800,
    )
    tail = (proc.stdout + proc.stderr)[-6000:]
    assert proc.returncode == 0, tail
    summary = proc.stdout.strip().splitlines()[-1]
    assert "passed" in summary and "skipped" not in summary and "failed" not in summary, summary
    # the contract really ran on this cluster: one new application with executors on it
    new = [a for a in cluster.applications() if a["id"] not in before]
    assert [a["name"] for a in new] == ["cityos"], new
    assert new[0]["cores"] >= 1, new


def test_cluster_stops(tmp_path: Path) -> None:
    """Leaving the context stops the master and the worker."""
    if not java_available():
        if os.environ.get("CI"):
            pytest.fail("the Spark cluster test cannot run in CI: Java is not installed")
        pytest.skip("Java is not installed")
    with spark_cluster(cores=1, memory="512m") as c:
        procs = (c.master, c.worker)
        assert c.alive_workers() == 1
    assert all(p.poll() is not None for p in procs)

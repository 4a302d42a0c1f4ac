"""A throwaway standalone Spark cluster for tests and benchmarks.

:func:`spark_cluster` starts a Spark master and one worker as two separate JVM processes from
the installed PySpark distribution (``pyspark/bin/spark-class``), bound to 127.0.0.1 on free
ports, waits until the worker has registered, yields a :class:`SparkCluster` (its
``master_url`` goes into ``CITYOS_SPARK_MASTER`` or ``Settings(spark_master=...)``) and stops
both processes (and the executors they started) at exit. Nothing is downloaded: the jars ship
with PySpark; Java 17+ must be installed.

Examples
--------
>>> from cityos.testing.spark import SparkUnavailable, spark_cluster
>>> issubclass(SparkUnavailable, RuntimeError)
True
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cityos.testing._reaper import Reaper

__all__ = ["SparkCluster", "SparkUnavailable", "find_spark_home", "spark_cluster"]


class SparkUnavailable(RuntimeError):
    """PySpark or Java is missing, or the cluster would not start."""


def find_spark_home() -> Path:
    """The Spark distribution inside the installed PySpark package (``bin/spark-class``,
    ``jars/``), or ``SPARK_HOME`` when set.

    Raises
    ------
    SparkUnavailable
        When neither holds ``bin/spark-class``.
    """
    candidates = [Path(os.environ["SPARK_HOME"])] if os.environ.get("SPARK_HOME") else []
    try:
        import pyspark

        candidates.append(Path(pyspark.__file__).parent)
    except ImportError:
        pass
    for c in candidates:
        if (c / "bin" / "spark-class").exists() and (c / "jars").is_dir():
            return c
    raise SparkUnavailable(
        "no Spark distribution found: install PySpark (pip install pyspark) or set SPARK_HOME "
        "to a folder with bin/spark-class and jars/"
    )


def java_available() -> bool:
    """Whether a Java runtime can be found (``JAVA_HOME`` or ``java`` on ``PATH``)."""
    home = os.environ.get("JAVA_HOME")
    return bool(home and (Path(home) / "bin" / "java").exists()) or shutil.which("java") is not None


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class SparkCluster:
    """A running standalone cluster: master URL, the web UI port of the master (its JSON
    status at ``/json/``), and the two processes."""

    master_url: str
    master_ui_port: int
    master: subprocess.Popen[bytes]
    worker: subprocess.Popen[bytes]
    log_dir: Path
    cores: int
    env: dict[str, str] = field(default_factory=dict)

    def status(self) -> dict[str, Any]:
        """The master's status: ``workers``, ``activeapps``, ``completedapps``, ...

        Raises
        ------
        SparkUnavailable
            When the master does not answer.
        """
        url = f"http://127.0.0.1:{self.master_ui_port}/json/"
        try:
            with urllib.request.urlopen(url, timeout=5) as r:
                out: dict[str, Any] = json.loads(r.read())
                return out
        except OSError as exc:
            raise SparkUnavailable(f"the Spark master at {url} does not answer: {exc}") from exc

    def alive_workers(self) -> int:
        """Number of workers registered with the master and alive."""
        return sum(1 for w in self.status().get("workers", []) if w.get("state") == "ALIVE")

    def applications(self) -> list[dict[str, Any]]:
        """Applications (running and finished) the master has scheduled."""
        st = self.status()
        return [*st.get("activeapps", []), *st.get("completedapps", [])]

    def logs(self) -> str:
        """The tail of the master's and worker's logs, for error messages."""
        parts = []
        for f in sorted(self.log_dir.glob("*.log")):
            parts.append(f"--- {f.name}\n" + f.read_text(errors="replace")[-3000:])
        return "\n".join(parts)


def _stop(proc: subprocess.Popen[bytes], timeout: float = 20.0) -> None:
    """Stop a process and everything it started (it leads its own process group)."""
    if proc.poll() is not None:
        return
    try:
        os.killpg(proc.pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        with suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(5)


@contextmanager
def spark_cluster(
    *, cores: int = 2, memory: str = "2g", timeout_s: float = 120.0
) -> Iterator[SparkCluster]:
    """Start a standalone Spark master and one worker on loopback; stop both at exit.

    Parameters
    ----------
    cores, memory:
        What the worker offers to applications (``--cores``, ``--memory``).
    timeout_s:
        How long to wait for the master to answer and the worker to register.

    Raises
    ------
    SparkUnavailable
        When PySpark or Java is missing, or the cluster does not come up in time (the
        message carries the tail of the processes' logs).
    """
    spark_home = find_spark_home()
    if not java_available():
        raise SparkUnavailable("a Spark cluster needs Java 17+ (java on PATH or JAVA_HOME)")
    import cityos

    tmp = Path(tempfile.mkdtemp(prefix="cityos-spark-"))
    log_dir = tmp / "logs"
    log_dir.mkdir()
    src = str(Path(cityos.__file__).resolve().parent.parent)
    env = dict(os.environ)
    env.update(
        {
            "SPARK_HOME": str(spark_home),
            "SPARK_LOCAL_IP": "127.0.0.1",
            "SPARK_LOCAL_DIRS": str(tmp / "local"),
            "SPARK_WORKER_DIR": str(tmp / "work"),
            "SPARK_LOG_DIR": str(log_dir),
            # executors start Python workers with the driver's interpreter; they must import
            # this same cityos (a source tree on PYTHONPATH as well as an installed one)
            "PYSPARK_PYTHON": env.get("PYSPARK_PYTHON", sys.executable),
            "PYTHONPATH": os.pathsep.join(p for p in (src, env.get("PYTHONPATH", "")) if p),
        }
    )
    port, ui_port, worker_ui = _free_port(), _free_port(), _free_port()
    master_url = f"spark://127.0.0.1:{port}"
    spark_class = str(spark_home / "bin" / "spark-class")

    def launch(name: str, args: list[str]) -> subprocess.Popen[bytes]:
        log = open(log_dir / f"{name}.log", "wb")  # noqa: SIM115 - owned by the process
        try:
            return subprocess.Popen(
                [spark_class, *args],
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        finally:
            log.close()

    # a SIGKILLed owner runs no finally block: the reaper stops the cluster then
    reaper = Reaper()
    reaper.on_death_remove(tmp)
    master = launch(
        "master",
        [
            "org.apache.spark.deploy.master.Master",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--webui-port",
            str(ui_port),
        ],
    )
    reaper.watch_group(master.pid)
    worker: subprocess.Popen[bytes] | None = None
    cluster: SparkCluster | None = None
    try:
        worker = launch(
            "worker",
            [
                "org.apache.spark.deploy.worker.Worker",
                "--host",
                "127.0.0.1",
                "--webui-port",
                str(worker_ui),
                "--cores",
                str(cores),
                "--memory",
                memory,
                "--work-dir",
                str(tmp / "work"),
                master_url,
            ],
        )
        reaper.watch_group(worker.pid)
        cluster = SparkCluster(master_url, ui_port, master, worker, log_dir, cores, env)
        deadline = time.monotonic() + timeout_s
        while True:
            for p, what in ((master, "master"), (worker, "worker")):
                if p.poll() is not None:
                    raise SparkUnavailable(
                        f"the Spark {what} exited with code {p.returncode}:\n{cluster.logs()}"
                    )
            try:
                if cluster.alive_workers() >= 1:
                    break
            except SparkUnavailable:
                pass
            if time.monotonic() > deadline:
                raise SparkUnavailable(
                    f"no Spark worker registered with {master_url} within {timeout_s:.0f} s:\n"
                    + cluster.logs()
                )
            time.sleep(0.5)
        yield cluster
    finally:
        if worker is not None:
            _stop(worker)
        _stop(master)
        shutil.rmtree(tmp, ignore_errors=True)
        reaper.release()

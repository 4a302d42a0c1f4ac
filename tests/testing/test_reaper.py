"""The test services stop when the process that started them is killed (no orphans)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from cityos.testing._reaper import Reaper


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # a zombie still answers kill(0); it has exited
    try:
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except FileNotFoundError:
        return False


def _wait_gone(pid: int, timeout: float = 30.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not _alive(pid):
            return True
        time.sleep(0.2)
    return False


def _owner(body: str) -> subprocess.Popen[str]:
    """A process that runs ``body`` (which prints one line of pids) and then hangs."""
    code = textwrap.dedent(body) + "\nimport sys, time\nsys.stdout.flush()\ntime.sleep(600)\n"
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))
    return subprocess.Popen(
        [sys.executable, "-c", code], stdout=subprocess.PIPE, text=True, env=env
    )


def test_killed_owner_takes_its_processes_commands_and_folders_along(tmp_path: Path) -> None:
    marker, folder = tmp_path / "ran", tmp_path / "scratch"
    folder.mkdir()
    owner = _owner(
        f"""
        import subprocess, sys
        from cityos.testing._reaper import Reaper
        r = Reaper()
        # its own session, like the Spark daemons: a kill of the owner alone leaves it running
        child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"],
                                 start_new_session=True)
        r.watch_group(child.pid)
        r.on_death_run(["touch", {str(marker)!r}])
        r.on_death_remove({str(folder)!r})
        print(child.pid)
        """
    )
    assert owner.stdout is not None
    child = int(owner.stdout.readline())
    assert _alive(child)
    owner.send_signal(signal.SIGKILL)
    owner.wait()
    assert _wait_gone(child), "the watched process outlived its killed owner"
    deadline = time.monotonic() + 10
    while folder.exists() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert marker.exists() and not folder.exists()


def test_release_leaves_everything_alone(tmp_path: Path) -> None:
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
    try:
        with Reaper() as r:
            r.watch_pid(child.pid)
            r.on_death_remove(tmp_path)
        time.sleep(0.5)
        assert child.poll() is None and tmp_path.exists()
    finally:
        child.kill()
        child.wait()


def test_unwatched_pid_is_never_signalled() -> None:
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
    owner = _owner(
        f"""
        from cityos.testing._reaper import Reaper
        r = Reaper()
        r.watch_pid({child.pid})
        r.unwatch_pid({child.pid})
        print("ready")
        """
    )
    try:
        assert owner.stdout is not None and owner.stdout.readline().strip() == "ready"
        owner.send_signal(signal.SIGKILL)
        owner.wait()
        time.sleep(1.0)
        assert child.poll() is None
    finally:
        child.kill()
        child.wait()


@pytest.mark.integration
def test_mosquitto_broker_stops_when_its_owner_is_killed() -> None:
    from cityos.testing.mosquitto import find_mosquitto

    find_mosquitto()  # raises with a clear message when the binary is missing
    owner = _owner(
        """
        from cityos.testing.mosquitto import mosquitto_broker
        ctx = mosquitto_broker()
        b = ctx.__enter__()
        print(b.proc.pid)
        """
    )
    assert owner.stdout is not None
    pid = int(owner.stdout.readline())
    assert _alive(pid)
    owner.send_signal(signal.SIGKILL)
    owner.wait()
    assert _wait_gone(pid), "mosquitto outlived its killed owner"


@pytest.mark.integration
def test_postgres_server_stops_when_its_owner_is_killed() -> None:
    owner = _owner(
        """
        from pathlib import Path
        from cityos.testing import postgres
        ctx = postgres.postgres_server()
        url = ctx.__enter__()
        import glob, tempfile
        from sqlalchemy.engine import make_url
        port = str(make_url(url).port)
        # postmaster.pid: pid, data folder, start time, port, ...
        for f in glob.glob(tempfile.gettempdir() + "/cityos-pg-*/data/postmaster.pid"):
            lines = Path(f).read_text().splitlines()
            if lines[3].strip() == port:
                print(lines[0].strip())
        """
    )
    assert owner.stdout is not None
    pid = int(owner.stdout.readline())
    assert _alive(pid)
    owner.send_signal(signal.SIGKILL)
    owner.wait()
    assert _wait_gone(pid), "the PostgreSQL postmaster outlived its killed owner"

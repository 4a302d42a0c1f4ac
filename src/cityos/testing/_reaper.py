"""A dead man's switch for the services that :mod:`cityos.testing` starts.

A test server (PostgreSQL, Mosquitto, a Spark master and worker) is stopped by the context
manager that started it, but a process killed with SIGKILL runs no ``finally`` block, and
servers that lead their own session survive it: orphans that hold ports and memory until the
machine restarts. :class:`Reaper` starts a small watchdog process in its own session that
holds the read end of a pipe whose write end only the starting process has. When that process
ends in any way, the pipe reaches end-of-file and the watchdog stops what it was told to: it
runs the given stop commands, sends SIGTERM to the given process groups and pids, waits, then
sends SIGKILL and removes the given folders. :meth:`Reaper.release` (the normal exit, after the
context manager stopped its servers itself) tells the watchdog to leave without doing anything.

Examples
--------
>>> import subprocess, sys
>>> child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
>>> with Reaper() as r:
...     r.watch_pid(child.pid)
>>> child.poll() is None  # released: the watchdog left the child alone
True
>>> child.kill(); _ = child.wait()
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from types import TracebackType

__all__ = ["Reaper"]

# The watchdog: stdin lines are JSON commands; "release" ends it quietly, end-of-file (the
# owner died) makes it stop everything registered. It imports nothing from cityos, so it runs
# whatever state the owner's interpreter was in.
_WATCHDOG = r"""
import json, os, shutil, signal, subprocess, sys, time
groups, pids, cmds, dirs = [], [], [], []
for line in sys.stdin:
    msg = json.loads(line)
    kind = msg["kind"]
    if kind == "release":
        sys.exit(0)
    if kind == "unpid":
        pids[:] = [p for p in pids if p != msg["value"]]
        continue
    {"group": groups, "pid": pids, "cmd": cmds, "dir": dirs}[kind].append(msg["value"])
for cmd in cmds:
    try:
        subprocess.run(cmd, timeout=30, capture_output=True, check=False)
    except Exception:
        pass
def send(sig):
    alive = False
    for g in groups:
        try:
            os.killpg(g, sig); alive = True
        except (ProcessLookupError, PermissionError):
            pass
    for p in pids:
        try:
            os.kill(p, sig); alive = True
        except (ProcessLookupError, PermissionError):
            pass
    return alive
if send(signal.SIGTERM):
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and send(0):
        time.sleep(0.2)
    send(signal.SIGKILL)
for d in dirs:
    shutil.rmtree(d, ignore_errors=True)
"""


class Reaper:
    """Stops registered processes if the process that made this object dies first.

    Register with :meth:`watch_group`, :meth:`watch_pid`, :meth:`on_death_run` and
    :meth:`on_death_remove`; call :meth:`release` (or leave the ``with`` block) once the
    owner has stopped them itself.
    """

    def __init__(self) -> None:
        self._proc: subprocess.Popen[str] | None = subprocess.Popen(
            [sys.executable, "-c", _WATCHDOG],
            stdin=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            text=True,
            # its own session: a kill of the owner's process group must not take it along
            start_new_session=True,
        )

    def _send(self, kind: str, value: object) -> None:
        if self._proc is None or self._proc.stdin is None:
            raise RuntimeError("this Reaper was released")
        self._proc.stdin.write(json.dumps({"kind": kind, "value": value}) + "\n")
        self._proc.stdin.flush()

    def watch_group(self, pgid: int) -> None:
        """Signal the process group ``pgid`` (SIGTERM, then SIGKILL) if the owner dies."""
        self._send("group", int(pgid))

    def watch_pid(self, pid: int) -> None:
        """Signal the process ``pid`` (SIGTERM, then SIGKILL) if the owner dies."""
        self._send("pid", int(pid))

    def unwatch_pid(self, pid: int) -> None:
        """Forget ``pid``: the owner stopped it (so a later process that reuses the number is
        never signalled)."""
        self._send("unpid", int(pid))

    def on_death_run(self, cmd: list[str]) -> None:
        """Run ``cmd`` first (a server's own stop command) if the owner dies."""
        self._send("cmd", [str(c) for c in cmd])

    def on_death_remove(self, folder: str | os.PathLike[str]) -> None:
        """Remove ``folder`` last if the owner dies."""
        self._send("dir", str(Path(folder)))

    def release(self) -> None:
        """The owner stopped everything itself: end the watchdog without acting."""
        proc, self._proc = self._proc, None
        if proc is None:
            return
        try:
            if proc.stdin is not None:
                proc.stdin.write(json.dumps({"kind": "release", "value": None}) + "\n")
                proc.stdin.close()
            proc.wait(10)
        except (BrokenPipeError, subprocess.TimeoutExpired):
            proc.kill()
            proc.wait()

    def __enter__(self) -> Reaper:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.release()

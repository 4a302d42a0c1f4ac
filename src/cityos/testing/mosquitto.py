"""A throwaway Mosquitto broker for tests and benchmarks.

:func:`mosquitto_broker` starts ``mosquitto -c <conf>`` on 127.0.0.1 on a free port with a
temporary config and persistence folder, yields a handle (port, restart, stop) and removes
everything at exit.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from cityos.testing._reaper import Reaper

__all__ = ["MOSQUITTO", "Broker", "MosquittoUnavailable", "find_mosquitto", "mosquitto_broker"]

#: Where Debian/Ubuntu's ``apt-get install mosquitto`` puts the broker.
MOSQUITTO = "/usr/sbin/mosquitto"


class MosquittoUnavailable(RuntimeError):
    """The mosquitto binary is missing or the broker would not start."""


def find_mosquitto() -> Path:
    """Path of the mosquitto binary (``CITYOS_MOSQUITTO``, /usr/sbin, then PATH).

    Raises
    ------
    MosquittoUnavailable
        When it is not installed (``apt-get install -y mosquitto``).
    """
    for c in (os.environ.get("CITYOS_MOSQUITTO"), MOSQUITTO, shutil.which("mosquitto")):
        if c and Path(c).is_file():
            return Path(c)
    raise MosquittoUnavailable(
        "mosquitto not found; install it with `apt-get install -y mosquitto` "
        "or set CITYOS_MOSQUITTO to the binary"
    )


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Broker:
    """A running broker: ``host``, ``port``; :meth:`restart` keeps the port and the persisted
    sessions and messages (a clean shutdown saves them)."""

    def __init__(self, binary: Path, folder: Path, port: int, reaper: Reaper | None = None) -> None:
        self.binary = binary
        self._reaper = reaper
        self.folder = folder
        self.host = "127.0.0.1"
        self.port = port
        self.conf = folder / "mosquitto.conf"
        self.log = folder / "mosquitto.log"
        self.conf.write_text(
            f"listener {port} 127.0.0.1\n"
            "allow_anonymous true\n"
            "persistence true\n"
            f"persistence_location {folder}/\n"
            "autosave_interval 1\n"
            # unacknowledged QoS 1 messages in flight per client: the ingest acknowledges a whole
            # batch at once, so the default of 20 would throttle it
            "max_inflight_messages 0\n"
            "max_queued_messages 0\n"
            "max_queued_bytes 0\n"
            "persistent_client_expiration 1h\n"
            f"log_dest file {self.log}\n"
            # as root, mosquitto would switch to the `mosquitto` user, which cannot write the
            # temp folder; a throwaway test broker stays as the invoking user
            + ("user root\n" if hasattr(os, "geteuid") and os.geteuid() == 0 else "")
        )
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout_s: float = 10.0) -> None:
        self.proc = subprocess.Popen(
            [str(self.binary), "-c", str(self.conf)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        if self._reaper is not None:
            self._reaper.watch_pid(self.proc.pid)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                err = self.proc.stderr.read().decode() if self.proc.stderr else ""
                log = self.log.read_text() if self.log.exists() else ""
                raise MosquittoUnavailable(
                    f"mosquitto exited with {self.proc.returncode}: {err}{log}"
                )
            try:
                with socket.create_connection((self.host, self.port), timeout=0.2):
                    return
            except OSError:
                time.sleep(0.05)
        self.stop()
        raise MosquittoUnavailable(
            f"mosquitto did not listen on port {self.port} within {timeout_s} s"
        )

    def stop(self) -> None:
        p, self.proc = self.proc, None
        if p is None:
            return
        if p.poll() is None:
            p.terminate()  # SIGTERM: mosquitto saves its persistence file and exits
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        if p.stderr is not None:
            p.stderr.close()
        if self._reaper is not None:
            self._reaper.unwatch_pid(p.pid)

    def restart(self) -> None:
        self.stop()
        self.start()


@contextmanager
def mosquitto_broker(port: int | None = None) -> Iterator[Broker]:
    """Start a private broker on 127.0.0.1 and stop it at exit.

    Examples
    --------
    >>> with mosquitto_broker() as b:  # doctest: +SKIP
    ...     print(b.port)
    """
    binary = find_mosquitto()
    folder = Path(tempfile.mkdtemp(prefix="cityos-mosquitto-"))
    reaper = Reaper()  # stops the broker if this process is killed before the finally block
    reaper.on_death_remove(folder)
    try:
        os.chmod(folder, 0o755)
        broker = Broker(binary, folder, port or _free_port(), reaper)
        broker.start()
        try:
            yield broker
        finally:
            broker.stop()
    finally:
        shutil.rmtree(folder, ignore_errors=True)
        reaper.release()

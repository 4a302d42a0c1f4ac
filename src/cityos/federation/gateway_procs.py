"""Run several parties' gateways as separate processes on loopback (``cityos gateway serve``),
for integration tests, the demo's Share chapter and the benchmark.

>>> free_ports(2)[0] > 0
True
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

from cityos.federation._transport import GATEWAY_FILE
from cityos.federation.gateway_errors import FederationError

__all__ = ["GatewayProcess", "free_ports", "gateway_processes"]


def free_ports(n: int) -> list[int]:
    """``n`` distinct free TCP ports on 127.0.0.1 (free when asked)."""
    socks = []
    try:
        for _ in range(n):
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [int(s.getsockname()[1]) for s in socks]
    finally:
        for s in socks:
            s.close()


@dataclass
class GatewayProcess:
    """One party's gateway process."""

    party: str
    home: Path
    url: str
    proc: subprocess.Popen[bytes]
    log: Path

    def stop(self, timeout: float = 10.0) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout)

    def kill(self) -> None:
        """Stop the process abruptly (a party dropping out)."""
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)


def _start(
    party: str,
    home: Path,
    certs: Path,
    port: int,
    peers: Mapping[str, str],
    extra: list[str],
    env: Mapping[str, str] | None,
) -> GatewayProcess:
    home.mkdir(parents=True, exist_ok=True)
    addr = home / GATEWAY_FILE
    with contextlib.suppress(FileNotFoundError):
        addr.unlink()
    cmd = [
        sys.executable,
        "-m",
        "cityos.cli",
        "gateway",
        "serve",
        "--party",
        party,
        "--home",
        str(home),
        "--certs",
        str(certs),
        "--port",
        str(port),
        *extra,
    ]
    for name, url in peers.items():
        cmd += ["--peer", f"{name}={url}"]
    log = home / "federation" / "gateway.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    child_env = {**os.environ, **(env or {})}
    child_env["PYTHONPATH"] = os.pathsep.join(
        p for p in [str(Path(__file__).resolve().parents[2]), child_env.get("PYTHONPATH", "")] if p
    )
    with open(log, "wb") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=child_env)
    return GatewayProcess(party, home, f"https://127.0.0.1:{port}", proc, log)


def _wait_ready(gp: GatewayProcess, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    addr = gp.home / GATEWAY_FILE
    while time.monotonic() < deadline:
        if gp.proc.poll() is not None:
            raise FederationError(
                f"the gateway of {gp.party!r} exited with {gp.proc.returncode}: "
                f"{gp.log.read_text(errors='replace')[-2000:]}"
            )
        if addr.is_file():
            try:
                with socket.create_connection(("127.0.0.1", int(gp.url.rsplit(":", 1)[1])), 0.5):
                    return
            except OSError:
                pass
        time.sleep(0.05)
    raise FederationError(f"the gateway of {gp.party!r} did not start within {timeout} s")


def restart(
    gp: GatewayProcess,
    certs: Path,
    peers: Mapping[str, str],
    timeout: float = 60.0,
    extra: list[str] | None = None,
) -> GatewayProcess:
    """Start ``gp``'s party again on the same home and port (after :meth:`kill`)."""
    new = _start(gp.party, gp.home, certs, int(gp.url.rsplit(":", 1)[1]), peers, extra or [], None)
    _wait_ready(new, timeout)
    return new


@contextlib.contextmanager
def gateway_processes(
    certs: str | Path,
    homes: Mapping[str, str | Path],
    *,
    timeout: float = 60.0,
    extra: list[str] | None = None,
    env: Mapping[str, str] | None = None,
) -> Iterator[dict[str, GatewayProcess]]:
    """Start one ``cityos gateway serve`` process per party (``party -> home``), each knowing
    the others' addresses; stop them all on exit."""
    ports = dict(zip(homes, free_ports(len(homes)), strict=True))
    urls = {p: f"https://127.0.0.1:{port}" for p, port in ports.items()}
    procs: dict[str, GatewayProcess] = {}
    try:
        for party, home in homes.items():
            peers = {q: u for q, u in urls.items() if q != party}
            procs[party] = _start(
                party, Path(home), Path(certs), ports[party], peers, list(extra or []), env
            )
        for gp in procs.values():
            _wait_ready(gp, timeout)
        yield procs
    finally:
        for gp in procs.values():
            gp.stop()


def read_address(home: str | Path) -> dict[str, str]:
    """What a serving gateway wrote about itself in ``home``."""
    out: dict[str, str] = json.loads((Path(home) / GATEWAY_FILE).read_text())
    return out

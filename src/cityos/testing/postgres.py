"""A throwaway PostgreSQL cluster for tests and benchmarks.

:func:`postgres_server` starts a private cluster on 127.0.0.1 (free port, temp dir, trust
auth), yields its SQLAlchemy URL and removes everything at exit. ``CITYOS_TEST_PG_URL``
short-circuits it to an existing server.
"""

from __future__ import annotations

import os
import pwd
import shlex
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from cityos.testing._reaper import Reaper

__all__ = ["PG_URL_ENV", "PostgresUnavailable", "find_pg_bin", "fresh_database", "postgres_server"]

#: Environment variable naming an existing server to use instead of starting one.
PG_URL_ENV = "CITYOS_TEST_PG_URL"

_SEARCH = ("/usr/lib/postgresql/*/bin", "/usr/local/pgsql/bin", "/opt/homebrew/bin", "/usr/bin")


class PostgresUnavailable(RuntimeError):
    """PostgreSQL binaries are missing or the cluster would not start."""


def find_pg_bin() -> Path:
    """Directory holding ``initdb`` and ``pg_ctl`` (newest version first).

    Raises
    ------
    PostgresUnavailable
        When no PostgreSQL server binaries are installed.
    """
    env = os.environ.get("CITYOS_PG_BIN")
    candidates: list[Path] = [Path(env)] if env else []
    for pattern in _SEARCH:
        root = Path(pattern.split("*")[0])
        if "*" in pattern and root.is_dir():
            candidates += sorted(root.glob(pattern[len(str(root)) + 1 :]), reverse=True)
        else:
            candidates.append(Path(pattern))
    found = shutil.which("initdb")
    if found:
        candidates.append(Path(found).parent)
    for c in candidates:
        if (c / "initdb").exists() and (c / "pg_ctl").exists():
            return c
    raise PostgresUnavailable(
        "PostgreSQL server binaries (initdb, pg_ctl) not found; install PostgreSQL or set "
        f"{PG_URL_ENV} to an existing server's URL"
    )


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _runner() -> tuple[list[str], int | None, int | None]:
    """Prefix that runs a command as a non-root user: initdb refuses to run as root."""
    if os.geteuid() != 0:
        return [], None, None
    try:
        pw = pwd.getpwnam("postgres")
    except KeyError as exc:
        raise PostgresUnavailable(
            "running as root and no `postgres` user exists to own the cluster"
        ) from exc
    runuser = shutil.which("runuser")
    prefix = [runuser, "-u", "postgres", "--"] if runuser else ["su", "postgres", "-c"]
    return prefix, pw.pw_uid, pw.pw_gid


def _run(prefix: list[str], args: list[str]) -> subprocess.CompletedProcess[str]:
    # `su -c` takes one shell string; runuser takes the argument vector as is
    cmd = [*prefix, shlex.join(args)] if prefix[:1] == ["su"] else [*prefix, *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=False)


@contextmanager
def postgres_server(*, database: str = "cityos", timeout: float = 60.0) -> Iterator[str]:
    """Start a private PostgreSQL cluster and yield a ``postgresql+psycopg://`` URL.

    The cluster listens on 127.0.0.1 only, on a free port, with its data and socket in a
    temporary directory; it is stopped and deleted when the block exits. If the
    ``CITYOS_TEST_PG_URL`` environment variable is set, that URL is yielded unchanged and
    nothing is started.

    Parameters
    ----------
    database:
        Name of the database created in the new cluster.
    timeout:
        Seconds to wait for the server to accept connections.

    Raises
    ------
    PostgresUnavailable
        Binaries are missing or the server did not start (the message includes its log).

    Examples
    --------
    >>> from sqlalchemy import create_engine, text
    >>> with postgres_server() as url:  # doctest: +SKIP
    ...     create_engine(url).connect().execute(text("select 1")).scalar()
    1
    """
    existing = os.environ.get(PG_URL_ENV)
    if existing:
        yield existing
        return
    bindir = find_pg_bin()
    prefix, uid, gid = _runner()
    tmp = Path(tempfile.mkdtemp(prefix="cityos-pg-"))
    data, log = tmp / "data", tmp / "server.log"
    port = _free_port()
    started = False
    reaper = Reaper()  # stops the cluster if this process is killed before the finally block
    reaper.on_death_remove(tmp)
    try:
        if uid is not None and gid is not None:
            os.chown(tmp, uid, gid)
        tmp.chmod(0o700)
        res = _run(
            prefix,
            [
                str(bindir / "initdb"),
                "-D",
                str(data),
                "-U",
                "postgres",
                "-A",
                "trust",
                "-E",
                "UTF8",
                "--no-sync",
            ],
        )
        if res.returncode != 0:
            raise PostgresUnavailable(f"initdb failed: {res.stderr.strip() or res.stdout.strip()}")
        opts = f"-h 127.0.0.1 -p {port} -k {tmp} -c fsync=off -c full_page_writes=off"
        res = _run(
            prefix,
            [
                str(bindir / "pg_ctl"),
                "-D",
                str(data),
                "-l",
                str(log),
                "-w",
                "-t",
                str(int(timeout)),
                "-o",
                opts,
                "start",
            ],
        )
        started = True
        stop = [str(bindir / "pg_ctl"), "-D", str(data), "-m", "immediate", "-w", "stop"]
        reaper.on_death_run(
            [*prefix, shlex.join(stop)] if prefix[:1] == ["su"] else [*prefix, *stop]
        )
        pidfile = data / "postmaster.pid"
        if pidfile.exists():
            reaper.watch_pid(int(pidfile.read_text().split()[0]))
        if res.returncode != 0:
            text = log.read_text() if log.exists() else ""
            raise PostgresUnavailable(f"PostgreSQL did not start: {res.stderr.strip()}\n{text}")
        _wait_ready(port, timeout)
        res = _run(
            prefix,
            [
                str(bindir / "createdb"),
                "-h",
                "127.0.0.1",
                "-p",
                str(port),
                "-U",
                "postgres",
                database,
            ],
        )
        if res.returncode != 0:
            raise PostgresUnavailable(f"createdb failed: {res.stderr.strip()}")
        yield f"postgresql+psycopg://postgres@127.0.0.1:{port}/{database}"
    finally:
        if started:
            _run(prefix, [str(bindir / "pg_ctl"), "-D", str(data), "-m", "immediate", "-w", "stop"])
        shutil.rmtree(tmp, ignore_errors=True)
        reaper.release()


def _wait_ready(port: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1.0):
                return
        except OSError:
            time.sleep(0.1)
    raise PostgresUnavailable(f"PostgreSQL on 127.0.0.1:{port} did not accept connections")


def fresh_database(url: str, prefix: str = "t") -> str:
    """Create an empty database next to ``url``'s and return its URL (one per test).

    Examples
    --------
    >>> with postgres_server() as url:  # doctest: +SKIP
    ...     db_url = fresh_database(url)
    """
    import secrets as _secrets

    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url

    base = make_url(url)
    name = f"{prefix}_{_secrets.token_hex(6)}"
    engine = create_engine(base.set(database="postgres"), isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
    finally:
        engine.dispose()
    return base.set(database=name).render_as_string(hide_password=False)

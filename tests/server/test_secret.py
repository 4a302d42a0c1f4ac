"""The token-signing secret: every city has its own, generated on `cityos init` (or first
open) with owner-only permissions; the old built-in development secret and placeholders
are refused outside the test environment; the server says which source it uses."""

from __future__ import annotations

import os
import socket
import stat
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

import cityos
from cityos import access
from cityos.config import BUILTIN_DEV_SECRET, SECRET_FILE, Settings, city_secret
from cityos.db import Database
from cityos.errors import ConfigError

SRC = str(Path(cityos.__file__).resolve().parents[1])


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CITYOS_")}
    env["PYTHONPATH"] = SRC + os.pathsep + env.get("PYTHONPATH", "")
    return env


def _cli(*args: str) -> list[str]:
    return [sys.executable, "-c", "from cityos.cli import app; app()", *args]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_fresh_city_serves_with_its_own_secret_and_refuses_the_builtin_one(
    tmp_path: Path,
) -> None:
    home = tmp_path / "city"
    out = subprocess.run(
        _cli("init", "--home", str(home)), env=_env(), capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stderr
    secret_file = home / SECRET_FILE
    assert stat.S_IMODE(secret_file.stat().st_mode) == 0o600
    secret = secret_file.read_text().strip()
    assert len(secret) >= 32 and secret not in out.stdout + out.stderr
    assert secret != BUILTIN_DEV_SECRET

    db = Database(f"sqlite:///{home / 'cityos.db'}")
    access.configure_password_hashing(time_cost=1, memory_cost_kib=8, parallelism=1)
    access.create_role(db, "admin")
    access.create_user(db, "root", "pass-word-123", roles=["admin"])
    admin = access.principal_for(db, "root")
    db.dispose()

    port = _free_port()
    log = tmp_path / "serve.log"
    with open(log, "w") as fh:
        proc = subprocess.Popen(
            _cli("serve", "--home", str(home), "--port", str(port), "--no-access-log"),
            env=_env(),
            stdout=fh,
            stderr=subprocess.STDOUT,
        )
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"{base}/health", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert proc.poll() is None, log.read_text()
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.2)
        forged = access.issue_token(admin, BUILTIN_DEV_SECRET)
        r = httpx.get(f"{base}/users", headers={"Authorization": f"Bearer {forged}"})
        assert r.status_code == 401, r.text
        real = access.issue_token(admin, secret)
        r = httpx.get(f"{base}/users", headers={"Authorization": f"Bearer {real}"})
        assert r.status_code == 200 and [u["username"] for u in r.json()] == ["root"]
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    text = log.read_text()
    assert f"secret from file {secret_file}" in text, text
    assert secret not in text


def test_first_open_generates_the_secret_once(tmp_path: Path) -> None:
    s = Settings(home=tmp_path)
    first, source = city_secret(s)
    assert source.startswith("generated")
    assert city_secret(Settings(home=tmp_path)) == (first, f"file {tmp_path / SECRET_FILE}")
    other, _ = city_secret(Settings(home=tmp_path / "other"))
    assert other != first


@pytest.mark.parametrize("env", ["production", "Production", "PROD", "development", "staging"])
@pytest.mark.parametrize("secret", [BUILTIN_DEV_SECRET, "changeme", "CHANGEME", "short"])
def test_placeholders_are_refused_outside_test(env: str, secret: str) -> None:
    with pytest.raises(ConfigError, match="placeholder or too short"):
        Settings(environment=env, secret_key=secret)


def test_test_environment_accepts_placeholders_and_names_are_case_insensitive() -> None:
    assert Settings(environment="TEST", secret_key="changeme").environment == "test"
    assert Settings(environment=" Production ", secret_key="x" * 40).environment == "production"
    with pytest.raises(ConfigError, match="unknown"):
        Settings(environment="prodution")


def test_environment_variable_spellings(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CITYOS_ENVIRONMENT", "PRODUCTION")
    monkeypatch.setenv("CITYOS_SECRET_KEY", BUILTIN_DEV_SECRET)
    with pytest.raises(ConfigError):
        Settings()


def test_a_secret_file_others_can_read_is_refused(tmp_path: Path) -> None:
    path = tmp_path / SECRET_FILE
    path.write_text("y" * 48)
    path.chmod(0o644)
    with pytest.raises(ConfigError, match="chmod 600"):
        city_secret(Settings(home=tmp_path))
    path.chmod(0o600)
    assert city_secret(Settings(home=tmp_path))[0] == "y" * 48
    path.write_text(BUILTIN_DEV_SECRET)
    with pytest.raises(ConfigError, match="placeholder"):
        city_secret(Settings(home=tmp_path))

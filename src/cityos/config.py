"""Typed settings for CityOS, read from ``CITYOS_*`` environment variables.

A city lives in one *home* folder: ``cityos.db`` (the relational state, SQLite by default)
and ``data/`` (the Parquet files of every dataset). Production points ``CITYOS_DATABASE_URL``
at PostgreSQL and ``CITYOS_DATA_DIR`` at shared storage.
"""

from __future__ import annotations

import logging
import os
import secrets
import stat
import time
from pathlib import Path

from pydantic import Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from cityos.errors import ConfigError

__all__ = [
    "BUILTIN_DEV_SECRET",
    "ENVIRONMENTS",
    "SECRET_FILE",
    "Settings",
    "city_secret",
    "get_settings",
]

log = logging.getLogger("cityos.config")

#: The development secret older releases signed tokens with when none was configured.
#: It is public (it is in the source), so it is refused like any placeholder.
BUILTIN_DEV_SECRET = "dev-secret-change-me"
_PLACEHOLDERS = {
    "",
    "changeme",
    "change-me",
    "change_me",
    "secret",
    "password",
    "dev-secret",
    "dev-ingest-key",
    BUILTIN_DEV_SECRET,
}
#: Shortest secret accepted outside the test environment (a long random value).
MIN_SECRET_CHARS = 32
#: Environment names (case-insensitive); ``dev``, ``testing`` and ``prod`` are aliases.
ENVIRONMENTS = ("development", "test", "staging", "production")
_ALIASES = {"dev": "development", "testing": "test", "prod": "production"}
#: The city's own secret, generated on ``cityos init`` or first open (mode 0600).
SECRET_FILE = "secret_key"


class Settings(BaseSettings):
    """Settings for one city.

    Examples
    --------
    >>> s = Settings(home="/tmp/mycity")
    >>> s.database_url
    'sqlite:////tmp/mycity/cityos.db'
    """

    model_config = SettingsConfigDict(env_prefix="CITYOS_", extra="ignore")

    home: Path = Field(default_factory=lambda: Path.cwd() / "city")
    database_url: str | None = None
    data_dir: Path | None = None
    environment: str = "development"  # development | test | staging | production
    #: Signs access tokens; by default the city's own random secret in ``home/secret_key``.
    secret_key: str | None = None
    #: Where the city's secret lives (e.g. a file shared by several API workers).
    secret_key_file: Path | None = None
    engine: str = "duckdb"  # default query engine: one registered in cityos.store
    spark_master: str = "local[2]"
    query_timeout_s: float = 60.0  # time budget of every query served over HTTP

    @model_validator(mode="after")
    def _fill_and_check(self) -> Settings:
        self.home = Path(self.home).expanduser().resolve()
        if self.database_url is None:
            self.database_url = f"sqlite:///{self.home / 'cityos.db'}"
        if self.data_dir is None:
            self.data_dir = self.home / "data"
        self.data_dir = Path(self.data_dir).expanduser().resolve()
        env = self.environment.strip().lower()
        env = _ALIASES.get(env, env)
        if env not in ENVIRONMENTS:
            raise ConfigError(
                f"CITYOS_ENVIRONMENT {self.environment!r} is unknown; use one of "
                f"{', '.join(ENVIRONMENTS)} (any case)"
            )
        self.environment = env
        if self.secret_key is not None and env != "test":
            _check_secret(self.secret_key, "CITYOS_SECRET_KEY")
        # engine names live in one place, the store's registry; here only their shape
        if not self.engine.isidentifier():
            raise ConfigError(f"CITYOS_ENGINE must be an engine name, not {self.engine!r}")
        if not self.query_timeout_s > 0:
            raise ConfigError("CITYOS_QUERY_TIMEOUT_S must be a positive number of seconds")
        return self


def _check_secret(value: str, where: str) -> None:
    if value.strip().lower() in _PLACEHOLDERS or len(value) < MIN_SECRET_CHARS:
        raise ConfigError(
            f"{where} is a placeholder or too short (fewer than {MIN_SECRET_CHARS} characters); "
            "unset it to use the city's own generated secret, or set a long random value "
            "(e.g. `python -c 'import secrets; print(secrets.token_urlsafe(48))'`). "
            "Placeholders are accepted only with CITYOS_ENVIRONMENT=test."
        )


def _secret_path(settings: Settings) -> Path:
    return Path(settings.secret_key_file or settings.home / SECRET_FILE).expanduser()


def _read_secret_file(path: Path, settings: Settings) -> str | None:
    try:
        st = path.stat()
    except FileNotFoundError:
        return None
    if os.name == "posix" and st.st_mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise ConfigError(
            f"the secret file {path} can be read by other users (mode "
            f"{stat.S_IMODE(st.st_mode):o}); make it private with `chmod 600 {path}`"
        )
    for _ in range(50):  # a file is never seen half-written (see below), but be patient
        value = path.read_text(encoding="utf-8").strip()
        if value:
            if settings.environment != "test":
                _check_secret(value, f"the secret in {path}")
            return value
        time.sleep(0.02)
    raise ConfigError(f"the secret file {path} is empty; delete it to have a new one generated")


def city_secret(settings: Settings, *, create: bool = True) -> tuple[str, str]:
    """The secret that signs the city's access tokens, and where it came from.

    ``CITYOS_SECRET_KEY`` (or ``secret_key=``) wins; otherwise the city's own secret in
    ``home/secret_key`` (or ``CITYOS_SECRET_KEY_FILE``), generated with 256 random bits and
    mode 0600 the first time it is needed (``cityos init`` or the first open). No built-in
    secret exists: a server never signs with a value anyone else knows.

    Returns
    -------
    (secret, source)
        ``source`` names where the secret came from, for logs; it never contains the secret.

    Raises
    ------
    ConfigError
        The configured secret is a placeholder or too short (outside the test
        environment), or the secret file is readable by other users.

    Examples
    --------
    >>> import tempfile
    >>> s = Settings(home=tempfile.mkdtemp())
    >>> secret, source = city_secret(s)
    >>> len(secret) >= 32, source.startswith("generated")
    (True, True)
    >>> city_secret(s) == (secret, f"file {s.home / 'secret_key'}")
    True
    """
    if settings.secret_key is not None:
        return settings.secret_key, "setting CITYOS_SECRET_KEY"
    path = _secret_path(settings)
    found = _read_secret_file(path, settings)
    if found is not None:
        return found, f"file {path}"
    if not create:
        raise ConfigError(f"the city has no secret yet ({path}); run `cityos init`")
    path.parent.mkdir(parents=True, exist_ok=True)
    value = secrets.token_urlsafe(48)
    # written under a private temporary name, then linked into place: readers never see
    # a partial file, and of two processes opening a new city at once exactly one wins
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(value + "\n")
            fh.flush()
            os.fsync(fh.fileno())
        try:
            os.link(tmp, path)
        except FileExistsError:
            found = _read_secret_file(path, settings)
            assert found is not None
            return found, f"file {path}"
    finally:
        tmp.unlink(missing_ok=True)
    log.info("generated a new secret for the city in %s (mode 0600)", path)
    return value, f"generated file {path}"


def get_settings(**overrides: object) -> Settings:
    """Settings from the environment, with keyword overrides."""
    return Settings(**overrides)  # type: ignore[arg-type]

"""Typed settings for CityOS, read from ``CITYOS_*`` environment variables.

A city lives in one *home* folder: ``cityos.db`` (the relational state, SQLite by default)
and ``data/`` (the Parquet files of every dataset). Production points ``CITYOS_DATABASE_URL``
at PostgreSQL and ``CITYOS_DATA_DIR`` at shared storage.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from cityos.errors import ConfigError

__all__ = ["Settings", "get_settings"]

_PLACEHOLDERS = {"", "changeme", "change-me", "secret", "dev-secret-change-me"}


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
    environment: str = "development"  # development | test | production
    secret_key: str = "dev-secret-change-me"
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
        if self.environment == "production" and self.secret_key in _PLACEHOLDERS:
            raise ConfigError(
                "CITYOS_SECRET_KEY is a placeholder; set a long random value before running "
                "in production (e.g. `python -c 'import secrets; print(secrets.token_urlsafe(48))'`)"
            )
        # engine names live in one place, the store's registry; here only their shape
        if not self.engine.isidentifier():
            raise ConfigError(f"CITYOS_ENGINE must be an engine name, not {self.engine!r}")
        if not self.query_timeout_s > 0:
            raise ConfigError("CITYOS_QUERY_TIMEOUT_S must be a positive number of seconds")
        return self


def get_settings(**overrides: object) -> Settings:
    """Settings from the environment, with keyword overrides."""
    return Settings(**overrides)  # type: ignore[arg-type]

"""Service settings, in one place: environment variables prefixed INDEXLOAN_ or a TOML settings file.

Precedence: explicit arguments > environment > settings file (INDEXLOAN_SETTINGS_FILE, default
./indexloan.toml when present) > defaults. The default database is an embedded SQLite file.
"""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path

from pydantic import Field
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

DEFAULT_DATA_DIR = Path("var")


def _settings_file() -> Path:
    return Path(os.environ.get("INDEXLOAN_SETTINGS_FILE", "indexloan.toml"))


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="INDEXLOAN_", extra="ignore")

    data_dir: Path = Field(DEFAULT_DATA_DIR, description="working directory for the embedded database and reports")
    database_url: str | None = Field(None, description="SQLAlchemy URL; default sqlite:///<data_dir>/indexloan.db")
    quarantine_dir: Path | None = Field(None, description="where ingestion writes rejected rows")
    ingest_chunk_rows: int = Field(200_000, ge=1_000, description="rows validated and written per chunk")
    quote_dates_cached: int = Field(4, ge=1, le=64, description="as-of dates whose population a quoting process "
                                                               "keeps in memory (most recently used)")
    batch_dir: Path | None = Field(None, description="where API batch jobs write results; default <data_dir>/batch")
    batch_throttle_seconds: float = Field(0.0, ge=0, description="pause after each batch partition (to "
                                                                 "interrupt a run in tests)")
    operator: str | None = Field(None, description="who runs training (recorded in the model card); default "
                                                   "the login name")
    debug: bool = Field(False, description="CLI: print the traceback of an unexpected failure")

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (init_settings, env_settings, TomlConfigSettingsSource(settings_cls, toml_file=_settings_file()))

    @property
    def resolved_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite:///{(self.data_dir / 'indexloan.db').as_posix()}"

    @property
    def resolved_quarantine_dir(self) -> Path:
        return self.quarantine_dir or self.data_dir / "quarantine"

    @property
    def resolved_batch_dir(self) -> Path:
        return self.batch_dir or self.data_dir / "batch"


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()

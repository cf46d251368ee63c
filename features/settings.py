"""Service settings, in one place: environment variables prefixed INDEXLOAN_ or a TOML settings file.

Precedence: explicit arguments > environment > settings file (INDEXLOAN_SETTINGS_FILE, default
./indexloan.toml when present) > defaults. The default database is an embedded SQLite file.
"""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path
from typing import Literal

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
    products_dir: Path | None = Field(None, description="a folder of product definitions (new products, "
                                      "overlays) loaded after the packaged ones; a code it defines replaces the "
                                      "packaged definition; a code defined twice in it is an error")
    # --- what-if simulation (issue 12)
    simulation_lgd: float = Field(0.45, gt=0, le=1, description="loss given default of a simulation's expected "
                                  "loss (PD x LGD x limit)")
    # --- dependencies down, clear and bounded (issue 14)
    database_connect_timeout_seconds: float = Field(5.0, gt=0, le=300, description="give up connecting to the "
                                                    "database after this long")
    database_statement_timeout_seconds: float = Field(30.0, gt=0, le=3600, description="a statement (or a "
                                                      "SQLite lock wait) is cut after this long, on the server "
                                                      "and, for PostgreSQL, by the client too (a hung server)")
    database_pool_timeout_seconds: float = Field(5.0, gt=0, le=300, description="wait this long for a pooled "
                                                 "connection before answering 503")
    request_timeout_seconds: float = Field(10.0, gt=0, le=3600, description="a request whose response has not "
                                           "started after this long is answered 503 (Retry-After)")
    retry_after_seconds: int = Field(5, ge=1, le=3600, description="Retry-After of a 503 or 429")
    max_body_bytes: int = Field(64 * 1024, ge=1024, le=64 * 1024 * 1024, description="largest request body, "
                                "counted on the stream (chunked or not)")
    # --- bounded callers: token buckets shared by the worker processes (runtime_dir)
    rate_limit_key_per_second: float = Field(200.0, gt=0, description="requests per second per API key "
                                             "(sustained)")
    rate_limit_key_burst: int = Field(400, ge=1, description="requests per API key in a burst")
    rate_limit_address_per_second: float = Field(400.0, gt=0, description="requests per second per client "
                                                 "address (sustained)")
    rate_limit_address_burst: int = Field(800, ge=1, description="requests per client address in a burst")
    auth_failures_per_minute: float = Field(10.0, gt=0, description="failed authentications per client address "
                                            "per minute before key look-ups from it are answered 429")
    auth_failures_burst: int = Field(20, ge=1, description="failed authentications per address in a burst")
    sqlite_wal: bool = Field(False, description="SQLite store in WAL mode: faster commits (no fsync per commit), "
                             "but its index is memory-mapped, so a store file made immutable or a filesystem "
                             "remounted read-only during a transaction kills the process (SIGBUS). Default: a "
                             "rollback journal (no memory-mapped I/O: such failures are errors, 503)")
    ui_session_minutes: float = Field(480.0, gt=0, le=7 * 24 * 60, description="a console (/ui) sign-in lasts "
                                      "this long (never longer than its API key)")
    runtime_dir: Path | None = Field(None, description="state the worker processes of one service share (rate "
                                     "limits, key revocations); default beside a SQLite store's file, else a "
                                     "folder named after the database in the system's temporary directory")
    product_policy_file: Path | None = Field(None, description="the bank's policy maxima every product definition "
                                             "must respect (fees, subsidies, limits, spreads); default "
                                             "products/policy.yaml")
    holiday_calendar_file: Path | None = Field(None, description="public holidays and make-up working days that "
                                               "turn service promises into dates; default products/calendar.yaml")

    feature_snapshots: bool = Field(True, description="keep each as-of date's assembled features as a Parquet "
                                    "snapshot next to the store, extended when new batches land")
    feature_snapshot_dir: Path | None = Field(None, description="where feature snapshots live; default beside a "
                                              "SQLite store's file, else a folder of the system temporary directory")
    # --- batch jobs bounded (issue 14): quotas, a bounded queue, a concurrency limit, a worker process
    batch_max_running: int = Field(1, ge=1, le=64, description="batch jobs running at once, over every worker "
                                   "process of the store (a run uses every core it is given)")
    batch_max_queued: int = Field(20, ge=1, le=10_000, description="queued batch jobs, all keys together; "
                                  "a request beyond them is answered 503 (Retry-After)")
    batch_max_active_per_key: int = Field(2, ge=1, le=1000, description="queued + running batch jobs per API "
                                          "key; beyond them 429 (Retry-After)")
    batch_max_per_key_per_day: int = Field(20, ge=1, le=100_000, description="batch jobs an API key may start "
                                           "per UTC day; beyond them 429 (Retry-After: until midnight UTC)")
    batch_lease_seconds: float = Field(60.0, ge=2, le=86_400, description="a running job's lease, renewed by "
                                       "its worker every third of it; a job whose lease expired (its worker "
                                       "died) is taken over by another worker")
    batch_max_retries: int = Field(2, ge=0, le=100, description="times a job whose lease expired is taken "
                                   "over before it is failed with the reason")
    batch_poll_seconds: float = Field(1.0, gt=0, le=60, description="how often a batch worker looks for work")
    batch_worker: Literal["service", "separate"] = Field("service", description="service: the service starts "
                                                         "one batch worker process per machine when jobs are "
                                                         "waiting (it exits when idle); separate: run "
                                                         "`indexloan batch worker` yourself")
    batch_worker_idle_seconds: float = Field(30.0, ge=0, le=86_400, description="a batch worker started by the "
                                             "service exits after this long without work")
    batch_worker_nice: int = Field(10, ge=0, le=19, description="niceness of a batch worker process, so quotes "
                                   "keep the cores they need while a run takes the rest")
    # --- monitoring (issue 12)
    monitoring_thresholds_file: Path | None = Field(None, description="YAML file of monitoring thresholds per "
                                                    "product, feature and source; default the packaged "
                                                    "api/monitoring/thresholds.yaml")
    monitoring_quote_days: int = Field(30, ge=1, le=3650, description="monitoring: quotes of this many recent "
                                       "days form the current period")
    monitoring_report_seconds: float = Field(300.0, ge=0, le=86_400, description="GET /v1/monitoring: a "
                                             "report is recomputed in the background once older than this")
    monitoring_max_quotes: int = Field(20_000, ge=100, le=10_000_000, description="monitoring: read at most "
                                       "this many of the most recent quotes")

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

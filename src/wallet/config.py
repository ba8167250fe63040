"""Settings: the only place that reads the environment."""

from __future__ import annotations

import ipaddress
import urllib.parse
from pathlib import Path
from typing import Literal

from pydantic import Field, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class ConfigurationError(Exception):
    """A setting is missing or malformed; the message names it in one line."""


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="WALLET_", extra="ignore", frozen=True)

    database_url: str | None = None
    data_dir: Path = Path(".wallet-data")
    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=1, le=65535)
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    idempotency_ttl_hours: int = Field(default=24, ge=24, le=24 * 365)
    # How often each serving process purges expired idempotency keys (with jitter); 0: never.
    idempotency_purge_interval_seconds: int = Field(default=600, ge=0, le=86_400)
    # How often each serving process sweeps expired holds and lots from wallets no posting has
    # touched since they expired (one process at a time; with jitter); 0: never.
    expiry_sweep_seconds: int = Field(default=30, ge=0, le=86_400)
    # Events are kept at least this long (and, once a relay has run, until every relay has
    # published them); each serving process purges older ones with the idempotency keys.
    events_ttl_days: int = Field(default=7, ge=1, le=3650)
    # How often each serving process gives committed events their feed positions (one process at
    # a time): the feed's delay; 0: never (a relay or another process does it).
    events_sequence_interval_ms: int = Field(default=50, ge=0, le=60_000)

    pool_size_min: int = Field(default=4, ge=1, le=200)
    pool_size_max: int = Field(default=16, ge=1, le=200)
    timeout_ms_pool_acquire: int = Field(default=2000, ge=10, le=60_000)
    timeout_ms_statement: int = Field(default=5000, ge=10, le=600_000)
    timeout_ms_lock: int = Field(default=3000, ge=10, le=600_000)
    timeout_ms_connect: int = Field(default=3000, ge=10, le=60_000)
    # A request's line and headers must arrive within this, else 408 (wallet.api.protocol).
    timeout_ms_request_head: int = Field(default=10_000, ge=100, le=600_000)
    # A request's body must arrive within this of its headers, else 408 (wallet.api.protocol).
    timeout_ms_request_body: int = Field(default=10_000, ge=100, le=600_000)
    # A kept-alive connection silent this long after a response is closed (wallet.api.protocol).
    timeout_ms_keep_alive: int = Field(default=5_000, ge=100, le=600_000)
    statement_cache_size: int = Field(default=256, ge=0, le=10_000)
    # Keep API keys in memory, dropped on every change the database announces (api/auth.py).
    # Needs LISTEN, i.e. a session: off behind a transaction-mode pooler.
    api_key_cache: bool = True
    # Group commit (ledger/group_commit.py): posting groups in flight per process, and the most
    # requests one group takes.
    group_commit_in_flight_max: int = Field(default=2, ge=1, le=64)
    group_commit_size_max: int = Field(default=64, ge=1, le=1000)
    # What sits between the service and PostgreSQL. `pgbouncer` (transaction pooling): the pool
    # sends no timeout as a startup parameter (PgBouncer refuses them); the timeouts must be set
    # on the database role, and `wallet serve` refuses to start when they differ (docs/ha.md).
    database_pooler: Literal["none", "pgbouncer"] = "none"
    # Patroni REST API of every node, comma-separated (http://host:8008,...): new connections go
    # to the node that answers GET /primary with 200, and connections to a former primary are
    # closed once another node does. Empty: connect by WALLET_DATABASE_URL alone.
    patroni_urls: str = ""
    patroni_check_interval_ms: int = Field(default=500, ge=50, le=60_000)
    # Peers whose X-Forwarded-For / X-Forwarded-Proto are believed (uvicorn's forwarded_allow_ips):
    # comma-separated addresses or networks, or * (only where no one else can reach the port).
    forwarded_allow_ips: str = "127.0.0.1"
    # Internal, not a user setting: set by `wallet serve --workers N` (N > 1) for the workers;
    # prometheus_client reads the same variable (multiprocess mode).
    prometheus_multiproc_dir: Path | None = Field(default=None, validation_alias="PROMETHEUS_MULTIPROC_DIR")
    # Internal, not a user setting: the API key `wallet serve` makes for the demo UI on the
    # embedded database and hands to its workers; GET /ui/session gives it to the page.
    demo_ui_key: str | None = Field(default=None, repr=False)

    @field_validator("database_url")
    @classmethod
    def _postgresql_url(cls, value: str | None) -> str | None:
        if value is None or value == "":
            return None
        if not value.startswith(("postgresql://", "postgres://")):
            raise ValueError("must be a postgresql:// URL")
        return value

    @field_validator("patroni_urls")
    @classmethod
    def _http_urls(cls, value: str) -> str:
        for item in value.split(",") if value.strip() else []:
            parts = urllib.parse.urlsplit(item.strip())
            if parts.scheme not in ("http", "https") or not parts.hostname or parts.path not in ("", "/"):
                raise ValueError(f"{item.strip()!r} is not an http(s)://host:port URL")
            _ = parts.port  # ValueError on a port that is not a number in range
        return value

    @property
    def patroni_rest_urls(self) -> tuple[str, ...]:
        return tuple(item.strip().rstrip("/") for item in self.patroni_urls.split(",") if item.strip())

    @field_validator("forwarded_allow_ips")
    @classmethod
    def _addresses(cls, value: str) -> str:
        for item in value.split(","):
            if item.strip() != "*":
                ipaddress.ip_network(item.strip(), strict=False)  # ValueError names the bad item
        return value

    @field_validator("log_level", mode="before")
    @classmethod
    def _lower_case(cls, value: object) -> object:
        return value.lower() if isinstance(value, str) else value


def load_settings() -> Settings:
    """Read the settings, turning a bad one into a one-line ConfigurationError naming it."""
    try:
        settings = Settings()
    except ValidationError as error:
        first = error.errors()[0]
        name = "WALLET_" + str(first["loc"][0]).upper() if first["loc"] else "settings"
        raise ConfigurationError(f"{name}: {first['msg']}") from None
    if settings.pool_size_min > settings.pool_size_max:
        raise ConfigurationError("WALLET_POOL_SIZE_MIN: must not exceed WALLET_POOL_SIZE_MAX")
    if settings.database_url is None and settings.patroni_urls.strip():
        raise ConfigurationError("WALLET_PATRONI_URLS: needs WALLET_DATABASE_URL, not the embedded one")
    if settings.database_url is None and settings.database_pooler != "none":
        raise ConfigurationError("WALLET_DATABASE_POOLER: needs WALLET_DATABASE_URL, not the embedded one")
    return settings

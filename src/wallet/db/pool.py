"""The asyncpg connection pool, with every timeout set explicitly.

Its connections are `wallet.db.connection.Connection`s, which never report a commit that
PostgreSQL could not confirm as a success. With WALLET_PATRONI_URLS they go to the node
Patroni names the primary (`wallet.db.patroni`). With WALLET_DATABASE_POOLER=pgbouncer the
timeouts are not sent as startup parameters (PgBouncer refuses them): they are the database
role's settings, which `wallet serve` checks at start (`timeouts_not_in_force`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import asyncpg

from wallet.config import Settings
from wallet.db.connection import Connection
from wallet.db.patroni import PrimaryRouter

# A pooled connection is closed after this long unused (the pool keeps at least
# WALLET_POOL_SIZE_MIN), and replaced after this many queries (asyncpg's default).
CONNECTION_IDLE_SECONDS_MAX = 300.0
CONNECTION_QUERIES_MAX = 50_000
# Startup parameters PgBouncer keeps track of per client (it accepts them in transaction mode).
POOLER_TRACKED_SETTINGS = {"application_name": "wallet", "timezone": "UTC"}


async def _no_reset(connection: asyncpg.Connection) -> None:
    """The service never leaves session state (no SET, LISTEN, advisory or cursor) on a
    connection, so the default reset-on-release round trip is skipped."""


def timeout_settings(settings: Settings) -> dict[str, str]:
    """The PostgreSQL settings the WALLET_TIMEOUT_MS_* values stand for, in milliseconds."""
    return {
        "statement_timeout": str(settings.timeout_ms_statement),
        "lock_timeout": str(settings.timeout_ms_lock),
        "idle_in_transaction_session_timeout": str(settings.timeout_ms_statement * 2),
    }


def server_settings(settings: Settings) -> dict[str, str]:
    if settings.database_pooler == "pgbouncer":
        return dict(POOLER_TRACKED_SETTINGS)
    return {**POOLER_TRACKED_SETTINGS, **timeout_settings(settings)}


if TYPE_CHECKING:
    _Pool = asyncpg.Pool[asyncpg.Record]
else:  # not subscriptable at run time
    _Pool = asyncpg.Pool


class Pool(_Pool):
    """An asyncpg pool that also stops its Patroni router, if it has one, when it closes."""

    router: PrimaryRouter | None = None

    async def close(self) -> None:
        if self.router is not None:
            await self.router.stop_watching()
        await super().close()

    def terminate(self) -> None:
        if self.router is not None:
            self.router.cancel_watching()
        super().terminate()


async def create_pool(settings: Settings, database_url: str) -> asyncpg.Pool:
    options: dict[str, Any] = {}
    router = None
    if settings.patroni_rest_urls:
        timeout_seconds = settings.timeout_ms_connect / 1000
        router = PrimaryRouter(
            settings.patroni_rest_urls, settings.patroni_check_interval_ms / 1000, timeout_seconds
        )
        await router.check()
        options["connect"] = router.connect
    pool = Pool(
        database_url,
        min_size=settings.pool_size_min,
        max_size=settings.pool_size_max,
        max_queries=CONNECTION_QUERIES_MAX,
        max_inactive_connection_lifetime=CONNECTION_IDLE_SECONDS_MAX,
        setup=None,
        init=None,
        reset=_no_reset,
        loop=None,
        connection_class=Connection,
        record_class=asyncpg.Record,
        timeout=settings.timeout_ms_connect / 1000,
        command_timeout=(settings.timeout_ms_statement + 1000) / 1000,
        statement_cache_size=settings.statement_cache_size,
        server_settings=server_settings(settings),
        **options,
    )
    pool.router = router
    await pool
    if router is not None:
        router.start_watching()
    return pool

"""The asyncpg connection pool, with every timeout set explicitly."""

from __future__ import annotations

import asyncpg

from wallet.config import Settings


async def _no_reset(connection: asyncpg.Connection) -> None:
    """The service never leaves session state (no SET, LISTEN, advisory or cursor) on a
    connection, so the default reset-on-release round trip is skipped."""


async def create_pool(settings: Settings, database_url: str) -> asyncpg.Pool:
    pool = await asyncpg.create_pool(
        database_url,
        min_size=settings.pool_size_min,
        max_size=settings.pool_size_max,
        timeout=settings.timeout_ms_connect / 1000,
        command_timeout=(settings.timeout_ms_statement + 1000) / 1000,
        statement_cache_size=settings.statement_cache_size,
        max_inactive_connection_lifetime=300.0,
        reset=_no_reset,
        server_settings={
            "application_name": "wallet",
            "statement_timeout": str(settings.timeout_ms_statement),
            "lock_timeout": str(settings.timeout_ms_lock),
            "idle_in_transaction_session_timeout": str(settings.timeout_ms_statement * 2),
            "timezone": "UTC",
        },
    )
    assert pool is not None
    return pool

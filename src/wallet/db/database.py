"""Where the database is: WALLET_DATABASE_URL, or the embedded PostgreSQL in WALLET_DATA_DIR."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import asyncpg

from wallet.config import Settings
from wallet.db import embedded
from wallet.db.errors import reaching
from wallet.types import Connection


def is_embedded(settings: Settings) -> bool:
    return settings.database_url is None


def start_embedded(settings: Settings) -> embedded.EmbeddedPostgres:
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    return embedded.start(settings.data_dir.resolve())


@asynccontextmanager
async def connect(
    database_url: str, timeout_seconds: float, statement_cache_size: int = 100
) -> AsyncIterator[Connection]:
    """One connection for a command-line task, within WALLET_TIMEOUT_MS_CONNECT (statement cache
    0 behind PgBouncer)."""
    with reaching():
        connection = await asyncpg.connect(
            database_url, timeout=timeout_seconds, statement_cache_size=statement_cache_size
        )
    try:
        yield connection
    finally:
        await connection.close()


async def schema_revision(connection: Connection) -> str | None:
    exists = await connection.fetchval("SELECT to_regclass('alembic_version') IS NOT NULL")
    if not exists:
        return None
    revision = await connection.fetchval("SELECT version_num FROM alembic_version")
    assert revision is None or isinstance(revision, str)
    return revision


async def timeouts_not_in_force(connection: Connection, expected: dict[str, str]) -> list[str]:
    """Which of the `expected` settings (name: value in milliseconds) the session does not have,
    as "name is actual, not expected". Behind PgBouncer the timeouts are the role's settings."""
    rows = await connection.fetch(
        "SELECT name, setting FROM pg_settings WHERE name = ANY($1::text[])", list(expected)
    )
    actual = {row["name"]: row["setting"] for row in rows}
    assert set(actual) == set(expected), actual
    return [
        f"{name} is {actual[name]}, not {value}" for name, value in expected.items() if actual[name] != value
    ]

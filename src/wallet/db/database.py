"""Where the database is: WALLET_DATABASE_URL, or the embedded PostgreSQL in WALLET_DATA_DIR."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import asyncpg

from wallet.config import Settings
from wallet.db import embedded
from wallet.types import Connection

TIMEOUT_SECONDS_CONNECT = 10.0


def is_embedded(settings: Settings) -> bool:
    return settings.database_url is None


def start_embedded(settings: Settings) -> embedded.EmbeddedPostgres:
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    return embedded.start(settings.data_dir.resolve())


@asynccontextmanager
async def connect(database_url: str) -> AsyncIterator[Connection]:
    """One connection for a command-line task."""
    connection = await asyncpg.connect(database_url, timeout=TIMEOUT_SECONDS_CONNECT)
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

"""Fixtures of the relay tests: a NATS server of the test's own, and a fresh seeded database."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from pathlib import Path

import asyncpg
import pytest

from events.nats_server import NatsServer
from wallet import seed


@pytest.fixture
def nats_server(tmp_path: Path) -> Iterator[NatsServer]:
    server = NatsServer(tmp_path)
    server.start()
    try:
        yield server
    finally:
        server.stop()


async def _seed(database_url: str) -> None:
    connection = await asyncpg.connect(database_url, timeout=10)
    try:
        await seed.seed(connection)
    finally:
        await connection.close()


@pytest.fixture
def relay_database(create_database: Callable[[], str]) -> str:
    url = create_database()
    asyncio.run(_seed(url))
    return url

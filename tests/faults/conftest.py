"""Fixtures of the fault tests: a fresh seeded database per test and `wallet serve` processes on
it that the test may kill and start again (stopped at the end whatever happened).

Seeding and API keys go through the library on a direct connection rather than the `wallet`
command: the same code, without a Python start-up per step."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import asyncpg
import httpx
import pytest

from faults.servers import ServerProcess
from support import scratch_cluster
from wallet import keys, seed
from wallet.db import embedded, migrate

MakeServer = Callable[..., ServerProcess]


async def seed_database(database_url: str) -> None:
    connection = await asyncpg.connect(database_url, timeout=10)
    try:
        await seed.seed(connection)
    finally:
        await connection.close()


@pytest.fixture
def fault_database(create_database: Callable[[], str]) -> str:
    url = create_database()
    asyncio.run(seed_database(url))
    return url


@pytest.fixture(scope="session")
def embedded_directory() -> Iterator[Path]:
    """WALLET_DATA_DIR of an embedded PostgreSQL cluster of the fault tests' own, migrated and
    seeded. It lives under /tmp, not in pytest's private base directory, which the server's
    system user cannot enter when the tests run as root (see conftest.server_url)."""
    with scratch_cluster("wallet-fault-postgres-") as (data_dir, server):
        migrate.upgrade(server.url())
        asyncio.run(seed_database(server.url()))
        yield data_dir


@pytest.fixture
def stopped_embedded_directory(embedded_directory: Path) -> Iterator[Path]:
    """The cluster, not running at the start of the test and stopped after it."""
    stop_embedded(embedded_directory)
    yield embedded_directory
    stop_embedded(embedded_directory)


def stop_embedded(data_dir: Path, mode: str = "fast") -> None:
    embedded.stop_cluster(data_dir, mode)


@pytest.fixture
def make_server(tmp_path: Path) -> Iterator[MakeServer]:
    """make_server(database_url, env=None): a started ServerProcess, stopped after the test."""
    servers: list[ServerProcess] = []

    def make(database_url: str | None, env: dict[str, str] | None = None) -> ServerProcess:
        log_dir = tmp_path / f"servers-{len(servers) + 1}"
        log_dir.mkdir()
        server = ServerProcess(database_url, log_dir, env)
        servers.append(server)
        server.start()
        return server

    yield make
    for server in servers:
        server.stop()


@dataclass(frozen=True)
class Accounts:
    """Wallets funded by an admin key, and a separate key for the workload, so that the
    workload's transactions are exactly those of `workload_key_id`."""

    admin_key: str
    workload_key: str
    workload_key_id: uuid.UUID
    wallets: list[str]
    balances_before: dict[str, int]


async def open_accounts(database_url: str, base_url: str, wallet_count: int, funding: int) -> Accounts:
    connection = await asyncpg.connect(database_url, timeout=10)
    try:
        _, admin_key = await keys.create(connection, f"admin-{uuid.uuid4().hex[:12]}", {keys.Scope.ADMIN})
        workload, workload_key = await keys.create(
            connection, f"workload-{uuid.uuid4().hex[:12]}", {keys.Scope.WRITE}
        )
    finally:
        await connection.close()
    headers = {"Authorization": f"Bearer {admin_key}"}
    async with httpx.AsyncClient(base_url=base_url, headers=headers, timeout=30.0) as client:
        wallets = [await funded_wallet(client, funding) for _ in range(wallet_count)]
    return Accounts(admin_key, workload_key, workload.id, wallets, dict.fromkeys(wallets, funding))


async def funded_wallet(client: httpx.AsyncClient, funding: int) -> str:
    created = await client.post("/v1/wallets", json={"owner_id": f"fault-{uuid.uuid4()}", "asset": "GOLD"})
    assert created.status_code == 201, created.text
    wallet_id: str = created.json()["id"]
    funded = await client.post(
        f"/v1/wallets/{wallet_id}/topup",
        json={"amount": funding},
        headers={"Idempotency-Key": f"funding-{wallet_id}"},
    )
    assert funded.status_code == 201, funded.text
    return wallet_id

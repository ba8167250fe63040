"""Fixtures of the high-availability tests: a Patroni cluster shared by a module (each test leaves
it healthy: a primary and a synchronous standby), the wallet database on it, and one
`wallet serve` pointed at it by a multi-host URL and Patroni's REST API."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import asyncpg
import pytest

from faults.conftest import make_server, seed_database
from faults.servers import ServerProcess
from ha.cluster import DATABASE, Cluster
from wallet.db import migrate

__all__ = ["make_server"]  # the fault tests' fixture, for tests/ha/test_unconfirmed_commit.py

# The failover tests' service timeouts: short, so that a request on a dead or orphaned node is
# answered 503 within a few seconds (the defaults are for production, not for a test's clock).
SERVICE_ENVIRONMENT = {
    "WALLET_TIMEOUT_MS_CONNECT": "1000",
    "WALLET_TIMEOUT_MS_POOL_ACQUIRE": "1000",
    "WALLET_TIMEOUT_MS_STATEMENT": "2000",
    "WALLET_TIMEOUT_MS_LOCK": "1000",
    "WALLET_PATRONI_CHECK_INTERVAL_MS": "500",
}


async def create_wallet_database(cluster: Cluster) -> None:
    primary = cluster.wait_healthy()
    connection = await asyncpg.connect(primary.url("postgres"), timeout=10)
    try:
        await connection.execute(f"CREATE DATABASE {DATABASE}")
    finally:
        await connection.close()
    await asyncio.to_thread(migrate.upgrade, primary.url())
    await seed_database(primary.url())


@pytest.fixture(scope="module")
def cluster() -> Iterator[Cluster]:
    running = Cluster()
    try:
        running.start()
        asyncio.run(create_wallet_database(running))
        yield running
    finally:
        running.stop()


@pytest.fixture(scope="module")
def service(cluster: Cluster, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """`wallet serve` on the cluster, routed by Patroni's REST API."""
    log_dir = tmp_path_factory.mktemp("ha-service")
    environment = {**SERVICE_ENVIRONMENT, "WALLET_PATRONI_URLS": cluster.rest_urls()}
    server = ServerProcess(cluster.service_url(), log_dir, environment)
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def healthy(cluster: Cluster, service: ServerProcess) -> Iterator[Cluster]:
    """The cluster, with a primary and a synchronous standby at the start of the test. At its
    end, a node whose Patroni the test killed is started again (an orphaned postmaster is
    stopped first); the next test waits until it has rejoined."""
    cluster.wait_healthy()
    yield cluster
    for node in cluster.nodes:
        if not node.patroni_running():
            cluster.quit_postmaster(node)
            cluster.start_patroni(node)

"""SIGTERM while requests flow: `wallet serve` stops accepting connections, finishes the requests
it is running, closes its database pool and exits 0. No request that got a 2xx is missing from
the ledger; the requests that got no answer are retried against the next server and applied
exactly once.

To have requests surely in flight at the signal, a few spends wait on a wallet row that the
test keeps locked from a connection of its own, and the lock is released only after SIGTERM.
The service posts them in its waiting lane (ledger/group_commit.py), whose size /metrics shows.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from pathlib import Path

import asyncpg
import httpx
import pytest

from faults.conftest import MakeServer, open_accounts
from faults.workload import (
    Operation,
    Outcome,
    Workload,
    assert_applied_exactly_once,
    plan,
    tally,
)
from wallet.db import embedded

pytestmark = [pytest.mark.faults, pytest.mark.timeout(120)]

OPERATIONS = 500
CONCURRENCY = 16
HELD_SPENDS = 8
SIGNALLED_AFTER_ANSWERS = 200
LOCK_RELEASED_AFTER_SECONDS = 1.0
REFUSING_WITHIN_SECONDS = 2.0
WAIT_SECONDS_MAX = 20.0
WAITING_METRIC = "wallet_group_commit_waiting_on_locks"


async def test_sigterm_finishes_requests_in_flight_and_loses_no_answered_one(
    fault_database: str, make_server: MakeServer
) -> None:
    server = make_server(fault_database)
    accounts = await open_accounts(fault_database, server.base_url, wallet_count=9, funding=500)
    held_wallet, *free_wallets = accounts.wallets
    workload = Workload(
        server.base_url, accounts.workload_key, plan(free_wallets, OPERATIONS, seed=15), CONCURRENCY
    )
    held = Workload(server.base_url, accounts.workload_key, held_spends(held_wallet), HELD_SPENDS)

    lock = await asyncpg.connect(fault_database, timeout=10)
    try:
        lock_transaction = lock.transaction()
        await lock_transaction.start()
        await lock.execute("SELECT 1 FROM account WHERE id = $1 FOR UPDATE", uuid.UUID(held_wallet))
        running = asyncio.gather(workload.run(), held.run())
        await workload.wait_until_answered(SIGNALLED_AFTER_ANSWERS)
        await wait_for_held_spends(lock, server.base_url, HELD_SPENDS)
        server.terminate()
        signalled_at = time.monotonic()
        refusing_seconds = await seconds_until_refused(server.port, signalled_at)
        await asyncio.sleep(LOCK_RELEASED_AFTER_SECONDS)
        await lock_transaction.commit()
        exit_status = await asyncio.to_thread(server.wait)
        shutdown_seconds = time.monotonic() - signalled_at
        wallet_connections = await connections_of_the_service(lock)
    finally:
        await lock.close()
    await asyncio.to_thread(server.start)
    main_outcomes, held_outcomes = await asyncio.wait_for(running, 60)

    print(
        f"\nSIGTERM: {tally(main_outcomes + held_outcomes).line()}, held_in_flight={HELD_SPENDS}, "
        f"refusing_after_seconds={refusing_seconds:.2f}, exit_after_seconds={shutdown_seconds:.2f}"
    )
    assert exit_status == 0, server.log_text()
    assert [(outcome.status, len(outcome.attempts)) for outcome in held_outcomes] == [(201, 1)] * HELD_SPENDS
    assert wallet_connections == 0, "the pool was not closed"
    answered_before_exit = [
        o for o in main_outcomes if o.status == 201 and o.attempts[-1].started < signalled_at
    ]
    assert answered_before_exit
    outcomes: list[Outcome] = main_outcomes + held_outcomes
    await assert_applied_exactly_once(
        fault_database, accounts.workload_key_id, outcomes, accounts.balances_before
    )


def held_spends(wallet_id: str) -> list[Operation]:
    path = f"/v1/wallets/{wallet_id}/spend"
    return [
        Operation(f"held-{uuid.uuid4()}", "spend", path, {"amount": 1}, wallet_id, None)
        for _ in range(HELD_SPENDS)
    ]


async def wait_for_held_spends(connection: asyncpg.Connection, base_url: str, count: int) -> None:
    """Until `count` requests wait for the held wallet in the service and one of its statements
    waits for the lock in the database."""
    deadline = time.monotonic() + WAIT_SECONDS_MAX
    async with httpx.AsyncClient(base_url=base_url, timeout=10) as client:
        while time.monotonic() < deadline:
            lock_waiters = await connection.fetchval(
                """
                SELECT count(*) FROM pg_stat_activity
                WHERE datname = current_database() AND application_name = 'wallet'
                  AND wait_event_type = 'Lock'
                """
            )
            metrics = (await client.get("/metrics")).text
            if lock_waiters >= 1 and metric_value(metrics, WAITING_METRIC) >= count:
                return
            await asyncio.sleep(0.05)
    raise AssertionError(f"fewer than {count} requests waited on the held wallet")


def metric_value(document: str, name: str) -> float:
    for line in document.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    return 0.0


async def seconds_until_refused(port: int, since: float) -> float:
    """How long after `since` a new connection to the port is refused."""
    while time.monotonic() - since < REFUSING_WITHIN_SECONDS:
        try:
            _, writer = await asyncio.open_connection("127.0.0.1", port)
        except (ConnectionRefusedError, ConnectionResetError):
            # Reset: the connection was in the backlog of the listening socket as it closed.
            return time.monotonic() - since
        writer.close()
        await writer.wait_closed()
        await asyncio.sleep(0.02)
    raise AssertionError(f"still accepting connections {REFUSING_WITHIN_SECONDS} s after SIGTERM")


async def connections_of_the_service(connection: asyncpg.Connection) -> int:
    """The service's connections to the database, once the backends of a closed pool are gone."""
    deadline = time.monotonic() + WAIT_SECONDS_MAX
    while True:
        count = await connection.fetchval(
            """
            SELECT count(*) FROM pg_stat_activity
            WHERE datname = current_database() AND application_name = 'wallet'
            """
        )
        assert isinstance(count, int)
        if count == 0 or time.monotonic() > deadline:
            return count
        await asyncio.sleep(0.05)


async def test_sigterm_on_the_embedded_database_stops_the_database_too(
    stopped_embedded_directory: Path, make_server: MakeServer
) -> None:
    """`wallet serve` without WALLET_DATABASE_URL starts the embedded PostgreSQL; after the graceful
    shutdown a SIGTERM asks for, it stops it again and exits 0, leaving no server behind."""
    server = make_server(None, env={"WALLET_DATA_DIR": str(stopped_embedded_directory)})
    postmaster_file = stopped_embedded_directory / embedded.CLUSTER_DIRECTORY_NAME / "postmaster.pid"
    assert postmaster_file.exists()
    server.terminate()
    assert await asyncio.to_thread(server.wait) == 0, server.log_text()
    assert not postmaster_file.exists(), "the embedded PostgreSQL outlived wallet serve"

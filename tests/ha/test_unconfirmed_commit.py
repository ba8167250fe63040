"""A commit waiting for the synchronous standby whose wait is cancelled is reported by PostgreSQL
as a success with a WARNING ("canceling wait for synchronous replication ... already committed
locally, but might not have been replicated"). The service must answer 503 (outcome unknown),
never 201: a failover right after would lose the movement.

A PostgreSQL of the test's own (embedded) names a synchronous standby that never connects, so
every commit waits; the test cancels the waiting backend with pg_cancel_backend, as an
operator or a tool might. (statement_timeout does not end that wait: PostgreSQL disables it
before committing; asyncpg's command timeout raises before reading an answer.) Needs no Debian
package, so it is not marked `ha`.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Iterator

import asyncpg
import httpx
import pytest

from faults.conftest import MakeServer, open_accounts, seed_database
from faults.servers import ServerProcess
from support import scratch_cluster
from wallet.db import migrate

pytestmark = [pytest.mark.timeout(120)]

ABSENT_STANDBY = "wallet_test_absent_standby"
WAIT_SECONDS = 20.0


@pytest.fixture(scope="module")
def database_url() -> Iterator[str]:
    with scratch_cluster("wallet-syncrep-postgres-", stop_mode="immediate") as (_, server):
        migrate.upgrade(server.url())
        asyncio.run(seed_database(server.url()))
        yield server.url()


async def set_synchronous_standby(database_url: str, names: str) -> None:
    connection = await asyncpg.connect(database_url, timeout=10)
    try:
        await connection.execute(f"ALTER SYSTEM SET synchronous_standby_names = '{names}'")
        await connection.execute("SELECT pg_reload_conf()")
        deadline = time.monotonic() + WAIT_SECONDS
        while await connection.fetchval("SHOW synchronous_standby_names") != names:
            assert time.monotonic() < deadline, "the reload did not take"
            await asyncio.sleep(0.05)
    finally:
        await connection.close()


async def cancel_the_commit_waiting_for_the_standby(database_url: str) -> None:
    """pg_cancel_backend on the service's backend that waits in SyncRep, once there is one.
    The event sequencer's commit may wait there too (placing the events of the setup's
    movements): that one is left waiting."""
    connection = await asyncpg.connect(database_url, timeout=10)
    try:
        deadline = time.monotonic() + WAIT_SECONDS
        while True:
            cancelled = await connection.fetchval(
                """
                SELECT count(pg_cancel_backend(pid)) FROM pg_stat_activity
                WHERE application_name = 'wallet' AND wait_event = 'SyncRep'
                  AND query NOT LIKE '%sequence_events%'
                """
            )
            if cancelled:
                assert cancelled == 1, cancelled
                return
            assert time.monotonic() < deadline, "no commit of the service waited for the standby"
            await asyncio.sleep(0.05)
    finally:
        await connection.close()


async def post_and_cancel(
    server: ServerProcess, path: str, body: dict[str, object], headers: dict[str, str]
) -> httpx.Response:
    async with httpx.AsyncClient(base_url=server.base_url, timeout=WAIT_SECONDS) as client:
        request = asyncio.create_task(client.post(path, json=body, headers=headers))
        await cancel_the_commit_waiting_for_the_standby(server.database_url or "")
        return await request


async def test_a_spend_whose_wait_for_the_standby_is_cancelled_is_503_not_201(
    database_url: str, make_server: MakeServer
) -> None:
    server = make_server(database_url)
    accounts = await open_accounts(database_url, server.base_url, wallet_count=1, funding=100)
    wallet_id = accounts.wallets[0]
    await set_synchronous_standby(database_url, ABSENT_STANDBY)
    try:
        headers = {"Authorization": f"Bearer {accounts.workload_key}", "Idempotency-Key": "spend-1"}
        answer = await post_and_cancel(server, f"/v1/wallets/{wallet_id}/spend", {"amount": 30}, headers)

        assert answer.status_code == 503, answer.text
        assert answer.json()["code"] == "unavailable"
        assert answer.headers["Retry-After"]
        assert "commit_unconfirmed" in server.log_text()
    finally:
        await set_synchronous_standby(database_url, "")
    # It had committed locally: once the standby requirement is gone, the retry is the replay.
    async with httpx.AsyncClient(base_url=server.base_url, headers=headers, timeout=WAIT_SECONDS) as client:
        retry = await client.post(f"/v1/wallets/{wallet_id}/spend", json={"amount": 30})
    assert retry.status_code == 201, retry.text
    assert retry.headers.get("Idempotent-Replayed") == "true"
    assert retry.json()["balance_after"] == 70


async def test_an_explicit_transaction_whose_commit_is_cancelled_is_503_not_201(
    database_url: str, make_server: MakeServer
) -> None:
    """Creating an asset commits with an explicit COMMIT (as money movements will)."""
    server = make_server(database_url)
    accounts = await open_accounts(database_url, server.base_url, wallet_count=1, funding=1)
    code = f"T{uuid.uuid4().hex[:10].upper()}"
    await set_synchronous_standby(database_url, ABSENT_STANDBY)
    try:
        headers = {"Authorization": f"Bearer {accounts.admin_key}"}
        answer = await post_and_cancel(server, "/v1/assets", {"code": code, "name": "Test"}, headers)

        assert answer.status_code == 503, answer.text
        assert answer.json()["code"] == "unavailable"
    finally:
        await set_synchronous_standby(database_url, "")


async def test_the_retry_of_a_movement_not_yet_on_the_standby_is_not_answered_201(
    database_url: str, make_server: MakeServer
) -> None:
    """What a 201 promises: the movement survives the loss of this node. After a cancelled wait
    the movement is committed here only; a retry with the same key must not be told 201 until
    the standby has it (it should wait, and get 503 when its time is up)."""
    server = make_server(database_url, env={"WALLET_TIMEOUT_MS_STATEMENT": "1000"})
    accounts = await open_accounts(database_url, server.base_url, wallet_count=1, funding=100)
    wallet_id = accounts.wallets[0]
    headers = {"Authorization": f"Bearer {accounts.workload_key}", "Idempotency-Key": "spend-2"}
    await set_synchronous_standby(database_url, ABSENT_STANDBY)
    try:
        answer = await post_and_cancel(server, f"/v1/wallets/{wallet_id}/spend", {"amount": 30}, headers)
        assert answer.status_code == 503, answer.text
        client = httpx.AsyncClient(base_url=server.base_url, headers=headers, timeout=WAIT_SECONDS)
        async with client as retry_client:
            retry = await retry_client.post(f"/v1/wallets/{wallet_id}/spend", json={"amount": 30})
    finally:
        await set_synchronous_standby(database_url, "")

    assert retry.status_code == 503, (retry.status_code, retry.headers.get("Idempotent-Replayed"))

"""A database that is slow, locked or out of connections: the request that hits the lock timeout,
the statement timeout or the pool's acquire timeout gets 503 `unavailable` with Retry-After
within about that timeout, never waits forever, and leaves nothing behind: its Idempotency-Key
is not stored, so the retry after the database recovers gets 201, exactly once. The same holds
when the request's database connection is killed while its statement runs. The other side of an
unknown outcome: a request that commits after its client hung up is replayed to the retry.

A wallet row is held with SELECT ... FOR UPDATE from a connection of the test's own, so that
the service's posting has to wait on it.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from typing import Any

import asyncpg
import httpx
import pytest

from faults.conftest import Accounts, MakeServer, open_accounts, seed_database
from faults.servers import ServerProcess

pytestmark = [pytest.mark.faults, pytest.mark.timeout(60)]

TIMEOUT_MS_LOCK = 300
TIMEOUT_MS_STATEMENT = 300
TIMEOUT_MS_POOL_ACQUIRE = 300
# What a request may take beyond the timeout it hits: an authentication query, a busy machine.
ANSWER_SLACK_SECONDS = 1.0
WAITERS_TIMEOUT_SECONDS = 10.0


@asynccontextmanager
async def wallet_row_locked(database_url: str, wallet_id: str) -> AsyncIterator[asyncpg.Connection]:
    """The wallet's row locked by an open transaction until the block ends (then rolled back)."""
    connection = await asyncpg.connect(database_url, timeout=10)
    transaction = connection.transaction()
    await transaction.start()
    try:
        await connection.execute("SELECT 1 FROM account WHERE id = $1 FOR UPDATE", uuid.UUID(wallet_id))
        yield connection
    finally:
        await transaction.rollback()
        await connection.close()


async def service_lock_waiters(connection: asyncpg.Connection, count: int) -> list[int]:
    """The backend process ids of the service's statements waiting for a lock, once there are
    `count` of them."""
    deadline = time.monotonic() + WAITERS_TIMEOUT_SECONDS
    while time.monotonic() < deadline:
        waiting: list[int] = [
            row["pid"]
            for row in await connection.fetch(
                """
                SELECT pid FROM pg_stat_activity
                WHERE datname = current_database() AND application_name = 'wallet'
                    AND wait_event_type = 'Lock'
                """
            )
        ]
        if len(waiting) >= count:
            return waiting
        await asyncio.sleep(0.02)
    raise AssertionError(f"fewer than {count} of the service's statements waited for a lock")


async def stored_keys(database_url: str, key: str) -> int:
    connection = await asyncpg.connect(database_url, timeout=10)
    try:
        count = await connection.fetchval("SELECT count(*) FROM idempotency_key WHERE key = $1", key)
    finally:
        await connection.close()
    assert isinstance(count, int)
    return count


async def timed(request: Any) -> tuple[httpx.Response, float]:
    started = time.monotonic()
    response = await request
    return response, time.monotonic() - started


def assert_unavailable(response: httpx.Response) -> None:
    assert response.status_code == 503, response.text
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["code"] == "unavailable"
    assert int(response.headers["Retry-After"]) >= 1


async def spend(client: httpx.AsyncClient, wallet_id: str, key: str, amount: int = 10) -> httpx.Response:
    return await client.post(
        f"/v1/wallets/{wallet_id}/spend", json={"amount": amount}, headers={"Idempotency-Key": key}
    )


async def assert_retry_applies_once(
    client: httpx.AsyncClient, database_url: str, wallet_id: str, key: str, balance: int
) -> None:
    """The retry with the same key is a first try (201, not a replay); its repeat is a replay."""
    retried = await spend(client, wallet_id, key)
    assert retried.status_code == 201, retried.text
    assert "Idempotent-Replayed" not in retried.headers
    assert retried.json()["balance_after"] == balance
    replayed = await spend(client, wallet_id, key)
    assert replayed.status_code == 201 and replayed.headers["Idempotent-Replayed"] == "true"
    assert replayed.content == retried.content
    assert (await client.get(f"/v1/wallets/{wallet_id}")).json()["balance"] == balance
    assert await stored_keys(database_url, key) == 1
    verified = (await client.get("/v1/ledger/verify")).json()
    assert verified["ok"], verified["problems"]


def client_of(server: ServerProcess, accounts: Accounts) -> httpx.AsyncClient:
    headers = {"Authorization": f"Bearer {accounts.admin_key}"}
    return httpx.AsyncClient(base_url=server.base_url, headers=headers, timeout=30.0)


async def test_lock_timeout_gives_quick_503_and_stores_nothing(
    fault_database: str, make_server: MakeServer
) -> None:
    environment = {"WALLET_TIMEOUT_MS_LOCK": str(TIMEOUT_MS_LOCK), "WALLET_TIMEOUT_MS_STATEMENT": "5000"}
    server = make_server(fault_database, env=environment)
    accounts = await open_accounts(fault_database, server.base_url, wallet_count=1, funding=100)
    wallet_id, key = accounts.wallets[0], f"lock-{uuid.uuid4()}"
    async with client_of(server, accounts) as client:
        async with wallet_row_locked(fault_database, wallet_id):
            response, seconds = await timed(spend(client, wallet_id, key))
            print(f"\nlock timeout {TIMEOUT_MS_LOCK} ms: 503 after {seconds:.3f} s")
            assert_unavailable(response)
            assert TIMEOUT_MS_LOCK / 1000 <= seconds <= TIMEOUT_MS_LOCK / 1000 + ANSWER_SLACK_SECONDS
            assert await stored_keys(fault_database, key) == 0
        await assert_retry_applies_once(client, fault_database, wallet_id, key, balance=90)


async def test_statement_timeout_gives_quick_503_and_stores_nothing(
    fault_database: str, make_server: MakeServer
) -> None:
    """A lock wait longer than statement_timeout, with lock_timeout larger still."""
    environment = {
        "WALLET_TIMEOUT_MS_STATEMENT": str(TIMEOUT_MS_STATEMENT),
        "WALLET_TIMEOUT_MS_LOCK": "5000",
    }
    server = make_server(fault_database, env=environment)
    accounts = await open_accounts(fault_database, server.base_url, wallet_count=1, funding=100)
    wallet_id, key = accounts.wallets[0], f"statement-{uuid.uuid4()}"
    async with client_of(server, accounts) as client:
        async with wallet_row_locked(fault_database, wallet_id):
            response, seconds = await timed(spend(client, wallet_id, key))
            print(f"\nstatement timeout {TIMEOUT_MS_STATEMENT} ms: 503 after {seconds:.3f} s")
            assert_unavailable(response)
            assert seconds <= TIMEOUT_MS_STATEMENT / 1000 + ANSWER_SLACK_SECONDS
            assert await stored_keys(fault_database, key) == 0
        await assert_retry_applies_once(client, fault_database, wallet_id, key, balance=90)


@pytest.fixture(scope="module")
def one_connection_server(
    create_database: Callable[[], str], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ServerProcess]:
    """A pool of one connection, a short acquire timeout, long lock and statement timeouts;
    shared by the tests of this module that need it (each uses wallets of its own)."""
    url = create_database()
    asyncio.run(seed_database(url))
    environment = {
        "WALLET_POOL_SIZE_MIN": "1",
        "WALLET_POOL_SIZE_MAX": "1",
        "WALLET_TIMEOUT_MS_POOL_ACQUIRE": str(TIMEOUT_MS_POOL_ACQUIRE),
        "WALLET_TIMEOUT_MS_LOCK": "10000",
        "WALLET_TIMEOUT_MS_STATEMENT": "15000",
    }
    server = ServerProcess(url, tmp_path_factory.mktemp("one-connection"), environment)
    try:
        server.start()
        yield server
    finally:
        server.stop()


async def test_exhausted_pool_gives_503_after_the_acquire_timeout(
    one_connection_server: ServerProcess,
) -> None:
    server = one_connection_server
    fault_database = server.database_url
    assert fault_database is not None
    accounts = await open_accounts(fault_database, server.base_url, wallet_count=2, funding=100)
    held_wallet, other_wallet = accounts.wallets
    held_key, other_key = f"held-{uuid.uuid4()}", f"starved-{uuid.uuid4()}"
    async with client_of(server, accounts) as client:
        async with wallet_row_locked(fault_database, held_wallet) as lock:
            waiting = asyncio.create_task(spend(client, held_wallet, held_key))
            await service_lock_waiters(lock, 1)  # the pool's one connection is busy now
            read, read_seconds = await timed(client.get(f"/v1/wallets/{other_wallet}"))
            moved, moved_seconds = await timed(spend(client, other_wallet, other_key))
            print(
                f"\npool of 1, acquire timeout {TIMEOUT_MS_POOL_ACQUIRE} ms: 503 after "
                f"{read_seconds:.3f} s (read), {moved_seconds:.3f} s (spend)"
            )
            for response, seconds in ((read, read_seconds), (moved, moved_seconds)):
                assert_unavailable(response)
                assert TIMEOUT_MS_POOL_ACQUIRE / 1000 <= seconds
                assert seconds <= TIMEOUT_MS_POOL_ACQUIRE / 1000 + ANSWER_SLACK_SECONDS
            assert not waiting.done()
        held = await waiting
        assert held.status_code == 201, held.text
        assert await stored_keys(fault_database, other_key) == 0
        await assert_retry_applies_once(client, fault_database, other_wallet, other_key, balance=90)


async def test_connection_killed_mid_statement_gives_503_and_the_retry_applies_once(
    one_connection_server: ServerProcess,
) -> None:
    """The service cannot know whether a statement whose connection died committed: it answers
    503, and the retry with the same key either replays or, as here, applies it once."""
    server = one_connection_server
    fault_database = server.database_url
    assert fault_database is not None
    accounts = await open_accounts(fault_database, server.base_url, wallet_count=1, funding=100)
    wallet_id, key = accounts.wallets[0], f"killed-{uuid.uuid4()}"
    async with client_of(server, accounts) as client:
        async with wallet_row_locked(fault_database, wallet_id) as lock:
            waiting = asyncio.create_task(spend(client, wallet_id, key))
            [backend] = await service_lock_waiters(lock, 1)
            assert await lock.fetchval("SELECT pg_terminate_backend($1)", backend)
            response = await waiting
            assert_unavailable(response)
            assert await stored_keys(fault_database, key) == 0
        await assert_retry_applies_once(client, fault_database, wallet_id, key, balance=90)
    assert "internal_error" not in server.log_text()


async def test_answer_lost_on_the_way_to_the_client_is_replayed_on_retry(
    one_connection_server: ServerProcess,
) -> None:
    """The client hangs up while its spend waits in the database: the spend still commits, and
    the client, who never saw an answer, retries with the same key and gets the stored one."""
    server = one_connection_server
    database_url = server.database_url
    assert database_url is not None
    accounts = await open_accounts(database_url, server.base_url, wallet_count=1, funding=100)
    wallet_id, key = accounts.wallets[0], f"lost-{uuid.uuid4()}"
    body = b'{"amount": 10}'
    request = (
        f"POST /v1/wallets/{wallet_id}/spend HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        f"Authorization: Bearer {accounts.admin_key}\r\nIdempotency-Key: {key}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
    ).encode() + body
    async with wallet_row_locked(database_url, wallet_id) as lock:
        _, writer = await asyncio.open_connection("127.0.0.1", server.port)
        writer.write(request)
        await writer.drain()
        await service_lock_waiters(lock, 1)
        writer.close()  # the client gives up before any answer
        await writer.wait_closed()
    deadline = time.monotonic() + WAITERS_TIMEOUT_SECONDS
    while await stored_keys(database_url, key) == 0:
        assert time.monotonic() < deadline, "the abandoned spend never committed"
        await asyncio.sleep(0.02)
    async with client_of(server, accounts) as client:
        retried = await spend(client, wallet_id, key)
        assert retried.status_code == 201, retried.text
        assert retried.headers["Idempotent-Replayed"] == "true"
        assert retried.json()["balance_after"] == 90
        assert (await client.get(f"/v1/wallets/{wallet_id}")).json()["balance"] == 90
    connection = await asyncpg.connect(database_url, timeout=10)
    try:
        applied = await connection.fetchval(
            """
            SELECT count(*) FROM transaction t JOIN idempotency_key i ON i.transaction_id = t.id
            WHERE i.key = $1
            """,
            key,
        )
    finally:
        await connection.close()
    assert applied == 1

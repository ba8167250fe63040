"""System accounts spread their balance over slots so that unrelated postings do not queue on one
row: a transaction holding one treasury slot must not delay top-ups to other wallets, while one
holding every slot does (the control that shows the first test can fail)."""

from __future__ import annotations

import asyncio
import os
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import asyncpg
import httpx
import pytest

from support import Server
from support import async_assert_ledger_ok as assert_ledger_ok
from support import async_balance as balance
from wallet.ledger import posting
from wallet.ledger.limits import SLOT_COUNT

SHORT_TIMEOUT_SECONDS = 5.0
HOLDER_APPLICATION = "test-slot-holder"
SERVICE_APPLICATION = "wallet"  # the application_name of the service's pool (db/pool.py)

# Backends of the service waiting on a heavyweight lock, and who blocks them.
LOCK_WAITERS = """
SELECT pid, wait_event, pg_blocking_pids(pid) AS blockers, left(query, 200) AS query
FROM pg_stat_activity
WHERE datname = current_database() AND application_name = $1 AND wait_event_type = 'Lock'
"""


async def new_wallet(client: httpx.AsyncClient) -> str:
    response = await client.post("/v1/wallets", json={"owner_id": f"user-{uuid.uuid4()}", "asset": "GOLD"})
    assert response.status_code == 201, response.text
    wallet_id: str = response.json()["id"]
    return wallet_id


async def topup(
    client: httpx.AsyncClient, wallet_id: str, amount: int, key: str, client_timeout: float
) -> httpx.Response:
    """A top-up whose client gives up after `client_timeout` seconds."""
    return await client.post(
        f"/v1/wallets/{wallet_id}/topup",
        json={"amount": amount},
        headers={"Idempotency-Key": key},
        timeout=client_timeout,
    )


@asynccontextmanager
async def connect(server: Server, application: str = "test-slot-probe") -> AsyncIterator[asyncpg.Connection]:
    database = await asyncpg.connect(
        server.database_url,
        server_settings={"application_name": application, "idle_in_transaction_session_timeout": "60000"},
    )
    try:
        yield database
    finally:
        await database.close()


async def treasury_id(database: asyncpg.Connection, asset: str = "GOLD") -> uuid.UUID:
    account_id: uuid.UUID = await database.fetchval(
        "SELECT id FROM account WHERE asset = $1 AND kind = 'treasury'", asset
    )
    assert account_id is not None
    return account_id


async def assert_row_locked(probe: asyncpg.Connection, query: str, *arguments: Any) -> None:
    """The row the query selects FOR UPDATE NOWAIT is held by another transaction."""
    async with probe.transaction():
        with pytest.raises(asyncpg.LockNotAvailableError):
            await probe.fetch(query + " FOR UPDATE NOWAIT", *arguments)


async def lock_waiters(probe: asyncpg.Connection) -> list[asyncpg.Record]:
    return await probe.fetch(LOCK_WAITERS, SERVICE_APPLICATION)


async def sample_lock_waiters(probe: asyncpg.Connection, stop: asyncio.Event) -> list[asyncpg.Record]:
    """Every service backend seen waiting on a lock, polled until `stop` is set."""
    seen: list[asyncpg.Record] = []
    while not stop.is_set():
        seen += await lock_waiters(probe)
        await asyncio.sleep(0.005)
    return seen


async def wait_for_lock_waiter(probe: asyncpg.Connection, blocker_pid: int, within: float) -> asyncpg.Record:
    """The first service backend found waiting on a lock held by `blocker_pid`."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        for waiter in await lock_waiters(probe):
            if blocker_pid in waiter["blockers"]:
                return waiter
        await asyncio.sleep(0.01)
    raise AssertionError(f"no service backend waited on a lock held by {blocker_pid} within {within} s")


async def test_a_held_treasury_slot_does_not_delay_topups_to_other_wallets(server: Server) -> None:
    async with server.async_client() as client:
        held_wallet = await new_wallet(client)
        others = await asyncio.gather(*(new_wallet(client) for _ in range(50)))

        async with connect(server, HOLDER_APPLICATION) as holder, connect(server) as probe:
            treasury = await treasury_id(probe)
            api_key_id = await probe.fetchval("SELECT id FROM api_key LIMIT 1")
            holding = holder.transaction()
            await holding.start()
            try:
                # What the service runs for a top-up (ledger/posting.py), left uncommitted.
                movement = posting.topup(uuid.UUID(held_wallet), 5, None, None)
                request = posting.Request(api_key_id, f"held-{uuid.uuid4()}", os.urandom(32), movement)
                held_transaction_id = request.transaction_id
                [held] = await posting.post(holder, [request], wait_for_locks=True)
                assert held.result is posting.Result.POSTED, held
                held_slot = await holder.fetchval(
                    "SELECT slot FROM entry WHERE transaction_id = $1 AND account_id = $2",
                    held_transaction_id,
                    treasury,
                )
                assert held_slot is not None
                await assert_row_locked(probe, "SELECT 1 FROM account WHERE id = $1", uuid.UUID(held_wallet))
                await assert_row_locked(
                    probe,
                    "SELECT 1 FROM account_slot WHERE account_id = $1 AND slot = $2",
                    treasury,
                    held_slot,
                )

                stop_sampling = asyncio.Event()
                async with connect(server) as sampler:
                    sampling = asyncio.create_task(sample_lock_waiters(sampler, stop_sampling))
                    started = time.monotonic()
                    try:
                        responses = await asyncio.wait_for(
                            asyncio.gather(
                                *(
                                    topup(
                                        client, wallet_id, 3, f"slots-{uuid.uuid4()}", SHORT_TIMEOUT_SECONDS
                                    )
                                    for wallet_id in others
                                )
                            ),
                            timeout=2 * SHORT_TIMEOUT_SECONDS,
                        )
                    finally:
                        elapsed = time.monotonic() - started
                        stop_sampling.set()
                        waiters = await sampling
                    waiters += await lock_waiters(probe)
            finally:
                await holding.rollback()

            assert [response.status_code for response in responses] == [201] * 50, [
                response.text for response in responses if response.status_code != 201
            ]
            assert elapsed < SHORT_TIMEOUT_SECONDS, elapsed
            assert [dict(waiter) for waiter in waiters] == [], "service backends waited on a lock"

            transaction_ids = [uuid.UUID(response.json()["id"]) for response in responses]
            rows = await probe.fetch(
                "SELECT slot FROM entry WHERE transaction_id = ANY($1::uuid[]) AND account_id = $2",
                transaction_ids,
                treasury,
            )
            slots = [row["slot"] for row in rows]
            assert len(slots) == 50
            assert len(set(slots)) > 1, slots
            assert held_slot not in slots, (held_slot, slots)
            rolled_back = "SELECT count(*) FROM transaction WHERE id = $1"
            assert await probe.fetchval(rolled_back, held_transaction_id) == 0

        assert await balance(client, held_wallet) == 0
        assert {await balance(client, wallet_id) for wallet_id in others} == {3}
        await assert_ledger_ok(client)


async def test_holding_every_treasury_slot_makes_a_topup_wait_until_released(server: Server) -> None:
    async with server.async_client() as client:
        impatient_wallet, patient_wallet = await new_wallet(client), await new_wallet(client)
        impatient_key, patient_key = f"slots-{uuid.uuid4()}", f"slots-{uuid.uuid4()}"

        async with connect(server, HOLDER_APPLICATION) as holder, connect(server) as probe:
            treasury = await treasury_id(probe)
            holder_pid = await holder.fetchval("SELECT pg_backend_pid()")
            holding = holder.transaction()
            await holding.start()
            tasks: list[asyncio.Task[httpx.Response]] = []
            released = False
            try:
                held = await holder.fetch(
                    "SELECT slot FROM account_slot WHERE account_id = $1 FOR UPDATE", treasury
                )
                assert len(held) == SLOT_COUNT == 32

                impatient = asyncio.create_task(topup(client, impatient_wallet, 4, impatient_key, 2.0))
                patient = asyncio.create_task(topup(client, patient_wallet, 6, patient_key, 30.0))
                tasks += [impatient, patient]
                waiter = await wait_for_lock_waiter(probe, holder_pid, within=SHORT_TIMEOUT_SECONDS)
                assert "ledger.post" in waiter["query"], dict(waiter)

                with pytest.raises(httpx.TimeoutException):
                    await impatient
                assert not patient.done()
                await wait_for_lock_waiter(probe, holder_pid, within=SHORT_TIMEOUT_SECONDS)

                await holding.rollback()
                released = True
                completed = await asyncio.wait_for(patient, timeout=SHORT_TIMEOUT_SECONDS)
            finally:
                if not released:
                    await holding.rollback()
                for task in tasks:
                    task.cancel()
                await asyncio.gather(*tasks, return_exceptions=True)

        assert completed.status_code == 201, completed.text
        assert completed.json()["balance_after"] == 6
        retried = await topup(client, impatient_wallet, 4, impatient_key, SHORT_TIMEOUT_SECONDS)
        assert retried.status_code == 201, retried.text
        assert await balance(client, impatient_wallet) == 4
        assert await balance(client, patient_wallet) == 6
        await assert_ledger_ok(client)

"""The expiry sweeper (wallet.housekeeping, ledger.sweep): with no movement of a wallet, its
expired lots are posted and its expired holds give their parts of lots back within
WALLET_EXPIRY_SWEEP_SECONDS; a run that hits a database error is logged and the next one does
the work; one sweep batch runs at a time across processes."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncpg
import httpx
import pytest

from support import Server, assert_ledger_ok, new_wallet, start_server, wallet_command
from wallet.ledger import lots

INTERVAL_SECONDS = 1
WAIT_SECONDS_MAX = 15.0


@pytest.fixture
def sweeping_server(create_database: Callable[[], str], tmp_path: Path) -> Iterator[Server]:
    url = create_database()
    wallet_command("db", "seed", database_url=url)
    environment = {"WALLET_EXPIRY_SWEEP_SECONDS": str(INTERVAL_SECONDS), "WALLET_TIMEOUT_MS_LOCK": "300"}
    running = start_server(url, tmp_path / "server.log", env=environment)
    try:
        yield running
    finally:
        running.stop()


def post(client: httpx.Client, path: str, body: dict[str, object]) -> httpx.Response:
    response = client.post(path, json=body, headers={"Idempotency-Key": str(uuid.uuid4())})
    assert response.status_code == 201, response.text
    return response


def types(client: httpx.Client, wallet_id: str) -> list[str]:
    response = client.get(f"/v1/wallets/{wallet_id}/transactions")
    return [transaction["type"] for transaction in response.json()["data"]][::-1]


async def wait_until(condition: Callable[[], bool], what: str) -> float:
    started = time.monotonic()
    while time.monotonic() - started < WAIT_SECONDS_MAX:
        if condition():
            return time.monotonic() - started
        await asyncio.sleep(0.1)
    raise AssertionError(f"not within {WAIT_SECONDS_MAX} s: {what}")


async def test_the_sweeper_expires_lots_and_holds_of_idle_wallets(sweeping_server: Server) -> None:
    server = sweeping_server
    with server.client() as client:
        idle, holding = new_wallet(client, "POINTS"), new_wallet(client, "POINTS")
        soon = (datetime.now(UTC) + timedelta(seconds=1.5)).isoformat()
        post(client, f"/v1/wallets/{idle}/topup", {"amount": 10, "expires_at": soon})
        later = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
        post(client, f"/v1/wallets/{holding}/bonus", {"amount": 10, "expires_at": later})
        hold = post(client, f"/v1/wallets/{holding}/holds", {"amount": 4, "expires_in_seconds": 1}).json()
        assert client.get(f"/v1/wallets/{holding}/lots").json()["data"][0]["remaining"] == 6

        connection = await asyncpg.connect(server.database_url, timeout=10)
        try:
            # The lots locked away before anything is due: once it is, every run fails on the lock
            # timeout; the loop goes on.
            async with connection.transaction():
                await connection.execute("LOCK TABLE lot IN ACCESS EXCLUSIVE MODE")
                await wait_until(lambda: "expiry_sweep_failed" in server.log_path.read_text(), "a failed run")
            assert types(client, idle) == ["topup"], "nothing posted while the lots were locked"
            seconds = await wait_until(
                lambda: types(client, idle) == ["topup", "expiry"], "the expiry posted"
            )
            stored = await connection.fetchval("SELECT status FROM hold WHERE id = $1", uuid.UUID(hold["id"]))
        finally:
            await connection.close()
        print(f"\nsweeper: the expiry posted {seconds:.2f} s after the lock was released")
        assert seconds <= INTERVAL_SECONDS * 1.2 + 2, "within the interval (and the time to post)"
        assert stored == "expired", "the sweeper marked the hold"
        assert client.get(f"/v1/wallets/{holding}/lots").json()["data"][0]["remaining"] == 10
        assert client.get(f"/v1/wallets/{idle}").json()["balance"] == 0
        assert_ledger_ok(client)
    server.stop()
    assert server.process.returncode == 0
    assert '"event":"expiry_swept"' in server.log_path.read_text().replace(" ", "")


@pytest.fixture
def database_url(create_database: Callable[[], str]) -> str:
    return create_database()


async def test_one_sweep_batch_at_a_time(database_url: str) -> None:
    url = database_url
    holder = await asyncpg.connect(url, timeout=10)
    sweeper = await asyncpg.connect(url, timeout=10)
    try:
        await holder.execute("SELECT pg_advisory_lock($1)", lots.SWEEP_LOCK_KEY)
        assert await lots.sweep_batch(sweeper, 10, wait_for_lock=False) is None
        waiting = asyncio.create_task(lots.sweep(sweeper, 10))
        await asyncio.sleep(0.3)
        assert not waiting.done(), "the command-line sweep waits for the other"
        await holder.execute("SELECT pg_advisory_unlock($1)", lots.SWEEP_LOCK_KEY)
        assert await asyncio.wait_for(waiting, 10) == 0
    finally:
        await holder.close()
        await sweeper.close()

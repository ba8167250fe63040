"""The background purge of expired idempotency keys (wallet.housekeeping): backdated keys vanish
within an interval, newer ones stay; a run that hits a database error is logged and the next
one does the work; the purge lock lets one batch run at a time; shutdown stops the loop cleanly."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import cast

import asyncpg
import pytest

from support import Server, new_wallet, start_server, topup, wallet_command
from wallet import housekeeping, idempotency, keys
from wallet.config import ConfigurationError, Settings, load_settings

INTERVAL_SECONDS = 1
TIMEOUT_MS_LOCK = 300
WAIT_SECONDS_MAX = 15.0


@pytest.fixture
def purging_server(create_database: Callable[[], str], tmp_path: Path) -> Iterator[Server]:
    url = create_database()
    wallet_command("db", "seed", database_url=url)
    environment = {
        "WALLET_IDEMPOTENCY_PURGE_INTERVAL_SECONDS": str(INTERVAL_SECONDS),
        "WALLET_TIMEOUT_MS_LOCK": str(TIMEOUT_MS_LOCK),
    }
    running = start_server(url, tmp_path / "server.log", env=environment)
    try:
        yield running
    finally:
        running.stop()


async def stored(database_url: str, keys_sent: list[str]) -> set[str]:
    connection = await asyncpg.connect(database_url, timeout=10)
    try:
        rows = await connection.fetch(
            "SELECT key FROM idempotency_key WHERE key = ANY($1::text[])", keys_sent
        )
    finally:
        await connection.close()
    return {row["key"] for row in rows}


async def backdate(connection: asyncpg.Connection, keys_to_age: list[str], hours: int) -> None:
    await connection.execute(
        """
        UPDATE idempotency_key SET created_at = now() - make_interval(hours => $2)
        WHERE key = ANY($1::text[])
        """,
        keys_to_age,
        hours,
    )


async def wait_until(condition: Callable[[], Awaitable[bool]], what: str) -> float:
    started = time.monotonic()
    while time.monotonic() - started < WAIT_SECONDS_MAX:
        if await condition():
            return time.monotonic() - started
        await asyncio.sleep(0.1)
    raise AssertionError(f"not within {WAIT_SECONDS_MAX} s: {what}")


async def test_backdated_keys_are_purged_in_the_background_and_newer_ones_kept(
    purging_server: Server,
) -> None:
    server = purging_server
    with server.client() as client:
        wallet_id = new_wallet(client)
        sent = [f"purge-{uuid.uuid4()}" for _ in range(6)]
        for key in sent:
            assert topup(client, wallet_id, 1, key=key).status_code == 201
    old, young = sent[:4], sent[4:]
    connection = await asyncpg.connect(server.database_url, timeout=10)
    try:
        await backdate(connection, old, hours=25)
        await backdate(connection, young, hours=23)
        # While the table is locked, every run fails on the lock timeout; the loop goes on.
        async with connection.transaction():
            await connection.execute("LOCK TABLE idempotency_key IN ACCESS EXCLUSIVE MODE")
            await wait_until(lambda: failed_runs(server), "a purge run failing on the lock")
        seconds = await wait_until(
            lambda: purged(server.database_url, sent, young), "the backdated keys purged"
        )
    finally:
        await connection.close()
    print(f"\nbackground purge: backdated keys gone {seconds:.2f} s after the lock was released")
    log = server.log_path.read_text()
    assert '"event":"idempotency_purged"' in log.replace(" ", "")
    server.stop()
    assert server.process.returncode == 0, log
    assert "Traceback" not in server.log_path.read_text()


async def failed_runs(server: Server) -> bool:
    return "idempotency_purge_failed" in server.log_path.read_text()


async def purged(database_url: str, sent: list[str], young: list[str]) -> bool:
    return await stored(database_url, sent) == set(young)


@pytest.fixture
def database_url(create_database: Callable[[], str]) -> str:
    return create_database()


async def wait_for_advisory_lock_wait(probe: asyncpg.Connection, backend_pid: int) -> None:
    """Until the backend waits for an advisory lock (pg_locks shows its request ungranted)."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        waiting = await probe.fetchval(
            "SELECT EXISTS (SELECT FROM pg_locks WHERE pid = $1 AND locktype = 'advisory' AND NOT granted)",
            backend_pid,
        )
        if waiting:
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"backend {backend_pid} never waited for the purge lock")


async def test_a_purge_batch_waits_its_turn_behind_another_process(database_url: str) -> None:
    """While another session holds the purge lock, a background batch steps aside (None) and the
    command-line purge waits; once it is released, both go ahead."""
    url = database_url
    holder = await asyncpg.connect(url, timeout=10)
    purger = await asyncpg.connect(url, timeout=10)
    try:
        api_key, _ = await keys.create(purger, f"purge-{uuid.uuid4().hex[:12]}", {keys.Scope.WRITE})
        await purger.execute(
            """
            INSERT INTO idempotency_key
                (api_key_id, key, fingerprint, decline_code, decline_detail, created_at)
            SELECT $1, 'old-' || n, sha256(n::text::bytea), 'insufficient_funds', 'stored by a test',
                now() - interval '30 hours'
            FROM generate_series(1, 25) AS n
            """,
            api_key.id,
        )
        await holder.execute("SELECT pg_advisory_lock($1)", idempotency.PURGE_LOCK_KEY)
        assert await idempotency.purge_batch(purger, 24, 10, wait_for_lock=False) is None
        purger_pid = purger.get_server_pid()
        waiting = asyncio.create_task(idempotency.purge(purger, 24, batch_size=10))
        await wait_for_advisory_lock_wait(holder, purger_pid)
        assert not waiting.done()
        await holder.execute("SELECT pg_advisory_unlock($1)", idempotency.PURGE_LOCK_KEY)
        assert await asyncio.wait_for(waiting, 10) == 25
        assert await idempotency.purge_batch(purger, 24, 10, wait_for_lock=False) == 0
    finally:
        await holder.close()
        await purger.close()


def test_purge_interval_zero_turns_the_purge_off_and_a_negative_one_is_refused(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("WALLET_IDEMPOTENCY_PURGE_INTERVAL_SECONDS", "0")
    assert load_settings().idempotency_purge_interval_seconds == 0
    monkeypatch.setenv("WALLET_IDEMPOTENCY_PURGE_INTERVAL_SECONDS", "-1")
    with pytest.raises(ConfigurationError, match="WALLET_IDEMPOTENCY_PURGE_INTERVAL_SECONDS"):
        load_settings()


def test_purge_interval_zero_starts_no_purge_loop() -> None:
    settings = Settings(database_url=None, idempotency_purge_interval_seconds=0)
    assert housekeeping.start_purge(cast(asyncpg.Pool, None), settings) is None

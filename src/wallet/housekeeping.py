"""Background work of a serving process: purging expired idempotency keys.

Every WALLET_IDEMPOTENCY_PURGE_INTERVAL_SECONDS (give or take PURGE_JITTER, so that workers
started together drift apart) a run deletes keys older than WALLET_IDEMPOTENCY_TTL_HOURS in
batches of PURGE_BATCH_SIZE, each batch its own short transaction on a pooled connection that is
handed back before a PURGE_PAUSE_SECONDS pause, so traffic never waits long behind a purge.
Each batch holds the purge advisory lock of its transaction (`idempotency.purge_batch`): when
another worker's batch holds it, this run ends and leaves the work to that one. A failed run
(database down, timeouts) is logged and the next interval tries again.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time

import asyncpg
import structlog

from wallet import idempotency
from wallet.config import Settings

PURGE_BATCH_SIZE = 500
PURGE_PAUSE_SECONDS = 0.05
PURGE_JITTER = 0.2  # each wait is the interval times a random factor in [0.8, 1.2]

log = structlog.get_logger("wallet.housekeeping")


def start_purge(pool: asyncpg.Pool, settings: Settings) -> asyncio.Task[None] | None:
    """The purge loop as a task of the running event loop; None when the interval is 0."""
    if settings.idempotency_purge_interval_seconds == 0:
        return None
    return asyncio.create_task(_purge_forever(pool, settings), name="idempotency-purge")


async def stop(task: asyncio.Task[None] | None) -> None:
    """Cancel the loop and wait for it; a batch in flight rolls back and is redone next time."""
    if task is None:
        return
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


async def _purge_forever(pool: asyncpg.Pool, settings: Settings) -> None:
    interval_seconds = settings.idempotency_purge_interval_seconds
    assert interval_seconds > 0
    while True:
        await asyncio.sleep(interval_seconds * random.uniform(1 - PURGE_JITTER, 1 + PURGE_JITTER))
        await purge_run(pool, settings)


async def purge_run(pool: asyncpg.Pool, settings: Settings) -> int | None:
    """One run; how many keys it deleted, or None when it failed (logged)."""
    started = time.perf_counter()
    deleted_total, finished = 0, False
    try:
        while not finished:
            deleted = await _purge_batch(pool, settings)
            deleted_total += deleted or 0
            finished = deleted is None or deleted < PURGE_BATCH_SIZE
            if not finished:
                await asyncio.sleep(PURGE_PAUSE_SECONDS)
    except (asyncpg.PostgresError, asyncpg.InterfaceError, OSError, TimeoutError) as error:
        log.warning("idempotency_purge_failed", error=type(error).__name__, deleted=deleted_total)
        return None
    except Exception:  # a bug; the loop must outlive it, the log must show it
        log.exception("idempotency_purge_failed", deleted=deleted_total)
        return None
    duration_ms = round((time.perf_counter() - started) * 1000, 1)
    log.info("idempotency_purged", deleted=deleted_total, duration_ms=duration_ms)
    return deleted_total


async def _purge_batch(pool: asyncpg.Pool, settings: Settings) -> int | None:
    timeout_seconds = settings.timeout_ms_pool_acquire / 1000
    async with pool.acquire(timeout=timeout_seconds) as connection:
        return await idempotency.purge_batch(
            connection, settings.idempotency_ttl_hours, PURGE_BATCH_SIZE, wait_for_lock=False
        )

"""Background work of a serving process: purging expired idempotency keys, and sweeping what
has expired (holds and lots) from wallets no posting has touched since.

Each job runs every interval (give or take JITTER, so that workers started together drift
apart), in batches: each batch its own short transaction on a pooled connection that is handed
back before a PAUSE_SECONDS pause, so traffic never waits long behind a run. Each batch holds its
job's advisory lock for its transaction: when another worker's batch holds it, this run ends and
leaves the work to that one. A failed run (database down, timeouts) is logged and the next
interval tries again.

- purge: deletes idempotency keys older than WALLET_IDEMPOTENCY_TTL_HOURS, every
  WALLET_IDEMPOTENCY_PURGE_INTERVAL_SECONDS, PURGE_BATCH_SIZE at a time (idempotency.purge_batch).
- sweep: expires due holds and lots every WALLET_EXPIRY_SWEEP_SECONDS, SWEEP_BATCH_SIZE wallets
  at a time (lots.sweep_batch); a wallet a posting has locked is skipped: the posting expires
  its own.
- events purge: deletes events older than WALLET_EVENTS_TTL_DAYS that every relay has
  published, with the idempotency purge's interval (events.purge_batch).
- sequencer: every WALLET_EVENTS_SEQUENCE_INTERVAL_MS gives committed events their positions in
  the feed (events.sequence; one run at a time across processes). It logs a failure once, and
  its recovery.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections.abc import Awaitable, Callable

import asyncpg
import structlog

from wallet import idempotency, metrics
from wallet.config import Settings
from wallet.ledger import events, lots

PURGE_BATCH_SIZE = 500
EVENTS_PURGE_BATCH_SIZE = 5000
RELAY_LAG_SAMPLE_SECONDS = 1.0
SWEEP_BATCH_SIZE = lots.SWEEP_BATCH_SIZE
PAUSE_SECONDS = 0.05
JITTER = 0.2  # each wait is the interval times a random factor in [0.8, 1.2]

log = structlog.get_logger("wallet.housekeeping")

Batch = Callable[[asyncpg.Pool, Settings], Awaitable[int | None]]


def start_purge(pool: asyncpg.Pool, settings: Settings) -> asyncio.Task[None] | None:
    """The purge loop as a task of the running event loop; None when the interval is 0."""
    return _start("idempotency-purge", settings.idempotency_purge_interval_seconds, purge_run, pool, settings)


def start_sweep(pool: asyncpg.Pool, settings: Settings) -> asyncio.Task[None] | None:
    """The expiry sweep loop as a task of the running event loop; None when the interval is 0."""
    return _start("expiry-sweep", settings.expiry_sweep_seconds, sweep_run, pool, settings)


def start_events_purge(pool: asyncpg.Pool, settings: Settings) -> asyncio.Task[None] | None:
    """The events purge loop; None when the idempotency purge interval is 0."""
    return _start(
        "events-purge", settings.idempotency_purge_interval_seconds, events_purge_run, pool, settings
    )


def start_sequencer(pool: asyncpg.Pool, settings: Settings) -> asyncio.Task[None] | None:
    """The event sequencer loop; None when its interval is 0."""
    if settings.events_sequence_interval_ms == 0:
        return None
    return asyncio.create_task(_sequence_forever(pool, settings), name="event-sequencer")


async def _sequence_forever(pool: asyncpg.Pool, settings: Settings) -> None:
    interval_seconds = settings.events_sequence_interval_ms / 1000
    timeout_seconds = settings.timeout_ms_pool_acquire / 1000
    failing = False
    lag_sampled = 0.0
    while True:
        await asyncio.sleep(interval_seconds)
        try:
            async with pool.acquire(timeout=timeout_seconds) as connection:
                while (placed := await events.sequence(connection)) == events.SEQUENCE_BATCH_SIZE:
                    pass
                if time.monotonic() - lag_sampled >= RELAY_LAG_SAMPLE_SECONDS:
                    lag_sampled = time.monotonic()
                    for stream, lag, seconds in await events.relay_lag(connection):
                        metrics.record_relay_lag(stream, lag, seconds)
            if failing:
                log.info("event_sequencer_recovered", placed=placed)
            failing = False
        except (asyncpg.PostgresError, asyncpg.InterfaceError, OSError, TimeoutError) as error:
            if not failing:
                log.warning("event_sequencer_failed", error=type(error).__name__)
            failing = True
        except Exception:  # a bug; the loop must outlive it, the log must show it
            log.exception("event_sequencer_failed")
            failing = True


async def stop(task: asyncio.Task[None] | None) -> None:
    """Cancel the loop and wait for it; a batch in flight rolls back and is redone next time."""
    if task is None:
        return
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


def _start(
    name: str,
    interval_seconds: float,
    run: Callable[[asyncpg.Pool, Settings], Awaitable[int | None]],
    pool: asyncpg.Pool,
    settings: Settings,
) -> asyncio.Task[None] | None:
    if interval_seconds == 0:
        return None

    async def forever() -> None:
        while True:
            await asyncio.sleep(interval_seconds * random.uniform(1 - JITTER, 1 + JITTER))
            await run(pool, settings)

    return asyncio.create_task(forever(), name=name)


async def purge_run(pool: asyncpg.Pool, settings: Settings) -> int | None:
    """One purge run; how many keys it deleted, or None when it failed (logged)."""
    return await _run("idempotency_purged", _purge_batch, PURGE_BATCH_SIZE, pool, settings)


async def sweep_run(pool: asyncpg.Pool, settings: Settings) -> int | None:
    """One sweep run; how many wallets it took, or None when it failed (logged)."""
    return await _run("expiry_swept", _sweep_batch, SWEEP_BATCH_SIZE, pool, settings)


async def events_purge_run(pool: asyncpg.Pool, settings: Settings) -> int | None:
    """One events purge run; how many events it deleted, or None when it failed (logged)."""
    return await _run("events_purged", _events_purge_batch, EVENTS_PURGE_BATCH_SIZE, pool, settings)


async def _run(
    event: str, batch: Batch, batch_size: int, pool: asyncpg.Pool, settings: Settings
) -> int | None:
    """Batches until one does less than a full batch (or another process holds the lock). Logs
    `event` with the count done (a sweep only when it did something), or `<job>_failed`."""
    failed = {
        "idempotency_purged": "idempotency_purge_failed",
        "expiry_swept": "expiry_sweep_failed",
        "events_purged": "events_purge_failed",
    }[event]
    started = time.perf_counter()
    done_total, finished = 0, False
    try:
        while not finished:
            done = await batch(pool, settings)
            done_total += done or 0
            finished = done is None or done < batch_size
            if not finished:
                await asyncio.sleep(PAUSE_SECONDS)
    except (asyncpg.PostgresError, asyncpg.InterfaceError, OSError, TimeoutError) as error:
        log.warning(failed, error=type(error).__name__, count=done_total)
        return None
    except Exception:  # a bug; the loop must outlive it, the log must show it
        log.exception(failed, count=done_total)
        return None
    duration_ms = round((time.perf_counter() - started) * 1000, 1)
    if event == "idempotency_purged" or done_total:
        log.info(event, count=done_total, duration_ms=duration_ms)
    return done_total


async def _purge_batch(pool: asyncpg.Pool, settings: Settings) -> int | None:
    timeout_seconds = settings.timeout_ms_pool_acquire / 1000
    async with pool.acquire(timeout=timeout_seconds) as connection:
        return await idempotency.purge_batch(
            connection, settings.idempotency_ttl_hours, PURGE_BATCH_SIZE, wait_for_lock=False
        )


async def _sweep_batch(pool: asyncpg.Pool, settings: Settings) -> int | None:
    timeout_seconds = settings.timeout_ms_pool_acquire / 1000
    async with pool.acquire(timeout=timeout_seconds) as connection:
        return await lots.sweep_batch(connection, SWEEP_BATCH_SIZE, wait_for_lock=False)


async def _events_purge_batch(pool: asyncpg.Pool, settings: Settings) -> int | None:
    timeout_seconds = settings.timeout_ms_pool_acquire / 1000
    async with pool.acquire(timeout=timeout_seconds) as connection:
        return await events.purge_batch(connection, settings.events_ttl_days, EVENTS_PURGE_BATCH_SIZE)

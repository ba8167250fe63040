"""`wallet events relay`: publishes the event feed to NATS JetStream, in order, each event once.

Each event goes to subject `wallet.<type>` of the relay's stream (created when missing, subjects
`wallet.>`) as its JSON document, with headers `Nats-Msg-Id` (the event id: the stream's
duplicate window drops a repeat), `Wallet-Position` (its position in the feed) and
`Nats-Expected-Last-Msg-Id` (the event before it). That last header makes JetStream refuse a
message unless the one before it is the stream's last: a message lost in a reconnect can never be
followed by the next one, so the stream holds the feed's events with no gap, in order.

Where to go on from is the stream itself: at every start and after every failure the relay reads
the stream's last message and goes on after its `Wallet-Position`. So a relay killed at any point
(before or after JetStream stored a message, before or after the database heard of it) resumes
with nothing missed and nothing twice, whatever the duplicate window. The position it keeps in
the database (event_relay, moved after JetStream acknowledged) is what the purge and the lag
gauge go by.

One relay per stream at a time: it holds a session advisory lock on its database connection for
as long as it runs; a second one waits for it. If its database connection drops, it connects again
and waits for the lock again (another relay may have it by then). The lock needs a session: the
relay connects to PostgreSQL directly, not through a transaction-mode pooler.
"""

from __future__ import annotations

import asyncio
import contextlib
import zlib
from typing import Any

import asyncpg
import nats
import nats.errors
import nats.js.errors
import structlog
from nats.aio.client import Client
from nats.js.api import StorageType, StreamConfig

from wallet.config import Settings
from wallet.ledger import events

log = structlog.get_logger("wallet.relay")

SUBJECTS = "wallet.>"
BATCH_SIZE = 500  # events published before waiting for their acknowledgements
POLL_SECONDS = 0.05  # between reads of the feed when there was nothing new
RETRY_SECONDS = 0.5  # after a failure, before trying again
DUPLICATE_WINDOW_SECONDS = 120.0
ACK_TIMEOUT_SECONDS = 5.0
# The relay lock: "wallet" in ASCII then 5, and the stream name's CRC-32 (one relay per stream).
LOCK_CLASS = 0x77616C6C6574_0005 % 2**31
POSITION_HEADER = "Wallet-Position"

NATS_ERRORS = (nats.errors.Error, TimeoutError, OSError)
DATABASE_ERRORS = (asyncpg.PostgresError, asyncpg.InterfaceError, OSError, TimeoutError)


class StreamOutOfStep(Exception):
    """JetStream refused a message (the one before it is not the stream's last): start again
    from the stream's last message."""


def lock_key(stream: str) -> tuple[int, int]:
    return LOCK_CLASS, zlib.crc32(stream.encode()) - 2**31


async def run(settings: Settings, database_url: str, nats_url: str, stream: str) -> None:
    """Relay until cancelled."""
    while True:
        try:
            connection = await asyncpg.connect(
                database_url,
                timeout=settings.timeout_ms_connect / 1000,
                statement_cache_size=settings.statement_cache_size,
            )
        except DATABASE_ERRORS as error:
            log.warning("relay_database_unavailable", error=type(error).__name__)
            await asyncio.sleep(RETRY_SECONDS)
            continue
        try:
            log.info("relay_waiting_for_lock", stream=stream)
            await connection.execute("SELECT pg_advisory_lock($1, $2)", *lock_key(stream))
            log.info("relay_started", stream=stream, nats_url=nats_url)
            await _relay(connection, nats_url, stream)
        except DATABASE_ERRORS as error:
            log.warning("relay_database_failed", error=type(error).__name__)
            await asyncio.sleep(RETRY_SECONDS)
        finally:
            with contextlib.suppress(*DATABASE_ERRORS):
                await connection.close(timeout=2)


async def _relay(connection: asyncpg.Connection, nats_url: str, stream: str) -> None:
    client = await _connect_nats(nats_url)
    try:
        jetstream = client.jetstream(timeout=ACK_TIMEOUT_SECONDS)
        await connection.execute(
            "INSERT INTO event_relay (stream) VALUES ($1) ON CONFLICT DO NOTHING", stream
        )
        last_id: str | None = None
        position: int | None = None
        while True:
            try:
                if position is None:
                    await _ensure_stream(jetstream, stream)
                    position, last_id = await _stream_end(jetstream, stream)
                    await _record(connection, stream, position)
                    log.info("relay_resumed", stream=stream, position=position)
                await events.sequence(connection)
                batch = await events.events_after(connection, position, BATCH_SIZE)
                if not batch:
                    await asyncio.sleep(POLL_SECONDS)
                    continue
                last_id = await _publish(jetstream, stream, batch, last_id)
                position = batch[-1].position
                await _record(connection, stream, position)
            except (*NATS_ERRORS, StreamOutOfStep) as error:
                log.warning("relay_publish_failed", stream=stream, error=type(error).__name__)
                position = None  # find out again what the stream has
                await asyncio.sleep(RETRY_SECONDS)
    finally:
        with contextlib.suppress(*NATS_ERRORS):
            await client.close()


async def _connect_nats(nats_url: str) -> Client:
    while True:
        try:
            return await nats.connect(
                nats_url,
                connect_timeout=2,
                reconnect_time_wait=RETRY_SECONDS,
                max_reconnect_attempts=-1,
                allow_reconnect=True,
                error_cb=_nats_error,
                disconnected_cb=_nats_disconnected,
                reconnected_cb=_nats_reconnected,
            )
        except NATS_ERRORS as error:
            log.warning("relay_nats_unavailable", error=type(error).__name__)
            await asyncio.sleep(RETRY_SECONDS)


async def _nats_error(error: Exception) -> None:
    log.debug("relay_nats_error", error=type(error).__name__)


async def _nats_disconnected() -> None:
    log.warning("relay_nats_disconnected")


async def _nats_reconnected() -> None:
    log.info("relay_nats_reconnected")


async def _ensure_stream(jetstream: Any, stream: str) -> None:
    try:
        await jetstream.stream_info(stream)
    except nats.js.errors.NotFoundError:
        config = StreamConfig(
            name=stream,
            subjects=[SUBJECTS],
            storage=StorageType.FILE,
            duplicate_window=DUPLICATE_WINDOW_SECONDS,
        )
        await jetstream.add_stream(config)
        log.info("relay_stream_created", stream=stream)


async def _stream_end(jetstream: Any, stream: str) -> tuple[int, str | None]:
    """The feed position and event id of the stream's last message (0, None: it has none)."""
    info = await jetstream.stream_info(stream)
    last_sequence = info.state.last_seq
    if not last_sequence:
        return 0, None
    message = await jetstream.get_msg(stream, seq=last_sequence)
    headers = message.headers or {}
    if POSITION_HEADER not in headers:
        raise RuntimeError(f"the last message of stream {stream} is not one this relay published")
    return int(headers[POSITION_HEADER]), headers.get("Nats-Msg-Id")


async def _publish(jetstream: Any, stream: str, batch: list[events.Event], last_id: str | None) -> str | None:
    """Publish the batch in order, pipelined, and wait for every acknowledgement."""
    pending = []
    for event in batch:
        event_id = str(event.id)
        headers = {"Nats-Msg-Id": event_id, POSITION_HEADER: str(event.position)}
        if last_id is not None:
            headers["Nats-Expected-Last-Msg-Id"] = last_id
        subject = f"wallet.{event.type.value}"
        pending.append(
            await jetstream.publish_async(subject, event.to_json(), stream=stream, headers=headers)
        )
        last_id = event_id
    results = await asyncio.gather(*pending, return_exceptions=True)
    for result in results:
        if isinstance(result, nats.js.errors.APIError):
            raise StreamOutOfStep(str(result))
        if isinstance(result, BaseException):
            raise result
    return last_id


async def _record(connection: asyncpg.Connection, stream: str, position: int) -> None:
    await connection.execute(
        "UPDATE event_relay SET position = $2, updated_at = now() WHERE stream = $1", stream, position
    )

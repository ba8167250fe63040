"""Events are purged when older than the retention, but never before every relay has published
them; the transactions whose events are gone are no longer expected to have one (verify)."""

from __future__ import annotations

import asyncio

import asyncpg

from events.test_relay import post_topups
from wallet.ledger import events, verify


async def _purge_behind_the_relay(database_url: str) -> None:
    await post_topups(database_url, 30)
    connection = await asyncpg.connect(database_url, timeout=10)
    try:
        await events.sequence_all(connection)
        last = await connection.fetchval("SELECT last_position FROM event_sequencer")
        assert last == 30
        await connection.execute("INSERT INTO event_relay (stream, position) VALUES ('A', 12), ('B', 20)")
        # A retention of 0 days: every event is old enough; the slower relay holds back the rest.
        assert await events.purge_batch(connection, 0, 5) == 5
        assert await events.purge_batch(connection, 0, 1000) == 7
        assert await events.purge_batch(connection, 0, 1000) == 0
        kept = await connection.fetchval("SELECT min(position) FROM event_position")
        assert kept == 13
        assert [event.position for event in await events.events_after(connection, 0, 100)][:1] == [13]
        result = await verify.verify(connection)
        assert result.ok, result.problems
        await connection.execute("UPDATE event_relay SET position = 30")
        assert await events.purge_batch(connection, 0, 1000) == 18
        assert await events.events_after(connection, 0, 100) == []
        result = await verify.verify(connection)
        assert result.ok, result.problems
        # Without any relay, the retention alone decides: a week keeps what is new.
        await connection.execute("DELETE FROM event_relay")
        await post_topups(database_url, 3)
        await events.sequence_all(connection)
        assert await events.purge_batch(connection, 7, 1000) == 0
        assert len(await events.events_after(connection, 0, 100)) == 3
    finally:
        await connection.close()


def test_events_are_purged_after_the_retention_and_behind_every_relay(relay_database: str) -> None:
    asyncio.run(_purge_behind_the_relay(relay_database))
